"""sequence-generator's pure logic: request checks, the transaction, reading a cancellation."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import load_handler

app = load_handler("sequence_generator")


def cancelled(*codes: str) -> ClientError:
    response: Any = {
        "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
        "CancellationReasons": [{"Code": code} for code in codes],
    }
    return ClientError(response, "TransactWriteItems")


def test_a_create_request_needs_request_id_scope_and_name() -> None:
    request = app.parse_create({"request_id": "r1", "scope": "orders", "name": "a"})
    assert request == app.CreateRequest("r1", "orders", "a")


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ("text", "JSON object"),
        ({"scope": "s", "name": "n"}, "'request_id'"),
        ({"request_id": "r", "scope": "s", "name": "  "}, "'name'"),
        ({"request_id": "r", "scope": 3, "name": "n"}, "'scope'"),
    ],
)
def test_malformed_requests_are_refused_saying_why(event: Any, reason: str) -> None:
    with pytest.raises(app.InvalidRequest, match=reason):
        app.parse_create(event)


def test_the_transaction_moves_the_counter_only_from_the_value_read() -> None:
    # WHEN number 8 is taken after reading 7
    update, put = app.create_transaction("counters", "records", "orders", "a", 7)
    # THEN the counter goes 7 -> 8 only if it is still 7, and the record is new
    assert update["Update"]["ConditionExpression"] == "#v = :current"
    assert update["Update"]["ExpressionAttributeValues"] == {
        ":current": {"N": "7"},
        ":next": {"N": "8"},
    }
    assert put["Put"]["ConditionExpression"] == "attribute_not_exists(id)"
    assert put["Put"]["Item"]["seq"] == {"N": "8"}


def test_the_first_number_needs_the_counter_to_be_absent() -> None:
    update, put = app.create_transaction("counters", "records", "orders", "a", 0)
    assert update["Update"]["ConditionExpression"] == "attribute_not_exists(#v)"
    assert put["Put"]["Item"]["seq"] == {"N": "1"}


@pytest.mark.parametrize(
    ("codes", "meaning"),
    [
        (("ConditionalCheckFailed", "None"), "retry"),
        (("TransactionConflict", "None"), "retry"),
        (("None", "ConditionalCheckFailed"), "duplicate"),
        (("ConditionalCheckFailed", "ConditionalCheckFailed"), "duplicate"),
    ],
)
def test_a_cancelled_transaction_is_retried_unless_the_name_is_taken(
    codes: tuple[str, ...], meaning: str
) -> None:
    assert app.why_cancelled(cancelled(*codes)) == meaning


class FakeDynamoDB:
    """Answers get_item with a counter value and cancels transactions as told."""

    def __init__(self, outcomes: list[ClientError | None]) -> None:
        self.outcomes = outcomes
        self.value = 4

    def get_item(self, **_: Any) -> dict[str, Any]:
        return {"Item": {"value": {"N": str(self.value)}}}

    def transact_write_items(self, **_: Any) -> None:
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            self.value += 1  # someone else took the number
            raise outcome


def test_create_retries_a_lost_race_with_the_new_value() -> None:
    client = FakeDynamoDB([cancelled("ConditionalCheckFailed", "None"), None])
    created = app.create(client, "c", "r", app.CreateRequest("r1", "orders", "a"))
    assert created == {"scope": "orders", "name": "a", "id": 6, "attempts": 2}


def test_create_gives_up_at_once_on_a_duplicate_name() -> None:
    client = FakeDynamoDB([cancelled("None", "ConditionalCheckFailed")])
    with pytest.raises(app.DuplicateName, match="'a' already exists"):
        app.create(client, "c", "r", app.CreateRequest("r1", "orders", "a"))
