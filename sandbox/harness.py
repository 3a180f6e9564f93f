"""What every scenario is made of: named steps, checks that say expected versus seen, waits
on conditions with deadlines (never fixed sleeps), and a record of it all with timings.

A scenario prints a readable account as it goes (it doubles as a demo), and its record is
written to .sandbox/reports/<slug>.json for later reports.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar, overload

T = TypeVar("T")
ENGINE_LIMITS = "docs/engine-limits.md"
NOT_PROVEN = "not proven"


class ScenarioFailed(AssertionError):
    """A check did not hold: says what was expected and what was seen."""


class WaitTimedOut(ScenarioFailed):
    """A condition did not hold before its deadline."""


def unique_name(prefix: str) -> str:
    """`prefix-1a2b3c4d`: a name no earlier run used."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@overload
def await_value[T](
    probe: Callable[[], T | None],
    *,
    timeout: float = 20,
    interval: float = 0.2,
    waiting_for: str = "condition",
) -> T: ...


@overload
def await_value(
    probe: Callable[[], T],
    *,
    until: Callable[[T], bool],
    timeout: float = 20,
    interval: float = 0.2,
    waiting_for: str = "condition",
) -> T: ...


def await_value(
    probe: Callable[[], Any],
    *,
    until: Callable[[Any], bool] = bool,
    timeout: float = 20,
    interval: float = 0.2,
    waiting_for: str = "condition",
) -> Any:
    """Call `probe` every `interval` s until `until(value)` holds; return that value. After
    `timeout` s raise WaitTimedOut with the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise WaitTimedOut(f"Waited {timeout:g} s for {waiting_for}; last saw: {_short(value)}")
        time.sleep(interval)


def await_count(
    probe: Callable[[], int], expected: int, *, timeout: float = 20, waiting_for: str = "items"
) -> int:
    """Wait until `probe()` returns at least `expected`; return the final count."""
    return await_value(
        probe,
        until=lambda n: n >= expected,
        timeout=timeout,
        waiting_for=f"{expected} {waiting_for}",
    )


def await_lasting(
    probe: Callable[[], T],
    *,
    until: Callable[[T], bool],
    duration: float,
    timeout: float,
    interval: float = 0.2,
    waiting_for: str = "condition",
) -> T:
    """Until `until(probe())` has held on every look for `duration` s; return the last value.
    After `timeout` s raise WaitTimedOut with the last value seen. For what one look can show
    true for a moment (an approximate count) before it settles."""
    deadline = time.monotonic() + timeout
    held_since: float | None = None
    while True:
        now, value = time.monotonic(), probe()
        if not until(value):
            held_since = None
        elif held_since is None:
            held_since = now
        elif now - held_since >= duration:
            return value
        if now >= deadline:
            raise WaitTimedOut(f"Waited {timeout:g} s for {waiting_for}; last saw: {_short(value)}")
        time.sleep(interval)


def holds_for(
    probe: Callable[[], T], *, until: Callable[[T], bool], duration: float, interval: float = 0.2
) -> T:
    """Check that `until(probe())` stays true for `duration` s (e.g. "nothing else arrives");
    return the last value, or raise ScenarioFailed as soon as it stops holding."""
    deadline = time.monotonic() + duration
    while True:
        value = probe()
        if not until(value):
            raise ScenarioFailed(f"Expected this to keep holding, but it changed: {_short(value)}")
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


@dataclass
class Step:
    """A step as recorded: `checks` are the readable lines; `check_details` say the same for
    a timeline (when each check was made, its outcome, and expected versus seen if it failed)."""

    title: str
    started: float = 0.0
    seconds: float = 0.0
    ok: bool = True
    checks: list[str] = field(default_factory=list)
    check_details: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


class Scenario:
    """One run of a pattern's scenario: steps, checks and notes, printed as they happen."""

    def __init__(self, slug: str, out: TextIO = sys.stdout) -> None:
        self.slug = slug
        self.out = out
        self.steps: list[Step] = []
        self.started = time.monotonic()
        self.started_at = time.time()
        self.finished: float | None = None

    @contextmanager
    def step(self, title: str) -> Iterator[Step]:
        record = Step(title, started=round(time.time(), 3))
        self.steps.append(record)
        self._print(f"\n▸ {title}")
        began = time.monotonic()
        try:
            yield record
        except Exception as error:
            record.ok = False
            record.error = f"{type(error).__name__}: {error}"
            self._print(f"  ✗ {error}")
            raise
        finally:
            record.seconds = round(time.monotonic() - began, 3)

    def check(self, what: str, *, expected: Any, seen: Any) -> None:
        """Pass when seen == expected; otherwise fail saying both."""
        self.check_that(what, seen == expected, expected=expected, seen=seen)

    def check_that(self, what: str, holds: bool, *, expected: Any, seen: Any) -> None:
        """Pass when `holds`; the message carries what was expected and what was seen."""
        detail: dict[str, Any] = {"what": what, "at": round(time.time(), 3)}
        if not holds:
            detail.update(outcome="failed", expected=_as_json(expected), seen=_as_json(seen))
            self._record(detail)
            raise ScenarioFailed(f"{what}: expected {_short(expected)}, saw {_short(seen)}")
        line = f"{what}: {_short(seen)}"
        self._record(detail | {"outcome": "passed", "seen": _short(seen)})
        if self.steps:
            self.steps[-1].checks.append(line)
        self._print(f"  ✓ {line}")

    def not_proven(self, what: str, *, reason: str, limit: str) -> None:
        """Say that the engine cannot show `what` as AWS would, and why: a third outcome,
        neither ✓ nor ✗, kept in the record and counted in the summary. `limit` names the
        entry of docs/engine-limits.md (its anchor) that explains it."""
        where = f"{ENGINE_LIMITS}#{limit}"
        self._record(
            {
                "what": what,
                "at": round(time.time(), 3),
                "outcome": NOT_PROVEN,
                "reason": reason,
                "limit": where,
            }
        )
        if self.steps:
            self.steps[-1].checks.append(f"{what}: not proven here ({reason})")
        self._print(f"  ○ not proven here: {what}: {reason} (see {where})")

    @property
    def not_proven_count(self) -> int:
        return sum(
            detail.get("outcome") == NOT_PROVEN
            for step in self.steps
            for detail in step.check_details
        )

    def _record(self, detail: dict[str, Any]) -> None:
        if self.steps:
            self.steps[-1].check_details.append(detail)

    def note(self, text: str) -> None:
        self._print(f"  · {text}")

    @property
    def ok(self) -> bool:
        return self.finished is not None and all(step.ok for step in self.steps)

    def finish(self) -> None:
        self.finished = time.monotonic()

    def report(self) -> dict[str, Any]:
        end = self.finished or time.monotonic()
        return {
            "slug": self.slug,
            "ok": self.ok,
            "started": round(self.started_at, 3),
            "seconds": round(end - self.started, 3),
            "not_proven": self.not_proven_count,
            "steps": [asdict(step) for step in self.steps],
        }

    def save(self, folder: Path, **extra: Any) -> Path:
        """Write the record, with `extra` top-level keys (e.g. what the system did)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.slug}.json"
        path.write_text(json.dumps(self.report() | extra, indent=2, default=str))
        return path

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def _as_json(value: Any, limit: int = 2000) -> Any:
    """`value` itself when it is JSON and small (a report can show its structure), else its
    short text."""
    try:
        if len(json.dumps(value)) <= limit:
            return value
    except (TypeError, ValueError):
        pass
    return _short(value)


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit] + "…"
