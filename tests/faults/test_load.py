"""Load as a busy user makes it: 50 synchronous calls at once to sequence-generator's counter
(it promises each caller its own number), and a burst of 1,000 messages into one SQS mapping
whose consumer is idempotent (each record applied once, however often it is delivered)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.config import Config

from sandbox import items, observe, pattern_lock, provision
from sandbox.aws import Aws
from sandbox.harness import await_value, unique_name
from sandbox.patterns import find
from tests.faults.conftest import Accounting
from tests.faults.functions import fault_function

pytestmark = pytest.mark.integration

CONCURRENT_CALLS = 50
BURST = 1_000
SEND_BATCH = 10  # SQS's most per SendMessageBatch


def test_50_concurrent_invocations_are_all_answered_once(aws: Aws, sandbox, accounting) -> None:
    # The pattern held: its scenario, run alongside by `make test`, would meet the load.
    with pattern_lock.exclusive(aws.endpoint_url, "sequence-generator", "the load fault test"):
        concurrent_invocations_are_all_answered_once(aws, accounting)


def concurrent_invocations_are_all_answered_once(aws: Aws, accounting: Accounting) -> None:
    resources = find("sequence-generator").provision(aws)
    accounting.checked = f"{CONCURRENT_CALLS} calls at once: each answered, numbers 1..n unique"
    scope = unique_name("fault-concurrent")
    lambda_ = aws.session.client(
        "lambda",
        endpoint_url=aws.endpoint_url,
        region_name=aws.region,
        config=Config(max_pool_connections=CONCURRENT_CALLS, read_timeout=120),
    )

    def call(_: int) -> dict[str, Any]:
        answer = lambda_.invoke(
            FunctionName=resources.next_function, Payload=json.dumps({"scope": scope})
        )
        body = json.loads(answer["Payload"].read())
        assert "FunctionError" not in answer, body
        return body

    accounting.messages_in = CONCURRENT_CALLS
    with ThreadPoolExecutor(CONCURRENT_CALLS) as pool:
        answers = list(pool.map(call, range(CONCURRENT_CALLS)))
    values = sorted(answer["value"] for answer in answers)
    counter = items.get(aws, resources.counters_table, {"id": f"atomic#{scope}"})
    counted = int(counter["value"]) if counter else 0
    accounting.processed = counted
    accounting.lost = CONCURRENT_CALLS - len(set(values))
    assert values == list(range(1, CONCURRENT_CALLS + 1)), f"numbers handed out: {values}"
    assert counted == CONCURRENT_CALLS, f"the counter says {counted} calls"


# Idempotent as the patterns' consumers are: a record's effect is applied only by the
# first delivery that finds it not done; every delivery is counted beside it.
IDEMPOTENT_CONSUMER = """
import json, os, boto3
table = boto3.client("dynamodb")

def handler(event, context):
    for record in event["Records"]:
        key = {"id": {"S": json.loads(record["body"])["id"]}}
        table.update_item(TableName=os.environ["TABLE"], Key=key,
                          UpdateExpression="ADD deliveries :one",
                          ExpressionAttributeValues={":one": {"N": "1"}})
        try:
            table.update_item(TableName=os.environ["TABLE"], Key=key,
                              UpdateExpression="SET done = :yes ADD effects :one",
                              ConditionExpression="attribute_not_exists(done)",
                              ExpressionAttributeValues={":yes": {"BOOL": True},
                                                         ":one": {"N": "1"}})
        except table.exceptions.ConditionalCheckFailedException:
            pass  # delivered again: already done
"""


def test_a_burst_of_1000_messages_is_processed_once_each(aws: Aws, sandbox, accounting) -> None:
    accounting.checked = f"{BURST} messages into one mapping: each applied once, DLQ empty"
    with fault_function(aws, "fault-burst", IDEMPOTENT_CONSUMER, timeout=30) as function:
        queue, dlq = provision.ensure_queue_with_dlq(
            aws, function.name, max_receive_count=3, visibility_timeout=60
        )
        lambda_ = aws.client("lambda")
        mapping = provision.ensure_event_source_mapping(aws, function.name, queue.arn)
        try:
            ids = [f"{function.name}-{number}" for number in range(BURST)]
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda chunk: send_records(aws, queue.url, chunk), batches(ids)))
            accounting.messages_in = BURST
            await_value(
                lambda: items.scan(aws, function.table, ConsistentRead=True),
                until=lambda seen: len(seen) >= BURST,
                timeout=180,
                interval=2,
                waiting_for=f"{BURST} records in {function.table}",
            )
            # Read once every message is deleted, so after its handler returned: a record
            # read while its delivery is under way has its count but not yet its effect.
            observe.await_empty(aws, queue.url, timeout=60, waiting_for=f"{queue.name} empty")
            records = items.scan(aws, function.table, ConsistentRead=True)
            dead = observe.depth(aws, dlq.url)
            applied = [record for record in records if record.get("effects") == 1]
            twice = sorted(record["id"] for record in records if record.get("effects", 0) > 1)
            deliveries = sum(record["deliveries"] for record in records)
            accounting.processed, accounting.dead_lettered = len(applied), dead
            accounting.lost = BURST - len(applied) - dead
            accounting.checked += f" ({deliveries - BURST} duplicate deliveries absorbed)"
            assert twice == [], f"records applied more than once: {twice[:10]}"
            assert (len(applied), dead) == (BURST, 0), f"{len(applied)} applied, {dead} in the DLQ"
        finally:
            lambda_.delete_event_source_mapping(UUID=mapping)
            for url in (queue.url, dlq.url):
                aws.client("sqs").delete_queue(QueueUrl=url)


def batches(ids: list[str]) -> list[list[str]]:
    return [ids[start : start + SEND_BATCH] for start in range(0, len(ids), SEND_BATCH)]


def send_records(aws: Aws, queue_url: str, ids: list[str]) -> None:
    sent = aws.client("sqs").send_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": str(position), "MessageBody": json.dumps({"id": record_id, "amount": 1})}
            for position, record_id in enumerate(ids)
        ],
    )
    assert not sent.get("Failed"), sent["Failed"]
