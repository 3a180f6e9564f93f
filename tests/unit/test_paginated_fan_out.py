"""paginated-fan-out's page logic: tokens, page requests, and when to stop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import load_handler

pages = load_handler("paginated_fan_out", "pages")


def test_a_token_carries_the_last_key_unchanged() -> None:
    key = {"batch": "b1", "id": "feed-09"}
    token = pages.encode_token(key)
    assert pages.decode_token(token, "b1") == key
    assert pages.encode_token(dict(reversed(key.items()))) == token  # same key, same token


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-token!", "not base64 JSON"),
        (pages.encode_token({"batch": "other", "id": "x"}), "not a key of batch 'b1'"),
        (pages.encode_token({"id": "x"}), "not a key of batch"),
    ],
)
def test_a_bad_token_is_refused(token: str, reason: str) -> None:
    with pytest.raises(pages.MalformedPage, match=reason):
        pages.decode_token(token, "b1")


def test_page_one_needs_only_the_batch() -> None:
    assert pages.parse_page_request({"batch": "b1"}) == pages.PageRequest("b1", None, None, 1, 0)


def test_a_later_page_carries_its_run_token_and_count() -> None:
    token = pages.encode_token({"batch": "b1", "id": "feed-09"})
    request = {"batch": "b1", "run": "r1", "token": token, "page": 2, "seen": 10}
    assert pages.parse_page_request(request) == pages.PageRequest("b1", "r1", token, 2, 10)


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        ([], "JSON object"),
        ({"page": 1}, "'batch'"),
        ({"batch": "b1", "page": 2}, "'page' must be 1 without a token"),
        ({"batch": "b1", "token": "x", "page": 1}, "'page' must be 1 without a token"),
        ({"batch": "b1", "seen": -1}, "'seen'"),
        ({"batch": "b1", "token": 5, "page": 2}, "'token'"),
        ({"batch": "b1", "token": "x", "page": 2}, "needs its 'run'"),
    ],
)
def test_malformed_page_requests_are_refused_saying_why(request_: Any, reason: str) -> None:
    with pytest.raises(pages.MalformedPage, match=reason):
        pages.parse_page_request(request_)


def test_a_page_with_a_last_key_hands_on_the_next_token() -> None:
    request = pages.PageRequest("b1", "r1", None, 1, 0)
    step, message = pages.next_step(request, 10, {"batch": "b1", "id": "feed-09"})
    assert step == "next"
    assert message == {
        "batch": "b1",
        "run": "r1",
        "token": pages.encode_token({"batch": "b1", "id": "feed-09"}),
        "page": 2,
        "seen": 10,
    }
    json.dumps(message)  # it travels as an SQS message body


def test_the_page_without_a_last_key_writes_done() -> None:
    request = pages.PageRequest("b1", "r1", "token", 3, 20)
    assert pages.next_step(request, 5, None) == (
        "done",
        {"batch": "b1", "run": "r1", "pages": 3, "items": 25},
    )


def simulate(items: int, page_size: int) -> list[int]:
    """Items per page when DynamoDB pages a partition of `items` keys by `page_size`: it
    returns a LastEvaluatedKey whenever a page is full, so a full last page is followed by
    an empty one."""
    sizes, start = [], 0
    while True:
        count = min(page_size, items - start)
        last_key = {"batch": "b", "id": str(start + count)} if count == page_size else None
        sizes.append(count)
        request = pages.PageRequest("b", "r", None, len(sizes), start)
        step, _ = pages.next_step(request, count, last_key)
        start += count
        if step == "done":
            return sizes


@pytest.mark.parametrize(
    ("items", "sizes"), [(25, [10, 10, 5]), (20, [10, 10, 0]), (3, [3]), (0, [0])]
)
def test_pages_needed(items: int, sizes: list[int]) -> None:
    assert simulate(items, 10) == sizes


# -- subscribers: paged from the table the update stream keeps --------------------------------
@pytest.fixture
def pager(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("SUBSCRIBERS_TABLE", "subscribers")
    monkeypatch.setenv("SUBSCRIBER_PAGE_SIZE", "2")
    return load_handler("paginated_fan_out", "app")


def test_the_fan_out_pages_through_every_subscriber_of_the_batch(pager: Any) -> None:
    from botocore.stub import Stubber

    def row(name: str) -> dict[str, Any]:
        return {"batch": {"S": "b"}, "id": {"S": name}, "queue_url": {"S": f"http://q/{name}"}}

    query = {
        "TableName": "subscribers",
        "KeyConditionExpression": "#b = :b",
        "ExpressionAttributeNames": {"#b": "batch"},
        "ExpressionAttributeValues": {":b": {"S": "b"}},
        "Limit": 2,
        "ConsistentRead": True,
    }
    last = {"batch": {"S": "b"}, "id": {"S": "s2"}}
    with Stubber(pager._client()) as stub:
        stub.add_response(
            "query", {"Items": [row("s1"), row("s2")], "LastEvaluatedKey": last}, query
        )
        stub.add_response("query", {"Items": [row("s3")]}, {**query, "ExclusiveStartKey": last})
        assert list(pager.subscriber_pages("b")) == [
            ["http://q/s1", "http://q/s2"],
            ["http://q/s3"],
        ]
        stub.assert_no_pending_responses()


def test_the_stream_handler_puts_new_subscribers_and_deletes_removed_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
        DynamoDBRecord,
    )
    from botocore.stub import Stubber

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("SUBSCRIBERS_TABLE", "subscribers")
    subscribers = load_handler("paginated_fan_out", "subscribers")
    keys = {"batch": {"S": "b"}, "id": {"S": "q1"}}
    inserted = DynamoDBRecord(
        {
            "eventName": "INSERT",
            "dynamodb": {"Keys": keys, "NewImage": {**keys, "queue_url": {"S": "http://q/1"}}},
        }
    )
    removed = DynamoDBRecord({"eventName": "REMOVE", "dynamodb": {"Keys": keys}})
    with Stubber(subscribers._subscribers().meta.client) as stub:
        plain_key = {"batch": "b", "id": "q1"}  # the resource's client sees plain values
        stub.add_response(
            "put_item",
            {},
            {"TableName": "subscribers", "Item": {**plain_key, "queue_url": "http://q/1"}},
        )
        stub.add_response("delete_item", {}, {"TableName": "subscribers", "Key": plain_key})
        subscribers.record_handler(inserted)
        subscribers.record_handler(removed)
        stub.assert_no_pending_responses()
