"""observe.check_dead_lettered counts the tries of the message's own queue: a search of the
DLQ (for any message) receives every message there, and those receives are not tries."""

from __future__ import annotations

import io

import pytest

from sandbox import observe, provision
from sandbox.aws import Aws
from sandbox.harness import Scenario, ScenarioFailed, unique_name


@pytest.mark.integration
def test_searches_of_the_dlq_are_not_counted_as_tries(aws: Aws) -> None:
    # GIVEN a DLQ holding a message received twice (its tries) and one received once
    sqs = aws.client("sqs")
    dlq = provision.ensure_queue(aws, unique_name("observe-dlq"))
    twice = sqs.send_message(QueueUrl=dlq.url, MessageBody="twice")["MessageId"]
    sqs.receive_message(QueueUrl=dlq.url, VisibilityTimeout=0)
    once = sqs.send_message(QueueUrl=dlq.url, MessageBody="once")["MessageId"]
    tries = sqs.receive_message(QueueUrl=dlq.url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    assert len(tries["Messages"]) == 2
    # WHEN the DLQ is searched three times for a message that is not there
    for _ in range(3):
        assert observe.find(aws, dlq.url, lambda message: False) is None
    # THEN each is seen with its own tries: two passes maxReceiveCount 2, one fails it
    scenario = Scenario("observe", out=io.StringIO())
    with scenario.step("dead-lettered"):
        observe.check_dead_lettered(
            scenario, aws, dlq, observe.with_id(twice), max_receive_count=2, timeout=5
        )
        with pytest.raises(ScenarioFailed, match="saw 1"):
            observe.check_dead_lettered(
                scenario, aws, dlq, observe.with_id(once), max_receive_count=2, timeout=5
            )
    sqs.delete_queue(QueueUrl=dlq.url)
