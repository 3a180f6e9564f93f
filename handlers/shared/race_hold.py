"""A test-only hold between a handler's read and its conditional write, shared by the
handlers whose point is concurrency (cqrs, event-sourcing, sequence-generator,
task-scheduling, event-aggregation). Each of their folders links this file, so it is packaged
in their zip as a plain module; it does nothing on AWS, where SANDBOX_TEST_HOLD_TABLE is
never set."""

from __future__ import annotations

import os
import time

import boto3
from botocore.exceptions import ClientError


def hold_after_read(key: str) -> None:
    """Test-only, off unless SANDBOX_TEST_HOLD_TABLE is set (the sandbox sets it only on this
    function's `-held` variant; never on AWS). If a scenario armed `key` in that table, mark
    it held and wait, at most SANDBOX_TEST_HOLD_SECONDS (default 20), until the scenario
    releases it: a race between this read and the conditional write, forced rather than
    left to luck (sandbox/race.py). Any other key passes straight through."""
    table = os.environ.get("SANDBOX_TEST_HOLD_TABLE")
    if not table:
        return
    client, key_item = boto3.client("dynamodb"), {"id": {"S": key}}
    try:
        client.update_item(
            TableName=table,
            Key=key_item,
            UpdateExpression="SET #state = :held",
            ConditionExpression="#state = :armed",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":held": {"S": "held"}, ":armed": {"S": "armed"}},
        )
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return  # not armed: no race asked for
        raise
    deadline = time.monotonic() + float(os.environ.get("SANDBOX_TEST_HOLD_SECONDS", "20"))
    while time.monotonic() < deadline:
        item = client.get_item(TableName=table, Key=key_item, ConsistentRead=True).get("Item")
        if item and item["state"]["S"] == "released":
            return
        time.sleep(0.05)
