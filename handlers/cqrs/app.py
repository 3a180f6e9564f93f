"""CQRS: a bank account whose writes are events and whose reads come from a projection.

Three functions share this module:

- `app.command_handler` (invoked synchronously). Event: a command, one of
    {"type": "OpenAccount", "account_id": "acc-1", "owner": "Ada"}
    {"type": "Deposit",  "account_id": "acc-1", "amount": 500, "expected_version": 1}
    {"type": "Withdraw", "account_id": "acc-1", "amount": 200, "expected_version": 2}
  `amount` is a positive integer (cents); `expected_version` is the account version the
  caller last read. An accepted command appends one event at version `expected_version + 1`
  with a conditional put (optimistic concurrency) and answers
  {"accepted": true, "account_id", "version", "event"}; otherwise it answers
  {"accepted": false, "error": <code>, "message": <why>} and stores nothing. Codes:
  InvalidCommand, UnknownAccount, VersionConflict, InsufficientFunds.
  Sandbox-only fault injection: "fault": "fail-projection-once" is copied onto the event so
  the projector fails on it once (the stream then retries it).
  Environment: EVENTS_TABLE.
- `app.projector_handler`: a DynamoDB Streams batch of the events table (NEW_IMAGE, with
  ReportBatchItemFailures). Each INSERT is applied to the read model with a conditional
  write on the view's last applied version, so a redelivered event is skipped, never
  applied twice. Environment: READ_MODEL_TABLE, FAULTS_TABLE.
- `app.query_handler`: {"account_id": "acc-1"} -> {"found": true, "account": {...}} or
  {"found": false}, read from the read model only. Environment: READ_MODEL_TABLE.

Test-only environment: SANDBOX_TEST_HOLD_TABLE (and SANDBOX_TEST_HOLD_SECONDS), off by
default and set only on the sandbox's `-held` variants of the command and projector
functions, lets a scenario hold an invocation between its read and its conditional write
(`hold_after_read`, keyed by the account id).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any, Protocol

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
)
from botocore.exceptions import ClientError
from race_hold import hold_after_read  # test-only: handlers/shared/race_hold.py

FAIL_PROJECTION_ONCE = "fail-projection-once"
ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
COMMAND_EVENTS = {
    "OpenAccount": "AccountOpened",
    "Deposit": "MoneyDeposited",
    "Withdraw": "MoneyWithdrawn",
}

logger = Logger(service="cqrs")
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


# -- The domain: one fold serves the command side, the projector and any replay ---------
class Rejected(Exception):
    """A command the account refuses; `code` names the reason for callers."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def apply(state: dict[str, Any] | None, event: dict[str, Any]) -> dict[str, Any]:
    """The account after one event. Events must arrive in version order."""
    version = int(event["version"])
    current = int(state["version"]) if state else 0
    if version != current + 1:
        raise ValueError(f"event version {version} does not follow version {current}")
    kind, data = event["type"], event.get("data") or {}
    if kind == "AccountOpened":
        return {"id": event["aggregate_id"], "owner": data["owner"], "balance": 0, "version": 1}
    if state is None:
        raise ValueError(f"{kind} before AccountOpened")
    amount = int(data["amount"])
    delta = amount if kind == "MoneyDeposited" else -amount
    return {**state, "balance": int(state["balance"]) + delta, "version": version}


