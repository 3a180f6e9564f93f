"""Every pattern's scenario, end to end, against the running sandbox (the CI suite).

The scenarios run side by side, `patterns.SCENARIO_JOBS` at a time (each pattern has its own
resources); each test waits for its own and fails with the scenario's whole account."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future, wait
from typing import Any

import pytest

from sandbox import patterns
from sandbox.aws import Aws

pytestmark = pytest.mark.waits_long


@pytest.fixture(scope="session")
def scenario_runs(aws: Aws) -> Iterator[dict[str, Future[patterns.ScenarioRun]]]:
    runs = patterns.start_scenarios(patterns.catalogue(), aws)
    yield runs
    wait(runs.values())  # none still running when the session ends


@pytest.mark.integration
@pytest.mark.parametrize("pattern", patterns.catalogue(), ids=lambda p: p.slug)
def test_scenario_passes(
    pattern: patterns.Pattern, scenario_runs: dict[str, Future[patterns.ScenarioRun]]
) -> None:
    run = scenario_runs[pattern.slug].result()
    assert run.scenario.ok, run.output


def _record_of(slug: str, runs: dict[str, Future[patterns.ScenarioRun]]) -> dict[str, Any]:
    """The saved record of a scenario run by this suite, once it passed."""
    assert runs[slug].result().scenario.ok
    record: dict[str, Any] = json.loads((patterns.REPORTS_DIR / f"{slug}.json").read_text())
    return record


@pytest.mark.integration
def test_the_record_holds_the_runs_lambda_invocations(
    scenario_runs: dict[str, Future[patterns.ScenarioRun]],
) -> None:
    record = _record_of("scheduled-ingest", scenario_runs)
    happened = record["activity"]
    assert happened["problems"] == []
    calls = happened["invocations"]
    assert {call["function"] for call in calls} == {"scheduled-ingest-writer"}
    assert all(record["started"] <= call["start"] for call in calls)
    assert any(call["error"] for call in calls)  # the malformed message fails, then is retried
    assert [dlq["queue"] for dlq in happened["dlqs"]] == ["scheduled-ingest-dlq"]


@pytest.mark.integration
def test_the_record_holds_the_runs_step_functions_transitions(
    scenario_runs: dict[str, Future[patterns.ScenarioRun]],
) -> None:
    happened = _record_of("business-rules", scenario_runs)["activity"]
    assert happened["problems"] == []
    executions = happened["executions"]
    assert executions and {e["state_machine"] for e in executions} == {"business-rules"}
    for execution in executions:
        assert execution["status"] in ("SUCCEEDED", "FAILED")
        assert all(s["exited"] is None or s["entered"] <= s["exited"] for s in execution["states"])
    assert any(s["error"] for e in executions for s in e["states"])  # rejected requests
