"""Business rules: the two Lambda steps of the business-rules workflow.

`validate_handler` (step ValidateRequest)
    Event: the execution input, expected as {"ruleSet": str, "facts": {name: value}}.
    Returns {"ruleSet", "facts"}; raises InvalidRequest when the shape is wrong.

`evaluate_handler` (step EvaluateRules)
    Event: {"request": <ValidateRequest's result>, "loaded": <the DynamoDB GetItem result
    for the request's rule set>}: the rule set item arrives in DynamoDB's typed JSON.
    Returns {"decision", "ruleId", "reason", "ruleSet", "ruleSetVersion"}. Raises
    UnknownRuleSet when GetItem found no item, InvalidRequest when the facts do not fit the
    rule set's declared facts, InvalidRuleSet when the stored rules are malformed.

Environment: none (the workflow loads the rules; these functions only decide).

A rule set item: {"ruleSet", "version", "facts": {name: "number" | "string"}, "rules": [
{"id", "when": [{"fact", "op", "value"}], "decision", "reason"}], "default": {"decision",
"reason"}}. Rules are tried in order; the first whose conditions all hold decides; if none
does, the default decides.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

DECISIONS = ("APPROVED", "MANUAL_REVIEW", "DECLINED")
FACT_TYPES = ("number", "string")

logger = logging.getLogger()
logger.setLevel(logging.INFO)


class InvalidRequest(ValueError):
    """The request is not one the workflow can decide on."""


class UnknownRuleSet(LookupError):
    """No rule set of that name is stored."""


class InvalidRuleSet(ValueError):
    """The stored rule set cannot be evaluated."""


def validate_request(event: Any) -> dict[str, Any]:
    """The request's rule set name and facts; InvalidRequest says what is wrong."""
    if not isinstance(event, dict):
        raise InvalidRequest(f"the request must be a JSON object, got {type(event).__name__}")
    rule_set = event.get("ruleSet")
    if not isinstance(rule_set, str) or not rule_set.strip():
        raise InvalidRequest("ruleSet must be a non-empty string")
    facts = event.get("facts")
    if not isinstance(facts, dict) or not facts:
        raise InvalidRequest("facts must be a non-empty object")
    return {"ruleSet": rule_set.strip(), "facts": facts}


def rule_set_from_item(loaded: Any, name: str) -> dict[str, Any]:
    """The plain rule set from a GetItem result; UnknownRuleSet when there was no item."""
    item = loaded.get("Item") if isinstance(loaded, dict) else None
    if not item:
        raise UnknownRuleSet(f"no rule set named {name!r}")
    deserializer = TypeDeserializer()
    return {key: deserializer.deserialize(value) for key, value in item.items()}


def typed_facts(declared: dict[str, str], facts: dict[str, Any]) -> dict[str, Any]:
    """The facts the rule set declares, each checked against its type (numbers as Decimal,
    as DynamoDB gives the rules' values)."""
    problems, typed = [], {}
    for name, kind in declared.items():
        value = facts.get(name)
        if value is None:
            problems.append(f"{name} is missing")
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{name} must be a number, got {value!r}")
                continue
            try:
                typed[name] = Decimal(str(value))
            except InvalidOperation:
                problems.append(f"{name} must be a number, got {value!r}")
        elif not isinstance(value, str) or not value:
            problems.append(f"{name} must be a non-empty string, got {value!r}")
        else:
            typed[name] = value
    if problems:
        raise InvalidRequest("; ".join(problems))
    return typed


def _holds(condition: dict[str, Any], facts: dict[str, Any]) -> bool:
    fact, op, value = condition.get("fact"), condition.get("op"), condition.get("value")
    if fact not in facts:
        raise InvalidRuleSet(f"a condition uses undeclared fact {fact!r}")
    seen = facts[fact]
    try:
        match op:
            case "eq":
                return bool(seen == value)
            case "ne":
                return bool(seen != value)
            case "gt":
                return bool(seen > value)
            case "gte":
                return bool(seen >= value)
            case "lt":
                return bool(seen < value)
            case "lte":
                return bool(seen <= value)
            case "in":
                return seen in value
            case "not_in":
                return seen not in value
    except TypeError as error:
        raise InvalidRuleSet(f"cannot compare {fact} with {value!r}: {error}") from error
    raise InvalidRuleSet(f"unknown operator {op!r}")


def evaluate(rule_set: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """The decision this rule set gives for these facts: the first rule whose conditions
    all hold, else the default."""
    declared = rule_set.get("facts") or {}
    if not isinstance(declared, dict) or any(t not in FACT_TYPES for t in declared.values()):
        raise InvalidRuleSet(f"facts must map names to one of {FACT_TYPES}")
    typed = typed_facts(declared, facts)
    chosen: dict[str, Any] | None = None
    for rule in rule_set.get("rules") or []:
        if all(_holds(condition, typed) for condition in rule.get("when") or []):
            chosen = rule
            break
    if chosen is None:
        chosen = {"id": "default", **(rule_set.get("default") or {})}
    decision = chosen.get("decision")
    if decision not in DECISIONS:
        raise InvalidRuleSet(f"rule {chosen.get('id')!r} gives unknown decision {decision!r}")
    return {
        "decision": decision,
        "ruleId": str(chosen["id"]),
        "reason": str(chosen.get("reason", "")),
        "ruleSet": str(rule_set.get("ruleSet", "")),
        "ruleSetVersion": int(rule_set.get("version", 0)),
    }


def validate_handler(event: Any, context: Any) -> dict[str, Any]:
    return validate_request(event)


def evaluate_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = event["request"]
    rule_set = rule_set_from_item(event.get("loaded"), request["ruleSet"])
    result = evaluate(rule_set, request["facts"])
    logger.info(
        "Decided %s by rule %s of %s", result["decision"], result["ruleId"], result["ruleSet"]
    )
    return result
