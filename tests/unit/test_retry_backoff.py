"""retry-backoff's pure logic: the full-jitter schedule, its cap, and the retry loop."""

from __future__ import annotations

import random

import pytest

from tests.conftest import load_handler

backoff = load_handler("retry_backoff", "backoff")


def test_ceilings_double_from_the_base_until_the_cap() -> None:
    assert [backoff.ceiling(n, 0.1, 0.5) for n in range(6)] == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    assert backoff.full_jitter(3, 0.1, 10, rand=lambda: 0.0) == 0.0
    assert backoff.full_jitter(3, 0.1, 10, rand=lambda: 0.5) == pytest.approx(0.4)
    assert backoff.full_jitter(3, 0.1, 10, rand=lambda: 0.999999) == pytest.approx(0.8, abs=1e-5)


def test_full_jitter_never_exceeds_the_cap_and_spreads_out() -> None:
    rng = random.Random(7)
    delays = [
        backoff.full_jitter(n, 0.1, 0.5, rand=rng.random) for n in range(20) for _ in range(50)
    ]
    assert all(0 <= d <= 0.5 for d in delays)
    late = [backoff.full_jitter(10, 0.1, 0.5, rand=rng.random) for _ in range(1000)]
    # uniform over [0, cap]: clients spread out instead of retrying in lockstep
    assert min(late) < 0.05 and max(late) > 0.45
    assert 0.2 < sum(late) / len(late) < 0.3


@pytest.mark.parametrize(
    ("receives", "rand", "expected"),
    [(1, 0.99, 1), (1, 0.0, 0), (2, 0.99, 2), (2, 0.5, 1), (5, 0.99, 2), (0, 0.99, 1)],
)
def test_visibility_delay_is_whole_seconds_up_to_the_cap(
    receives: int, rand: float, expected: int
) -> None:
    assert backoff.visibility_delay(receives, 1, 2, rand=lambda: rand) == expected


class Downstream:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses, self.calls = statuses, 0

    def __call__(self) -> int:
        status = self.statuses[min(self.calls, len(self.statuses) - 1)]
        self.calls += 1
        return status


def _retry(downstream: Downstream, slept: list[float], max_attempts: int = 5) -> dict:
    return backoff.call_with_backoff(
        downstream,
        max_attempts=max_attempts,
        base=0.1,
        cap=0.5,
        sleep=slept.append,
        rand=lambda: 1.0,
    )


@pytest.mark.parametrize("status", [400, 403, 404, 500])
def test_a_non_retryable_status_makes_exactly_one_call(status: int) -> None:
    downstream, slept = Downstream([status]), []
    with pytest.raises(backoff.DownstreamRejected, match=f"status {status}"):
        _retry(downstream, slept)
    assert downstream.calls == 1 and slept == []


def test_a_throttled_call_is_retried_up_to_the_limit_then_gives_up() -> None:
    # GIVEN a downstream that always throttles
    downstream, slept = Downstream([429]), []
    # WHEN the client calls it with 5 attempts allowed
    with pytest.raises(backoff.DownstreamThrottled, match="gave up after 5 calls"):
        _retry(downstream, slept)
    # THEN it called 5 times and waited 4 times, each at most its ceiling, never over the cap
    assert downstream.calls == 5
    assert slept == pytest.approx([0.1, 0.2, 0.4, 0.5])


def test_success_after_throttling_returns_what_happened() -> None:
    downstream, slept = Downstream([503, 429, 200]), []
    assert _retry(downstream, slept) == {"statuses": [503, 429, 200], "delays": [0.1, 0.2]}


def test_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        _retry(Downstream([200]), [], max_attempts=0)
