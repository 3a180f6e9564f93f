"""The live page as a person uses it: every pattern listed, its resources shown, and a
scenario run from the page streams its account and ends with its result."""

from __future__ import annotations

import pytest

from sandbox.patterns import catalogue
from tests.browser.conftest import screenshot

FAST_PATTERN = "scheduled-ingest"  # one of the quickest scenarios (~10 s)


def test_the_live_page_lists_every_pattern_and_links_the_report(page, live_page: str) -> None:
    page.goto(live_page)
    listed = page.locator("details.pattern").evaluate_all("nodes => nodes.map(n => n.dataset.slug)")
    assert sorted(listed) == sorted(p.slug for p in catalogue())
    screenshot(page, "live-page")
    page.click("a[href='/report']")
    assert page.locator("table.summary tbody tr").count() == len(catalogue())


@pytest.mark.integration
def test_a_scenario_run_from_the_page_ends_with_its_result(
    page, live_page: str, sandbox: object
) -> None:
    page.goto(live_page)
    pattern = page.locator(f"#pattern-{FAST_PATTERN}")
    pattern.locator("summary").click()
    table = pattern.locator(".resources table").first
    table.wait_for(timeout=30_000)  # its resources, read from the sandbox

    pattern.locator("button.run").click()
    pattern.locator(".account").filter(has_text=f"━━ {FAST_PATTERN}").wait_for(timeout=30_000)
    another = page.request.post(f"{live_page}/api/patterns/cqrs/run")
    assert another.status == 409, "a second run must wait for the first"
    result = pattern.locator(".result")
    page.wait_for_function(
        "node => !['', 'running…'].includes(node.textContent)",
        arg=result.element_handle(),
        timeout=180_000,
    )
    account = pattern.locator(".account").inner_text()
    screenshot(pattern, "live-page-run")
    assert result.inner_text() == "passed", account
    assert f"PASSED {FAST_PATTERN}" in account and "Report: " in account
