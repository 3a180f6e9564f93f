"""The protected downstream service of the circuit-breaker pattern (a stand-in).

Event: the workflow's input, {"caller": <str>, "request": {...}, "simulateFailure": <bool>}.
Environment: CALLS_TABLE.

Every invocation is counted first, per caller, with the Lambda request id (so a scenario can
prove the service was, or was not, invoked). Then it answers, or raises ServiceUnavailable
when asked to simulate an outage, or InvalidRequest for a malformed request (a client error,
which must not open the circuit).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3


class ServiceUnavailable(RuntimeError):
    """The service is down (simulated outage)."""


class InvalidRequest(ValueError):
    """The request is malformed; retrying it cannot help."""


def answer(event: dict[str, Any]) -> dict[str, Any]:
    """The service's business step: validate the request and answer it."""
    caller, request = event.get("caller"), event.get("request")
    if not isinstance(caller, str) or not caller:
        raise InvalidRequest(f"'caller' must be a non-empty string, got {caller!r}")
    if not isinstance(request, dict):
        raise InvalidRequest(f"'request' must be an object, got {request!r}")
    if event.get("simulateFailure"):
        raise ServiceUnavailable("the service is unavailable (simulated outage)")
    return {"caller": caller, "answer": f"served {sorted(request)}"}


@cache
def _calls() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["CALLS_TABLE"])


def _count(caller: str, request_id: str) -> None:
    _calls().update_item(
        Key={"caller": caller},
        UpdateExpression="ADD calls :one, requestIds :id",
        ExpressionAttributeValues={":one": 1, ":id": {request_id}},
    )


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    caller = event.get("caller")
    _count(caller if isinstance(caller, str) and caller else "(none)", context.aws_request_id)
    return answer(event)
