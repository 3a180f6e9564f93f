"""DynamoDB items as plain Python, for scenarios: one place that turns the wire format
(`{"S": "a"}`, `{"N": "3"}`) into values, with boto3's own TypeSerializer/TypeDeserializer.

Numbers come back as int when whole and float otherwise (what a JSON reader would see), so a
scenario compares `item["count"] == 3` instead of unwrapping `["N"]`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from sandbox.aws import Aws

Item = dict[str, Any]
_deserializer = TypeDeserializer()
_serializer = TypeSerializer()


def plain(item: dict[str, Any]) -> Item:
    """One item from the wire format to plain values."""
    return {name: _number(_deserializer.deserialize(value)) for name, value in item.items()}


def wire(values: dict[str, Any]) -> dict[str, Any]:
    """Plain values (a key, an item) to the wire format."""
    return {name: _serializer.serialize(value) for name, value in values.items()}


def get(aws: Aws, table: str, key: dict[str, Any], *, consistent: bool = True) -> Item | None:
    """The item with this key (plain values), or None."""
    answer = aws.client("dynamodb").get_item(
        TableName=table, Key=wire(key), ConsistentRead=consistent
    )
    return plain(answer["Item"]) if "Item" in answer else None


def scan(aws: Aws, table: str, **kwargs: Any) -> list[Item]:
    """Every item of the table (all pages), plain; kwargs go to Scan as they are."""
    pages = aws.client("dynamodb").get_paginator("scan").paginate(TableName=table, **kwargs)
    return [plain(item) for page in pages for item in page["Items"]]


def query(aws: Aws, table: str, **kwargs: Any) -> list[Item]:
    """Every item a Query returns (all pages), plain; kwargs go to Query as they are."""
    pages = aws.client("dynamodb").get_paginator("query").paginate(TableName=table, **kwargs)
    return [plain(item) for page in pages for item in page["Items"]]


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_number(entry) for entry in value]
    if isinstance(value, set):
        return {_number(entry) for entry in value}
    if isinstance(value, dict):
        return {name: _number(entry) for name, entry in value.items()}
    return value
