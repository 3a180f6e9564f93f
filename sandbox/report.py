"""The report: one self-contained HTML file with the last run of every scenario.

Per pattern: a summary row, and a timeline on one time axis of what the scenario did
(steps, checks) and what the system did meanwhile (Lambda invocations, Step Functions
states, DLQ arrivals), beside the pattern's diagram. No network is needed to read it: CSS
and JS are inline. The diagram is shown as its Mermaid source, which reads well as text;
rendering it would mean inlining mermaid.js (about 3 MB) into every report.

Records from older runs (without start times) still render: their steps are laid end to
end and their checks placed at the end of their step.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from sandbox.patterns import REPORTS_DIR, ROOT, Pattern, catalogue

TEMPLATES = Path(__file__).parent / "templates"
REPORT_FILE = "index.html"
OUTCOMES = ("passed", "failed", "not proven")


@dataclass
class Mark:
    """Something on a lane: a bar from `start` lasting `seconds`, or a point (seconds 0)."""

    start: float
    seconds: float
    label: str
    kind: str  # CSS class: passed, failed, not-proven, cold, warm, error, state...
    detail: str = ""
    left: float = 0.0  # percent of the axis, set by Timeline.place
    width: float = 0.0
    row: int = 0  # within its lane: overlapping invocations stack


MAX_ROWS = 6  # a lane grows to at most this many rows; more overlaps share the last


@dataclass
class Lane:
    title: str
    group: str  # scenario, lambda, stepfunctions, dlq
    marks: list[Mark] = field(default_factory=list)
    rows: int = 1

    def stack(self) -> None:
        """Give each bar the first row free at its start, so concurrent ones do not hide
        each other."""
        row_ends: list[float] = []
        for mark in sorted(self.marks, key=lambda m: m.start):
            free = next((i for i, end in enumerate(row_ends) if end <= mark.start), None)
            if free is None:
                free = min(len(row_ends), MAX_ROWS - 1)
                if free == len(row_ends):
                    row_ends.append(0)
            mark.row, row_ends[free] = free, max(row_ends[free], mark.start + mark.seconds)
        self.rows = max(1, len(row_ends))


@dataclass
class Timeline:
    lanes: list[Lane]
    seconds: float
    ticks: list[tuple[float, str]]  # (percent, label)


@dataclass
class Check:
    step: str
    what: str
    outcome: str
    at: float
    seen: Any = None
    expected: Any = None
    reason: str | None = None  # why the engine cannot show it (outcome "not proven")


@dataclass
class Run:
    """A pattern's last recorded run, shaped for the page."""

    pattern: Pattern
    record: dict[str, Any] | None
    diagram: str | None
    checks: list[Check] = field(default_factory=list)
    timeline: Timeline | None = None
    unreadable: str | None = None  # why its record could not be shown

    @property
    def verdict(self) -> str:
        if self.record is None:
            return "not run"
        return "passed" if self.record.get("ok") else "failed"

    def count(self, outcome: str) -> int:
        return sum(check.outcome == outcome for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.outcome == "failed"]

    @property
    def problems(self) -> list[str]:
        return list(((self.record or {}).get("activity") or {}).get("problems", []))


def load_records(folder: Path) -> dict[str, dict[str, Any]]:
    """The saved records by slug; a file that is not a record is skipped."""
    records = {}
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and "slug" in record and "steps" in record:
            records[record["slug"]] = record
    return records


def diagram(page: Path) -> str | None:
    """The first Mermaid block of the pattern's page, its HTML line breaks and entities made
    plain text."""
    try:
        text = page.read_text()
    except OSError:
        return None
    found = re.search(r"```mermaid\n(.*?)```", text, re.DOTALL)
    if not found:
        return None
    return html.unescape(re.sub(r"<br\s*/?>", " / ", found.group(1))).rstrip()


def checks_of(record: dict[str, Any]) -> list[Check]:
    """Every check in the record, with its outcome: the recorded `outcome` where there is
    one; for older records, the `checks` lines passed and a failed step's error failed."""
    found: list[Check] = []
    clock = float(record.get("started", 0))
    for step in record["steps"]:
        start = float(step.get("started", clock))
        end = start + float(step.get("seconds", 0))
        clock = end
        details = step.get("check_details")
        if details is None:
            details = [{"what": line, "outcome": "passed"} for line in step.get("checks", [])]
        for detail in details:
            found.append(
                Check(
                    step=step["title"],
                    what=detail["what"],
                    outcome=detail.get("outcome", "passed"),
                    at=float(detail.get("at", end)),
                    seen=detail.get("seen"),
                    expected=detail.get("expected"),
                    reason=detail.get("reason"),
                )
            )
        if step.get("error") and not any(d.get("outcome") == "failed" for d in details):
            found.append(Check(step["title"], step["error"], "failed", end))
    return found


