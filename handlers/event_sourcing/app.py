"""Event sourcing: a shopping cart whose only source of truth is an append-only event store.

Functions in this module:

- `app.append_handler` (invoked synchronously). Event:
    {"events": [{"stream_id": "cart-1", "version": 1, "type": "CartOpened",
                 "data": {"customer": "Ada"}}, ...]}
  1-25 events of one stream, versions consecutive from the stream's version + 1. Types:
  CartOpened {customer}, ItemAdded {sku, quantity > 0, price >= 0 (cents)},
  ItemRemoved {sku}, CartCheckedOut {}. All are stored in one transaction (each a put
  with attribute_not_exists(version), plus the live state at the new version, conditional
  on the old one) or none is. Every SNAPSHOT_EVERY versions a snapshot of the state is
  saved. Answers {"appended": n, "stream_id", "version", "snapshot": version or null} or
  {"appended": 0, "error": InvalidEvent | WrongStream | WrongVersion | VersionConflict |
  Rejected, "message"} (nothing stored).
- `app.load_handler`: {"stream_id", "source": "events" | "snapshot" | "live"} -> the state
  rebuilt by full replay, by the latest snapshot plus the events after it, or as the live
  state table holds it: {"state", "version", "events_read", "snapshot_version"}.
- `app.replay_handler`: {"replay_name", "stream_ids": [...]} -> puts every stored event of
  those streams, in version order, on the event bus (source "sandbox.event-sourcing",
  detail-type = event type, detail = the event plus "replay_name"); consumers pick what they
  want with a rule's event pattern. Answers {"published": n}. (This stands in for an
  EventBridge archive and StartReplay, which LocalStack 4.14 cannot run: see the page.)

Environment: EVENTS_TABLE, STATE_TABLE, SNAPSHOTS_TABLE, SNAPSHOT_EVERY (default 5),
EVENT_BUS (replay only).

Test-only environment: SANDBOX_TEST_HOLD_TABLE (and SANDBOX_TEST_HOLD_SECONDS), off by
default and set only on the sandbox's `-held` variant of a function, lets a scenario hold
an invocation between its read and its conditional write (`hold_after_read`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from race_hold import hold_after_read  # test-only: handlers/shared/race_hold.py

EVENT_SOURCE = "sandbox.event-sourcing"
STREAM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_EVENTS_PER_APPEND = 25  # under DynamoDB's 100 items per transaction, with the state put
EVENT_FIELDS = {"stream_id", "version", "type", "data"}

logger = Logger(service="event-sourcing")


class Refused(Exception):
    """Events the store will not take; `code` names the reason for callers."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- The domain ----------------------------------------------------------------------
def apply(state: dict[str, Any] | None, event: dict[str, Any]) -> dict[str, Any]:
    """The cart after one event; Refused("Rejected") if the cart cannot take it."""
    kind, data = event["type"], event.get("data") or {}
    if kind == "CartOpened":
        if state is not None:
            raise Refused("Rejected", "the cart is already open")
        return {"customer": data["customer"], "items": {}, "status": "OPEN", "total": 0}
    if state is None:
        raise Refused("WrongStream", f"stream has no CartOpened event: {kind} cannot be first")
    if state["status"] != "OPEN":
        raise Refused("Rejected", f"the cart is {state['status']}: {kind} is not allowed")
    items = {sku: dict(line) for sku, line in state["items"].items()}
    if kind == "ItemAdded":
        line = items.setdefault(data["sku"], {"quantity": 0, "price": data["price"]})
        line["quantity"] += data["quantity"]
        line["price"] = data["price"]
    elif kind == "ItemRemoved":
        if data["sku"] not in items:
            raise Refused("Rejected", f"{data['sku']} is not in the cart")
        del items[data["sku"]]
    status = "CHECKED_OUT" if kind == "CartCheckedOut" else "OPEN"
    total = sum(line["quantity"] * line["price"] for line in items.values())
    return {**state, "items": items, "status": status, "total": total}


def fold(events: Iterable[dict[str, Any]], state: dict[str, Any] | None = None) -> Any:
    for event in events:
        state = apply(state, event)
    return state


