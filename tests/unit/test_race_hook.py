"""The test-only hold between read and write (`hold_after_read`), the same in each handler whose
point is concurrency: off without SANDBOX_TEST_HOLD_TABLE, straight through for a key nobody
armed, and held until released for an armed one."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from tests.conftest import load_handler

FOLDERS = ["cqrs", "event_sourcing", "sequence_generator", "task_scheduling", "event_aggregation"]
TABLE = "holds"
KEY = {"id": {"S": "acc-1"}}


def stubbed_dynamodb(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Stubber]:
    client = boto3.client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    monkeypatch.setattr(boto3, "client", lambda *args, **kwargs: client)
    return client, stubber


@pytest.mark.parametrize("folder", FOLDERS)
def test_without_the_variable_the_hook_makes_no_call(
    folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = load_handler(folder)
    monkeypatch.delenv("SANDBOX_TEST_HOLD_TABLE", raising=False)
    monkeypatch.setattr(boto3, "client", pytest.fail)
    app.hold_after_read("acc-1")


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_key_nobody_armed_passes_straight_through(
    folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = load_handler(folder)
    monkeypatch.setenv("SANDBOX_TEST_HOLD_TABLE", TABLE)
    _, stubber = stubbed_dynamodb(monkeypatch)
    stubber.add_client_error("update_item", "ConditionalCheckFailedException")
    with stubber:
        app.hold_after_read("acc-1")
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize("folder", FOLDERS)
def test_an_armed_key_is_held_until_released(folder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = load_handler(folder)
    monkeypatch.setenv("SANDBOX_TEST_HOLD_TABLE", TABLE)
    _, stubber = stubbed_dynamodb(monkeypatch)
    stubber.add_response(
        "update_item",
        {},
        {
            "TableName": TABLE,
            "Key": KEY,
            "UpdateExpression": "SET #state = :held",
            "ConditionExpression": "#state = :armed",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {":held": {"S": "held"}, ":armed": {"S": "armed"}},
        },
    )
    for state in ("held", "held", "released"):
        stubber.add_response("get_item", {"Item": {**KEY, "state": {"S": state}}})
    with stubber:
        app.hold_after_read("acc-1")
    stubber.assert_no_pending_responses()
