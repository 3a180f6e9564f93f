"""Scenario for business-rules: rules kept in DynamoDB, evaluated by a workflow, one audit
row per request.

1. The seeded rule set is in the rules table.
2. Seven requests (started together, one exactly at a limit) each get the decision their
   rules give: the execution's output, the path it took through the workflow, and its audit
   row all agree.
3. Rules are data: a rule set written now decides the next request, no deploy.
4. Bad input (no rule set named, a fact of the wrong type, an unknown rule set, a body that
   is not an object) fails in a named state; the history shows the Catch that fired, and the
   request is audited as REJECTED with nothing else written.
5. Every request of this run has exactly one audit row.
"""

from __future__ import annotations

from typing import Any

from bootstrap.business_rules import BusinessRules
from sandbox import executions, items
from sandbox.aws import Aws
from sandbox.executions import Execution
from sandbox.harness import Scenario, unique_name

DECIDED_PATH = [
    "ValidateRequest",
    "LoadRuleSet",
    "EvaluateRules",
    "RecordDecision",
    "RouteDecision",
]
END_STATE = {"APPROVED": "Approved", "MANUAL_REVIEW": "SentToReview", "DECLINED": "Declined"}

# (case, facts, expected decision, the rule that decides) against the seeded purchase-approval
REQUESTS = [
    (
        "small",
        {"amount": 50, "category": "books", "customerTier": "standard"},
        "APPROVED",
        "default",
    ),
    (  # "over 1000" is strict: exactly 1000 is not over it
        "standard-1000",
        {"amount": 1000, "category": "books", "customerTier": "standard"},
        "APPROVED",
        "default",
    ),
    (
        "standard-2500",
        {"amount": 2500, "category": "electronics", "customerTier": "standard"},
        "MANUAL_REVIEW",
        "standard-over-1000",
    ),
    (
        "gold-2500",
        {"amount": 2500, "category": "electronics", "customerTier": "gold"},
        "APPROVED",
        "default",
    ),
    (
        "gold-7000",
        {"amount": 7000, "category": "electronics", "customerTier": "gold"},
        "MANUAL_REVIEW",
        "gold-over-5000",
    ),
    (
        "gold-20000",
        {"amount": 20000, "category": "cars", "customerTier": "gold"},
        "DECLINED",
        "over-hard-limit",
    ),
    (
        "gambling",
        {"amount": 10, "category": "gambling", "customerTier": "gold"},
        "DECLINED",
        "blocked-category",
    ),
]


def run(aws: Aws, resources: BusinessRules, scenario: Scenario) -> None:
    requested = Requests(aws, resources, unique_name("br"))
    check_seeded_rules(aws, resources, scenario, requested)
    check_decisions(aws, resources, scenario, requested)
    check_rules_are_data(aws, resources, scenario, requested)
    check_bad_input(aws, resources, scenario, requested)
    check_one_audit_row_each(aws, resources, scenario, requested)


class Requests:
    """Requests of this run, started as executions named `<run id>-<case>`, and their audit
    rows; keeps every request id started."""

    def __init__(self, aws: Aws, resources: BusinessRules, run_id: str) -> None:
        self.aws = aws
        self.resources = resources
        self.run_id = run_id
        self.audited: list[str] = []

    def audit_row(self, request_id: str) -> items.Item | None:
        return items.get(self.aws, self.resources.audit_table, {"requestId": request_id})

    def start_all(self, cases: dict[str, Any], state_machine: str) -> dict[str, Execution]:
        """Start every case at once, then wait for each to finish."""
        started = {
            case: executions.start(self.aws, state_machine, payload, name=f"{self.run_id}-{case}")
            for case, payload in cases.items()
        }
        self.audited.extend(f"{self.run_id}-{case}" for case in cases)
        return {case: executions.finish(self.aws, arn, timeout=60) for case, arn in started.items()}


def check_seeded_rules(
    aws: Aws, resources: BusinessRules, scenario: Scenario, requested: Requests
) -> None:
    with scenario.step("The rules live in DynamoDB (seeded by the bootstrap)"):
        stored = items.get(aws, resources.rules_table, {"ruleSet": "purchase-approval"})
        scenario.check_that(
            "rule set purchase-approval stored",
            stored is not None,
            expected="an item",
            seen="an item" if stored else None,
        )
        rule_set = stored or {}
        scenario.check("version", expected=3, seen=rule_set["version"])
        scenario.check(
            "rules, in order",
            expected=[
                "blocked-category",
                "over-hard-limit",
                "standard-over-1000",
                "gold-over-5000",
            ],
            seen=[r["id"] for r in rule_set["rules"]],
        )
        scenario.check(
            "default decision", expected="APPROVED", seen=rule_set["default"]["decision"]
        )