def replay(events: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The account as its events say, from the first."""
    state: dict[str, Any] | None = None
    for event in sorted(events, key=lambda e: int(e["version"])):
        state = apply(state, event)
    return state


def validate(command: Any) -> dict[str, Any]:
    """The command with its fields checked; Rejected("InvalidCommand") says what is wrong."""
    if not isinstance(command, dict):
        raise Rejected("InvalidCommand", "a command is a JSON object")
    kind = command.get("type")
    if kind not in COMMAND_EVENTS:
        raise Rejected("InvalidCommand", f"type must be one of {sorted(COMMAND_EVENTS)}")
    account_id = command.get("account_id")
    if not isinstance(account_id, str) or not ACCOUNT_ID.match(account_id):
        raise Rejected("InvalidCommand", "account_id is required: 1-64 letters, digits, - or _")
    fault = command.get("fault")
    if fault not in (None, FAIL_PROJECTION_ONCE):
        raise Rejected("InvalidCommand", f"fault may only be {FAIL_PROJECTION_ONCE!r}")
    if kind == "OpenAccount":
        owner = command.get("owner")
        if not isinstance(owner, str) or not owner.strip():
            raise Rejected("InvalidCommand", "owner is required for OpenAccount")
        expected = command.get("expected_version", 0)
    else:
        amount = command.get("amount")
        if not _is_int(amount) or amount <= 0:
            raise Rejected("InvalidCommand", "amount must be a positive integer (cents)")
        if "expected_version" not in command:
            raise Rejected("InvalidCommand", f"expected_version is required for {kind}")
        expected = command["expected_version"]
    if not _is_int(expected) or expected < 0:
        raise Rejected("InvalidCommand", "expected_version must be an integer >= 0")
    return {**command, "expected_version": expected}


def decide(state: dict[str, Any] | None, command: dict[str, Any]) -> dict[str, Any]:
    """The event a valid command produces against the current account, or Rejected."""
    kind, account_id = command["type"], command["account_id"]
    current = int(state["version"]) if state else 0
    if kind == "OpenAccount":
        if state is not None:
            raise Rejected("VersionConflict", f"account {account_id} already exists")
        data: dict[str, Any] = {"owner": command["owner"]}
    else:
        if state is None:
            raise Rejected("UnknownAccount", f"account {account_id} has no events: open it first")
        data = {"amount": command["amount"]}
    if command["expected_version"] != current:
        raise Rejected(
            "VersionConflict",
            f"expected version {command['expected_version']}, "
            f"but account {account_id} is at version {current}",
        )
    balance = int(state["balance"]) if state else 0
    if kind == "Withdraw" and command["amount"] > balance:
        raise Rejected(
            "InsufficientFunds", f"cannot withdraw {command['amount']}: balance is {balance}"
        )
    event = {
        "aggregate_id": account_id,
        "version": current + 1,
        "type": COMMAND_EVENTS[kind],
        "data": data,
        "at": datetime.now(UTC).isoformat(),
    }
    if command.get("fault"):
        event["fault"] = command["fault"]
    return event


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- Command side --------------------------------------------------------------------
class EventStore(Protocol):
    def load(self, aggregate_id: str) -> list[dict[str, Any]]: ...

    def append(self, event: dict[str, Any]) -> None:
        """Store the event unless its (aggregate_id, version) exists: then Rejected."""
        ...


class DynamoEventStore:
    def __init__(self, table: Any) -> None:
        self.table = table

    def load(self, aggregate_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {
            "KeyConditionExpression": "aggregate_id = :id",
            "ExpressionAttributeValues": {":id": aggregate_id},
            "ConsistentRead": True,
        }
        while True:
            page = self.table.query(**params)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return items
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def append(self, event: dict[str, Any]) -> None:
        try:
            self.table.put_item(Item=event, ConditionExpression="attribute_not_exists(version)")
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise Rejected(
                "VersionConflict",
                f"another command appended version {event['version']} of "
                f"{event['aggregate_id']} first",
            ) from error


def handle_command(store: EventStore, command: Any) -> dict[str, Any]:
    """Validate, decide against the replayed account, append with optimistic concurrency."""
    try:
        valid = validate(command)
        state = replay(store.load(valid["account_id"]))
        event = decide(state, valid)
        hold_after_read(valid["account_id"])
        store.append(event)
    except Rejected as rejected:
        return {"accepted": False, "error": rejected.code, "message": rejected.message}
    return {
        "accepted": True,
        "account_id": event["aggregate_id"],
        "version": event["version"],
        "event": event["type"],
    }


@cache
def _dynamodb() -> Any:
    return boto3.resource("dynamodb")


def command_handler(event: Any, context: Any) -> dict[str, Any]:
    result = handle_command(DynamoEventStore(_dynamodb().Table(os.environ["EVENTS_TABLE"])), event)
    logger.info("Command handled", extra={"command": event, "result": result})
    return result


# -- Read side -----------------------------------------------------------------------
class InjectedFault(RuntimeError):
    """The sandbox's controllable projector failure (first delivery of a marked event)."""


class ReadModel(Protocol):
    def get(self, view_id: str) -> dict[str, Any] | None: ...

    def put(self, view: dict[str, Any], previous_version: int) -> bool:
        """Write the view if the stored one is still at previous_version (0: none yet);
        False when it is not."""
        ...


class DynamoReadModel:
    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, view_id: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"id": view_id}, ConsistentRead=True).get("Item")
        return _plain(item) if item else None

    def put(self, view: dict[str, Any], previous_version: int) -> bool:
        if previous_version == 0:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(id)"}
        else:
            condition = {
                "ConditionExpression": "version = :previous",
                "ExpressionAttributeValues": {":previous": previous_version},
            }
        try:
            self.table.put_item(Item=view, **condition)
            return True
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise


