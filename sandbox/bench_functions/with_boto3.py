"""Bench: typical real code, which imports boto3 and makes its client at module level."""

from typing import Any

import boto3

DYNAMODB = boto3.client("dynamodb")


def handler(event: Any, context: Any) -> dict[str, bool]:
    return {"ok": True}
