"""priority-queues' pure logic: draining two queues high first, and the DynamoDB queue's
ordering and claiming loop. No AWS here; the handlers pass in the calls that touch it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

HIGH, NORMAL = "high", "normal"
MAX_PRIORITY = 99_999

M = TypeVar("M")


class InvalidRequest(ValueError):
    """A request the DynamoDB queue refuses, saying why."""


class Drained:
    """What one drain did: handled results in order, and (message, reason) for failures."""

    def __init__(self) -> None:
        self.processed: list[Any] = []
        self.failed: list[tuple[Any, str]] = []


def drain(
    receive: Callable[[str], list[M]],
    handle: Callable[[M], Any],
    *,
    budget: int,
) -> Drained:
    """Process up to `budget` messages, asking the high queue before every batch and the
    normal queue only when high is empty. A message whose handling raises is recorded as
    failed (left on its queue for redelivery) and the drain goes on."""
    drained = Drained()
    while len(drained.processed) + len(drained.failed) < budget:
        batch = receive(HIGH) or receive(NORMAL)
        if not batch:
            break
        for message in batch:
            try:
                drained.processed.append(handle(message))
            except Exception as error:  # noqa: BLE001 - one bad message must not stop the drain
                drained.failed.append((message, f"{type(error).__name__}: {error}"))
    return drained


def parse_priority(value: Any) -> int:
    """A priority: an integer 0..MAX_PRIORITY, lower is dequeued first."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRIORITY:
        raise InvalidRequest(f"priority must be an integer 0..{MAX_PRIORITY}, got {value!r}")
    return value


def rank(priority: int, enqueued_at_ns: int, item_id: str) -> str:
    """The sort key of a queued item: by priority, then first in first out (string order)."""
    return f"{priority:05d}#{enqueued_at_ns:020d}#{item_id}"


def claim_in_order(
    candidates: Callable[[], list[dict[str, Any]]],
    claim: Callable[[dict[str, Any]], bool],
    *,
    limit: int,
) -> tuple[list[dict[str, Any]], int]:
    """Claim up to `limit` items, best ranked first. `candidates()` lists queued items in rank
    order (it may be stale); `claim(item)` is the conditional write that succeeds for exactly
    one dequeuer. Returns the claimed items and how many claims another dequeuer won."""
    claimed: list[dict[str, Any]] = []
    conflicts = 0
    while len(claimed) < limit:
        found = candidates()
        if not found:
            break
        for item in found:
            if claim(item):
                claimed.append(item)
                break
            conflicts += 1
    return claimed, conflicts


def ordered(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Queued items in the order dequeue takes them (what the index's sort key gives)."""
    return sorted(items, key=lambda i: rank(i["priority"], i["enqueued_at"], i["id"]))
