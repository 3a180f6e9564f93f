"""Scenario for storage-first: requests are stored by the API itself, so a broken or stopped
consumer loses nothing.

1. The consumer is broken (a bad deploy: BROKEN=true): POST /orders still answers 202.
2. Each stored order really fails, is retried, and reaches the DLQ after maxReceiveCount.
3. The consumer is fixed but its mapping is off: new orders wait in the queue; enabling the
   mapping drains it.
4. Bad input: bodies the API's model refuses get 400 and are never stored; the count holds:
   in = processed + rejected + in the DLQ.
5. Redriving the DLQ (StartMessageMoveTask) processes the dead-lettered orders: all in.
6. The DynamoDB variant: POST /inbox stores the order with a PutItem integration while the
   stream mapping is off; enabled again, the stream feeds it to the same consumer.
7. The variant with the consumer broken: retries run out, the on-failure record in the DLQ
   points at the order's stream record, and the order is still in the inbox table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import requests

from bootstrap.storage_first import StorageFirst
from sandbox import items, observe, provision
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, holds_for, unique_name


def run(aws: Aws, resources: StorageFirst, scenario: Scenario) -> None:
    orders, lambda_ = Orders(aws, resources, unique_name("run")), aws.client("lambda")
    with _restored(lambda_, resources):
        broken_ids = check_accepted_while_broken(scenario, resources, orders, lambda_)
        check_dead_lettered(scenario, resources, orders, broken_ids)
        check_queue_waits(scenario, resources, orders, lambda_)
        check_bad_input(scenario, resources, orders, lambda_)
        check_redrive(scenario, resources, orders, lambda_)
        check_inbox(scenario, resources, orders, lambda_)
        check_inbox_broken(scenario, resources, orders, lambda_)


class Orders:
    """The orders API as a client sees it, and where its orders end up: the orders table
    and the DLQ. Keeps what was posted and accepted in this run."""

    def __init__(self, aws: Aws, resources: StorageFirst, run_id: str) -> None:
        self.aws = aws
        self.resources = resources
        self.run_id = run_id
        self.sqs = aws.client("sqs")
        self.accepted: list[str] = []  # order ids answered 202 on POST /orders
        self.posted = 0  # requests made to POST /orders
        self.receives: dict[str, int] = {}  # order id -> receives before the move to the DLQ

    def post(self, path: str, orders: list[dict[str, Any]]) -> list[requests.Response]:
        """POST each order at once."""
        with ThreadPoolExecutor(max_workers=len(orders)) as pool:
            return list(
                pool.map(
                    lambda order: requests.post(
                        f"{self.resources.api.url}{path}", json=order, timeout=10
                    ),
                    orders,
                )
            )

    def new(self, label: str, count: int) -> list[dict[str, Any]]:
        return [
            {
                "order_id": f"{self.run_id}-{label}-{number}",
                "customer": f"c{number}",
                "amount": 10 + number,
            }
            for number in range(count)
        ]

    def processed(self, ids: list[str], via: str = "queue") -> list[str]:
        """The orders among `ids` the consumer wrote, having got them `via` queue or inbox."""
        found = []
        for order_id in ids:
            item = items.get(self.aws, self.resources.orders_table, {"id": order_id})
            if item and item["via"] == via:
                found.append(order_id)
        return found

    def stored_count(self) -> int:
        """Orders of this run the consumer wrote, counted in the orders table itself."""
        return len(
            items.scan(
                self.aws,
                self.resources.orders_table,
                FilterExpression="begins_with(id, :run)",
                ExpressionAttributeValues={":run": {"S": self.run_id}},
                ConsistentRead=True,
            )
        )

    def in_dlq(self) -> list[str]:
        """This run's orders in the DLQ now (left there)."""
        found = []
        for order_id, count in _peek(self.sqs, self.resources.dlq.url):
            if self.run_id in order_id:
                found.append(order_id)
                # The count moves with the message; the first peek adds one receive.
                self.receives.setdefault(order_id, count - 1)
        return found


