"""event-sourcing's handler logic: the cart fold, event checks, appends and snapshots."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import load_handler

app = load_handler("event_sourcing")


def ev(version: int, kind: str, stream: str = "cart-1", **data: Any) -> dict[str, Any]:
    return {"stream_id": stream, "version": version, "type": kind, "data": data}


HISTORY = [
    ev(1, "CartOpened", customer="Ada"),
    ev(2, "ItemAdded", sku="apple", quantity=2, price=50),
    ev(3, "ItemAdded", sku="pear", quantity=1, price=80),
    ev(4, "ItemRemoved", sku="pear"),
    ev(5, "ItemAdded", sku="apple", quantity=1, price=40),
    ev(6, "ItemAdded", sku="fig", quantity=3, price=20),
    ev(7, "CartCheckedOut"),
]


def test_the_fold_gives_the_cart() -> None:
    assert app.fold(HISTORY) == {
        "customer": "Ada",
        "items": {"apple": {"quantity": 3, "price": 40}, "fig": {"quantity": 3, "price": 20}},
        "status": "CHECKED_OUT",
        "total": 180,
    }


def test_a_snapshot_plus_its_tail_equals_the_full_replay() -> None:
    for cut in range(1, len(HISTORY)):
        snapshot = app.fold(HISTORY[:cut])
        assert app.fold(HISTORY[cut:], snapshot) == app.fold(HISTORY)


def test_an_append_snapshots_every_n_versions() -> None:
    # GIVEN a stream at version 3
    state = app.fold(HISTORY[:3])
    # WHEN versions 4..7 are appended with snapshots every 5
    events, new_state, snapshot = app.plan_append(state, 3, HISTORY[3:], 5)
    # THEN the snapshot is the state at version 5
    assert [e["version"] for e in events] == [4, 5, 6, 7]
    assert new_state == app.fold(HISTORY)
    assert snapshot == (5, app.fold(HISTORY[:5]))


def test_no_snapshot_when_no_multiple_of_n_is_crossed() -> None:
    assert app.plan_append(None, 0, HISTORY[:3], 5)[2] is None


@pytest.mark.parametrize(
    ("version", "events", "code", "says"),
    [
        (0, [], "InvalidEvent", "non-empty list"),
        (0, ["x"], "InvalidEvent", "JSON object"),
        (
            0,
            [{"version": 1, "type": "CartOpened", "data": {"customer": "A"}}],
            "WrongStream",
            "stream_id is required",
        ),
        (0, [ev(1, "CartOpened", stream="a b", customer="A")], "WrongStream", "stream_id"),
        (0, [ev(1, "ItemAdded", sku="x", quantity=1, price=1)], "WrongStream", "no CartOpened"),
        (
            2,
            [ev(3, "ItemRemoved", sku="x"), ev(4, "ItemRemoved", stream="cart-2", sku="x")],
            "WrongStream",
            "one stream",
        ),
        (
            2,
            [{"stream_id": "cart-1", "type": "ItemRemoved", "data": {"sku": "x"}}],
            "WrongVersion",
            "version is required",
        ),
        (2, [ev(5, "ItemRemoved", sku="apple")], "WrongVersion", "must be version 3, not 5"),
        (2, [ev(2, "ItemRemoved", sku="apple")], "VersionConflict", "must be version 3, not 2"),
        (2, [ev(3, "ItemAdded", sku="x", quantity=0, price=1)], "InvalidEvent", "quantity >= 1"),
        (2, [ev(3, "ItemAdded", sku="x", quantity="2", price=1)], "InvalidEvent", "data.quantity"),
        (2, [ev(3, "Teleported")], "InvalidEvent", "type must be"),
        (2, [ev(3, "ItemRemoved", sku="kiwi")], "Rejected", "not in the cart"),
        (2, [{**ev(3, "CartCheckedOut"), "extra": 1}], "InvalidEvent", "unknown fields"),
    ],
)
def test_bad_events_are_refused_saying_why(
    version: int, events: list[Any], code: str, says: str
) -> None:
    state = app.fold(HISTORY[:version]) if version else None
    with pytest.raises(app.Refused, match=says) as refused:
        app.plan_append(state, version, events, 5)
    assert refused.value.code == code


def test_a_batch_with_one_bad_event_is_refused_whole() -> None:
    good, bad = ev(3, "ItemRemoved", sku="apple"), ev(4, "ItemRemoved", sku="apple")
    with pytest.raises(app.Refused, match="not in the cart"):
        app.plan_append(app.fold(HISTORY[:2]), 2, [good, bad], 5)


def test_a_checked_out_cart_takes_no_more_events() -> None:
    with pytest.raises(app.Refused, match="CHECKED_OUT"):
        app.plan_append(app.fold(HISTORY), 7, [ev(8, "ItemRemoved", sku="apple")], 5)


def test_replayed_events_carry_the_replay_name() -> None:
    stored = [{**HISTORY[1], "at": "2026-11-23T12:00:00+00:00"}]
    [entry] = app.replay_entries(stored, "replay-1", "bus")
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (
        "sandbox.event-sourcing",
        "ItemAdded",
        "bus",
    )
    detail = json.loads(entry["Detail"])
    assert (detail["replay_name"], detail["version"], detail["data"]["quantity"]) == (
        "replay-1",
        2,
        2,
    )
