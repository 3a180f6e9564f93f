"""Scenario for mocked-integrations: test a workflow's paths with Step Functions Local style
mocked responses (LocalStack's SFN_MOCK_CONFIG), without calling the services it integrates.

1. The mock config defines one test case per path; each has an expected history here.
2. Every test case, started together with `<stateMachineArn>#<TestCase>`, yields exactly its
   expected history: the states entered, and each task's scheduled / failed / succeeded
   events (the retry and the Catch show in them).
3. The real services were not called: the function logged nothing, the table holds no item
   of this run, the follow-up queue and the alerts topic's queue stayed empty.
4. The same workflow started with its plain ARN calls them for real, for the difference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from typing import Any

from bootstrap.mocked_integrations import MockedIntegrations
from sandbox import executions, items, settings
from sandbox.aws import Aws
from sandbox.harness import Scenario, ScenarioFailed, await_value, holds_for, unique_name
from sandbox.observe import check_logged, depth, drain, log_lines, take, with_field


def _ok(state: str) -> list[str]:
    return [f"{state} scheduled", f"{state} succeeded"]


def _fails(state: str, error: str) -> list[str]:
    return [f"{state} scheduled", f"{state} failed {error}"]


THROTTLED = "Lambda.TooManyRequestsException"
# LocalStack 4.14 reports any mocked Throw on a DynamoDB task as this error, with an empty
# cause (its DynamoDB task's error mapping does not pass mocked failures through).
DYNAMODB_FAILED = "DynamoDB.AmazonDynamoDBException"


@dataclass(frozen=True)
class Expected:
    status: str
    entered: list[str]
    tasks: list[str]
    error: str | None = None
    cause_starts: str = ""


SUCCESS_PATH = ["CheckCustomer", "SaveLead", "AnnounceLead", "LeadAccepted"]
EXPECTED: dict[str, Expected] = {
    "HappyPath": Expected(
        "SUCCEEDED", SUCCESS_PATH, [*_ok("CheckCustomer"), *_ok("SaveLead"), *_ok("AnnounceLead")]
    ),
    "RetryPath": Expected(
        "SUCCEEDED",
        SUCCESS_PATH,
        [
            *_fails("CheckCustomer", THROTTLED),
            *_ok("CheckCustomer"),
            *_ok("SaveLead"),
            *_ok("AnnounceLead"),
        ],
    ),
    "RetriesExhausted": Expected(
        "FAILED",
        ["CheckCustomer", "NotifyFailure", "LeadRejected"],
        [*_fails("CheckCustomer", THROTTLED) * 3, *_ok("NotifyFailure")],
        "LeadRejected",
        f"{THROTTLED}: Rate exceeded (mocked)",
    ),
    "FailurePath": Expected(
        "FAILED",
        ["CheckCustomer", "NotifyFailure", "LeadRejected"],
        [*_fails("CheckCustomer", "InvalidLead"), *_ok("NotifyFailure")],
        "LeadRejected",
        "InvalidLead: email is not an address (mocked)",
    ),
    "SaveLeadFails": Expected(
        "FAILED",
        ["CheckCustomer", "SaveLead", "NotifyFailure", "LeadRejected"],
        [*_ok("CheckCustomer"), *_fails("SaveLead", DYNAMODB_FAILED), *_ok("NotifyFailure")],
        "LeadRejected",
        f"{DYNAMODB_FAILED}: ",
    ),
}


def run(aws: Aws, resources: MockedIntegrations, scenario: Scenario) -> None:
    run_id = unique_name("mi")
    mock_config_has_a_case_per_path(scenario, resources)
    logged_before = real_resources_are_quiet(scenario, aws, resources)
    every_case_yields_its_history(scenario, aws, resources, run_id)
    mocked_services_were_not_called(scenario, aws, resources, run_id, logged_before)
    plain_arn_calls_the_real_services(scenario, aws, resources, run_id)


def mock_config_has_a_case_per_path(scenario: Scenario, resources: MockedIntegrations) -> None:
    with scenario.step(
        "The mock config defines a test case per path, each with an expected history"
    ):
        config = json.loads((settings.PROJECT_ROOT / resources.mock_config).read_text())
        cases = config["StateMachines"][resources.state_machine_name]["TestCases"]
        scenario.note(
            f"{resources.mock_config} (SFN_MOCK_CONFIG),"
            f" state machine {resources.state_machine_name}"
        )
        if sorted(cases) != sorted(EXPECTED):  # the scenario's own precondition, not a check
            raise ScenarioFailed(
                f"the mock config's test cases {sorted(cases)} differ from the expected "
                f"histories {sorted(EXPECTED)}: update one or the other"
            )
        for case, mocks in cases.items():
            scenario.note(
                f"{case}: " + ", ".join(f"{state} -> {mock}" for state, mock in mocks.items())
            )


def real_resources_are_quiet(
    scenario: Scenario, aws: Aws, resources: MockedIntegrations
) -> list[str]:
    """Returns the function's log lines so far, to tell new ones apart later."""
    with scenario.step("Baseline: the real resources are quiet"):
        drained = {name: len(drain(aws, url)) for name, url in _queues(resources).items()}
        scenario.note(f"drained leftovers of earlier runs: {drained}")
        logged_before = log_lines(aws, resources.function)
        scenario.note(f"{len(logged_before)} lines in /aws/lambda/{resources.function} so far")
        return logged_before


