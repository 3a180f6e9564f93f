"""business-rules: the evaluator's rule semantics, request validation, and the workflow's
wiring (every Catch lands on the audit step)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from sandbox.patterns import ROOT, find
from tests.conftest import load_handler

app = load_handler("business_rules")
bootstrap = find("business-rules").bootstrap
SEEDED = bootstrap.RULE_SETS[0]


def as_get_item_result(rule_set: dict[str, Any]) -> dict[str, Any]:
    """The rule set as the workflow's DynamoDB GetItem step hands it to the evaluator."""
    serialize = TypeSerializer().serialize
    return {"Item": {key: serialize(value) for key, value in rule_set.items()}}


def decide(facts: dict[str, Any], rule_set: dict[str, Any] = SEEDED) -> tuple[str, str]:
    loaded = app.rule_set_from_item(as_get_item_result(rule_set), rule_set["ruleSet"])
    result = app.evaluate(loaded, facts)
    return result["decision"], result["ruleId"]


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"amount": 50, "category": "books", "customerTier": "standard"}, ("APPROVED", "default")),
        (
            {"amount": 1000, "category": "books", "customerTier": "standard"},
            ("APPROVED", "default"),
        ),
        (
            {"amount": 1000.5, "category": "books", "customerTier": "standard"},
            ("MANUAL_REVIEW", "standard-over-1000"),
        ),
        ({"amount": 2500, "category": "books", "customerTier": "gold"}, ("APPROVED", "default")),
        (
            {"amount": 7000, "category": "books", "customerTier": "gold"},
            ("MANUAL_REVIEW", "gold-over-5000"),
        ),
        (
            {"amount": 20000, "category": "books", "customerTier": "gold"},
            ("DECLINED", "over-hard-limit"),
        ),
        # the first matching rule wins: blocked category before any amount rule
        (
            {"amount": 20000, "category": "weapons", "customerTier": "gold"},
            ("DECLINED", "blocked-category"),
        ),
    ],
)
def test_the_seeded_rules_decide_in_order(facts: dict[str, Any], expected: tuple[str, str]) -> None:
    assert decide(facts) == expected


def test_the_result_names_the_rule_set_and_its_version() -> None:
    loaded = app.rule_set_from_item(as_get_item_result(SEEDED), "purchase-approval")
    result = app.evaluate(loaded, {"amount": 1, "category": "books", "customerTier": "gold"})
    assert result == {
        "decision": "APPROVED",
        "ruleId": "default",
        "reason": "within every limit",
        "ruleSet": "purchase-approval",
        "ruleSetVersion": 3,
    }
    json.dumps(result)  # the workflow needs plain JSON (no Decimal)


@pytest.mark.parametrize(
    ("facts", "reason"),
    [
        (
            {"amount": "lots", "category": "books", "customerTier": "gold"},
            "amount must be a number",
        ),
        ({"amount": True, "category": "books", "customerTier": "gold"}, "amount must be a number"),
        ({"amount": 5, "customerTier": "gold"}, "category is missing"),
        ({"amount": 5, "category": "", "customerTier": "gold"}, "category must be a non-empty"),
    ],
)
def test_facts_that_do_not_fit_the_rule_set_are_invalid(facts: dict[str, Any], reason: str) -> None:
    with pytest.raises(app.InvalidRequest, match=reason):
        decide(facts)


def test_no_item_means_an_unknown_rule_set() -> None:
    with pytest.raises(app.UnknownRuleSet, match="'nope'"):
        app.rule_set_from_item({}, "nope")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"default": {"decision": "MAYBE"}}, "unknown decision 'MAYBE'"),
        ({"rules": [{"id": "x", "when": [{"fact": "amount", "op": "~", "value": 1}]}]}, "operator"),
        ({"rules": [{"id": "x", "when": [{"fact": "colour", "op": "eq", "value": 1}]}]}, "colour"),
        ({"facts": {"amount": "date"}}, "facts must map"),
    ],
)
def test_a_malformed_rule_set_is_reported(change: dict[str, Any], reason: str) -> None:
    broken = {**SEEDED, **change}
    with pytest.raises(app.InvalidRuleSet, match=reason):
        decide({"amount": 5, "category": "books", "customerTier": "gold"}, broken)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ("approve me", "must be a JSON object"),
        ({"facts": {"amount": 1}}, "ruleSet must be a non-empty string"),
        ({"ruleSet": "  ", "facts": {"amount": 1}}, "ruleSet must be a non-empty string"),
        ({"ruleSet": "r", "facts": []}, "facts must be a non-empty object"),
    ],
)
def test_malformed_requests_are_refused_saying_why(event: Any, reason: str) -> None:
    with pytest.raises(app.InvalidRequest, match=reason):
        app.validate_request(event)


def test_a_good_request_is_passed_on() -> None:
    event = {"ruleSet": " purchase-approval ", "facts": {"amount": 1}, "extra": "ignored"}
    assert app.validate_request(event) == {"ruleSet": "purchase-approval", "facts": {"amount": 1}}


def test_every_catch_of_the_workflow_audits_the_rejection() -> None:
    definition = json.loads((ROOT / "state_machines" / "business_rules.json").read_text())
    states = definition["States"]
    tasks = {name: state for name, state in states.items() if state["Type"] == "Task"}
    catching = {n for n, state in tasks.items() if n != "RecordRejection"}
    for name in catching:
        targets = {c["Next"] for c in tasks[name]["Catch"]}
        assert targets == {"RecordRejection"}, name
        assert tasks[name]["Catch"][-1]["ErrorEquals"] == ["States.ALL"], name
        assert tasks[name]["Retry"], name
    assert states["RecordRejection"]["Next"] == "RequestRejected"
    assert states["RequestRejected"]["Type"] == "Fail"
