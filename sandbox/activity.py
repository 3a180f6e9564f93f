"""What the system itself did during a scenario run, read back from the sandbox for the
report's timeline: Lambda invocations (from the REPORT lines in CloudWatch Logs), Step
Functions state transitions (from execution histories), and messages reaching DLQs.

A pattern's resources are the ones named with its slug (`cqrs-projector`,
`event-aggregation.fifo`). Everything here reads only what falls in the run's time window,
and a failure to read is noted in the record, never raised: a report must not fail a run.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sandbox import observe
from sandbox.aws import Aws

MAX_EXECUTIONS = 40  # per run: enough for any scenario's own, bounded for the report
MAX_LOG_EVENTS = 5000  # per function per run
# Seconds between DLQ depth samples while a run goes on: a message that a scenario takes
# out of a DLQ within one interval of its arrival can be missed (its check still shows it).
DLQ_SAMPLE_INTERVAL = 1.0  # s; each sample asks every DLQ of the pattern for its depth
LOG_DELIVERY_SLACK = 5.0  # seconds after the run in which its last log lines may be stamped

_START = re.compile(r"START RequestId: (\S+)")
_REPORT = re.compile(r"REPORT RequestId: (\S+)\s+Duration: ([\d.]+) ms")
_INIT = re.compile(r"Init Duration: ([\d.]+) ms")
_ERROR = re.compile(r"\[ERROR\]|\tERROR\t|Task timed out|\"errorType\"")


def belongs(name: str, slug: str) -> bool:
    """True for a resource named with the pattern's slug: the slug itself, or the slug then
    `-`, `.` or `_` (no slug is another's prefix in that way)."""
    return name == slug or name.startswith((f"{slug}-", f"{slug}.", f"{slug}_"))


def is_dlq(queue_name: str) -> bool:
    return queue_name.removesuffix(".fifo").endswith("-dlq")


def _epoch(value: datetime | float) -> float:
    return round(value.timestamp() if isinstance(value, datetime) else float(value), 3)


# -- DLQs -----------------------------------------------------------------------------
def dlq_urls(aws: Aws, slug: str) -> dict[str, str]:
    """The pattern's dead-letter queues: name -> URL."""
    urls = aws.client("sqs").list_queues(QueueNamePrefix=slug).get("QueueUrls", [])
    named = {url.rsplit("/", 1)[-1]: url for url in urls}
    return {
        name: url for name, url in sorted(named.items()) if belongs(name, slug) and is_dlq(name)
    }


class DlqWatch:
    """Samples the depth of the pattern's DLQs while a run goes on, so a message that
    reaches a DLQ shows when it arrived even if the scenario then deletes it."""

    def __init__(self, aws: Aws, slug: str) -> None:
        self._aws = Aws(aws.endpoint_url)  # its own clients: it polls from another thread
        self._slug = slug
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"dlq-watch-{slug}", daemon=True)
        self._urls: dict[str, str] = {}
        self._last: dict[str, int] = {}
        self.arrivals: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.problem: str | None = None

    def __enter__(self) -> DlqWatch:
        # The depths before the run, taken now: a message arriving early must count.
        if self._guarded(self._first):
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if not self._thread.is_alive() and self.problem is None:
            self._guarded(self._sample_all)  # the depths at the end

    def _first(self) -> None:
        self._urls = dlq_urls(self._aws, self._slug)
        self._last = {name: observe.depth(self._aws, url) for name, url in self._urls.items()}

    def _watch(self) -> None:
        while not self._stop.wait(DLQ_SAMPLE_INTERVAL):
            if not self._guarded(self._sample_all):
                return

    def _guarded(self, read: Callable[[], None]) -> bool:
        try:
            read()
            return True
        except Exception as error:  # noted in the record, never raised
            self.problem = f"DLQ depths: {type(error).__name__}: {error}"
            return False

    def _sample_all(self) -> None:
        if not self._urls:  # a first run provisions them
            self._urls = dlq_urls(self._aws, self._slug)
        for name, url in self._urls.items():
            self._sample(name, url)

    def _sample(self, name: str, url: str) -> None:
        depth = observe.depth(self._aws, url)
        added = depth - self._last.get(name, 0)
        if added > 0:
            self.arrivals[name].append({"at": round(time.time(), 3), "count": added})
        self._last[name] = depth

    def record(self) -> list[dict[str, Any]]:
        """Per DLQ: messages in it at the end, and when messages arrived during the run."""
        return [
            {"queue": name, "messages_at_end": depth, "arrivals": self.arrivals.get(name, [])}
            for name, depth in sorted(self._last.items())
        ]


