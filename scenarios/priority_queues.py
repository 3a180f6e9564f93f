"""Scenario for priority-queues.

1. Two SQS queues: 50 normal messages (and one malformed) are queued and the consumer starts
   draining them; once it has processed some (read from its table), 1 high message is sent.
   The consumer takes the high one before the normal ones still queued: at most the batch
   it already held comes between the high one's arrival and its processing. Order and times
   come from what the consumer stored.
2. The malformed message is redelivered, then lands in the normal queue's DLQ; nothing is
   lost (messages in = processed + DLQ).
3. DynamoDB queue: equal priorities come out first in, first out; re-prioritising items
   changes the dequeue order.
4. Four dequeuers run concurrently on 40 items: every item is dequeued exactly once.
5. Bad requests (a priority that is not a number, re-prioritising a dequeued item) get a
   clear error.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bootstrap.priority_queues import PriorityQueues
from sandbox import items, observe
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, unique_name

NORMAL_COUNT, CONCURRENT_ITEMS, DEQUEUERS = 50, 40, 4
WORK_SECONDS = 0.1  # each normal message's work: the drain takes ~5 s, time to arrive mid-way
STARTED_AFTER = 5  # normal messages processed before the high one is sent
BATCH = 10  # what one receive hands the consumer: the most it may finish before the high one


def run(aws: Aws, resources: PriorityQueues, scenario: Scenario) -> None:
    run_id = unique_name("prio")
    sent = high_arrives_mid_drain(aws, resources, scenario, run_id)
    malformed_ends_in_dlq(aws, resources, scenario, run_id, sent)
    reprioritising_changes_order(aws, resources, scenario, run_id)
    concurrent_dequeuers_never_share(aws, resources, scenario, run_id)
    bad_requests_get_clear_errors(aws, resources, scenario, run_id)


def high_arrives_mid_drain(
    aws: Aws, resources: PriorityQueues, scenario: Scenario, run_id: str
) -> list[str]:
    """Returns the ids of the well-formed messages sent."""
    sqs = aws.client("sqs")
    normal_ids = [f"{run_id}-n{number:02d}" for number in range(NORMAL_COUNT)]
    high_id = f"{run_id}-high"
    with scenario.step(
        f"{NORMAL_COUNT} normal messages draining; 1 high arrives mid-drain and goes next"
    ):
        bodies = [
            json.dumps({"id": normal_id, "priority": "normal", "work": WORK_SECONDS})
            for normal_id in normal_ids
        ] + [_malformed(run_id)]
        for start in range(0, len(bodies), 10):
            sqs.send_message_batch(
                QueueUrl=resources.normal.url,
                Entries=[
                    {"Id": str(index), "MessageBody": body}
                    for index, body in enumerate(bodies[start : start + 10])
                ],
            )
        scenario.note(f"queued {NORMAL_COUNT} normal + 1 malformed; the consumer starts")
        with ThreadPoolExecutor(1) as pool:
            drain = pool.submit(observe.call, aws, resources.consumer_function, {"budget": 100})
            await_value(
                lambda: len(_stored(aws, resources.processed_table, normal_ids)),
                until=lambda count: count >= STARTED_AFTER,
                timeout=30,
                waiting_for=f"the consumer to process {STARTED_AFTER} normal messages",
            )
            high_sent_at = time.time_ns()
            sqs.send_message(
                QueueUrl=resources.high.url,
                MessageBody=json.dumps({"id": high_id, "priority": "high"}),
            )
            error, drained = drain.result(timeout=90)
        scenario.check("consumer error", expected=None, seen=error)
        stored = _stored(aws, resources.processed_table, [*normal_ids, high_id])
        order = sorted(stored, key=lambda item: item["seq"])
        high = next((item for item in order if item["id"] == high_id), None)
        scenario.check_that(
            "the high message was processed in the same drain",
            high is not None and high["priority"] == "high",
            expected="stored with priority high",
            seen=high,
        )
        assert high is not None
        before_arrival = [
            item for item in order if item["at"] < high_sent_at and item["id"] != high_id
        ]
        jumped_by = [
            item for item in order if high_sent_at <= item["at"] and item["seq"] < high["seq"]
        ]
        after = [item for item in order if item["seq"] > high["seq"]]
        scenario.note(
            f"normal processed before the high one arrived: {len(before_arrival)}; after it "
            f"arrived but before it: {len(jumped_by)}; after it: {len(after)}"
        )
        scenario.check_that(
            "it arrived mid-drain (normal ones processed before and after it)",
            len(before_arrival) >= STARTED_AFTER and len(after) > 0,
            expected=f">= {STARTED_AFTER} before its arrival, > 0 after it",
            seen=f"{len(before_arrival)} before, {len(after)} after",
        )
        scenario.check_that(
            "normal messages processed between its arrival and it",
            len(jumped_by) <= BATCH,
            expected=f"at most the batch in hand ({BATCH})",
            seen=len(jumped_by),
        )
        scenario.check(
            "normal messages stored, each once",
            expected=sorted(normal_ids),
            seen=sorted(item["id"] for item in order if item["id"] != high_id),
        )
        failed = drained.get("failed", [])
        scenario.check_that(
            "the malformed one was left for redelivery",
            len(failed) >= 1,
            expected="at least 1 failed",
            seen=failed[:1],
        )
    return [*normal_ids, high_id]


def malformed_ends_in_dlq(
    aws: Aws, resources: PriorityQueues, scenario: Scenario, run_id: str, sent: list[str]
) -> None:
    sqs = aws.client("sqs")
    bad_body = _malformed(run_id)
    with scenario.step("The malformed message is redelivered, then lands in the DLQ; nothing lost"):

        def drain_and_look() -> dict[str, Any] | None:
            observe.call(aws, resources.consumer_function, {"budget": 20})
            return observe.find(aws, resources.normal_dlq.url, observe.with_body(bad_body))

        dead = await_value(
            drain_and_look, timeout=45, interval=0.5, waiting_for="the malformed message in the DLQ"
        )
        receives = int(dead["Attributes"]["ApproximateReceiveCount"])
        sqs.change_message_visibility(  # back for the tally below, which reads the DLQ
            QueueUrl=resources.normal_dlq.url,
            ReceiptHandle=dead["ReceiptHandle"],
            VisibilityTimeout=0,
        )
        scenario.check_that(
            "receives before the move",
            receives >= resources.max_receive_count,
            expected=f">= {resources.max_receive_count}",
            seen=receives,
        )
        scenario.check_that(
            "it was redelivered before the move (receives, less the one that found it)",
            receives - 1 >= 2,
            expected=">= 2",
            seen=receives - 1,
        )
        observe.check_nothing_lost(
            scenario,
            aws,
            sent=len(sent) + 1,  # and the malformed one
            processed=len(_stored(aws, resources.processed_table, sent)),
            dlq=resources.normal_dlq,
            of_run=lambda message: run_id in message["Body"],
        )


def reprioritising_changes_order(
    aws: Aws, resources: PriorityQueues, scenario: Scenario, run_id: str
) -> None:
    with scenario.step("DynamoDB queue: re-prioritising items changes the dequeue order"):
        queue = f"{run_id}-order"
        # Enqueued out of name order, so first in, first out is not the names' order; and
        # re-prioritised across a digit (1, 5, 10), so priorities must compare as numbers.
        names = ["c", "d", "a", "b"]
        for name in names:
            _items_call(aws, resources, action="enqueue", queue=queue, id=name, priority=5)
        scenario.note("enqueued c, d, a, b at priority 5 (first in, first out within a priority)")
        _items_call(aws, resources, action="reprioritise", queue=queue, id="b", priority=1)
        _items_call(aws, resources, action="reprioritise", queue=queue, id="c", priority=10)
        scenario.note("re-prioritised b to 1 (sooner) and c to 10 (later)")
        order = []
        for _ in names:
            got = _items_call(
                aws, resources, action="dequeue", queue=queue, worker="w", max_items=1
            )
            order += [item["item_id"] for item in got["items"]]
        scenario.check("dequeue order", expected=["b", "d", "a", "c"], seen=order)
        empty = _items_call(aws, resources, action="dequeue", queue=queue, worker="w", max_items=1)
        scenario.check("dequeue on an empty queue", expected=[], seen=empty["items"])


def concurrent_dequeuers_never_share(
    aws: Aws, resources: PriorityQueues, scenario: Scenario, run_id: str
) -> None:
    with scenario.step(
        f"{DEQUEUERS} concurrent dequeuers on {CONCURRENT_ITEMS} items never share one"
    ):
        queue = f"{run_id}-race"
        wanted = [f"i{number:02d}" for number in range(CONCURRENT_ITEMS)]
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda item_id: _items_call(
                        aws,
                        resources,
                        action="enqueue",
                        queue=queue,
                        id=item_id,
                        priority=int(item_id[1:]) % 3,
                    ),
                    wanted,
                )
            )
        with ThreadPoolExecutor(DEQUEUERS) as pool:
            results = list(
                pool.map(
                    lambda worker: _items_call(
                        aws,
                        resources,
                        action="dequeue",
                        queue=queue,
                        worker=f"worker-{worker}",
                        max_items=CONCURRENT_ITEMS,
                    ),
                    range(DEQUEUERS),
                )
            )
        got = [item["item_id"] for result in results for item in result["items"]]
        per_worker = {result["worker"]: len(result["items"]) for result in results}
        scenario.note(
            f"items per dequeuer {per_worker}; claims lost to another dequeuer: "
            f"{sum(result['conflicts'] for result in results)}"
        )
        scenario.check(
            "items dequeued twice",
            expected=[],
            seen=sorted({item_id for item_id in got if got.count(item_id) > 1}),
        )
        scenario.check_that(
            "items dequeued",
            sorted(got) == sorted(wanted),
            expected=f"all {CONCURRENT_ITEMS}",
            seen=len(set(got)),
        )
        busy = sum(count > 0 for count in per_worker.values())
        scenario.check_that(
            "dequeuers that got items (they ran side by side)",
            busy > 1,
            expected="more than 1",
            seen=busy,
        )
        stored = _stored(aws, resources.items_table, [f"{queue}#{item_id}" for item_id in wanted])
        stored_workers: dict[str, list[str]] = {}
        for item in stored:
            stored_workers.setdefault(item.get("worker", "(none)"), []).append(item["item_id"])
        scenario.check_that(
            "each item's stored worker is the dequeuer that got it",
            {worker: sorted(ids) for worker, ids in stored_workers.items()}
            == {
                result["worker"]: sorted(item["item_id"] for item in result["items"])
                for result in results
                if result["items"]
            },
            expected="the same item sets",
            seen={worker: len(ids) for worker, ids in stored_workers.items()},
        )


def bad_requests_get_clear_errors(
    aws: Aws, resources: PriorityQueues, scenario: Scenario, run_id: str
) -> None:
    with scenario.step("Bad requests get a clear error"):
        queue = f"{run_id}-bad"
        _, answer = observe.call(
            aws,
            resources.items_function,
            {"action": "enqueue", "queue": queue, "id": "x", "priority": "urgent"},
        )
        scenario.check("error type", expected="InvalidRequest", seen=answer.get("errorType"))
        scenario.check_that(
            "message",
            "priority must be an integer" in answer.get("errorMessage", ""),
            expected="priority must be an integer …",
            seen=answer.get("errorMessage"),
        )
        _items_call(aws, resources, action="enqueue", queue=queue, id="y", priority=1)
        _items_call(aws, resources, action="dequeue", queue=queue, worker="w", max_items=1)
        _, answer = observe.call(
            aws,
            resources.items_function,
            {"action": "reprioritise", "queue": queue, "id": "y", "priority": 0},
        )
        scenario.check(
            "re-prioritising a dequeued item",
            expected="InvalidRequest",
            seen=answer.get("errorType"),
        )
        scenario.note(answer.get("errorMessage", ""))


def _items_call(aws: Aws, resources: PriorityQueues, **request: Any) -> Any:
    """One request to the DynamoDB queue's function; an error raises."""
    return observe.invoke(aws, resources.items_function, request)


def _malformed(run_id: str) -> str:
    return f"not a message {run_id}"


def _stored(aws: Aws, table: str, ids: list[str]) -> list[items.Item]:
    """The items with these ids (plain values), read in batches of 100."""
    dynamodb = aws.client("dynamodb")
    found: list[items.Item] = []
    for start in range(0, len(ids), 100):
        keys = [items.wire({"id": item_id}) for item_id in ids[start : start + 100]]
        answer = dynamodb.batch_get_item(
            RequestItems={table: {"Keys": keys, "ConsistentRead": True}}
        )
        found += [items.plain(item) for item in answer["Responses"][table]]
    return found
