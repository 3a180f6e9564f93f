"""storage-first's consumer logic: which stored requests become processed orders."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.conftest import load_handler

app = load_handler("storage_first")


def test_an_order_becomes_an_item_keyed_by_its_order_id() -> None:
    body = json.dumps({"order_id": "o-1", "customer": "ada", "amount": 12.5})
    assert app.to_item(body, "queue") == {
        "id": "o-1",
        "customer": "ada",
        "amount": Decimal("12.5"),
        "via": "queue",
    }


def test_whole_amounts_are_kept_exact() -> None:
    body = json.dumps({"order_id": "o-1", "customer": "ada", "amount": 3})
    assert app.to_item(body, "inbox")["amount"] == Decimal(3)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("nope", "not JSON"),
        ("[]", "not a JSON object"),
        (json.dumps({"order_id": "o", "customer": ""}), "missing: customer, amount"),
        (json.dumps({"order_id": "o", "customer": "c", "amount": 0}), "positive number"),
        (json.dumps({"order_id": "o", "customer": "c", "amount": "5"}), "positive number"),
        (json.dumps({"order_id": "o", "customer": "c", "amount": True}), "positive number"),
    ],
)
def test_requests_that_are_not_orders_are_refused_saying_why(body: str, reason: str) -> None:
    with pytest.raises(app.InvalidOrder, match=reason):
        app.to_item(body, "queue")


def test_a_broken_consumer_fails_before_touching_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a consumer deployed with BROKEN=true
    monkeypatch.setenv("BROKEN", "true")
    # WHEN it gets a valid order THEN it fails (so SQS keeps the message and retries it)
    with pytest.raises(app.ConsumerBroken):
        app._store(json.dumps({"order_id": "o", "customer": "c", "amount": 1}), "queue")
