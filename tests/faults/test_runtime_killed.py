"""A Lambda runtime process killed in the middle of an SQS-triggered invocation: the message
comes back after its visibility timeout and is processed exactly once."""

from __future__ import annotations

import os
import signal

import pytest

from sandbox import observe, provision
from sandbox.aws import Aws
from sandbox.harness import await_value
from tests.faults.functions import fault_function

pytestmark = pytest.mark.integration

# Counts attempts; on the first, records its pid and works long enough to be killed. The
# "processed" counter is what a pattern's idempotent handler guards: it must end at 1.
HANDLER = """
import os, boto3
table = boto3.resource("dynamodb").Table(os.environ["TABLE"])
sqs = boto3.client("sqs")

def count(key):
    table.update_item(Key={"id": key}, UpdateExpression="ADD n :one",
                      ExpressionAttributeValues={":one": 1})

def handler(event, context):
    for record in event["Records"]:
        body = record["body"]
        count(f"attempts-{body}")
        if record["attributes"]["ApproximateReceiveCount"] == "1":
            # Hold the first attempt until the test, having killed it, releases it (a
            # long poll of at most 4 s): a kill that missed lets it finish in one attempt,
            # which fails.
            table.put_item(Item={"id": f"pid-{body}", "pid": os.getpid()})
            release = sqs.get_queue_url(QueueName=f"{context.function_name}-release")
            sqs.receive_message(QueueUrl=release["QueueUrl"], WaitTimeSeconds=4)
        count(f"processed-{body}")
"""


def test_a_runtime_killed_mid_invocation_is_retried_and_processed_once(
    aws: Aws, sandbox, accounting
) -> None:
    if sandbox.name != "embedded":
        pytest.skip("kills a runtime process on this host: embedded mode only")
    accounting.checked = "message retried after the kill, processed once, DLQ empty"
    with fault_function(aws, "fault-kill", HANDLER) as function:
        queue, dlq = provision.ensure_queue_with_dlq(
            aws, function.name, max_receive_count=3, visibility_timeout=6
        )
        release = provision.ensure_queue(aws, f"{function.name}-release")
        lambda_ = aws.client("lambda")
        mapping = lambda_.create_event_source_mapping(
            FunctionName=function.name, EventSourceArn=queue.arn, BatchSize=1
        )["UUID"]
        dynamodb = aws.client("dynamodb")
        sqs = aws.client("sqs")

        def counter(key: str) -> int:
            item = dynamodb.get_item(TableName=function.table, Key={"id": {"S": key}}).get("Item")
            return int(item[next(k for k in item if k != "id")]["N"]) if item else 0

        try:
            sqs.send_message(QueueUrl=queue.url, MessageBody="m1")
            accounting.messages_in = 1
            pid = await_value(
                lambda: counter("pid-m1"), timeout=30, waiting_for="the first attempt's runtime"
            )
            os.kill(pid, signal.SIGKILL)
            sqs.send_message(QueueUrl=release.url, MessageBody="release m1")
            processed = await_value(
                lambda: counter("processed-m1"), timeout=40, waiting_for="the retried message"
            )
            attempts = counter("attempts-m1")
            dead = observe.depth(aws, dlq.url)
            accounting.processed, accounting.dead_lettered = processed, dead
            accounting.lost = accounting.messages_in - min(processed, 1) - dead
            assert (processed, dead) == (1, 0), f"processed {processed} times, {dead} in the DLQ"
            assert attempts == 2, f"{attempts} attempts: expected the killed one and one retry"
        finally:
            lambda_.delete_event_source_mapping(UUID=mapping)
            for url in (queue.url, dlq.url, release.url):
                sqs.delete_queue(QueueUrl=url)
