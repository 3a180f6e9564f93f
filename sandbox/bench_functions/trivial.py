"""Bench: the smallest handler there is, so an invoke measures the sandbox, not the code."""

from typing import Any


def handler(event: Any, context: Any) -> dict[str, bool]:
    return {"ok": True}
