"""Provision mocked-integrations: the lead-intake workflow and the real resources it
integrates with (a Lambda function, a DynamoDB table, an SQS queue, an SNS topic), so the
mocked test cases can show those resources were not touched, and a plain execution can show
the difference."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sandbox.aws import Aws
from sandbox.embedded.launcher import SFN_MOCK_CONFIG
from sandbox.provision import (
    Queue,
    ensure_function,
    ensure_queue,
    ensure_state_machine,
    ensure_table,
    ensure_topic,
    subscribe_queue,
)
from sandbox.settings import PROJECT_ROOT

STATE_MACHINE = "mocked-integrations-leads"
MOCK_CONFIG: Path = PROJECT_ROOT / SFN_MOCK_CONFIG


@dataclass(frozen=True)
class MockedIntegrations:
    state_machine: str
    state_machine_name: str
    function: str
    table: str
    followups: Queue
    alerts_topic: str
    alerts: Queue
    mock_config: str
    test_cases: tuple[str, ...]


def test_cases(path: Path = MOCK_CONFIG) -> tuple[str, ...]:
    """The test cases the mock config file defines for this workflow."""
    config = json.loads(path.read_text())
    return tuple(config["StateMachines"][STATE_MACHINE]["TestCases"])


def provision(aws: Aws) -> MockedIntegrations:
    function = "mocked-integrations-check-customer"
    function_arn = ensure_function(aws, function, "mocked_integrations", timeout=5)
    table = ensure_table(aws, "mocked-integrations-leads", hash_key="leadId")
    # Nothing consumes these two queues: the scenario reads them to see what was sent, so no
    # processing can fail and they need no dead-letter queue.
    followups = ensure_queue(aws, "mocked-integrations-followups", visibility_timeout=2)
    alerts_topic = ensure_topic(aws, "mocked-integrations-alerts")
    alerts = ensure_queue(aws, "mocked-integrations-alerts", visibility_timeout=2)
    subscribe_queue(aws, alerts_topic, alerts)
    arn = ensure_state_machine(
        aws,
        STATE_MACHINE,
        "mocked_integrations.json",
        {
            "CheckCustomerFunctionArn": function_arn,
            "LeadsTable": table,
            "FollowupsQueueUrl": followups.url,
            "AlertsTopicArn": alerts_topic,
        },
    )
    return MockedIntegrations(
        state_machine=arn,
        state_machine_name=STATE_MACHINE,
        function=function,
        table=table,
        followups=followups,
        alerts_topic=alerts_topic,
        alerts=alerts,
        mock_config=str(MOCK_CONFIG.relative_to(PROJECT_ROOT)),
        test_cases=test_cases(),
    )
