"""The report as a person opens it: every pattern listed, a failed check on its timeline."""

from __future__ import annotations

import json
from pathlib import Path

from sandbox import report
from sandbox.patterns import catalogue
from tests.browser.conftest import screenshot
from tests.conftest import failed_record


def test_the_report_lists_every_pattern_and_marks_a_failed_check(page, tmp_path: Path) -> None:
    (tmp_path / "cqrs.json").write_text(json.dumps(failed_record("cqrs")))
    page.goto(report.write(tmp_path).as_uri())

    rows = page.locator("table.summary tbody tr")
    assert rows.count() == len(catalogue())
    assert sorted(rows.locator("td:first-child").all_inner_texts()) == sorted(
        p.slug for p in catalogue()
    )
    assert rows.filter(has_text="cqrs").locator("td").nth(1).inner_text() == "failed"

    timeline = page.locator("#cqrs .timeline")
    marker = timeline.locator(".point.failed")
    callout = timeline.locator(".failed-check")
    marker.scroll_into_view_if_needed()
    assert marker.is_visible() and callout.is_visible()
    assert "items written" in callout.inner_text()
    assert 'expected ["a", "b", "c"], saw ["a", "b"]' in callout.inner_text()
    # The callout stands where the check failed: 3.5 s into the 4 s run, right-aligned there.
    track = callout.locator("xpath=..").bounding_box()
    box = callout.bounding_box()
    assert abs(box["x"] + box["width"] - (track["x"] + 0.875 * track["width"])) < 2
    screenshot(page.locator("#cqrs"), "report-failed-check")
