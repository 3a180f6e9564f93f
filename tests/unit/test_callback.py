"""callback's job API logic, and the workflow's shape (callback task, heartbeat, polling loop)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT, load_handler

app = load_handler("callback")
DEFINITION = json.loads((ROOT / "state_machines" / "callback.json").read_text())


@pytest.mark.parametrize(
    ("polls", "status"), [(0, "RUNNING"), (1, "RUNNING"), (2, "RUNNING"), (3, "DONE"), (4, "DONE")]
)
def test_a_job_is_done_from_the_required_poll_on(polls: int, status: str) -> None:
    assert app.status_after(polls, 3) == status


def test_a_done_job_carries_its_result() -> None:
    assert app.describe("job-1", 3, 3) == {
        "jobId": "job-1",
        "status": "DONE",
        "polls": 3,
        "result": {"jobId": "job-1", "outcome": "processed"},
    }
    assert "result" not in app.describe("job-1", 1, 3)


@pytest.mark.parametrize(
    "event", [{"action": "start"}, {"action": "status", "jobId": ""}, {"action": "cancel"}]
)
def test_malformed_job_requests_are_refused(event: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLLS_UNTIL_DONE", "3")
    with pytest.raises(app.InvalidJobRequest):
        app.handler(event, None)


def test_the_worker_task_waits_for_its_token_with_a_heartbeat_and_catches_both_timeouts() -> None:
    task = DEFINITION["States"]["Dispatch To Worker"]
    assert task["Resource"] == "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
    assert task["Parameters"]["MessageBody"]["taskToken.$"] == "$$.Task.Token"
    assert task["HeartbeatSeconds"] == 5
    caught = {error: c["Next"] for c in task["Catch"] for error in c["ErrorEquals"]}
    assert caught["States.HeartbeatTimeout"] == "Worker Lost"
    assert caught["States.ALL"] == "Worker Rejected"


def test_the_polling_loop_waits_then_checks_the_status_again() -> None:
    states = DEFINITION["States"]
    assert states["Wait For Job"] == {"Type": "Wait", "Seconds": 1, "Next": "Get Job Status"}
    assert states["Job Done?"]["Default"] == "Wait For Job"