def check_accepted_while_broken(
    scenario: Scenario, resources: StorageFirst, orders: Orders, lambda_: Any
) -> list[str]:
    with scenario.step("POST succeeds while the consumer is broken"):
        # The inbox stream is not part of this; its mapping waits until the variant's turn.
        _set_mapping(lambda_, resources.stream_mapping, enabled=False)
        _set_broken(lambda_, resources.consumer, True)
        scenario.note("deployed the consumer with BROKEN=true: every record it gets fails")
        first = orders.new("broken", 3)
        answers = orders.post("/orders", first)
        scenario.check(
            "status codes",
            expected=[202] * 3,
            seen=[answer.status_code for answer in answers],
        )
        scenario.check_that(
            "each answer carries the SQS message id",
            all(answer.json().get("messageId") for answer in answers),
            expected="a messageId each",
            seen=[answer.json() for answer in answers],
        )
        orders.posted += len(first)
        orders.accepted += [order["order_id"] for order in first]
    return [order["order_id"] for order in first]


def check_dead_lettered(
    scenario: Scenario, resources: StorageFirst, orders: Orders, ids: list[str]
) -> None:
    with scenario.step(
        f"Each order fails, is retried, and reaches the DLQ after "
        f"maxReceiveCount={resources.max_receive_count}"
    ):
        await_value(
            orders.in_dlq,
            until=lambda found: sorted(found) == sorted(ids),
            timeout=40,
            waiting_for="the three orders in the DLQ",
        )
        scenario.check_that(
            "times each was received (and failed) before the move",
            all(orders.receives[order_id] >= resources.max_receive_count for order_id in ids),
            expected=f">= {resources.max_receive_count} each",
            seen={order_id[-8:]: orders.receives[order_id] for order_id in ids},
        )
        # A failure may be transient: each order must get another try before the DLQ,
        # whatever maxReceiveCount the bootstrap chose.
        scenario.check_that(
            "each order was retried before the move (receives)",
            all(orders.receives[order_id] >= 2 for order_id in ids),
            expected=">= 2 each",
            seen={order_id[-8:]: orders.receives[order_id] for order_id in ids},
        )
        scenario.check("orders processed", expected=[], seen=orders.processed(ids))


def check_queue_waits(
    scenario: Scenario, resources: StorageFirst, orders: Orders, lambda_: Any
) -> None:
    with scenario.step("With the consumer off, new orders wait in the queue; turned on, it drains"):
        _set_mapping(lambda_, resources.queue_mapping, enabled=False)
        _set_broken(lambda_, resources.consumer, False)
        scenario.note("fixed the consumer (BROKEN=false) with its queue mapping disabled")
        second = orders.new("queued", 4)
        answers = orders.post("/orders", second)
        scenario.check(
            "status codes",
            expected=[202] * 4,
            seen=[answer.status_code for answer in answers],
        )
        orders.posted += len(second)
        ids = [order["order_id"] for order in second]
        orders.accepted += ids
        await_value(
            lambda: observe.depth(orders.aws, resources.queue.url),
            until=lambda depth: depth >= 4,
            timeout=10,
            waiting_for="4 messages in the queue",
        )
        holds_for(lambda: orders.processed(ids), until=lambda found: not found, duration=2)
        scenario.check(
            "messages waiting in the queue",
            expected=4,
            seen=observe.depth(orders.aws, resources.queue.url),
        )
        _set_mapping(lambda_, resources.queue_mapping, enabled=True)
        scenario.note("enabled the queue mapping again")
        done = await_value(
            lambda: orders.processed(ids),
            until=lambda found: len(found) == len(ids),
            timeout=30,
            waiting_for="the four queued orders to be processed",
        )
        scenario.check("orders processed", expected=sorted(ids), seen=sorted(done))
        observe.await_empty(
            orders.aws, resources.queue.url, timeout=20, waiting_for="the queue to be empty"
        )