def timeline(record: dict[str, Any], checks: list[Check]) -> Timeline:
    """Lanes on one time axis starting when the run started."""
    origin = float(record.get("started", 0))
    steps = Lane("steps", "scenario")
    clock = origin
    for step in record["steps"]:
        start = float(step.get("started", clock))
        clock = start + float(step.get("seconds", 0))
        kind = "step-ok" if step.get("ok", True) else "failed"
        steps.marks.append(Mark(start, float(step.get("seconds", 0)), step["title"], kind))
    check_lane = Lane("checks", "scenario")
    for check in checks:
        if check.outcome == "failed":
            detail = _expected_and_seen(check)
        elif check.reason:
            detail = f"{check.outcome} here: {check.reason}"
        else:
            detail = f"{check.outcome}" + (
                f": {_text(check.seen)}" if check.seen is not None else ""
            )
        check_lane.marks.append(Mark(check.at, 0, check.what, _css(check.outcome), detail))
    lanes = [steps, check_lane, *_system_lanes(record.get("activity") or {})]
    end = max(
        [origin + float(record.get("seconds", 0))]
        + [mark.start + mark.seconds for lane in lanes for mark in lane.marks]
    )
    return place(lanes, origin, end)


def _system_lanes(activity: dict[str, Any]) -> list[Lane]:
    lanes: dict[str, Lane] = {}
    for call in activity.get("invocations", []):
        lane = lanes.setdefault(call["function"], Lane(call["function"], "lambda"))
        kind = "error" if call.get("error") else ("cold" if call.get("cold") else "warm")
        init = f", init {call['init_seconds'] * 1000:.0f} ms" if call.get("cold") else ""
        text = f"{'cold' if call.get('cold') else 'warm'}, {call['seconds'] * 1000:.0f} ms{init}"
        if call.get("error"):
            text += f" — {call['error']}"
        lane.marks.append(Mark(call["start"], call["seconds"], call["function"], kind, text))
    for execution in activity.get("executions", []):
        title = f"{execution['state_machine']} / {execution['name']} ({execution['status']})"
        lane = Lane(title, "stepfunctions")
        for state in execution.get("states", []):
            exited = state.get("exited") or state["entered"]
            kind = "error" if state.get("error") else "state"
            lane.marks.append(
                Mark(
                    state["entered"],
                    exited - state["entered"],
                    state["name"],
                    kind,
                    state.get("error") or "",
                )
            )
        lanes[title] = lane
    for dlq in activity.get("dlqs", []):
        lane = Lane(f"{dlq['queue']} (holds {dlq['messages_at_end']})", "dlq")
        for arrival in dlq.get("arrivals", []):
            label = f"{arrival['count']} message(s) arrived"
            lane.marks.append(Mark(arrival["at"], 0, label, "dead-letter"))
        lanes[dlq["queue"]] = lane
    for lane in lanes.values():
        lane.stack()
    return list(lanes.values())


def place(lanes: list[Lane], origin: float, end: float) -> Timeline:
    """Set each mark's position as percentages of [origin, end]; ticks at round seconds."""
    span = max(end - origin, 0.001)
    for lane in lanes:
        for mark in lane.marks:
            mark.left = round(100 * (mark.start - origin) / span, 3)
            mark.width = round(100 * mark.seconds / span, 3)
    step = _tick_step(span)
    ticks = [
        (round(100 * n * step / span, 3), f"{n * step:g} s")
        for n in range(int(math.floor(span / step)) + 1)
        if n * step / span <= 0.97  # a label at the very end would overflow the axis
    ]
    return Timeline(lanes, round(span, 3), ticks)


def _tick_step(span: float) -> float:
    """A round step giving at most ~10 ticks."""
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if span / step <= 10:
            return step
    return 1200


def _css(outcome: str) -> str:
    return re.sub(r"[^a-z]+", "-", outcome.lower()).strip("-")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _expected_and_seen(check: Check) -> str:
    if check.expected is None and check.seen is None:
        return ""
    return f"expected {_text(check.expected)}, saw {_text(check.seen)}"


def runs(folder: Path) -> list[Run]:
    """Every pattern in the catalogue, with its last record if there is one."""
    records = load_records(folder)
    found = []
    for pattern in catalogue():
        record = records.get(pattern.slug)
        run = Run(pattern, record, diagram(pattern.page))
        if record is not None:
            try:
                run.checks = checks_of(record)
                run.timeline = timeline(record, run.checks)
            except (KeyError, TypeError, ValueError) as error:
                run.record, run.checks = None, []
                run.unreadable = (
                    f"{pattern.slug}.json is not a record this report can read: {error!r}"
                )
        found.append(run)
    return found


def render(all_runs: list[Run], pages_base: str) -> str:
    """The page; `pages_base` is the patterns' pages folder relative to where it is saved."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"])
    )
    environment.filters["as_text"] = _text
    return environment.get_template("report.html").render(
        runs=all_runs, outcomes=OUTCOMES, pages_base=pages_base, css=_css
    )


def write(folder: Path = REPORTS_DIR) -> Path:
    """Write <folder>/index.html from the records in <folder>; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT_FILE
    path.write_text(render(runs(folder), os.path.relpath(ROOT / "docs" / "patterns", folder)))
    return path
