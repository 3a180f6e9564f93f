"""Sequence generator: numbered records from DynamoDB, unique under concurrent callers.

Two functions share this code (seed 000 §13, Bite-Sized Serverless "Reliable auto-incrementing
integers in DynamoDB", and the AWS atomic-counter guide):

`create_handler` (sequence-generator-create), synchronous invoke:
    {"request_id": str, "scope": str, "name": str}
    -> {"scope", "name", "id": int, "attempts": int}
  Gapless ids: read the scope's counter, then one transaction that (1) moves the counter from
  n to n+1 only if it is still n and (2) puts the record only if its name is new. A lost race
  on the counter cancels the transaction and is retried with the new value; a taken name
  cancels it with DuplicateName and the counter does not move, so no number is skipped.
  Powertools idempotency (keyed on request_id) makes a retried request return the same id.
`next_handler` (sequence-generator-next), synchronous invoke:
    {"scope": str} -> {"scope", "value": int}
  Atomic counter: UpdateItem ADD 1, unique and ordered, but a caller that fails after taking
  a number leaves a gap.

Bad requests raise InvalidRequest (Lambda reports errorType "InvalidRequest").
Environment: COUNTERS_TABLE (key "id", attribute "value"), RECORDS_TABLE (key "id"),
IDEMPOTENCY_TABLE (key "id").

Test-only environment: SANDBOX_TEST_HOLD_TABLE (and SANDBOX_TEST_HOLD_SECONDS), off by
default and set only on the sandbox's `-held` variant of a function, lets a scenario hold
an invocation between its read and its conditional write (`hold_after_read`).
"""

from __future__ import annotations

import os
import random
import time
from functools import cache
from typing import Any, NamedTuple

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
)
from botocore.exceptions import ClientError
from race_hold import hold_after_read  # test-only: handlers/shared/race_hold.py

logger = Logger(service="sequence-generator")
MAX_ATTEMPTS = 60


class InvalidRequest(ValueError):
    """The request is missing a field or has one of the wrong type."""


class DuplicateName(ValueError):
    """A record with this name already exists in the scope; the counter did not move."""


class TooMuchContention(RuntimeError):
    """The counter kept moving under us for MAX_ATTEMPTS tries."""


class CreateRequest(NamedTuple):
    request_id: str
    scope: str
    name: str


def parse_create(event: Any) -> CreateRequest:
    """The create request in an event; InvalidRequest says what is wrong with it."""
    if not isinstance(event, dict):
        raise InvalidRequest("the request must be a JSON object")
    fields = {}
    for key in ("request_id", "scope", "name"):
        value = event.get(key)
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(f"'{key}' must be a non-empty string")
        fields[key] = value
    return CreateRequest(**fields)


def counter_key(scope: str) -> dict[str, Any]:
    return {"id": {"S": f"counter#{scope}"}}


def record_key(scope: str, name: str) -> dict[str, Any]:
    return {"id": {"S": f"record#{scope}#{name}"}}


def create_transaction(
    counters: str, records: str, scope: str, name: str, current: int
) -> list[dict[str, Any]]:
    """The two writes that take number current+1 for `name`, or neither."""
    if current == 0:
        # The scope's first record: the counter item does not exist yet.
        counter_condition = "attribute_not_exists(#v)"
        values: dict[str, Any] = {":next": {"N": "1"}}
    else:
        counter_condition = "#v = :current"
        values = {":current": {"N": str(current)}, ":next": {"N": str(current + 1)}}
    return [
        {
            "Update": {
                "TableName": counters,
                "Key": counter_key(scope),
                "UpdateExpression": "SET #v = :next",
                "ConditionExpression": counter_condition,
                "ExpressionAttributeNames": {"#v": "value"},
                "ExpressionAttributeValues": values,
            }
        },
        {
            "Put": {
                "TableName": records,
                "Item": {
                    **record_key(scope, name),
                    "scope": {"S": scope},
                    "name": {"S": name},
                    "seq": {"N": str(current + 1)},
                },
                "ConditionExpression": "attribute_not_exists(id)",
            }
        },
    ]


def why_cancelled(error: ClientError) -> str:
    """'duplicate' when the record's name was taken, 'retry' when the counter moved or the
    transaction collided with another one."""
    reasons = [r.get("Code", "None") for r in error.response.get("CancellationReasons", [])]
    if len(reasons) == 2 and reasons[1] == "ConditionalCheckFailed":
        return "duplicate"
    return "retry"


def create(client: Any, counters: str, records: str, request: CreateRequest) -> dict[str, Any]:
    """Take the scope's next number for `request.name` (gapless); DuplicateName if taken."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        current = current_value(client, counters, request.scope)
        hold_after_read(request.scope)
        try:
            client.transact_write_items(
                TransactItems=create_transaction(
                    counters, records, request.scope, request.name, current
                )
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            if why_cancelled(error) == "duplicate":
                raise DuplicateName(
                    f"'{request.name}' already exists in scope '{request.scope}'"
                ) from error
            # Another caller took the number: back off a little (with jitter) and re-read.
            time.sleep(random.uniform(0, min(0.2, 0.01 * 2**attempt)))
            continue
        return {
            "scope": request.scope,
            "name": request.name,
            "id": current + 1,
            "attempts": attempt,
        }
    raise TooMuchContention(f"gave up after {MAX_ATTEMPTS} attempts on scope '{request.scope}'")


def current_value(client: Any, counters: str, scope: str) -> int:
    item = client.get_item(TableName=counters, Key=counter_key(scope), ConsistentRead=True)
    return int(item.get("Item", {}).get("value", {}).get("N", "0"))


def next_value(client: Any, counters: str, scope: str) -> int:
    """The atomic counter: ADD 1 and return the new value in one request."""
    updated = client.update_item(
        TableName=counters,
        Key={"id": {"S": f"atomic#{scope}"}},
        UpdateExpression="ADD #v :one",
        ExpressionAttributeNames={"#v": "value"},
        ExpressionAttributeValues={":one": {"N": "1"}},
        ReturnValues="UPDATED_NEW",
    )
    return int(updated["Attributes"]["value"]["N"])


@cache
def _client() -> Any:
    return boto3.client("dynamodb")


@cache
def _guarded_create() -> Any:
    """`_create` behind Powertools idempotency (made on first use: it needs the table name)."""
    persistence = DynamoDBPersistenceLayer(
        table_name=os.environ["IDEMPOTENCY_TABLE"], boto3_client=_client()
    )
    config = IdempotencyConfig(event_key_jmespath="request_id", raise_on_no_idempotency_key=True)
    return idempotent(persistence_store=persistence, config=config)(_create)


def _create(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = parse_create(event)
    created = create(_client(), os.environ["COUNTERS_TABLE"], os.environ["RECORDS_TABLE"], request)
    logger.info("Created record", extra={"scope": request.scope, "seq": created["id"]})
    return created


@logger.inject_lambda_context
def create_handler(event: Any, context: Any) -> dict[str, Any]:
    parse_create(event)  # refuse bad requests before the idempotency layer records them
    return _guarded_create()(event, context)


@logger.inject_lambda_context
def next_handler(event: Any, context: Any) -> dict[str, Any]:
    scope = event.get("scope") if isinstance(event, dict) else None
    if not isinstance(scope, str) or not scope.strip():
        raise InvalidRequest("'scope' must be a non-empty string")
    return {"scope": scope, "value": next_value(_client(), os.environ["COUNTERS_TABLE"], scope)}
