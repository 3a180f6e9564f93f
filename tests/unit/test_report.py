"""The HTML report, rendered from synthetic records (no sandbox needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sandbox import report
from sandbox.patterns import catalogue
from tests.conftest import failed_record


def _write(folder: Path, *records: dict) -> str:
    return report.write(_with(folder, *records)).read_text()


def test_every_pattern_is_in_the_summary_run_or_not(tmp_path: Path) -> None:
    page = _write(tmp_path, failed_record("cqrs"))
    for pattern in catalogue():
        assert f'id="row-{pattern.slug}"' in page and f'id="{pattern.slug}"' in page
    assert "No run recorded yet: <code>make scenario P=webhooks</code>" in page


def test_a_failed_check_is_counted_and_marked_with_expected_and_seen(tmp_path: Path) -> None:
    run = next(r for r in report.runs(_with(tmp_path, failed_record("cqrs"))) if r.record)
    assert (run.verdict, run.count("passed"), run.count("failed"), run.count("not proven")) == (
        "failed",
        1,
        1,
        1,
    )
    checks = next(lane for lane in run.timeline.lanes if lane.title == "checks")
    failed = next(mark for mark in checks.marks if mark.kind == "failed")
    assert failed.detail == 'expected ["a", "b", "c"], saw ["a", "b"]'
    assert failed.left == 3.5 / 4 * 100  # 3.5 s into a 4 s run
    page = report.write(tmp_path).read_text()
    assert 'class="callout failed-check"' in page and "✗ items written" in page


def test_what_the_system_did_gets_a_lane_each(tmp_path: Path) -> None:
    run = next(r for r in report.runs(_with(tmp_path, failed_record("cqrs"))) if r.record)
    lanes = {lane.title: lane for lane in run.timeline.lanes}
    assert lanes["cqrs-writer"].marks[0].kind == "error"
    assert "cold, 500 ms, init 100 ms" in lanes["cqrs-writer"].marks[0].detail
    assert lanes["cqrs / run-1 (FAILED)"].marks[0].detail == "States.TaskFailed: boom"
    assert lanes["cqrs-dlq (holds 1)"].marks[0].label == "1 message(s) arrived"


def test_a_record_from_before_check_details_still_renders(tmp_path: Path) -> None:
    old = {
        "slug": "cqrs",
        "ok": False,
        "seconds": 3.0,
        "steps": [
            {"title": "One", "seconds": 1.0, "ok": True, "checks": ["a: 1", "b: 2"], "error": None},
            {"title": "Two", "seconds": 2.0, "ok": False, "checks": [], "error": "WaitTimedOut: x"},
        ],
    }
    run = next(r for r in report.runs(_with(tmp_path, old)) if r.record)
    assert [(c.what, c.outcome, c.at) for c in run.checks] == [
        ("a: 1", "passed", 1.0),
        ("b: 2", "passed", 1.0),
        ("WaitTimedOut: x", "failed", 3.0),
    ]
    assert [mark.left for mark in run.timeline.lanes[0].marks] == [0, 33.333]


def test_the_page_needs_no_network_and_skips_files_that_are_not_records(tmp_path: Path) -> None:
    (tmp_path / "notes.json").write_text("[1, 2]")
    (tmp_path / "broken.json").write_text("{")
    page = _write(tmp_path, failed_record("cqrs"))
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|https?://", page)


def test_the_diagram_is_the_pages_mermaid_source_as_plain_text(tmp_path: Path) -> None:
    page = tmp_path / "demo.md"
    page.write_text("# Demo\n\n```mermaid\nflowchart LR\n  A[&lt;key&gt;<br/>x] --> B\n```\n")
    assert report.diagram(page) == "flowchart LR\n  A[<key> / x] --> B"
    assert report.diagram(tmp_path / "missing.md") is None


def _with(folder: Path, *records: dict) -> Path:
    for record in records:
        (folder / f"{record['slug']}.json").write_text(json.dumps(record))
    return folder


def test_overlapping_invocations_stack_in_rows_of_their_lane() -> None:
    lane = report.Lane("fn", "lambda")
    lane.marks = [report.Mark(start, 1.0, "fn", "warm") for start in (0, 0.5, 1.0, 1.6)]
    lane.stack()
    assert [mark.row for mark in lane.marks] == [0, 1, 0, 1] and lane.rows == 2


def test_a_record_it_cannot_read_is_said_on_the_page_not_raised(tmp_path: Path) -> None:
    page = _write(tmp_path, {"slug": "cqrs", "ok": True, "steps": [{"seconds": "soon"}]})
    assert "cqrs.json is not a record this report can read" in page
