"""Circuit state for the circuit-breaker workflow: one DynamoDB item per service, with an expiry.

Event (from the state machine):
  {"action": "get", "service": <name>}
      -> {"service", "state": "OPEN" | "CLOSED", "expiresAt": ISO time | None}
  {"action": "open", "service": <name>, "error": {"Error", "Cause"}}
      -> {"service", "state": "OPEN", "expiresAt": ISO time}
Environment: CIRCUIT_TABLE, OPEN_SECONDS (how long an opened circuit stays open).

An open circuit is an item whose `expiresAt` lies in the future. The item also carries `ttl`
(epoch seconds) so DynamoDB's TTL removes it eventually; since TTL deletion can lag by hours
on AWS, the expiry is judged here from `expiresAt`, never from the item merely existing.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import boto3

OPEN, CLOSED = "OPEN", "CLOSED"


class InvalidCircuitRequest(ValueError):
    """The event is not a circuit request this function knows."""


def state_of(service: str, item: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The circuit's state now, from its stored item (None: never opened or removed)."""
    if item is not None:
        expires = datetime.fromisoformat(item["expiresAt"])
        if expires > now:
            return {"service": service, "state": OPEN, "expiresAt": item["expiresAt"]}
    return {"service": service, "state": CLOSED, "expiresAt": None}


def open_item(
    service: str, now: datetime, open_seconds: int, error: dict[str, Any] | None
) -> dict[str, Any]:
    """The item that opens the circuit for `open_seconds` from `now`."""
    expires = now + timedelta(seconds=open_seconds)
    error = error or {}
    return {
        "service": service,
        "openedAt": now.isoformat(),
        "expiresAt": expires.isoformat(),
        "ttl": int(expires.timestamp()) + 1,
        "lastError": str(error.get("Error", "unknown")),
        "lastCause": str(error.get("Cause", ""))[:500],
    }


@cache
def _table() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["CIRCUIT_TABLE"])


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    action, service = event.get("action"), event.get("service")
    if not isinstance(service, str) or not service:
        raise InvalidCircuitRequest(f"'service' must name a service, got {service!r}")
    now = datetime.now(UTC)
    if action == "get":
        item = _table().get_item(Key={"service": service}, ConsistentRead=True).get("Item")
        return state_of(service, item, now)
    if action == "open":
        item = open_item(service, now, int(os.environ["OPEN_SECONDS"]), event.get("error"))
        _table().put_item(Item=item)
        print(f"Opened the circuit for {service} until {item['expiresAt']}: {item['lastError']}")
        return {"service": service, "state": OPEN, "expiresAt": item["expiresAt"]}
    raise InvalidCircuitRequest(f"'action' must be 'get' or 'open', got {action!r}")