def project(read_model: ReadModel, event: dict[str, Any]) -> str:
    """Apply one stored event to its account's view: "projected", or "duplicate" when the
    view already includes it. A gap (an earlier event not projected yet) raises, so the
    stream retries the batch from there."""
    view_id, version = event["aggregate_id"], int(event["version"])
    view = read_model.get(view_id)
    applied = int(view["version"]) if view else 0
    if applied >= version:
        return "duplicate"
    new_view = apply(view, event)
    new_view["events_projected"] = int(view.get("events_projected", 0)) + 1 if view else 1
    new_view["last_event_at"] = event.get("at", "")
    hold_after_read(view_id)
    if read_model.put(new_view, applied):
        return "projected"
    # Someone projected it between our read and write: a concurrent redelivery.
    again = read_model.get(view_id)
    if again and int(again["version"]) >= version:
        return "duplicate"
    raise RuntimeError(f"read model of {view_id} moved unexpectedly while projecting v{version}")


def _count_attempt(faults_table: Any, event: dict[str, Any]) -> int:
    """How many times this marked event has reached the projector, this time included."""
    key = f"{event['aggregate_id']}#{int(event['version'])}"
    updated = faults_table.update_item(
        Key={"id": key},
        UpdateExpression="ADD attempts :one",
        ExpressionAttributeValues={":one": 1},
        ReturnValues="UPDATED_NEW",
    )
    return int(updated["Attributes"]["attempts"])


def record_handler(record: DynamoDBRecord) -> None:
    if record.event_name != DynamoDBRecordEventName.INSERT or record.dynamodb is None:
        return
    event = _plain(record.dynamodb.new_image)
    if event.get("fault") == FAIL_PROJECTION_ONCE:
        faults = _dynamodb().Table(os.environ["FAULTS_TABLE"])
        if _count_attempt(faults, event) == 1:
            logger.warning("Injected projector failure", extra={"event_key": _key(event)})
            raise InjectedFault(f"injected failure projecting {_key(event)} (first attempt)")
    read_model = DynamoReadModel(_dynamodb().Table(os.environ["READ_MODEL_TABLE"]))
    outcome = project(read_model, event)
    logger.info(f"Event {outcome}", extra={"event_key": _key(event), "outcome": outcome})


@logger.inject_lambda_context
def projector_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )


def query(read_model: ReadModel, request: Any) -> dict[str, Any]:
    account_id = request.get("account_id") if isinstance(request, dict) else None
    if not isinstance(account_id, str) or not account_id:
        return {"found": False, "error": "InvalidQuery", "message": "account_id is required"}
    view = read_model.get(account_id)
    return {"found": True, "account": view} if view else {"found": False}


def query_handler(event: Any, context: Any) -> dict[str, Any]:
    return query(DynamoReadModel(_dynamodb().Table(os.environ["READ_MODEL_TABLE"])), event)


def _key(event: dict[str, Any]) -> str:
    return f"{event.get('aggregate_id')}#v{event.get('version')}"


def _plain(value: Any) -> Any:
    """DynamoDB's Decimals as ints (amounts and versions are whole numbers here)."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