# -- Lambda ---------------------------------------------------------------------------
def invocations(aws: Aws, slug: str, since: float, until: float) -> list[dict[str, Any]]:
    """Every invocation of the pattern's functions that started in the window (one that was
    already running as it opened, such as a schedule's, belongs to what came before)."""
    logs = aws.client("logs")
    found: list[dict[str, Any]] = []
    prefix = f"/aws/lambda/{slug}"
    for page in logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=prefix):
        for group in page["logGroups"]:
            function = group["logGroupName"].removeprefix("/aws/lambda/")
            if belongs(function, slug):
                events = _log_events(logs, group["logGroupName"], since, until)
                found.extend(parse_invocations(function, events, started_after=since))
    return sorted(found, key=lambda invocation: invocation["start"])


def _log_events(logs: Any, group: str, since: float, until: float) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    pages = logs.get_paginator("filter_log_events").paginate(
        logGroupName=group,
        startTime=int(since * 1000),
        endTime=int((until + LOG_DELIVERY_SLACK) * 1000),
    )
    for page in pages:
        # Filtered here too, in case the engine ignores the window.
        events.extend(
            e
            for e in page["events"]
            if since * 1000 <= e["timestamp"] <= (until + LOG_DELIVERY_SLACK) * 1000
        )
        if len(events) >= MAX_LOG_EVENTS:
            break
    return events


def parse_invocations(
    function: str, events: list[dict[str, Any]], *, started_after: float = 0.0
) -> list[dict[str, Any]]:
    """Invocations from one function's log events that started at `started_after` or later:
    START ... REPORT per request, per stream. The REPORT line is stamped when the invocation
    ended; it started `Duration` earlier, after `Init Duration` on a cold start; an error line
    between START and REPORT marks it failed."""
    by_stream: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_stream[event.get("logStreamName", "")].append(event)
    found = []
    for stream_events in by_stream.values():
        errors: dict[str, str] = {}
        current = ""
        for event in sorted(stream_events, key=lambda e: e["timestamp"]):
            for line in event["message"].splitlines():
                if started := _START.search(line):
                    current = started.group(1)
                elif reported := _REPORT.search(line):
                    request_id, duration_ms = reported.group(1), float(reported.group(2))
                    start = event["timestamp"] / 1000 - duration_ms / 1000
                    if start < started_after:
                        continue
                    init = _INIT.search(line)
                    found.append(
                        {
                            "function": function,
                            "request_id": request_id,
                            "start": round(start, 3),
                            "seconds": round(duration_ms / 1000, 3),
                            "cold": init is not None,
                            "init_seconds": round(float(init.group(1)) / 1000, 3) if init else 0,
                            "error": errors.get(request_id),
                        }
                    )
                elif current and _ERROR.search(line) and current not in errors:
                    errors[current] = line.strip()[:300]
    return found