def every_case_yields_its_history(
    scenario: Scenario, aws: Aws, resources: MockedIntegrations, run_id: str
) -> None:
    with scenario.step(
        f"{len(EXPECTED)} test cases, started together, each yield their expected history"
    ):
        started = {
            case: executions.start(
                aws,
                f"{resources.state_machine}#{case}",
                _lead(run_id, case),
                name=f"{run_id}-{case}",
            )
            for case in EXPECTED
        }
        done = {case: executions.finish(aws, arn, timeout=60) for case, arn in started.items()}
        for case, want in EXPECTED.items():
            execution = done[case]
            scenario.check(f"{case}: status", expected=want.status, seen=execution.status)
            scenario.check(f"{case}: states entered", expected=want.entered, seen=execution.entered)
            scenario.check(f"{case}: task events", expected=want.tasks, seen=execution.task_trace())
            if want.error:
                scenario.check(
                    f"{case}: error and cause",
                    expected=(want.error, want.cause_starts),
                    seen=(execution.error, (execution.cause or "")[: len(want.cause_starts)]),
                )
        scenario.check(
            "HappyPath output carries the mocked responses",
            expected=({"score": 87}, {"messageId": "mocked-message-id"}),
            seen=(done["HappyPath"].output.get("check"), done["HappyPath"].output.get("announced")),
        )
        scenario.check(
            "RetryPath used the second mocked response",
            expected={"score": 64},
            seen=done["RetryPath"].output.get("check"),
        )


def mocked_services_were_not_called(
    scenario: Scenario,
    aws: Aws,
    resources: MockedIntegrations,
    run_id: str,
    logged_before: list[str],
) -> None:
    with scenario.step("The mocked services were not called"):
        stored = [case for case in EXPECTED if _item(aws, resources, f"{run_id}-{case}")]
        scenario.check(f"items of this run in {resources.table}", expected=[], seen=stored)
        for name, url in _queues(resources).items():
            left = holds_for(partial(depth, aws, url), until=lambda count: count == 0, duration=2)
            scenario.check(f"messages in the {name}", expected=0, seen=left)
        logged_after = log_lines(aws, resources.function)
        scenario.check(
            f"new lines in /aws/lambda/{resources.function}",
            expected=[],
            seen=logged_after[len(logged_before) :],
        )


def plain_arn_calls_the_real_services(
    scenario: Scenario, aws: Aws, resources: MockedIntegrations, run_id: str
) -> None:
    with scenario.step("The plain ARN (no test case) calls the real services, for the difference"):
        good = _lead(run_id, "real")
        bad = _lead(run_id, "real-bad", email="not-an-address")
        started = {
            "good": executions.start(aws, resources.state_machine, good, name=f"{run_id}-real"),
            "bad": executions.start(aws, resources.state_machine, bad, name=f"{run_id}-real-bad"),
        }
        done = {key: executions.finish(aws, arn) for key, arn in started.items()}
        real = done["good"]
        scenario.check("good lead: status", expected="SUCCEEDED", seen=real.status)
        scenario.check(
            "good lead: same history as HappyPath",
            expected=EXPECTED["HappyPath"].tasks,
            seen=real.task_trace(),
        )
        scenario.check(
            "good lead: score from the real function (10 + 120/10 + 20)",
            expected=42,
            seen=real.output["check"]["score"],
        )
        stored_item = _item(aws, resources, good["leadId"]) or {}
        scenario.check(
            "good lead: item in the table",
            expected=42,
            seen=stored_item.get("score"),
        )
        announced = await_value(
            lambda: take(aws, resources.followups.url, with_field("leadId", good["leadId"])),
            timeout=20,
            waiting_for="the follow-up message",
        )
        scenario.check(
            "good lead: follow-up message carries the real score",
            expected=42,
            seen=json.loads(announced["Body"])["score"],
        )
        failed = done["bad"]
        scenario.check(
            "bad lead: status, error, task events",
            expected=("FAILED", "LeadRejected", EXPECTED["FailurePath"].tasks),
            seen=(failed.status, failed.error, failed.task_trace()),
        )
        alert = await_value(
            lambda: take(aws, resources.alerts.url, with_field("leadId", bad["leadId"])),
            timeout=20,
            waiting_for="the alert published to SNS",
        )
        scenario.check(
            "bad lead: alert via SNS",
            expected="InvalidLead",
            seen=json.loads(alert["Body"])["error"],
        )
        check_logged(scenario, aws, resources.function, good["leadId"], "Checked lead")


def _queues(resources: MockedIntegrations) -> dict[str, str]:
    """The queues where the real services' messages would land, by name."""
    return {
        "follow-up queue": resources.followups.url,
        "alerts topic's queue": resources.alerts.url,
    }


def _lead(run_id: str, case: str, **changes: Any) -> dict[str, Any]:
    base = {"leadId": f"{run_id}-{case}", "email": "buyer@acme.example", "employees": 120}
    return {**base, "company": "Acme", **changes}


def _item(aws: Aws, resources: MockedIntegrations, lead_id: str) -> items.Item | None:
    return items.get(aws, resources.table, {"leadId": lead_id})
