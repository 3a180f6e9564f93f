"""A scenario's record holds what the system did during the run, read from the sandbox."""

from __future__ import annotations

import io
import json

import pytest

from sandbox import patterns
from sandbox.aws import Aws


def _run(slug: str, aws: Aws) -> dict:
    scenario = patterns.run_scenario(patterns.find(slug), aws, out=io.StringIO())
    assert scenario.ok
    return json.loads((patterns.REPORTS_DIR / f"{slug}.json").read_text())


@pytest.mark.integration
def test_lambda_invocations_and_dlq_arrivals_are_recorded(aws: Aws) -> None:
    record = _run("scheduled-ingest", aws)
    happened = record["activity"]
    assert happened["problems"] == []
    calls = happened["invocations"]
    assert {call["function"] for call in calls} == {"scheduled-ingest-writer"}
    assert all(record["started"] <= call["start"] for call in calls)
    assert any(call["error"] for call in calls)  # the malformed message fails, then is retried
    (dlq,) = happened["dlqs"]
    assert dlq["queue"] == "scheduled-ingest-dlq" and sum(a["count"] for a in dlq["arrivals"]) >= 1


@pytest.mark.integration
def test_step_functions_transitions_are_recorded(aws: Aws) -> None:
    happened = _run("business-rules", aws)["activity"]
    assert happened["problems"] == []
    executions = happened["executions"]
    assert executions and {e["state_machine"] for e in executions} == {"business-rules"}
    for execution in executions:
        assert execution["status"] in ("SUCCEEDED", "FAILED")
        assert all(s["exited"] is None or s["entered"] <= s["exited"] for s in execution["states"])
    assert any(s["error"] for e in executions for s in e["states"])  # rejected requests