# -- Step Functions -------------------------------------------------------------------
def executions(aws: Aws, slug: str, since: float, until: float) -> list[dict[str, Any]]:
    """Executions of the pattern's state machines started in the window, with the state
    transitions from their histories (at most MAX_EXECUTIONS, the latest)."""
    sfn = aws.client("stepfunctions")
    started: list[tuple[str, dict[str, Any]]] = []
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if belongs(machine["name"], slug):
                started.extend(
                    (machine["name"], e)
                    for e in _executions_since(sfn, machine["stateMachineArn"], since, until)
                )
    started.sort(key=lambda pair: pair[1]["startDate"])
    return [_execution(sfn, machine, execution) for machine, execution in started[-MAX_EXECUTIONS:]]


def _executions_since(sfn: Any, machine_arn: str, since: float, until: float) -> list[Any]:
    """Executions started in the window; the list comes newest first, so reading stops at
    the first one older than the run."""
    found: list[Any] = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine_arn):
        for execution in page["executions"]:
            started = _epoch(execution["startDate"])
            if started < since:
                return found
            if started <= until:
                found.append(execution)
    return found


def _execution(sfn: Any, machine: str, execution: dict[str, Any]) -> dict[str, Any]:
    pages = sfn.get_paginator("get_execution_history").paginate(
        executionArn=execution["executionArn"]
    )
    history = [event for page in pages for event in page["events"]]
    stop = execution.get("stopDate")
    return {
        "state_machine": machine,
        "name": execution["name"],
        "status": execution["status"],
        "start": _epoch(execution["startDate"]),
        "stop": _epoch(stop) if stop else None,
        "states": transitions(history),
    }


def transitions(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each state entered, when it was exited, and the first failure inside it (a failed
    task, a caught error). Exits are paired with entries of the same state name in order,
    which holds for Map and Parallel iterations too."""
    states: list[dict[str, Any]] = []
    open_by_name: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
    for event in history:
        at = _epoch(event["timestamp"])
        if entered := event.get("stateEnteredEventDetails"):
            state = {"name": entered["name"], "entered": at, "exited": None, "error": None}
            states.append(state)
            open_by_name[entered["name"]].append(state)
        elif exited := event.get("stateExitedEventDetails"):
            if open_by_name[exited["name"]]:
                open_by_name[exited["name"]].popleft()["exited"] = at
        elif event["type"].endswith(("Failed", "TimedOut", "Aborted")):
            error = _failure(event)
            still_open = [s for s in states if s["exited"] is None]
            if still_open and still_open[-1]["error"] is None:
                still_open[-1]["error"] = error
            elif event["type"].startswith("Execution"):
                states.append({"name": event["type"], "entered": at, "exited": at, "error": error})
    return states


def _failure(event: dict[str, Any]) -> str:
    details = next((v for k, v in event.items() if k.endswith("EventDetails")), {}) or {}
    error, cause = details.get("error", event["type"]), details.get("cause", "")
    return f"{error}: {cause}"[:300] if cause else str(error)


# -- all of it ------------------------------------------------------------------------
def unread(since: float, until: float, why: str) -> dict[str, Any]:
    """The record of a run whose system could not be read at all."""
    window = [round(since, 3), round(until, 3)]
    return {"window": window, "problems": [why], "invocations": [], "executions": [], "dlqs": []}


def collect(
    aws: Aws, slug: str, since: float, until: float, dlqs: DlqWatch | None = None
) -> dict[str, Any]:
    """What the system did in [since, until]: each part read on its own, so one that
    cannot be read is noted under `problems` and the others still come through."""
    record: dict[str, Any] = {"window": [round(since, 3), round(until, 3)], "problems": []}
    parts = {
        "invocations": lambda: invocations(aws, slug, since, until),
        "executions": lambda: executions(aws, slug, since, until),
    }
    for key, read in parts.items():
        try:
            record[key] = read()
        except Exception as error:  # noted in the record, never raised
            record[key] = []
            record["problems"].append(f"{key}: {type(error).__name__}: {error}")
    record["dlqs"] = dlqs.record() if dlqs else []
    if dlqs and dlqs.problem:
        record["problems"].append(dlqs.problem)
    return record
