"""retry-backoff's pure logic: exponential backoff with full jitter (Marc Brooker, "Exponential
Backoff And Jitter") and a retry loop that tells retryable failures from the rest.

    delay(attempt) = random_between(0, min(cap, base * 2 ** attempt))

No AWS and no HTTP here: the handler passes in the call, the sleep and the random source.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# Throttling and timeouts are worth another try (as in aws-samples/retry-with-backoff);
# any other failure will fail again, so it is not retried.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


class DownstreamThrottled(RuntimeError):
    """Still throttled (or timing out) after every allowed attempt: worth retrying later."""


class DownstreamRejected(RuntimeError):
    """The downstream refused the request: retrying the same request cannot help."""


def ceiling(attempt: int, base: float, cap: float) -> float:
    """The most we may wait after failed attempt number `attempt` (0 for the first)."""
    return min(cap, base * 2**attempt)


def full_jitter(
    attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """A delay drawn uniformly from [0, ceiling(attempt)]."""
    return rand() * ceiling(attempt, base, cap)


def visibility_delay(
    receive_count: int, base: int, cap: int, rand: Callable[[], float] = random.random
) -> int:
    """Whole seconds before SQS redelivers a message received `receive_count` times (full
    jitter on SQS's one-second granularity): uniform over 0..ceiling."""
    top = int(ceiling(max(receive_count - 1, 0), base, cap))
    return min(int(rand() * (top + 1)), top)


def call_with_backoff(
    call: Callable[[], int],
    *,
    max_attempts: int,
    base: float,
    cap: float,
    sleep: Callable[[float], None],
    rand: Callable[[], float] = random.random,
) -> dict[str, list[float] | list[int]]:
    """Call until a success (2xx), a non-retryable status, or `max_attempts` calls.
    Returns {"statuses", "delays"} on success; raises DownstreamRejected at once for a status
    that is not retryable, DownstreamThrottled when the attempts run out."""
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    statuses: list[int] = []
    delays: list[float] = []
    for attempt in range(max_attempts):
        status = call()
        statuses.append(status)
        if 200 <= status < 300:
            return {"statuses": statuses, "delays": delays}
        if status not in RETRYABLE_STATUSES:
            raise DownstreamRejected(f"status {status} is not retryable; calls: {len(statuses)}")
        if attempt + 1 < max_attempts:
            delay = full_jitter(attempt, base, cap, rand)
            delays.append(round(delay, 4))
            sleep(delay)
    raise DownstreamThrottled(
        f"gave up after {len(statuses)} calls (statuses {statuses}, delays {delays})"
    )
