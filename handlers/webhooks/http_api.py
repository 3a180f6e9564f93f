"""Small helpers the API-facing handlers share: JSON responses and header lookup."""

from __future__ import annotations

import json
from typing import Any


def respond(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """A Lambda proxy response with a JSON body."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }


def header(event: dict[str, Any], name: str) -> str | None:
    """A request header, whatever case the client sent it in."""
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def path_parameter(event: dict[str, Any], name: str) -> str:
    return str((event.get("pathParameters") or {}).get(name) or "")
