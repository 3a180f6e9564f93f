"""Faults are injected for real into a real sandbox: the integration tests' one (started if
none runs), or one of their own where the fault is LocalStack's death. Each test prints a
row: fault, what was checked, result, messages in / processed / dead-lettered / lost. The
rows travel with the tests' reports, so a parallel run (xdist) prints them all too."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import pytest

from tests.integration.conftest import aws, sandbox  # noqa: F401  (shared fixtures)


@dataclass
class Accounting:
    fault: str
    checked: str
    messages_in: int = 0
    processed: int = 0
    dead_lettered: int = 0
    lost: int = 0
    orphaned: int = 0
    # Rows of the fault's parts (the poison test: one per queue), printed above its own.
    parts: list[tuple[Accounting, str]] = field(default_factory=list)


ROWS: list[tuple[Accounting, str]] = []
REPORTED_AS = "fault_rows"


@pytest.fixture
def accounting(request: pytest.FixtureRequest) -> Iterator[Accounting]:
    """The test fills it in; its rows go with its teardown report to the table printed at
    the end of the session."""
    row = Accounting(fault=request.node.name, checked="")
    yield row
    outcome = getattr(request.node, "outcome", "passed")
    rows = [*row.parts, (row, outcome)]
    fields = [({**asdict(each), "parts": []}, result) for each, result in rows]
    request.node.user_properties.append((REPORTED_AS, fields))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, rows in report.user_properties if report.when == "teardown" else []:
        if name == REPORTED_AS:
            ROWS.extend((Accounting(**fields), outcome) for fields, outcome in rows)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    report = yield
    if report.when == "call":
        item.outcome = report.outcome  # type: ignore[attr-defined]
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    header = ("fault", "checked", "result", "in", "processed", "dead-lettered", "lost", "orphans")
    lines = [header] + [
        (
            row.fault,
            row.checked,
            outcome,
            str(row.messages_in),
            str(row.processed),
            str(row.dead_lettered),
            str(row.lost),
            str(row.orphaned),
        )
        for row, outcome in ROWS
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    terminalreporter.section("faults")
    for line in lines:
        terminalreporter.write_line(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
        )
