"""Which DynamoDB requests embedded mode sends to DynamoDB Local as they came
(sandbox/embedded/dynamodb_items.py): each refusal below is a case where LocalStack's
provider adds to the answer or must see the change. Checked against LocalStack's own stores,
in this process; tests/integration/test_dynamodb_items.py checks the answers themselves."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip(
    "localstack",
    reason="LocalStack is not installed on this host (Docker mode runs it in a container)",
)
from localstack import config
from localstack.http import Request
from localstack.services.dynamodb.models import dynamodb_stores
from localstack.services.dynamodbstreams.models import StreamWrapper, dynamodbstreams_stores

from sandbox.embedded import dynamodb_items

ACCOUNT, REGION, TABLE = "123456789012", "eu-west-1", "orders"


@pytest.fixture(autouse=True)
def empty_stores() -> Iterator[None]:
    yield
    dynamodb_stores.reset()
    dynamodbstreams_stores.reset()


def context(body: dict[str, Any] | bytes, **headers: str) -> SimpleNamespace:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = Request(
        "POST", "/", headers={"Content-Type": "application/x-amz-json-1.0", **headers}, body=data
    )
    return SimpleNamespace(request=request, account_id=ACCOUNT, region=REGION)


def put(**extra: Any) -> dict[str, Any]:
    return {"TableName": TABLE, "Item": {"id": {"S": "1"}}, **extra}


@pytest.mark.parametrize("operation", sorted(dynamodb_items.PASSED_THROUGH))
def test_item_requests_on_a_plain_table_pass(operation: str) -> None:
    request = context(put())
    assert dynamodb_items.passable(request, operation) == request.request.get_data()


@pytest.mark.parametrize("operation", ["CreateTable", "BatchWriteItem", "TransactWriteItems"])
def test_other_operations_take_localstacks_path(operation: str) -> None:
    assert dynamodb_items.passable(context(put()), operation) is None


def test_a_table_with_a_stream_takes_localstacks_path() -> None:
    """The provider publishes the stream record from what it saw."""
    dynamodbstreams_stores[ACCOUNT][REGION].ddb_streams[TABLE] = StreamWrapper(
        StreamDescription={"StreamStatus": "ENABLED", "StreamViewType": "NEW_IMAGE"}
    )
    assert dynamodb_items.passable(context(put()), "PutItem") is None
    assert dynamodb_items.passable(context(put(TableName="other")), "PutItem") is not None


def test_a_table_streaming_to_kinesis_takes_localstacks_path() -> None:
    dynamodb_stores[ACCOUNT][REGION].streaming_destinations[TABLE] = [
        {"DestinationStatus": "ACTIVE", "StreamArn": "arn:aws:kinesis:eu-west-1:1:stream/s"}
    ]
    assert dynamodb_items.passable(context(put()), "PutItem") is None


def test_a_global_table_takes_localstacks_path() -> None:
    """Requests to a replica are served by the table's own region."""
    dynamodb_stores[ACCOUNT][REGION].TABLE_REGION[TABLE] = "us-east-1"
    assert dynamodb_items.passable(context(put()), "PutItem") is None
    dynamodb_stores[ACCOUNT][REGION].TABLE_REGION[TABLE] = REGION
    dynamodb_stores[ACCOUNT][REGION].REPLICAS[TABLE] = {"us-east-1": {}}
    assert dynamodb_items.passable(context(put()), "PutItem") is None


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("GetItem", put(ReturnConsumedCapacity="TOTAL")),  # the provider fills it in
        ("Query", put(IndexName="by-date")),  # the provider checks the index's projection
        ("PutItem", put(TableName=f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}")),
        ("PutItem", {"Item": {}}),  # no table: LocalStack's parser says so
        ("PutItem", b"{not json"),
    ],
)
def test_requests_the_provider_must_see_take_its_path(operation: str, body: Any) -> None:
    assert dynamodb_items.passable(context(body), operation) is None


def test_consumed_capacity_none_passes() -> None:
    assert dynamodb_items.passable(context(put(ReturnConsumedCapacity="NONE")), "GetItem")


@pytest.mark.parametrize("header", ["Origin", "Content-Encoding"])
def test_browser_and_encoded_requests_take_localstacks_path(header: str) -> None:
    """CORS headers and content decoding are LocalStack's response and request handlers."""
    assert dynamodb_items.passable(context(put(), **{header: "x"}), "PutItem") is None


def test_injected_errors_take_localstacks_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "DYNAMODB_WRITE_ERROR_PROBABILITY", 0.5)
    assert dynamodb_items.passable(context(put()), "PutItem") is None


def test_a_kept_alive_connection_numbered_over_1024_is_checked(
    descriptors_numbered_over_1024: None,
) -> None:
    """Open and idle: kept. Closed by DynamoDB Local: dropped. select() refused it."""
    ours, dynamodb_local = socket.socketpair()
    with ours, dynamodb_local:
        assert ours.fileno() > 1024
        connection = SimpleNamespace(sock=ours)
        assert not dynamodb_items._closed_by_peer(connection)  # type: ignore[arg-type]
        dynamodb_local.close()
        assert dynamodb_items._closed_by_peer(connection)  # type: ignore[arg-type]
