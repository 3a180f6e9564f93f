"""The SQS poller's batch slots (sandbox/embedded/pollers.py): how many batches a mapping may
run at once, waiting for room, scaling up under a backlog and stopping."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip(
    "localstack",
    reason="LocalStack is not installed on this host (Docker mode runs it in a container)",
)

from sandbox.embedded import pollers


def mapping(**config: object) -> pollers.MappingState:
    return pollers.MappingState(threading.Event(), dict(config))


def test_five_batches_at_first_within_the_local_cap() -> None:
    assert mapping().capacity() == pollers.INITIAL_CONCURRENT_BATCHES == 5
    assert mapping(ScalingConfig={"MaximumConcurrency": 2}).capacity() == 2
    assert mapping(ScalingConfig={"MaximumConcurrency": 1000}).capacity() == 5


def test_a_full_mapping_waits_for_a_slot_and_a_released_one_lets_it_in() -> None:
    # GIVEN a mapping capped at one batch, with that batch running
    state = mapping(ScalingConfig={"MaximumConcurrency": 1})
    assert state.acquire_slot()
    # WHEN another batch asks for a slot
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(state.acquire_slot()))
    waiter.start()
    waiter.join(timeout=0.3)
    # THEN it waits until the first is done
    assert waiter.is_alive() and got == []
    state.release_slot()
    waiter.join(timeout=2)
    assert got == [True] and state.in_flight == 1


def test_a_stopped_mapping_gives_no_slot() -> None:
    state = mapping(ScalingConfig={"MaximumConcurrency": 1})
    assert state.acquire_slot()
    state.stopping.set()
    assert state.acquire_slot() is False


def test_a_backlog_adds_one_batch_at_a_time_up_to_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pollers, "SCALE_UP_AFTER_S", 0.05)
    state = mapping()
    deadline = threading.Timer(5, state.stopping.set)  # a poller that never scales fails here
    deadline.start()
    for _ in range(pollers.INITIAL_CONCURRENT_BATCHES):
        assert state.acquire_slot()
    began = time.monotonic()
    assert state.acquire_slot()  # every batch busy for SCALE_UP_AFTER_S: one more
    assert state.scale == 6 and time.monotonic() - began >= 0.05
    while state.scale < pollers.MAX_CONCURRENT_BATCHES:
        assert state.acquire_slot()
    deadline.cancel()
    state.went_idle()
    assert state.capacity() == pollers.INITIAL_CONCURRENT_BATCHES


class FifoPoller:
    """Stands in for LocalStack's SqsPoller: records each group it is handed; the function
    fails every group named in `failing` (LocalStack raises when a whole invocation fails)."""

    is_fifo_queue = True

    def __init__(self, failing: set[str]) -> None:
        self.failing, self.handled = failing, []

    def handle_messages(self, messages: list[dict]) -> None:
        group = messages[0]["Attributes"]["MessageGroupId"]
        self.handled.append(group)
        if group in self.failing:
            raise RuntimeError(f"the function failed on group {group}")


def fifo_message(group: str) -> dict:
    return {"MessageId": f"{group}-m", "Attributes": {"MessageGroupId": group}}


def test_a_fifo_group_that_fails_leaves_the_batchs_other_groups_to_run() -> None:
    # GIVEN a received batch whose first group (a poison message's own) fails
    poller, state = FifoPoller(failing={"poison"}), mapping()
    assert state.acquire_slot()
    batch = [fifo_message("poison"), fifo_message("orders"), fifo_message("invoices")]
    # WHEN the batch runs
    pollers._run_batch(poller, state, batch)  # type: ignore[arg-type]
    # THEN every group was handed to the function, and the slot is free again
    assert poller.handled == ["poison", "orders", "invoices"]
    assert state.in_flight == 0
