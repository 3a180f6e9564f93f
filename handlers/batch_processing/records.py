"""batch-processing's pure logic: what a valid record is, and how a large input is chunked.

No AWS here, so unit tests and every handler share it.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any


class InvalidRecord(ValueError):
    """A record that can never be written (reported, not retried)."""


class InvalidInput(ValueError):
    """The batch job's input itself is unusable (no chunk size, not a list of records)."""


def parse_body(body: str) -> dict[str, Any]:
    """The record in an SQS message body; InvalidRecord says why it is not one."""
    try:
        record = json.loads(body)
    except json.JSONDecodeError as error:
        raise InvalidRecord(f"body is not JSON ({error}): {body[:60]!r}") from error
    return validate(record)


def validate(record: Any) -> dict[str, Any]:
    """The record itself when it has a non-empty string `id` and a number `amount` >= 0."""
    if not isinstance(record, dict):
        raise InvalidRecord(f"not a JSON object: {str(record)[:60]!r}")
    record_id = record.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise InvalidRecord("missing id")
    amount = record.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise InvalidRecord(f"{record_id}: amount is not a number: {amount!r}")
    if amount < 0:
        raise InvalidRecord(f"{record_id}: amount is negative: {amount}")
    return record


def to_decimal(amount: int | float) -> Decimal:
    """DynamoDB's number type, without float noise (0.1 stays 0.1)."""
    return Decimal(str(amount))


def chunk(items: list[Any], size: Any) -> list[list[Any]]:
    """`items` in order, cut into lists of `size` (the last may be shorter): ceil(N/size) lists."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidInput(f"chunk_size must be a positive integer, got {size!r}")
    if not isinstance(items, list):
        raise InvalidInput(f"the input must be a JSON list of records, got {type(items).__name__}")
    return [items[start : start + size] for start in range(0, len(items), size)]


def chunk_count(total: int, size: int) -> int:
    return math.ceil(total / size)


def summarise(chunk_results: list[dict[str, Any]]) -> dict[str, Any]:
    """The job's report from every chunk's result: counts, and each invalid record with why."""
    valid = [record_id for result in chunk_results for record_id in result["valid"]]
    invalid = [entry for result in chunk_results for entry in result["invalid"]]
    return {
        "chunks": len(chunk_results),
        "records": len(valid) + len(invalid),
        "written": len(valid),
        "rejected": len(invalid),
        "invalid": invalid,
    }