def check_bad_input(
    scenario: Scenario, resources: StorageFirst, orders: Orders, lambda_: Any
) -> None:
    with scenario.step("Bad input gets 400 and is never stored; in = processed + rejected + DLQ"):
        bad: list[dict[str, Any]] = [
            {"order_id": f"{orders.run_id}-bad-0", "customer": "c"},  # no amount
            {"order_id": f"{orders.run_id}-bad-1", "customer": "c", "amount": -5},
            {"order_id": f"{orders.run_id}-bad-2", "customer": "c", "amount": "ten"},
        ]
        answers = orders.post("/orders", bad)
        scenario.check(
            "status codes",
            expected=[400] * 3,
            seen=[answer.status_code for answer in answers],
        )
        scenario.note(f"LocalStack's validator says only: {answers[0].json()}")
        orders.posted += len(bad)
        refused = sum(answer.status_code == 400 for answer in answers)
        holds_for(
            lambda: orders.processed([order["order_id"] for order in bad]) + orders.in_dlq(),
            until=lambda found: not any("-bad-" in order_id for order_id in found),
            duration=2,
        )
        stored_count, dead_count = orders.stored_count(), len(orders.in_dlq())
        scenario.check_that(
            "nothing lost",
            orders.posted == stored_count + refused + dead_count,
            expected=f"{orders.posted} posted = processed + rejected + in the DLQ",
            seen=f"{orders.posted} posted; {stored_count} in {resources.orders_table} + "
            f"{refused} answered 400 + {dead_count} in {resources.dlq.name}",
        )


def check_redrive(
    scenario: Scenario, resources: StorageFirst, orders: Orders, lambda_: Any
) -> None:
    with scenario.step("Redriving the DLQ processes the dead-lettered orders: nothing lost"):
        task = orders.sqs.start_message_move_task(
            SourceArn=resources.dlq.arn, DestinationArn=resources.queue.arn
        )
        scenario.note(f"StartMessageMoveTask {task['TaskHandle'][:24]}…")
        await_value(
            lambda: orders.processed(orders.accepted),
            until=lambda found: len(found) == len(orders.accepted),
            timeout=30,
            waiting_for="every accepted order to be processed",
        )
        scenario.check("this run's orders left in the DLQ", expected=[], seen=orders.in_dlq())


def check_inbox(scenario: Scenario, resources: StorageFirst, orders: Orders, lambda_: Any) -> None:
    with scenario.step("DynamoDB variant: PutItem stores the order while no code runs"):
        inbox = orders.new("inbox", 2)
        answers = orders.post("/inbox", inbox)
        scenario.check(
            "status codes",
            expected=[202] * 2,
            seen=[answer.status_code for answer in answers],
        )
        ids = [order["order_id"] for order in inbox]
        for answer, order in zip(answers, inbox, strict=True):
            item = items.get(orders.aws, resources.inbox_table, {"id": answer.json()["id"]})
            scenario.check(
                f"inbox item {answer.json()['id'][:8]}… holds the request",
                expected=order,
                seen=json.loads(item["body"]) if item else None,
            )
        holds_for(
            lambda: orders.processed(ids, via="inbox"), until=lambda found: not found, duration=2
        )
        _set_mapping(lambda_, resources.stream_mapping, enabled=True)
        scenario.note("enabled the stream mapping")
        done = await_value(
            lambda: orders.processed(ids, via="inbox"),
            until=lambda found: len(found) == len(ids),
            timeout=40,
            waiting_for="the inbox orders to be processed from the stream",
        )
        scenario.check("orders processed from the stream", expected=sorted(ids), seen=sorted(done))


