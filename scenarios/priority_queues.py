"""Scenario for priority-queues.

1. Two SQS queues: with 50 normal messages (and one malformed) queued before 1 high one, the
   consumer processes the high one first, then all the normal ones.
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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bootstrap.priority_queues import PriorityQueues
from sandbox import observe
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, unique_name

NORMAL_COUNT, CONCURRENT_ITEMS, DEQUEUERS = 50, 40, 4


def run(aws: Aws, resources: PriorityQueues, scenario: Scenario) -> None:
    sqs, dynamodb = aws.client("sqs"), aws.client("dynamodb")
    run_id = unique_name("prio")

    def items(payload: dict[str, Any]) -> Any:
        return observe.invoke(aws, resources.items_function, payload)

    normal_ids = [f"{run_id}-n{i:02d}" for i in range(NORMAL_COUNT)]
    high_id = f"{run_id}-high"
    bad_body = f"not a message {run_id}"
    mine: set[str] = {*normal_ids, high_id}
    processed: list[dict[str, Any]] = []

    with scenario.step(
        f"{NORMAL_COUNT} normal messages queued, then 1 high: the high one goes first"
    ):
        bodies = [json.dumps({"id": i, "priority": "normal"}) for i in normal_ids] + [bad_body]
        for start in range(0, len(bodies), 10):
            sqs.send_message_batch(
                QueueUrl=resources.normal.url,
                Entries=[
                    {"Id": str(n), "MessageBody": body}
                    for n, body in enumerate(bodies[start : start + 10])
                ],
            )
        sqs.send_message(
            QueueUrl=resources.high.url, MessageBody=json.dumps({"id": high_id, "priority": "high"})
        )
        scenario.note(f"queued {NORMAL_COUNT} normal + 1 malformed, then 1 high")
        error, drained = observe.call(aws, resources.consumer_function, {"budget": 100})
        scenario.check("consumer error", expected=None, seen=error)
        processed = [p for p in drained["processed"] if p["id"] in mine]
        scenario.check("first processed", expected=(high_id, "high"), seen=_first(processed))
        after = [p["id"] for p in processed[1:]]
        scenario.check_that(
            "normal messages processed after it",
            sorted(after) == sorted(normal_ids),
            expected=f"all {NORMAL_COUNT}, once each",
            seen=f"{len(set(after))} distinct of {len(after)}",
        )
        stored = _stored(dynamodb, resources.processed_table, sorted(mine))
        scenario.check("processed items stored", expected=len(mine), seen=len(stored))
        scenario.check_that(
            "the malformed one was left for redelivery",
            len(drained["failed"]) >= 1,
            expected="at least 1 failed",
            seen=drained["failed"][:1],
        )

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
        observe.check_nothing_lost(
            scenario,
            aws,
            sent=len(mine) + 1,  # and the malformed one
            processed=len(_stored(dynamodb, resources.processed_table, sorted(mine))),
            dlq=resources.normal_dlq,
            of_run=lambda message: run_id in message["Body"],
        )

    with scenario.step("DynamoDB queue: re-prioritising items changes the dequeue order"):
        queue = f"{run_id}-order"
        names = ["a", "b", "c", "d"]
        for name in names:
            items({"action": "enqueue", "queue": queue, "id": name, "priority": 5})
        scenario.note("enqueued a, b, c, d at priority 5 (first in, first out within a priority)")
        items({"action": "reprioritise", "queue": queue, "id": "d", "priority": 1})
        items({"action": "reprioritise", "queue": queue, "id": "a", "priority": 9})
        scenario.note("re-prioritised d to 1 (sooner) and a to 9 (later)")
        order = []
        for _ in names:
            got = items({"action": "dequeue", "queue": queue, "worker": "w", "max_items": 1})
            order += [i["item_id"] for i in got["items"]]
        scenario.check("dequeue order", expected=["d", "b", "c", "a"], seen=order)
        empty = items({"action": "dequeue", "queue": queue, "worker": "w", "max_items": 1})
        scenario.check("dequeue on an empty queue", expected=[], seen=empty["items"])

    with scenario.step(
        f"{DEQUEUERS} concurrent dequeuers on {CONCURRENT_ITEMS} items never share one"
    ):
        queue = f"{run_id}-race"
        wanted = [f"i{n:02d}" for n in range(CONCURRENT_ITEMS)]
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda n: items(
                        {"action": "enqueue", "queue": queue, "id": n, "priority": int(n[1:]) % 3}
                    ),
                    wanted,
                )
            )
        with ThreadPoolExecutor(DEQUEUERS) as pool:
            results = list(
                pool.map(
                    lambda w: items(
                        {
                            "action": "dequeue",
                            "queue": queue,
                            "worker": f"worker-{w}",
                            "max_items": CONCURRENT_ITEMS,
                        }
                    ),
                    range(DEQUEUERS),
                )
            )
        got = [i["item_id"] for r in results for i in r["items"]]
        per_worker = {r["worker"]: len(r["items"]) for r in results}
        scenario.note(
            f"items per dequeuer {per_worker}; claims lost to another dequeuer: "
            f"{sum(r['conflicts'] for r in results)}"
        )
        scenario.check(
            "items dequeued twice", expected=[], seen=sorted({i for i in got if got.count(i) > 1})
        )
        scenario.check_that(
            "items dequeued",
            sorted(got) == sorted(wanted),
            expected=f"all {CONCURRENT_ITEMS}",
            seen=len(set(got)),
        )
        scenario.check_that(
            "dequeuers that got items (they ran side by side)",
            sum(n > 0 for n in per_worker.values()) > 1,
            expected="more than 1",
            seen=sum(n > 0 for n in per_worker.values()),
        )
        stored_workers = {
            r["worker"]: sorted(
                i["item_id"]
                for i in _stored_items(dynamodb, resources.items_table, queue, r["items"])
                if i["worker"] == r["worker"]
            )
            for r in results
        }
        scenario.check_that(
            "each item's stored worker is the dequeuer that got it",
            stored_workers
            == {r["worker"]: sorted(i["item_id"] for i in r["items"]) for r in results},
            expected="the same item sets",
            seen={w: len(ids) for w, ids in stored_workers.items()},
        )

    with scenario.step("Bad requests get a clear error"):
        queue = f"{run_id}-bad"
        error, answer = observe.call(
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
        items({"action": "enqueue", "queue": queue, "id": "y", "priority": 1})
        items({"action": "dequeue", "queue": queue, "worker": "w", "max_items": 1})
        error, answer = observe.call(
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


def _first(processed: list[dict[str, Any]]) -> tuple[str, str] | None:
    return (processed[0]["id"], processed[0]["priority"]) if processed else None


def _stored(dynamodb: Any, table: str, ids: list[str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), 100):
        keys = [{"id": {"S": i}} for i in ids[start : start + 100]]
        found += dynamodb.batch_get_item(RequestItems={table: {"Keys": keys}})["Responses"][table]
    return found


def _stored_items(
    dynamodb: Any, table: str, queue: str, items: list[dict[str, Any]]
) -> list[dict[str, str]]:
    stored = _stored(dynamodb, table, [f"{queue}#{i['item_id']}" for i in items])
    return [{"item_id": i["item_id"]["S"], "worker": i["worker"]["S"]} for i in stored]