def check_event(event: Any) -> dict[str, Any]:
    """One event's shape; Refused says what is wrong."""
    if not isinstance(event, dict):
        raise Refused("InvalidEvent", "an event is a JSON object")
    unknown = set(event) - EVENT_FIELDS
    if unknown:
        raise Refused("InvalidEvent", f"unknown fields: {', '.join(sorted(unknown))}")
    stream_id = event.get("stream_id")
    if not isinstance(stream_id, str) or not STREAM_ID.match(stream_id):
        raise Refused("WrongStream", "stream_id is required: 1-64 letters, digits, - or _")
    version = event.get("version")
    if not _is_int(version) or version < 1:
        raise Refused("WrongVersion", f"version is required: an integer >= 1 (got {version!r})")
    kind, data = event.get("type"), event.get("data", {})
    if not isinstance(data, dict):
        raise Refused("InvalidEvent", "data must be an object")
    needs: dict[str, dict[str, Any]] = {
        "CartOpened": {"customer": str},
        "ItemAdded": {"sku": str, "quantity": int, "price": int},
        "ItemRemoved": {"sku": str},
        "CartCheckedOut": {},
    }
    if kind not in needs:
        raise Refused("InvalidEvent", f"type must be one of {sorted(needs)}")
    for name, wanted in needs[kind].items():
        value = data.get(name)
        ok = _is_int(value) if wanted is int else isinstance(value, wanted) and value != ""
        if not ok:
            raise Refused("InvalidEvent", f"{kind} needs data.{name} ({wanted.__name__})")
    if kind == "ItemAdded" and (data["quantity"] < 1 or data["price"] < 0):
        raise Refused("InvalidEvent", "ItemAdded needs quantity >= 1 and price >= 0")
    return {"stream_id": stream_id, "version": version, "type": kind, "data": data}


def plan_append(
    current: dict[str, Any] | None, current_version: int, events: Any, snapshot_every: int
) -> tuple[list[dict[str, Any]], dict[str, Any], tuple[int, dict[str, Any]] | None]:
    """Check a batch against the stream: (events to store, new state, snapshot to save)."""
    if not isinstance(events, list) or not events:
        raise Refused("InvalidEvent", "events must be a non-empty list")
    if len(events) > MAX_EVENTS_PER_APPEND:
        raise Refused("InvalidEvent", f"at most {MAX_EVENTS_PER_APPEND} events per append")
    checked = [check_event(e) for e in events]
    stream_id = checked[0]["stream_id"]
    others = sorted({e["stream_id"] for e in checked} - {stream_id})
    if others:
        raise Refused("WrongStream", f"one append holds one stream: {stream_id} and {others}")
    state, snapshot = current, None
    for expected, event in enumerate(checked, start=current_version + 1):
        if event["version"] != expected:
            code = "VersionConflict" if event["version"] <= current_version else "WrongVersion"
            raise Refused(
                code,
                f"{stream_id} is at version {expected - 1}: the next event must be version "
                f"{expected}, not {event['version']}",
            )
        state = apply(state, event)
        if event["version"] % snapshot_every == 0:
            snapshot = (event["version"], state)
    return checked, state, snapshot  # type: ignore[return-value]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- Storage -------------------------------------------------------------------------
@cache
def _dynamodb() -> Any:
    return boto3.client("dynamodb")


def _env(name: str) -> str:
    return os.environ[name]


def live_state(stream_id: str) -> tuple[dict[str, Any] | None, int]:
    item = (
        _dynamodb()
        .get_item(
            TableName=_env("STATE_TABLE"), Key={"stream_id": {"S": stream_id}}, ConsistentRead=True
        )
        .get("Item")
    )
    if not item:
        return None, 0
    return json.loads(item["state"]["S"]), int(item["version"]["N"])


def stored_events(stream_id: str, after_version: int = 0) -> list[dict[str, Any]]:
    events, params = (
        [],
        {
            "TableName": _env("EVENTS_TABLE"),
            "KeyConditionExpression": "stream_id = :id AND version > :after",
            "ExpressionAttributeValues": {
                ":id": {"S": stream_id},
                ":after": {"N": str(after_version)},
            },
            "ConsistentRead": True,
        },
    )
    while True:
        page = _dynamodb().query(**params)
        events += [_from_item(item) for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return events
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def latest_snapshot(stream_id: str) -> tuple[dict[str, Any] | None, int]:
    item = (
        _dynamodb()
        .get_item(
            TableName=_env("SNAPSHOTS_TABLE"),
            Key={"stream_id": {"S": stream_id}},
            ConsistentRead=True,
        )
        .get("Item")
    )
    if not item:
        return None, 0
    return json.loads(item["state"]["S"]), int(item["version"]["N"])


def _to_item(event: dict[str, Any], at: str) -> dict[str, Any]:
    return {
        "stream_id": {"S": event["stream_id"]},
        "version": {"N": str(event["version"])},
        "type": {"S": event["type"]},
        "data": {"S": json.dumps(event["data"], sort_keys=True)},
        "at": {"S": at},
    }


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "stream_id": item["stream_id"]["S"],
        "version": int(item["version"]["N"]),
        "type": item["type"]["S"],
        "data": json.loads(item["data"]["S"]),
        "at": item["at"]["S"],
    }


