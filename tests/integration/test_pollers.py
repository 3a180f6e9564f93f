"""SQS event source mappings run batches side by side as AWS does: five at first, never more
than `ScalingConfig.MaximumConcurrency` or the function's reserved concurrency, one batch at a
time per FIFO message group; a disabled mapping takes nothing. In embedded mode this exercises
`sandbox/embedded/pollers.py`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sandbox import observe, provision
from sandbox.aws import Aws
from sandbox.harness import await_value, holds_for, unique_name
from tests.conftest import zip_files

pytestmark = pytest.mark.integration
HOLD_S = 0.6  # each batch takes this long, so batches that run side by side overlap

RECORDER = f"""
import os
import time

import boto3

DYNAMODB = boto3.client("dynamodb")


def handler(event, context):
    started = time.time()
    time.sleep({HOLD_S})
    for record in event["Records"]:
        DYNAMODB.put_item(TableName=os.environ["TABLE_NAME"], Item={{
            "id": {{"S": record["messageId"]}},
            "body": {{"S": record["body"]}},
            "group": {{"S": record["attributes"].get("MessageGroupId", "-")}},
            "started": {{"S": str(started)}},
            "ended": {{"S": str(time.time())}},
        }})
"""


@pytest.fixture
def mapped(aws: Aws) -> Iterator[Callable[..., tuple[provision.Queue, str, str]]]:
    """Factory: a queue, a function recording each record with when its batch ran, and a
    mapping (batch size 1) between them; everything is deleted afterwards."""
    lambda_, made = aws.client("lambda"), []
    role = provision.ensure_role(aws, provision.LAMBDA_ROLE, "lambda.amazonaws.com")

    def make(*, fifo: bool = False, **mapping: Any) -> tuple[provision.Queue, str, str]:
        name = unique_name("poller")
        table = provision.ensure_table(aws, name)
        queue = provision.ensure_queue(aws, name + (".fifo" if fifo else ""), visibility_timeout=30)
        lambda_.create_function(
            FunctionName=name,
            Role=role,
            Runtime=provision.LAMBDA_RUNTIME,
            Handler="app.handler",
            Code={"ZipFile": zip_files({"app.py": RECORDER})},
            Timeout=10,
            Environment={"Variables": {"TABLE_NAME": table}},
        )
        provision.wait_for_function(lambda_, name)
        uuid = provision.ensure_event_source_mapping(
            aws, name, queue.arn, batch_size=1, report_batch_item_failures=False, **mapping
        )
        made.append((uuid, name, queue))
        return queue, name, table

    yield make
    for uuid, name, queue in made:
        lambda_.delete_event_source_mapping(UUID=uuid)
        lambda_.delete_function(FunctionName=name)
        aws.client("sqs").delete_queue(QueueUrl=queue.url)
        aws.client("dynamodb").delete_table(TableName=name)


def send(aws: Aws, queue: provision.Queue, bodies: list[str], group: str | None = None) -> None:
    for first in range(0, len(bodies), 10):
        entries = []
        for index, body in enumerate(bodies[first : first + 10], start=first):
            entry = {"Id": str(index), "MessageBody": body}
            if group is not None:
                entry |= {"MessageGroupId": group, "MessageDeduplicationId": f"{group}-{body}"}
            entries.append(entry)
        aws.client("sqs").send_message_batch(QueueUrl=queue.url, Entries=entries)


def recorded(aws: Aws, table: str, expected: int) -> list[dict[str, Any]]:
    """Every record the function stored, once `expected` are there."""

    def scan() -> list[dict[str, Any]]:
        items = aws.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]
        return [{key: value["S"] for key, value in item.items()} for item in items]

    return await_value(
        scan, until=lambda items: len(items) >= expected, timeout=60, waiting_for="records"
    )


def most_at_once(items: list[dict[str, Any]]) -> int:
    """The most batches that were running at the same moment."""
    edges = sorted(
        [(float(i["started"]), 1) for i in items] + [(float(i["ended"]), -1) for i in items]
    )
    running = peak = 0
    for _, change in edges:  # at equal times an end (-1) sorts before a start (+1)
        running += change
        peak = max(peak, running)
    return peak


def test_batches_run_five_at_a_time_at_first(aws: Aws, mapped) -> None:
    queue, _, table = mapped()
    send(aws, queue, [f"m{i}" for i in range(10)])
    assert most_at_once(recorded(aws, table, 10)) == 5


def test_maximum_concurrency_caps_the_batches(aws: Aws, mapped) -> None:
    queue, _, table = mapped(ScalingConfig={"MaximumConcurrency": 3})
    send(aws, queue, [f"m{i}" for i in range(9)])
    assert most_at_once(recorded(aws, table, 9)) == 3


def test_reserved_concurrency_caps_the_batches_without_throttling(aws: Aws, mapped) -> None:
    queue, function, table = mapped()
    aws.client("lambda").put_function_concurrency(
        FunctionName=function, ReservedConcurrentExecutions=2
    )
    send(aws, queue, [f"m{i}" for i in range(8)])
    items = recorded(aws, table, 8)
    assert most_at_once(items) == 2
    assert len(items) == 8  # none throttled away


def test_fifo_groups_run_side_by_side_each_in_order(aws: Aws, mapped) -> None:
    queue, _, table = mapped(fifo=True)
    for group in ("a", "b", "c"):
        send(aws, queue, [f"{group}{i:02d}" for i in range(4)], group=group)
    items = recorded(aws, table, 12)
    by_group: dict[str, list[dict[str, Any]]] = {}
    for item in sorted(items, key=lambda i: float(i["started"])):
        by_group.setdefault(item["group"], []).append(item)
    for group, in_order in by_group.items():
        assert [i["body"] for i in in_order] == [f"{group}{n:02d}" for n in range(4)]
        assert most_at_once(in_order) == 1, f"two batches of group {group} overlapped"
    assert most_at_once(items) == 3  # the groups themselves run side by side


def test_a_disabled_mapping_takes_nothing(aws: Aws, mapped) -> None:
    queue, function, table = mapped()
    lambda_ = aws.client("lambda")
    (mapping,) = lambda_.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
    lambda_.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    await_value(
        lambda: lambda_.get_event_source_mapping(UUID=mapping["UUID"])["State"],
        until=lambda state: state == "Disabled",
        waiting_for="the mapping to be Disabled",
    )
    send(aws, queue, ["waits"])
    holds_for(lambda: observe.depth(aws, queue.url), until=lambda n: n == 1, duration=2)
    lambda_.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    assert [item["body"] for item in recorded(aws, table, 1)] == ["waits"]
    await_value(lambda: observe.depth(aws, queue.url) == 0, waiting_for="the message deleted")
