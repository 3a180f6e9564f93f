"""observe.await_empty: a queue counts as drained only once it has stayed empty, since one
look at SQS's approximate counts can say 0 while a message is being received. Checked
against botocore's Stubber, which holds each request to the SQS model."""

from __future__ import annotations

from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import Stubber

from sandbox import observe
from sandbox.harness import WaitTimedOut

URL = "https://sqs.us-east-1.amazonaws.com/000000000000/orders"


def stubbed_queue(depths: list[int]) -> tuple[SimpleNamespace, Stubber]:
    sqs = boto3.client(
        "sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(sqs)
    for visible in depths:
        stubber.add_response(
            "get_queue_attributes",
            {"Attributes": {"ApproximateNumberOfMessages": str(visible)}},
            {"QueueUrl": URL, "AttributeNames": list(observe.COUNTS)},
        )
    return SimpleNamespace(client=lambda service: sqs), stubber


def test_a_momentary_zero_is_not_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observe, "EMPTY_SETTLE_S", 0.3)
    aws, stubber = stubbed_queue([0, 2, 2, 0, 0, 0])
    with stubber:
        assert observe.await_empty(aws, URL, timeout=5, waiting_for="empty") == 0
        stubber.assert_no_pending_responses()  # it looked until the zeros had lasted


def test_a_queue_that_never_stays_empty_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observe, "EMPTY_SETTLE_S", 10)
    aws, stubber = stubbed_queue([0, 1, 0, 1, 0, 1, 0, 1])
    with stubber, pytest.raises(WaitTimedOut, match="orders to be empty"):
        observe.await_empty(aws, URL, timeout=0.5, waiting_for="orders to be empty")
