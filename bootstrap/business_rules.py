"""Provision business-rules: a rules table (seeded), an audit table, the validator and
evaluator functions, and the workflow that ties them together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from sandbox.aws import Aws
from sandbox.provision import ensure_function, ensure_state_machine, ensure_table

PURCHASE_APPROVAL = "purchase-approval"

# The seeded rule sets. Rules are data: the workflow reads them at every request, so a
# changed item changes the next decision without a deploy.
RULE_SETS: tuple[dict[str, Any], ...] = (
    {
        "ruleSet": PURCHASE_APPROVAL,
        "version": 3,
        "description": "Purchase requests: who may buy what without a second look.",
        "facts": {"amount": "number", "category": "string", "customerTier": "string"},
        "rules": [
            {
                "id": "blocked-category",
                "when": [{"fact": "category", "op": "in", "value": ["gambling", "weapons"]}],
                "decision": "DECLINED",
                "reason": "category is never purchasable",
            },
            {
                "id": "over-hard-limit",
                "when": [{"fact": "amount", "op": "gt", "value": 10000}],
                "decision": "DECLINED",
                "reason": "amount above the hard limit of 10000",
            },
            {
                "id": "standard-over-1000",
                "when": [
                    {"fact": "amount", "op": "gt", "value": 1000},
                    {"fact": "customerTier", "op": "ne", "value": "gold"},
                ],
                "decision": "MANUAL_REVIEW",
                "reason": "non-gold customers above 1000 need a review",
            },
            {
                "id": "gold-over-5000",
                "when": [{"fact": "amount", "op": "gt", "value": 5000}],
                "decision": "MANUAL_REVIEW",
                "reason": "gold customers above 5000 need a review",
            },
        ],
        "default": {"decision": "APPROVED", "reason": "within every limit"},
    },
)


@dataclass(frozen=True)
class BusinessRules:
    state_machine: str
    rules_table: str
    audit_table: str
    validate_function: str
    evaluate_function: str
    rule_sets: tuple[str, ...]


def seed_rules(aws: Aws, table: str) -> None:
    """Write the seeded rule sets (the same items every time, so seeding twice is a no-op)."""
    serializer = TypeSerializer()
    dynamodb = aws.client("dynamodb")
    for rule_set in RULE_SETS:
        item = {key: serializer.serialize(value) for key, value in rule_set.items()}
        current = dynamodb.get_item(
            TableName=table, Key={"ruleSet": item["ruleSet"]}, ConsistentRead=True
        ).get("Item")
        if current != item:
            dynamodb.put_item(TableName=table, Item=item)


def provision(aws: Aws) -> BusinessRules:
    rules_table = ensure_table(aws, "business-rules-rules", hash_key="ruleSet")
    audit_table = ensure_table(aws, "business-rules-audit", hash_key="requestId")
    seed_rules(aws, rules_table)
    validate, evaluate = "business-rules-validate", "business-rules-evaluate"
    validate_arn = ensure_function(
        aws, validate, "business_rules", handler="app.validate_handler", timeout=5
    )
    evaluate_arn = ensure_function(
        aws, evaluate, "business_rules", handler="app.evaluate_handler", timeout=5
    )
    state_machine = ensure_state_machine(
        aws,
        "business-rules",
        "business_rules.json",
        {
            "ValidateFunctionArn": validate_arn,
            "EvaluateFunctionArn": evaluate_arn,
            "RulesTable": rules_table,
            "AuditTable": audit_table,
        },
    )
    return BusinessRules(
        state_machine=state_machine,
        rules_table=rules_table,
        audit_table=audit_table,
        validate_function=validate,
        evaluate_function=evaluate,
        rule_sets=tuple(r["ruleSet"] for r in RULE_SETS),
    )
