"""event-aggregation's version checks, the transaction, and how the aggregator retries."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import load_handler

app = load_handler("event_aggregation")


def event(version: int, value: int | str = 100) -> Any:
    return app.Event("g", "A", version, Decimal(value))


def test_a_well_formed_body_becomes_an_event() -> None:
    body = json.dumps({"group": "g", "item": "A", "version": 2, "value": 1.5})
    assert app.parse_event(body) == app.Event("g", "A", 2, Decimal("1.5"), False)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("nope", "not JSON"),
        ("[]", "not a JSON object"),
        (json.dumps({"item": "A", "version": 1, "value": 1}), "'group'"),
        (json.dumps({"group": "g", "item": "A", "version": "three", "value": 1}), "'version'"),
        (json.dumps({"group": "g", "item": "A", "version": 0, "value": 1}), "'version'"),
        (json.dumps({"group": "g", "item": "A", "version": 1, "value": "5"}), "'value'"),
        (json.dumps({"group": "g", "item": "A", "version": True, "value": 1}), "'version'"),
    ],
)
def test_malformed_bodies_are_refused_saying_why(body: str, reason: str) -> None:
    with pytest.raises(app.MalformedEvent, match=reason):
        app.parse_event(body)


def test_a_newer_version_moves_the_total_by_the_difference() -> None:
    assert app.delta_for(event(2, 150), 1, Decimal(100)) == Decimal(50)
    assert app.delta_for(event(1, 100), 0, Decimal(0)) == Decimal(100)


@pytest.mark.parametrize("stored_version", [2, 3])
def test_a_version_not_newer_than_the_stored_one_is_ignored(stored_version: int) -> None:
    # a duplicate (same version) or an older one arriving late
    assert app.delta_for(event(2, 150), stored_version, Decimal(150)) is None


def test_the_transaction_needs_the_item_still_at_the_version_read() -> None:
    item, total, outcome = app.apply_transaction("t", event(3, 70), "m1", 2, Decimal(-10))
    assert item["Put"]["ConditionExpression"] == "version = :seen"
    assert item["Put"]["ExpressionAttributeValues"] == {":seen": {"N": "2"}}
    assert item["Put"]["Item"]["version"] == {"N": "3"}
    assert total["Update"]["ExpressionAttributeValues"][":delta"] == {"N": "-10"}
    assert outcome["Update"]["ConditionExpression"] == "attribute_not_exists(outcome)"


def test_a_first_version_needs_the_item_to_be_new() -> None:
    item, _, _ = app.apply_transaction("t", event(1), "m1", 0, Decimal(100))
    assert item["Put"]["ConditionExpression"] == "attribute_not_exists(id)"
    assert "ExpressionAttributeValues" not in item["Put"]


class FakeDynamoDB:
    """Stores one item version; the first transaction loses a race to another writer."""

    def __init__(self) -> None:
        self.version, self.value = 1, Decimal(100)
        self.transactions = 0
        self.ignored = 0

    def get_item(self, **_: Any) -> dict[str, Any]:
        return {"Item": {"version": {"N": str(self.version)}, "value": {"N": str(self.value)}}}

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> None:  # noqa: N803
        self.transactions += 1
        if self.transactions == 1:
            self.version, self.value = 5, Decimal(500)  # someone else got there first
            response: Any = {"Error": {"Code": "TransactionCanceledException", "Message": "x"}}
            raise ClientError(response, "TransactWriteItems")

    def update_item(self, **_: Any) -> None:
        self.ignored += 1


def test_a_lost_race_is_read_again_and_then_judged_on_the_new_version() -> None:
    # GIVEN an item at v1 that moves to v5 while v2 is being applied
    client = FakeDynamoDB()
    # WHEN v2 is aggregated
    outcome = app.aggregate(client, "t", event(2, 150), "m1")
    # THEN the second read sees v5 and v2 is ignored, not applied on top
    assert (outcome, client.transactions, client.ignored) == ("ignored", 1, 1)