def check_decisions(
    aws: Aws, resources: BusinessRules, scenario: Scenario, requested: Requests
) -> None:
    with scenario.step(
        f"{len(REQUESTS)} requests, started together, each get the decision their rules give"
    ):
        done = requested.start_all(
            {
                case: {"ruleSet": "purchase-approval", "facts": facts}
                for case, facts, _, _ in REQUESTS
            },
            resources.state_machine,
        )
        for case, facts, decision, rule in REQUESTS:
            execution = done[case]
            scenario.note(f"{case}: {facts}")
            scenario.check(f"{case}: status", expected="SUCCEEDED", seen=execution.status)
            scenario.check(
                f"{case}: decision (rule)",
                expected=(decision, rule),
                seen=(execution.output["decision"], execution.output["ruleId"]),
            )
            scenario.check(
                f"{case}: states entered",
                expected=[*DECIDED_PATH, END_STATE[decision]],
                seen=execution.entered,
            )
            scenario.check(
                f"{case}: tasks scheduled", expected=4, seen=execution.count("TaskScheduled")
            )
            row = requested.audit_row(f"{requested.run_id}-{case}") or {}
            scenario.check(
                f"{case}: audit row",
                expected=("DECIDED", decision, rule, 3),
                seen=(
                    row.get("outcome"),
                    row.get("decision"),
                    row.get("ruleId"),
                    row.get("ruleSetVersion"),
                ),
            )


def check_rules_are_data(
    aws: Aws, resources: BusinessRules, scenario: Scenario, requested: Requests
) -> None:
    with scenario.step("Rules are data: a rule set written now decides the next request"):
        strict = f"purchase-approval-strict-{requested.run_id}"
        facts = {"amount": 50, "category": "books", "customerTier": "standard"}
        strict_rules = {
            "ruleSet": strict,
            "version": 1,
            "facts": {"amount": "number"},
            "rules": [
                {
                    "id": "tiny-only",
                    "when": [{"fact": "amount", "op": "lte", "value": 20}],
                    "decision": "APPROVED",
                    "reason": "only tiny amounts pass unseen",
                }
            ],
            "default": {"decision": "MANUAL_REVIEW", "reason": "everything else is reviewed"},
        }
        aws.client("dynamodb").put_item(
            TableName=resources.rules_table, Item=items.wire(strict_rules)
        )
        scenario.note(f"put rule set {strict}: amount <= 20 approved, anything else reviewed")
        try:
            execution = requested.start_all(
                {"strict": {"ruleSet": strict, "facts": facts}}, resources.state_machine
            )["strict"]
        finally:
            aws.client("dynamodb").delete_item(
                TableName=resources.rules_table, Key={"ruleSet": {"S": strict}}
            )
        scenario.check("status", expected="SUCCEEDED", seen=execution.status)
        scenario.check(
            "the small request seen before as APPROVED is now",
            expected="MANUAL_REVIEW",
            seen=execution.output["decision"],
        )
        scenario.check(
            "decided by",
            expected=("default", strict, 1),
            seen=(
                execution.output["ruleId"],
                execution.output["ruleSet"],
                execution.output["ruleSetVersion"],
            ),
        )
        scenario.check(
            "states entered", expected=[*DECIDED_PATH, "SentToReview"], seen=execution.entered
        )


def check_bad_input(
    aws: Aws, resources: BusinessRules, scenario: Scenario, requested: Requests
) -> None:
    bad = {
        # case: (input, the state that fails, the error it raises)
        "no-rule-set": ({"facts": {"amount": 5}}, "ValidateRequest", "InvalidRequest"),
        "not-an-object": ("approve me please", "ValidateRequest", "InvalidRequest"),
        "amount-not-a-number": (
            {
                "ruleSet": "purchase-approval",
                "facts": {"amount": "lots", "category": "books", "customerTier": "gold"},
            },
            "EvaluateRules",
            "InvalidRequest",
        ),
        "unknown-rule-set": (
            {"ruleSet": f"no-such-rules-{requested.run_id}", "facts": {"amount": 5}},
            "EvaluateRules",
            "UnknownRuleSet",
        ),
    }
    with scenario.step(
        "Bad input fails in a named state, takes its Catch, and is audited as REJECTED"
    ):
        done = requested.start_all(
            {case: payload for case, (payload, _, _) in bad.items()}, resources.state_machine
        )
        for case, (payload, failing_state, error) in bad.items():
            execution = done[case]
            scenario.note(f"{case}: input {payload!r}")
            scenario.check(
                f"{case}: status and error",
                expected=("FAILED", "RequestRejected"),
                seen=(execution.status, execution.error),
            )
            scenario.check_that(
                f"{case}: cause names the error",
                (execution.cause or "").startswith(f"{error}: "),
                expected=f"'{error}: ...'",
                seen=(execution.cause or "")[:90],
            )
            path = DECIDED_PATH[: DECIDED_PATH.index(failing_state) + 1]
            scenario.check(
                f"{case}: states entered",
                expected=[*path, "RecordRejection", "RequestRejected"],
                seen=execution.entered,
            )
            scenario.check(
                f"{case}: Catch taken",
                expected=(failing_state, error, "RecordRejection"),
                seen=execution.catch_taken(),
            )
            row = requested.audit_row(f"{requested.run_id}-{case}") or {}
            scenario.check(
                f"{case}: audit row (outcome, error, has a decision)",
                expected=("REJECTED", error, False),
                seen=(row.get("outcome"), row.get("error"), "decision" in row),
            )


def check_one_audit_row_each(
    aws: Aws, resources: BusinessRules, scenario: Scenario, requested: Requests
) -> None:
    with scenario.step("Exactly one audit row per request, and nothing else"):
        rows = items.scan(
            aws,
            resources.audit_table,
            FilterExpression="begins_with(requestId, :run)",
            ExpressionAttributeValues={":run": {"S": f"{requested.run_id}-"}},
            ConsistentRead=True,
        )
        scenario.check(
            "audit rows of this run",
            expected=sorted(requested.audited),
            seen=sorted(row["requestId"] for row in rows),
        )
