"""The arithmetic of the two limiters, free of I/O so unit tests can pin it down.

Token bucket: a bucket holds up to `capacity` tokens and gains `rate` tokens a second, worked
out from the time it was last written; a call takes one token or is refused.
Fixed window: time is cut into windows of `window_ms`; a call counts in its window, and a
window admits at most `limit` calls.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int  # whole calls still allowed now
    retry_after_s: float  # 0 when allowed


def refill(tokens: float, last_ms: int, now_ms: int, capacity: float, rate: float) -> float:
    """Tokens in the bucket at `now_ms`: what it had, plus `rate` a second since `last_ms`,
    never above `capacity` (a clock step back adds nothing)."""
    elapsed_s = max(0, now_ms - last_ms) / 1000
    return min(capacity, tokens + elapsed_s * rate)


def take(tokens: float, rate: float) -> tuple[Decision, float]:
    """Take one token from a bucket holding `tokens` (already refilled): the decision, and the
    tokens left to store (unchanged when refused)."""
    if tokens >= 1:
        left = tokens - 1
        return Decision(True, math.floor(left), 0.0), left
    wait = math.inf if rate <= 0 else (1 - tokens) / rate
    return Decision(False, 0, wait), tokens


def window_start(now_ms: int, window_ms: int) -> int:
    """The start of the fixed window `now_ms` falls in."""
    return now_ms - now_ms % window_ms


def window_decision(count_after: int | None, limit: int, now_ms: int, window_ms: int) -> Decision:
    """The decision for a call, given the window's count after the call was counted (None when
    the conditional increment refused it because the window was full)."""
    if count_after is None:
        wait_ms = window_start(now_ms, window_ms) + window_ms - now_ms
        return Decision(False, 0, wait_ms / 1000)
    return Decision(True, max(0, limit - count_after), 0.0)


def client_id(headers: dict[str, str] | None) -> str:
    """The caller's id from the X-Client-Id header (any case); ValueError says what is wrong."""
    found = {k.lower(): v for k, v in (headers or {}).items()}.get("x-client-id")
    if not found:
        raise ValueError("the X-Client-Id header is required")
    if not CLIENT_ID.match(found):
        raise ValueError("X-Client-Id must be 1-64 letters, digits, '-' or '_'")
    return found
