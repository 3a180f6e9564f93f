"""dependent-uploads: naming uploads, and who resumes whom when a pair completes."""

from __future__ import annotations

import pytest

from tests.conftest import load_handler

app = load_handler("dependent_uploads")


def test_a_pair_file_is_identified() -> None:
    assert app.identify("b", "incoming/batch-7/orders.json") == {
        "bucket": "b",
        "key": "incoming/batch-7/orders.json",
        "pair_id": "batch-7",
        "kind": "orders",
    }


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("incoming/batch-7/invoices.json", "kind 'invoices' is not one of orders, customers"),
        ("incoming/orders.json", "is not incoming/<pair_id>/<kind>.json"),
        ("incoming/a/b/orders.json", "is not incoming"),
        ("", "is not incoming"),
    ],
)
def test_other_keys_are_invalid_uploads(key: str, reason: str) -> None:
    with pytest.raises(app.InvalidUpload, match=reason):
        app.identify("b", key)


def test_execution_names_follow_the_key_and_are_valid() -> None:
    assert app.execution_name("incoming/batch-7/orders.json") == "batch-7-orders-json"
    assert len(app.execution_name("incoming/" + "x" * 200)) == 80


def test_nothing_is_resumed_while_a_file_is_missing() -> None:
    row = {"id": "p", "file_orders": "k1", "token_orders": "t1"}
    assert app.resumptions(row, "orders") == []


def test_the_second_arrival_resumes_the_waiting_workflow_and_completes_its_own() -> None:
    # GIVEN customers waited, and orders just arrived
    row = {
        "id": "p",
        "file_customers": "k-c",
        "token_customers": "t-c",
        "file_orders": "k-o",
        "token_orders": "t-o",
    }
    # WHEN the row is complete
    sent = dict(app.resumptions(row, "orders"))
    # THEN both tokens are answered: the waiting one processes, the arriving one is done
    files = {"orders": "k-o", "customers": "k-c"}
    assert sent == {
        "t-c": {"pair_id": "p", "files": files, "resumed_by": "orders", "role": "waited"},
        "t-o": {"pair_id": "p", "files": files, "resumed_by": "orders", "role": "completed"},
    }


def test_join_names_each_orders_customer() -> None:
    orders = [{"order_id": "1", "customer_id": "c1"}, {"order_id": "2", "customer_id": "c9"}]
    customers = [{"customer_id": "c1", "name": "Ada"}]
    assert [o["customer_name"] for o in app.join(orders, customers)] == ["Ada", None]
