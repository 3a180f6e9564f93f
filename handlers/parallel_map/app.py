"""Parallel map: the worker every Map iteration invokes (one item each).

Event, built by the Map's ItemSelector:
    {"run_id": "pm-1a2b3c4d", "lane": "inline" | "distributed", "index": 0,
     "value": {"n": 3}}     # optional in value: "fail": true, "work": seconds it takes
Returns {"index": 0, "n": 3, "square": 9}. A value without an integer `n`, or with
"fail": true, raises ItemFailed (the Map counts it; the distributed Map tolerates some).

While it works on the item it holds one "in flight" slot of the counter row
`<run_id>#<lane>` in TABLE_NAME: `inflight` goes up on entry and down on exit, and `peak`
keeps the highest value `inflight` reached, so the caller can prove the Map never ran more
items at once than its MaxConcurrency. `done` counts finished items and `finished` lists
their indexes in the order they finished; `failed` lists the indexes that raised ItemFailed
(what the worker did, to compare with the Map's own failure count).

Environment: TABLE_NAME, WORK_SECONDS (how long one item takes, default 0.3).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import ClientError


class ItemFailed(Exception):
    """This item could not be processed (the Map records the failure)."""


def process(value: Any) -> dict[str, int]:
    """The business step for one item: its square, or ItemFailed saying why not."""
    if not isinstance(value, dict) or not isinstance(value.get("n"), int):
        raise ItemFailed(f"item needs an integer 'n', got {value!r}")
    if value.get("fail"):
        raise ItemFailed(f"item {value['n']} is marked to fail")
    return {"n": value["n"], "square": value["n"] ** 2}


def counter_key(run_id: str, lane: str) -> str:
    return f"{run_id}#{lane}"


@cache
def _table() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])


@contextmanager
def in_flight(table: Any, key: str, index: int) -> Iterator[int]:
    """Hold one in-flight slot of the counter row `key`; yields how many are in flight now
    (this one included) and raises the row's `peak` to that number if it is higher."""
    now = table.update_item(
        Key={"id": key},
        UpdateExpression="ADD inflight :one",
        ExpressionAttributeValues={":one": 1},
        ReturnValues="UPDATED_NEW",
    )["Attributes"]["inflight"]
    try:
        table.update_item(
            Key={"id": key},
            UpdateExpression="SET peak = :now",
            ConditionExpression="attribute_not_exists(peak) OR peak < :now",
            ExpressionAttributeValues={":now": now},
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
    try:
        yield int(now)
    finally:
        table.update_item(
            Key={"id": key},
            UpdateExpression=(
                "ADD inflight :minus_one, done :one "
                "SET finished = list_append(if_not_exists(finished, :none), :me)"
            ),
            ExpressionAttributeValues={":minus_one": -1, ":one": 1, ":none": [], ":me": [index]},
        )


def work_seconds(value: Any, default: float) -> float:
    """How long this item takes: its own "work" if it gives one, else the default."""
    given = value.get("work") if isinstance(value, dict) else None
    return float(given) if isinstance(given, int | float) and 0 <= given <= 5 else default


def record_failure(table: Any, key: str, index: int) -> None:
    """Append this item's index to the counter row's `failed` list."""
    table.update_item(
        Key={"id": key},
        UpdateExpression="SET failed = list_append(if_not_exists(failed, :none), :me)",
        ExpressionAttributeValues={":none": [], ":me": [index]},
    )


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    value = event.get("value")
    default = float(os.environ.get("WORK_SECONDS", "0.3"))
    key = counter_key(event["run_id"], event["lane"])
    with in_flight(_table(), key, event["index"]):
        time.sleep(work_seconds(value, default))  # stands in for real work: items overlap
        try:
            result = process(value)
        except ItemFailed:
            record_failure(_table(), key, event["index"])
            raise
    return {"index": event["index"], **result}
