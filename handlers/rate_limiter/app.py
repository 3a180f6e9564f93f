"""rate-limiter API: a DynamoDB token bucket (GET /bucket) and a fixed window counter
(GET /window) in front of a resource, per caller.

Event: a REST API Lambda proxy event; the caller names itself in the X-Client-Id header.
Environment: BUCKETS_TABLE, WINDOWS_TABLE, BUCKET_CAPACITY and REFILL_PER_SECOND (defaults
for a caller whose bucket row names no capacity/refill_per_s of its own), WINDOW_LIMIT,
WINDOW_SECONDS.

Answers 200 {allowed, limiter, remaining}, 429 {message, retry_after_s} with Retry-After,
or 400 {message} saying what is wrong with the request.

Bucket row {id, tokens, updated_ms, version, capacity?, refill_per_s?}: a call reads it,
refills from `updated_ms`, and writes the bucket back one token lighter only if `version` is
still the one it read (a conditional write); losing that race means reading again. So two
callers can never spend the same token, and tokens never go below zero. A refused call
writes nothing. Window row {id: "<client>#<window start>", hits, expires_at}: one atomic
`ADD hits 1` conditioned on `hits < limit`.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from decimal import Decimal
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import ClientError
from limits import Decision, client_id, refill, take, window_decision, window_start

MAX_ATTEMPTS = 40  # conditional-write races lost before refusing (fail closed)


@cache
def _dynamodb() -> Any:
    return boto3.client("dynamodb")


def _lost_race(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


def take_token(client: str, now_ms: int | None = None) -> Decision:
    table = os.environ["BUCKETS_TABLE"]
    for attempt in range(MAX_ATTEMPTS):
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        row = (
            _dynamodb()
            .get_item(TableName=table, Key={"id": {"S": client}}, ConsistentRead=True)
            .get("Item")
        )
        capacity = float(row["capacity"]["N"]) if row and "capacity" in row else None
        capacity = capacity if capacity is not None else float(os.environ["BUCKET_CAPACITY"])
        rate = float(row["refill_per_s"]["N"]) if row and "refill_per_s" in row else None
        rate = rate if rate is not None else float(os.environ["REFILL_PER_SECOND"])
        if row:
            tokens = refill(
                float(row["tokens"]["N"]), int(row["updated_ms"]["N"]), now, capacity, rate
            )
        else:
            tokens = capacity  # a new caller starts with a full bucket
        decision, left = take(tokens, rate)
        if not decision.allowed:
            return decision
        try:
            if row:
                _dynamodb().update_item(
                    TableName=table,
                    Key={"id": {"S": client}},
                    UpdateExpression="SET tokens = :left, updated_ms = :now ADD version :one",
                    ConditionExpression="version = :seen",
                    ExpressionAttributeValues={
                        ":left": {"N": _number(left)},
                        ":now": {"N": str(now)},
                        ":one": {"N": "1"},
                        ":seen": row["version"],
                    },
                )
            else:
                _dynamodb().put_item(
                    TableName=table,
                    Item={
                        "id": {"S": client},
                        "tokens": {"N": _number(left)},
                        "updated_ms": {"N": str(now)},
                        "version": {"N": "1"},
                    },
                    ConditionExpression="attribute_not_exists(id)",
                )
            return decision
        except ClientError as error:
            if not _lost_race(error):
                raise
        time.sleep(random.uniform(0, 0.005 * (attempt + 1)))  # full jitter, growing
    return Decision(False, 0, 1.0)


def count_in_window(client: str, now_ms: int | None = None) -> tuple[Decision, int]:
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    window_ms = int(float(os.environ["WINDOW_SECONDS"]) * 1000)
    limit = int(os.environ["WINDOW_LIMIT"])
    start = window_start(now, window_ms)
    try:
        updated = _dynamodb().update_item(
            TableName=os.environ["WINDOWS_TABLE"],
            Key={"id": {"S": f"{client}#{start}"}},
            UpdateExpression="ADD hits :one SET expires_at = :expires",
            ConditionExpression="attribute_not_exists(hits) OR hits < :limit",
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":limit": {"N": str(limit)},
                ":expires": {"N": str((start + 2 * window_ms) // 1000)},
            },
            ReturnValues="UPDATED_NEW",
        )
        count: int | None = int(updated["Attributes"]["hits"]["N"])
    except ClientError as error:
        if not _lost_race(error):
            raise
        count = None
    return window_decision(count, limit, now, window_ms), start


def _number(value: float) -> str:
    return str(Decimal(str(round(value, 6))))


def _answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body),
    }


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        client = client_id(event.get("headers"))
    except ValueError as error:
        return _answer(400, {"message": str(error)})
    resource = event.get("resource")
    if resource == "/bucket":
        decision, extra = take_token(client), {"limiter": "token-bucket"}
    elif resource == "/window":
        decision, start = count_in_window(client)
        extra = {"limiter": "fixed-window", "window_start_ms": start}
    else:
        return _answer(404, {"message": f"no limiter at {resource}"})
    if decision.allowed:
        return _answer(200, {"allowed": True, "remaining": decision.remaining, **extra})
    wait = decision.retry_after_s
    retry = {"Retry-After": str(math.ceil(wait))} if math.isfinite(wait) else {}
    return _answer(
        429,
        {
            "allowed": False,
            "message": "Too many requests",
            "retry_after_s": round(wait, 3) if math.isfinite(wait) else None,
            **extra,
        },
        retry,
    )