def check_inbox_broken(
    scenario: Scenario, resources: StorageFirst, orders: Orders, lambda_: Any
) -> None:
    with scenario.step("DynamoDB variant, consumer broken: the order stays in the inbox table"):
        _set_broken(lambda_, resources.consumer, True)
        order = orders.new("inbox-broken", 1)[0]
        answer = orders.post("/inbox", [order])[0]
        scenario.check("status code", expected=202, seen=answer.status_code)
        inbox_id = answer.json()["id"]
        sequence = await_value(
            lambda: _sequence_of(orders.aws, resources.inbox_table, inbox_id),
            timeout=10,
            waiting_for="the inbox item's stream record",
        )
        record = await_value(
            lambda: observe.take(
                orders.aws, resources.dlq.url, lambda message: _covers(message, sequence)
            ),
            timeout=40,
            waiting_for="the stream mapping's on-failure record in the DLQ",
        )
        context = json.loads(record["Body"])["requestContext"]
        scenario.check(
            "on-failure record points at the order's stream record",
            expected=("RetryAttemptsExhausted", resources.max_receive_count + 1),
            seen=(context["condition"], context["approximateInvokeCount"]),
        )
        item = items.get(orders.aws, resources.inbox_table, {"id": inbox_id})
        scenario.check(
            "the order is still in the inbox table",
            expected=order,
            seen=json.loads(item["body"]) if item else None,
        )
        scenario.check(
            "orders processed", expected=[], seen=orders.processed([order["order_id"]], "inbox")
        )
        _set_broken(lambda_, resources.consumer, False)
        stale = 0
        while observe.take(
            orders.aws, resources.dlq.url, lambda message: "DDBStreamBatchInfo" in message["Body"]
        ):
            stale += 1
        scenario.note(f"removed {stale} other on-failure record(s) from the DLQ")


@contextmanager
def _restored(lambda_: Any, resources: StorageFirst) -> Iterator[None]:
    """Whatever happens, leave the consumer healthy and both mappings on."""
    try:
        yield
    finally:
        _set_broken(lambda_, resources.consumer, False)
        _set_mapping(lambda_, resources.queue_mapping, enabled=True)
        _set_mapping(lambda_, resources.stream_mapping, enabled=True)


def _set_broken(lambda_: Any, function: str, broken: bool) -> None:
    variables = lambda_.get_function_configuration(FunctionName=function)["Environment"][
        "Variables"
    ]
    wanted = "true" if broken else "false"
    if variables.get("BROKEN") == wanted:
        return
    lambda_.update_function_configuration(
        FunctionName=function, Environment={"Variables": {**variables, "BROKEN": wanted}}
    )
    provision.wait_for_function(lambda_, function)


def _set_mapping(lambda_: Any, uuid: str, *, enabled: bool) -> None:
    lambda_.update_event_source_mapping(UUID=uuid, Enabled=enabled)
    wanted = "Enabled" if enabled else "Disabled"
    await_value(
        lambda: lambda_.get_event_source_mapping(UUID=uuid)["State"],
        until=lambda state: state == wanted,
        timeout=20,
        waiting_for=f"mapping {uuid[:8]} to be {wanted}",
    )


def _sequence_of(aws: Aws, table: str, item_id: str) -> int | None:
    """The stream sequence number of the item's INSERT, if the stream has it yet."""
    streams = aws.client("dynamodbstreams")
    arn = aws.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                if items.plain(record["dynamodb"]["Keys"])["id"] == item_id:
                    return int(record["dynamodb"]["SequenceNumber"])
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return None


def _covers(message: dict[str, Any], sequence: int) -> bool:
    """An on-failure record for a stream batch that includes this sequence number."""
    try:
        batch = json.loads(message["Body"])["DDBStreamBatchInfo"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return False
    return int(batch["startSequenceNumber"]) <= sequence <= int(batch["endSequenceNumber"])


def _receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message in the queue now (each received once, then made visible again)."""
    messages: dict[str, dict[str, Any]] = {}
    while True:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=5,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        if not batch:
            break
        for message in batch:
            messages[message["MessageId"]] = message
    for message in messages.values():
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return list(messages.values())


def _peek(sqs: Any, url: str) -> list[tuple[str, int]]:
    """(order id, receive count) of every order message in the queue, left in place."""
    found = []
    for message in _receive_all(sqs, url):
        try:
            body = json.loads(message["Body"])
        except json.JSONDecodeError:
            continue
        if isinstance(body, dict) and isinstance(body.get("order_id"), str):
            found.append((body["order_id"], int(message["Attributes"]["ApproximateReceiveCount"])))
    return found
