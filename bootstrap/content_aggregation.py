"""Provision content-aggregation: the sources and items tables, the fetch function, the
workflow, and the EventBridge schedule rule that starts it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import (
    ensure_function,
    ensure_role,
    ensure_rule,
    ensure_state_machine,
    ensure_table,
)

SCHEDULE = "rate(1 hour)"
SCHEDULED_SOURCE_SET = "default"


@dataclass(frozen=True)
class ContentAggregation:
    sources_table: str
    items_table: str
    fetch_function: str
    state_machine: str
    schedule_rule: str
    schedule: str
    scheduled_input: str  # the JSON the rule passes to each execution


def provision(aws: Aws) -> ContentAggregation:
    sources = ensure_table(
        aws, "content-aggregation-sources", hash_key="source_set", range_key="source_id"
    )
    items = ensure_table(aws, "content-aggregation-items")
    fetch = "content-aggregation-fetch"
    fetch_arn = ensure_function(
        aws, fetch, "content_aggregation", environment={"FETCH_TIMEOUT": "3"}, timeout=10
    )
    state_machine = ensure_state_machine(
        aws,
        "content-aggregation",
        "content_aggregation.json",
        {"SourcesTable": sources, "ItemsTable": items, "FetchArn": fetch_arn},
    )
    rule = "content-aggregation-schedule"
    scheduled_input = json.dumps({"source_set": SCHEDULED_SOURCE_SET})
    ensure_rule(
        aws,
        rule,
        schedule=SCHEDULE,
        targets=[
            {
                "Id": "aggregate",
                "Arn": state_machine,
                "RoleArn": ensure_role(aws, "content-aggregation-events", "events.amazonaws.com"),
                "Input": scheduled_input,
            }
        ],
        description="Start the aggregation workflow for the default source set",
    )
    return ContentAggregation(sources, items, fetch, state_machine, rule, SCHEDULE, scheduled_input)
