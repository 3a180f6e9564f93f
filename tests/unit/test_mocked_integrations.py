"""mocked-integrations: the lead check's logic, and the mock config kept consistent with the
workflow it mocks and with the histories the scenario expects."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox.embedded.launcher import SFN_MOCK_CONFIG
from sandbox.patterns import ROOT, find
from tests.conftest import load_handler

app = load_handler("mocked_integrations")
pattern = find("mocked-integrations")
scenario = pattern.scenario
CONFIG = json.loads((ROOT / SFN_MOCK_CONFIG).read_text())
DEFINITION = json.loads((ROOT / "state_machines" / "mocked_integrations.json").read_text())
STATES = DEFINITION["States"]
MACHINE = pattern.bootstrap.STATE_MACHINE
TEST_CASES: dict[str, dict[str, str]] = CONFIG["StateMachines"][MACHINE]["TestCases"]


def lead(**changes: Any) -> dict[str, Any]:
    return {"leadId": "l-1", "email": "buyer@acme.example", "employees": 120, **changes}


@pytest.mark.parametrize(
    ("changes", "score"),
    [
        ({}, 10 + 12 + 20),
        ({"email": "someone@gmail.com"}, 10 + 12),
        ({"employees": 0}, 30),
        ({"employees": 5000}, 100),
    ],
)
def test_leads_are_scored(changes: dict[str, Any], score: int) -> None:
    assert app.check_lead(lead(**changes)) == {"leadId": "l-1", "eligible": True, "score": score}


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ("a lead", "must be a JSON object"),
        (lead(leadId=""), "leadId must be"),
        (lead(email="not-an-address"), "email is not an address"),
        (lead(email=None), "email is not an address"),
        (lead(employees=-1), "employees must be"),
        (lead(employees="many"), "employees must be"),
    ],
)
def test_bad_leads_are_refused_saying_why(event: Any, reason: str) -> None:
    with pytest.raises(app.InvalidLead, match=reason):
        app.check_lead(event)


def test_the_scenario_expects_a_history_for_every_test_case() -> None:
    assert set(scenario.EXPECTED) == set(TEST_CASES)
    assert set(pattern.bootstrap.test_cases()) == set(TEST_CASES)


@pytest.mark.parametrize("case", sorted(TEST_CASES))
def test_each_test_case_mocks_only_task_states_with_defined_responses(case: str) -> None:
    for state, response in TEST_CASES[case].items():
        assert STATES[state]["Type"] == "Task", f"{case}: {state} is not a Task"
        assert response in CONFIG["MockedResponses"], f"{case}: no response {response}"


@pytest.mark.parametrize("case", sorted(TEST_CASES))
def test_every_task_an_expected_history_schedules_is_mocked(case: str) -> None:
    """A task state missing from a test case would call the real service."""
    scheduled = {line.split()[0] for line in scenario.EXPECTED[case].tasks}
    assert scheduled <= set(TEST_CASES[case]), (
        f"{case} would call {scheduled - set(TEST_CASES[case])}"
    )


def _responses(name: str) -> list[dict[str, Any]]:
    """A mocked response's steps in invocation order, ranges ("1-2") expanded."""
    steps: list[tuple[int, dict[str, Any]]] = []
    for key, step in CONFIG["MockedResponses"][name].items():
        first, _, last = key.partition("-")
        steps.extend((n, step) for n in range(int(first), int(last or first) + 1))
    steps.sort(key=lambda pair: pair[0])
    assert [n for n, _ in steps] == list(range(len(steps))), f"{name}: not numbered 0, 1, ..."
    return [step for _, step in steps]


def _retried(state: str, error: str) -> int:
    """How many retries the state's Retry allows for this error (0: none matches)."""
    for retrier in STATES[state].get("Retry", []):
        if error in retrier["ErrorEquals"] or "States.ALL" in retrier["ErrorEquals"]:
            return int(retrier.get("MaxAttempts", 3))
    return 0


@pytest.mark.parametrize("case", sorted(TEST_CASES))
def test_expected_histories_follow_from_the_mocks_and_the_retry_policy(case: str) -> None:
    """Replay each test case on paper: a Throw the Retry matches schedules the task again
    (up to MaxAttempts retries), anything else goes to the Catch."""
    trace: list[str] = []
    state: str | None = DEFINITION["StartAt"]
    while state is not None and STATES[state]["Type"] == "Task":
        steps = _responses(TEST_CASES[case][state])
        attempt, outcome = 0, None
        while True:
            step = steps[min(attempt, len(steps) - 1)]
            trace.append(f"{state} scheduled")
            if "Return" in step:
                trace.append(f"{state} succeeded")
                outcome = "ok"
                break
            error = step["Throw"]["Error"]
            trace.append(f"{state} failed {error}")
            if attempt < _retried(state, error):
                attempt += 1
                continue
            outcome = "caught"
            break
        if outcome == "ok":
            state = STATES[state].get("Next")
        else:
            state = STATES[state]["Catch"][0]["Next"]
    assert trace == scenario.EXPECTED[case].tasks


def test_lambda_mocks_return_what_lambda_invoke_returns() -> None:
    for case in TEST_CASES.values():
        for step in _responses(case["CheckCustomer"]):
            if "Return" in step:
                assert step["Return"]["StatusCode"] == 200
                assert "score" in step["Return"]["Payload"]
