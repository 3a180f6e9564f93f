"""priority-queues' pure logic: draining high first, rank ordering, claiming under races."""

from __future__ import annotations

import pytest

from tests.conftest import load_handler

priority = load_handler("priority_queues", "priority")


class FakeQueues:
    """Two in-memory queues handing out up to 10 messages per receive."""

    def __init__(self, high: list[str], normal: list[str]) -> None:
        self.queues = {priority.HIGH: list(high), priority.NORMAL: list(normal)}
        self.arrivals: dict[int, str] = {}  # after this many receives, a high message arrives
        self.receives = 0

    def receive(self, level: str) -> list[str]:
        self.receives += 1
        if self.receives in self.arrivals:
            self.queues[priority.HIGH].append(self.arrivals[self.receives])
        batch, self.queues[level] = self.queues[level][:10], self.queues[level][10:]
        return batch


def test_with_50_normal_and_1_high_queued_the_high_one_is_processed_first() -> None:
    # GIVEN 50 normal messages queued before 1 high
    queues = FakeQueues(high=["H"], normal=[f"n{i}" for i in range(50)])
    # WHEN the consumer drains
    drained = priority.drain(queues.receive, lambda m: m, budget=100)
    # THEN the high one comes first and every message exactly once
    assert drained.processed[0] == "H"
    assert sorted(drained.processed[1:]) == sorted(f"n{i}" for i in range(50))


def test_a_high_message_arriving_mid_drain_jumps_the_remaining_normal_ones() -> None:
    queues = FakeQueues(high=[], normal=[f"n{i:02d}" for i in range(30)])
    queues.arrivals[3] = "H"  # arrives after the first normal batch
    drained = priority.drain(queues.receive, lambda m: m, budget=100)
    assert drained.processed.index("H") == 10


def test_the_budget_bounds_one_drain_and_failures_do_not_stop_it() -> None:
    queues = FakeQueues(high=[], normal=["ok1", "bad", "ok2"])

    def handle(message: str) -> str:
        if message == "bad":
            raise ValueError("malformed")
        return message

    drained = priority.drain(queues.receive, handle, budget=100)
    assert drained.processed == ["ok1", "ok2"]
    assert drained.failed == [("bad", "ValueError: malformed")]
    assert (
        priority.drain(FakeQueues([], ["a"] * 25).receive, str, budget=10).processed == ["a"] * 10
    )


def test_ranks_order_by_priority_then_first_in_first_out() -> None:
    queued = [
        {"id": "late-urgent", "priority": 1, "enqueued_at": 300},
        {"id": "early", "priority": 5, "enqueued_at": 100},
        {"id": "later", "priority": 5, "enqueued_at": 200},
        {"id": "lowest", "priority": 10_000, "enqueued_at": 50},
    ]
    assert [i["id"] for i in priority.ordered(queued)] == [
        "late-urgent",
        "early",
        "later",
        "lowest",
    ]
    # string order of ranks (the index's sort key) agrees with numeric order
    assert priority.rank(9, 1, "x") < priority.rank(10, 0, "x")


def test_re_prioritising_changes_the_order() -> None:
    queued = [{"id": n, "priority": 5, "enqueued_at": t} for t, n in enumerate("abcd")]
    queued[3]["priority"], queued[0]["priority"] = 1, 9
    assert [i["id"] for i in priority.ordered(queued)] == ["d", "b", "c", "a"]


@pytest.mark.parametrize("value", [-1, 100_000, "1", 1.5, None, True])
def test_priorities_outside_0_to_99999_are_refused(value: object) -> None:
    with pytest.raises(priority.InvalidRequest, match="priority must be an integer"):
        priority.parse_priority(value)


def test_a_claim_lost_to_another_dequeuer_moves_on_to_the_next_item() -> None:
    # GIVEN a queue where another dequeuer takes "a" between our read and our claim
    store = {"a": "QUEUED", "b": "QUEUED", "c": "QUEUED"}
    stolen = {"a"}

    def candidates() -> list[dict[str, str]]:
        return [{"id": k} for k, v in sorted(store.items()) if v == "QUEUED"]

    def claim(item: dict[str, str]) -> bool:
        if item["id"] in stolen:
            store[item["id"]] = "PROCESSING"  # the other dequeuer's conditional write won
            stolen.discard(item["id"])
            return False
        if store[item["id"]] != "QUEUED":
            return False
        store[item["id"]] = "PROCESSING"
        return True

    # WHEN we dequeue everything
    claimed, conflicts = priority.claim_in_order(candidates, claim, limit=10)
    # THEN we get the others, never "a"
    assert [i["id"] for i in claimed] == ["b", "c"]
    assert conflicts == 1


def test_a_message_s_work_is_its_own_seconds_within_0_to_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    app = load_handler("priority_queues", "app")
    assert app._work_seconds({"work": 0.1}) == 0.1
    assert app._work_seconds({}) == 0.0
    assert [app._work_seconds({"work": w}) for w in (5, -1, "1", True)] == [0.0] * 4
