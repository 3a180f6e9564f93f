"""A scenario's record holds what the system did during the run, read from the sandbox."""

from __future__ import annotations

import io
import json

import pytest

from sandbox import activity, patterns, provision
from sandbox.aws import Aws
from sandbox.harness import await_value, unique_name


def _run(slug: str, aws: Aws) -> dict:
    scenario = patterns.run_scenario(patterns.find(slug), aws, out=io.StringIO())
    assert scenario.ok
    return json.loads((patterns.REPORTS_DIR / f"{slug}.json").read_text())


@pytest.mark.integration
def test_lambda_invocations_are_recorded(aws: Aws) -> None:
    record = _run("scheduled-ingest", aws)
    happened = record["activity"]
    assert happened["problems"] == []
    calls = happened["invocations"]
    assert {call["function"] for call in calls} == {"scheduled-ingest-writer"}
    assert all(record["started"] <= call["start"] for call in calls)
    assert any(call["error"] for call in calls)  # the malformed message fails, then is retried
    (dlq,) = happened["dlqs"]
    assert dlq["queue"] == "scheduled-ingest-dlq"


@pytest.mark.integration
def test_dlq_arrivals_are_recorded(aws: Aws) -> None:
    """A message that stays in a DLQ for longer than a sample shows as an arrival (one a
    scenario deletes at once may be missed by design: the depth is sampled)."""
    # GIVEN a pattern-like slug with one DLQ, watched
    slug = unique_name("watched")
    queue = provision.ensure_queue(aws, f"{slug}-dlq")
    with activity.DlqWatch(aws, slug) as watch:
        # WHEN a message arrives in it
        aws.client("sqs").send_message(QueueUrl=queue.url, MessageBody="dead")
        # THEN the watch sees it arrive
        await_value(lambda: watch.arrivals.get(queue.name), timeout=10, interval=0.1)
    (dlq,) = watch.record()
    assert (dlq["queue"], dlq["messages_at_end"]) == (queue.name, 1)
    assert sum(arrival["count"] for arrival in dlq["arrivals"]) == 1
    aws.client("sqs").delete_queue(QueueUrl=queue.url)


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