def append(events: Any) -> dict[str, Any]:
    snapshot_every = int(os.environ.get("SNAPSHOT_EVERY", "5"))
    first = events[0] if isinstance(events, list) and events else None
    stream_id = first.get("stream_id") if isinstance(first, dict) else None
    current, version = live_state(stream_id) if isinstance(stream_id, str) else (None, 0)
    checked, state, snapshot = plan_append(current, version, events, snapshot_every)
    stream_id = checked[0]["stream_id"]
    hold_after_read(stream_id)
    at = datetime.now(UTC).isoformat()
    new_version = checked[-1]["version"]
    writes: list[dict[str, Any]] = [
        {
            "Put": {
                "TableName": _env("EVENTS_TABLE"),
                "Item": _to_item(event, at),
                "ConditionExpression": "attribute_not_exists(version)",
            }
        }
        for event in checked
    ]
    state_put: dict[str, Any] = {
        "TableName": _env("STATE_TABLE"),
        "Item": {
            "stream_id": {"S": stream_id},
            "version": {"N": str(new_version)},
            "state": {"S": json.dumps(state, sort_keys=True)},
        },
    }
    if version:
        state_put["ConditionExpression"] = "version = :v"
        state_put["ExpressionAttributeValues"] = {":v": {"N": str(version)}}
    else:
        state_put["ConditionExpression"] = "attribute_not_exists(stream_id)"
    writes.append({"Put": state_put})
    try:
        _dynamodb().transact_write_items(TransactItems=writes)
    except ClientError as error:
        if error.response["Error"]["Code"] != "TransactionCanceledException":
            raise
        raise Refused(
            "VersionConflict", f"another append moved {stream_id} past version {version} first"
        ) from error
    if snapshot:
        save_snapshot(stream_id, *snapshot)
    return {
        "appended": len(checked),
        "stream_id": stream_id,
        "version": new_version,
        "snapshot": snapshot[0] if snapshot else None,
    }


def save_snapshot(stream_id: str, version: int, state: dict[str, Any]) -> None:
    """Keep the newest snapshot only; an older one never overwrites it."""
    try:
        _dynamodb().put_item(
            TableName=_env("SNAPSHOTS_TABLE"),
            Item={
                "stream_id": {"S": stream_id},
                "version": {"N": str(version)},
                "state": {"S": json.dumps(state, sort_keys=True)},
            },
            ConditionExpression="attribute_not_exists(stream_id) OR version < :v",
            ExpressionAttributeValues={":v": {"N": str(version)}},
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise


def append_handler(event: Any, context: Any) -> dict[str, Any]:
    events = event.get("events") if isinstance(event, dict) else None
    try:
        result = append(events)
    except Refused as refused:
        logger.warning("Append refused", extra={"code": refused.code, "reason": refused.message})
        return {"appended": 0, "error": refused.code, "message": refused.message}
    logger.info("Appended", extra=result)
    return result


# -- Rebuilding ----------------------------------------------------------------------
def rebuild(stream_id: str, source: str) -> dict[str, Any]:
    if source == "live":
        state, version = live_state(stream_id)
        return {"state": state, "version": version, "events_read": 0, "snapshot_version": None}
    start, snapshot_version = (None, 0)
    if source == "snapshot":
        start, snapshot_version = latest_snapshot(stream_id)
    events = stored_events(stream_id, after_version=snapshot_version)
    state = fold(events, start)
    version = events[-1]["version"] if events else snapshot_version
    return {
        "state": state,
        "version": version,
        "events_read": len(events),
        "snapshot_version": snapshot_version if source == "snapshot" else None,
    }


def load_handler(event: Any, context: Any) -> dict[str, Any]:
    stream_id = event.get("stream_id") if isinstance(event, dict) else None
    source = event.get("source", "events") if isinstance(event, dict) else None
    if not isinstance(stream_id, str) or source not in ("events", "snapshot", "live"):
        return {"error": "InvalidRequest", "message": "need stream_id and source"}
    return rebuild(stream_id, source)


# -- Replay --------------------------------------------------------------------------
def replay_entries(
    events: list[dict[str, Any]], replay_name: str, bus: str
) -> list[dict[str, Any]]:
    return [
        {
            "Source": EVENT_SOURCE,
            "DetailType": event["type"],
            "Detail": json.dumps({**event, "replay_name": replay_name}),
            "Time": datetime.fromisoformat(event["at"]),
            "EventBusName": bus,
        }
        for event in events
    ]


def replay_handler(event: Any, context: Any) -> dict[str, Any]:
    replay_name, stream_ids = event.get("replay_name"), event.get("stream_ids")
    if not isinstance(replay_name, str) or not isinstance(stream_ids, list):
        return {"error": "InvalidRequest", "message": "need replay_name and stream_ids"}
    events = [e for stream_id in stream_ids for e in stored_events(stream_id)]
    entries = replay_entries(events, replay_name, _env("EVENT_BUS"))
    events_client, failed = boto3.client("events"), 0
    for start in range(0, len(entries), 10):
        failed += events_client.put_events(Entries=entries[start : start + 10])["FailedEntryCount"]
    logger.info("Replayed", extra={"replay_name": replay_name, "published": len(entries)})
    return {"published": len(entries) - failed, "failed": failed}
