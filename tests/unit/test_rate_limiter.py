"""rate-limiter's pure logic (token bucket refill, window math, request validation), and the
bucket's conditional-write loop against an in-memory table under concurrent callers."""

from __future__ import annotations

import copy
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import load_handler

limits = load_handler("rate_limiter", "limits")
app = load_handler("rate_limiter", "app")


# -- token bucket ---------------------------------------------------------------------
def test_refill_adds_rate_per_second_since_the_last_write() -> None:
    assert limits.refill(0, last_ms=1_000, now_ms=3_000, capacity=3, rate=0.5) == 1.0


def test_refill_never_exceeds_capacity() -> None:
    assert limits.refill(2, last_ms=0, now_ms=60_000, capacity=3, rate=0.5) == 3


def test_a_clock_step_back_adds_nothing() -> None:
    assert limits.refill(1.5, last_ms=5_000, now_ms=4_000, capacity=3, rate=1) == 1.5


def test_taking_from_a_bucket_with_a_token_leaves_one_less() -> None:
    decision, left = limits.take(2.5, rate=1)
    assert (decision.allowed, decision.remaining, left) == (True, 1, 1.5)


def test_an_empty_bucket_refuses_and_says_when_a_token_will_be_there() -> None:
    decision, left = limits.take(0.25, rate=0.5)
    assert (decision.allowed, left) == (False, 0.25)
    assert decision.retry_after_s == pytest.approx(1.5)


def test_a_bucket_without_refill_never_promises_a_token() -> None:
    assert math.isinf(limits.take(0, rate=0)[0].retry_after_s)


def test_burst_of_three_then_refused_then_refilled() -> None:
    # GIVEN a full bucket of 3 at 0.5 tokens/s
    tokens, now, last = 3.0, 0, 0
    answers = []
    # WHEN four calls arrive 10 ms apart
    for _ in range(4):
        now += 10
        decision, tokens = limits.take(limits.refill(tokens, last, now, 3, 0.5), 0.5)
        last = now if decision.allowed else last
        answers.append(decision.allowed)
    # THEN the 4th is refused, and 2 s after the last write a call passes again
    assert answers == [True, True, True, False]
    assert limits.take(limits.refill(tokens, last, last + 2_000, 3, 0.5), 0.5)[0].allowed


# -- fixed window ---------------------------------------------------------------------
@pytest.mark.parametrize(("now_ms", "start"), [(0, 0), (2_999, 0), (3_000, 3_000), (10_500, 9_000)])
def test_window_start(now_ms: int, start: int) -> None:
    assert limits.window_start(now_ms, 3_000) == start


def test_a_counted_call_reports_what_is_left_in_the_window() -> None:
    assert limits.window_decision(2, limit=5, now_ms=100, window_ms=3_000) == limits.Decision(
        True, 3, 0.0
    )


def test_a_full_window_refuses_until_the_next_one_starts() -> None:
    decision = limits.window_decision(None, limit=5, now_ms=10_500, window_ms=3_000)
    assert (decision.allowed, decision.retry_after_s) == (False, 1.5)


# -- request validation ---------------------------------------------------------------
def test_the_client_id_header_is_read_in_any_case() -> None:
    assert limits.client_id({"x-client-id": "tenant_1-a"}) == "tenant_1-a"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (None, "is required"),
        ({}, "is required"),
        ({"X-Client-Id": ""}, "is required"),
        ({"X-Client-Id": "has space"}, "1-64 letters"),
        ({"X-Client-Id": "x" * 65}, "1-64 letters"),
    ],
)
def test_a_missing_or_malformed_client_id_is_refused_saying_why(
    headers: dict[str, str] | None, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        limits.client_id(headers)


def test_the_api_answers_400_with_the_reason() -> None:
    answer = app.handler({"resource": "/bucket", "headers": {}}, None)
    assert answer["statusCode"] == 400
    assert "X-Client-Id" in answer["body"]


# -- the conditional write loop, under concurrent callers ------------------------------
class _Table:
    """Just enough of DynamoDB for take_token: consistent reads, and conditional writes
    that are atomic (a lock stands in for DynamoDB's per-item serialisation)."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.row: dict[str, Any] | None = row
        self.lock = threading.Lock()

    def get_item(self, **_: Any) -> dict[str, Any]:
        with self.lock:
            return {"Item": copy.deepcopy(self.row)} if self.row else {}

    def update_item(self, ExpressionAttributeValues: dict[str, Any], **_: Any) -> None:  # noqa: N803
        values = ExpressionAttributeValues
        with self.lock:
            assert self.row is not None
            if self.row["version"] != values[":seen"]:
                raise ClientError(
                    {"Error": {"Code": "ConditionalCheckFailedException"}}, "UpdateItem"
                )
            version = int(self.row["version"]["N"]) + 1
            self.row.update(
                tokens=values[":left"], updated_ms=values[":now"], version={"N": str(version)}
            )


def test_concurrent_callers_never_spend_more_tokens_than_the_bucket_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a bucket of 5 tokens that does not refill
    table = _Table(
        {
            "id": {"S": "c"},
            "tokens": {"N": "5"},
            "capacity": {"N": "5"},
            "refill_per_s": {"N": "0"},
            "updated_ms": {"N": "0"},
            "version": {"N": "0"},
        }
    )
    monkeypatch.setattr(app, "_dynamodb", lambda: table)
    monkeypatch.setenv("BUCKETS_TABLE", "buckets")
    monkeypatch.setenv("BUCKET_CAPACITY", "3")
    monkeypatch.setenv("REFILL_PER_SECOND", "1")
    # WHEN 20 callers take at once
    with ThreadPoolExecutor(max_workers=20) as pool:
        decisions = list(pool.map(lambda _: app.take_token("c", now_ms=1_000), range(20)))
    # THEN exactly 5 pass and the bucket is empty, never negative
    assert sum(d.allowed for d in decisions) == 5
    assert table.row is not None
    assert float(table.row["tokens"]["N"]) == 0
    assert table.row["version"] == {"N": "5"}
