"""cqrs's handler logic: commands, optimistic concurrency, the fold, idempotent projection."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import load_handler

app = load_handler("cqrs")


class MemoryStore:
    """An event store that, like the conditional put, refuses a second event per version."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, int], dict[str, Any]] = {}

    def load(self, aggregate_id: str) -> list[dict[str, Any]]:
        return [e for (a, _), e in sorted(self.events.items()) if a == aggregate_id]

    def append(self, event: dict[str, Any]) -> None:
        key = (event["aggregate_id"], event["version"])
        if key in self.events:
            raise app.Rejected("VersionConflict", "taken")
        self.events[key] = event


class MemoryReadModel:
    def __init__(self) -> None:
        self.views: dict[str, dict[str, Any]] = {}
        self.writes = 0

    def get(self, view_id: str) -> dict[str, Any] | None:
        view = self.views.get(view_id)
        return dict(view) if view else None

    def put(self, view: dict[str, Any], previous_version: int) -> bool:
        current = self.views.get(view["id"])
        if (current["version"] if current else 0) != previous_version:
            return False
        self.views[view["id"]] = view
        self.writes += 1
        return True


def opened(store: MemoryStore, account: str = "acc-1") -> None:
    assert app.handle_command(store, {"type": "OpenAccount", "account_id": account, "owner": "A"})[
        "accepted"
    ]


def test_commands_append_consecutive_versions() -> None:
    store = MemoryStore()
    opened(store)
    answer = app.handle_command(
        store, {"type": "Deposit", "account_id": "acc-1", "amount": 5, "expected_version": 1}
    )
    assert answer == {
        "accepted": True,
        "account_id": "acc-1",
        "version": 2,
        "event": "MoneyDeposited",
    }
    assert [e["version"] for e in store.load("acc-1")] == [1, 2]


def test_a_stale_expected_version_is_a_conflict_and_stores_nothing() -> None:
    store = MemoryStore()
    opened(store)
    deposit = {"type": "Deposit", "account_id": "acc-1", "amount": 5, "expected_version": 1}
    assert app.handle_command(store, deposit)["accepted"]
    again = app.handle_command(store, deposit)
    assert again["error"] == "VersionConflict"
    assert "expected version 1" in again["message"]
    assert len(store.load("acc-1")) == 2


def test_losing_the_conditional_put_race_is_a_conflict() -> None:
    # GIVEN a store where another writer takes version 2 between our load and our append
    store = MemoryStore()
    opened(store)
    real_load = store.load

    def load_then_lose(aggregate_id: str) -> list[dict[str, Any]]:
        events = real_load(aggregate_id)
        store.events[(aggregate_id, 2)] = {"aggregate_id": aggregate_id, "version": 2}
        return events

    store.load = load_then_lose  # type: ignore[method-assign]
    # WHEN a command at version 1 appends
    answer = app.handle_command(
        store, {"type": "Deposit", "account_id": "acc-1", "amount": 5, "expected_version": 1}
    )
    # THEN it is rejected, not stored twice
    assert (answer["accepted"], answer["error"]) == (False, "VersionConflict")


@pytest.mark.parametrize(
    ("command", "code", "says"),
    [
        ("nope", "InvalidCommand", "JSON object"),
        ({"type": "Explode", "account_id": "a"}, "InvalidCommand", "type must be"),
        ({"type": "Deposit", "amount": 1, "expected_version": 1}, "InvalidCommand", "account_id"),
        ({"type": "Deposit", "account_id": "a b", "amount": 1}, "InvalidCommand", "account_id"),
        ({"type": "Deposit", "account_id": "acc-1", "amount": 1}, "InvalidCommand", "required"),
        (
            {"type": "Deposit", "account_id": "acc-1", "amount": 1, "expected_version": "1"},
            "InvalidCommand",
            "integer",
        ),
        (
            {"type": "Deposit", "account_id": "acc-1", "amount": 0, "expected_version": 1},
            "InvalidCommand",
            "positive",
        ),
        (
            {"type": "Deposit", "account_id": "ghost", "amount": 1, "expected_version": 0},
            "UnknownAccount",
            "open it first",
        ),
        (
            {"type": "Deposit", "account_id": "acc-1", "amount": 1, "expected_version": 7},
            "VersionConflict",
            "at version 1",
        ),
        (
            {"type": "Withdraw", "account_id": "acc-1", "amount": 1, "expected_version": 1},
            "InsufficientFunds",
            "balance is 0",
        ),
        ({"type": "OpenAccount", "account_id": "acc-1", "owner": "B"}, "VersionConflict", "exists"),
    ],
)
def test_bad_commands_are_refused_saying_why(command: Any, code: str, says: str) -> None:
    store = MemoryStore()
    opened(store)
    answer = app.handle_command(store, command)
    assert (answer["accepted"], answer["error"]) == (False, code)
    assert says in answer["message"]
    assert len(store.events) == 1


def test_replay_folds_events_in_version_order() -> None:
    events = [
        {"aggregate_id": "a", "version": 3, "type": "MoneyWithdrawn", "data": {"amount": 4}},
        {"aggregate_id": "a", "version": 1, "type": "AccountOpened", "data": {"owner": "A"}},
        {"aggregate_id": "a", "version": 2, "type": "MoneyDeposited", "data": {"amount": 10}},
    ]
    assert app.replay(events) == {"id": "a", "owner": "A", "balance": 6, "version": 3}


def test_projection_applies_each_event_once_and_skips_redeliveries() -> None:
    store, read_model = MemoryStore(), MemoryReadModel()
    opened(store)
    app.handle_command(
        store, {"type": "Deposit", "account_id": "acc-1", "amount": 9, "expected_version": 1}
    )
    events = store.load("acc-1")
    assert [app.project(read_model, e) for e in events] == ["projected", "projected"]
    assert [app.project(read_model, e) for e in events] == ["duplicate", "duplicate"]
    view = read_model.get("acc-1")
    assert view is not None
    assert (view["balance"], view["version"], view["events_projected"]) == (9, 2, 2)
    assert read_model.writes == 2


def test_projection_refuses_a_gap_so_the_stream_retries() -> None:
    read_model = MemoryReadModel()
    later = {"aggregate_id": "a", "version": 2, "type": "MoneyDeposited", "data": {"amount": 1}}
    with pytest.raises(ValueError, match="does not follow"):
        app.project(read_model, later)


def test_queries_read_the_read_model() -> None:
    read_model = MemoryReadModel()
    read_model.views["a"] = {"id": "a", "balance": 1, "version": 1}
    assert app.query(read_model, {"account_id": "a"})["account"]["balance"] == 1
    assert app.query(read_model, {"account_id": "b"}) == {"found": False}
    assert app.query(read_model, {})["error"] == "InvalidQuery"
