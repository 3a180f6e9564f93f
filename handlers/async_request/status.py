"""async-request status and result endpoints (API Gateway Lambda proxy).

Event: a REST API proxy event for GET /status/{id} or GET /result/{id}.
Environment: TABLE_NAME (the worker's status rows).

/status/{id}: 200 {id, status, received_at, completed_at?} once the worker has taken the
request, 404 before that or for an unknown id. /result/{id}: 200 {id, result} when the
status is COMPLETE, 404 otherwise (saying the status when there is one).
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from functools import cache
from typing import Any

import boto3


def respond(
    resource: str, request_id: str, row: dict[str, Any] | None
) -> tuple[int, dict[str, Any]]:
    """Status code and body for a path and the request's row (pure)."""
    if row is None:
        return 404, {
            "id": request_id,
            "message": "no such request (or not taken by the worker yet)",
        }
    if resource.startswith("/status/"):
        fields = ("id", "status", "received_at", "completed_at")
        return 200, {key: row[key] for key in fields if key in row}
    if row.get("status") != "COMPLETE":
        return 404, {"id": request_id, "status": row.get("status"), "message": "result not ready"}
    return 200, {"id": request_id, "result": row["result"]}


@cache
def _table() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, Decimal) else str(value)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_id = (event.get("pathParameters") or {}).get("id", "")
    row = _table().get_item(Key={"id": request_id}, ConsistentRead=True).get("Item")
    status, body = respond(event.get("resource", ""), request_id, row)
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body, default=_plain),
    }
