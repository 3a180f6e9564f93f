"""Scenario for event-sourcing: an append-only store, rebuild by replay, snapshots, and a
replay of stored events to a fresh consumer through an EventBridge rule.

1. Two carts' events are appended in batches; the store snapshots every N versions.
2. The store is append-only: two appends racing for the same version -> one is refused, and
   a late writer's transaction for a used version is cancelled by its conditions.
3. Bad events (no or wrong stream id, no, used or skipped version, a batch with one bad
   event) are refused with a clear error and stored nowhere.
4. The cart rebuilt by full replay equals the live state, and the latest snapshot plus the
   events after it gives the same state while reading fewer events.
5. A consumer created now (a rule with an event pattern -> a new SQS queue) is fed a replay
   of the stored events and receives exactly the events its filter selects.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bootstrap.event_sourcing import EventSourcing
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, holds_for, unique_name
from sandbox.observe import drain, invoke
from sandbox.provision import allow_service_to_send, ensure_queue, ensure_rule


def run(aws: Aws, resources: EventSourcing, scenario: Scenario) -> None:
    dynamodb = aws.client("dynamodb")

    def append(*events: dict[str, Any]) -> dict[str, Any]:
        return invoke(aws, resources.append_function, {"events": list(events)})

    def load(stream_id: str, source: str) -> dict[str, Any]:
        return invoke(aws, resources.load_function, {"stream_id": stream_id, "source": source})

    def versions(stream_id: str) -> list[int]:
        items = dynamodb.query(
            TableName=resources.events_table,
            KeyConditionExpression="stream_id = :id",
            ExpressionAttributeValues={":id": {"S": stream_id}},
            ConsistentRead=True,
        )["Items"]
        return [int(i["version"]["N"]) for i in items]

    cart, other = unique_name("cart-a"), unique_name("cart-b")

    def ev(stream: str, version: int, kind: str, **data: Any) -> dict[str, Any]:
        return {"stream_id": stream, "version": version, "type": kind, "data": data}

    def added(stream: str, version: int, sku: str, quantity: int, price: int) -> dict[str, Any]:
        return ev(stream, version, "ItemAdded", sku=sku, quantity=quantity, price=price)

    with scenario.step(
        f"Events are appended; a snapshot is kept every {resources.snapshot_every} versions"
    ):
        batches = [
            [
                ev(cart, 1, "CartOpened", customer="Ada"),
                added(cart, 2, "apple", 2, 50),
                added(cart, 3, "pear", 1, 80),
                added(cart, 4, "fig", 3, 20),
            ],
            [
                ev(cart, 5, "ItemRemoved", sku="pear"),
                added(cart, 6, "apple", 1, 50),
                added(cart, 7, "kiwi", 5, 10),
                added(cart, 8, "plum", 1, 30),
            ],
            [
                ev(cart, 9, "ItemRemoved", sku="plum"),
                added(cart, 10, "grape", 2, 40),
                added(cart, 11, "melon", 1, 300),
                ev(cart, 12, "CartCheckedOut"),
            ],
            [
                ev(other, 1, "CartOpened", customer="Bo"),
                added(other, 2, "fig", 4, 25),
                added(other, 3, "kiwi", 1, 99),
            ],
        ]
        answers = [append(*batch) for batch in batches]
        for answer in answers:
            scenario.note(
                f"{answer['stream_id']}: +{answer['appended']} -> version {answer['version']}, "
                f"snapshot {answer['snapshot']}"
            )
        scenario.check("versions stored", expected=list(range(1, 13)), seen=versions(cart))
        scenario.check(
            "snapshots taken", expected=[None, 5, 10, None], seen=[a["snapshot"] for a in answers]
        )

    with scenario.step("The store is append-only: two appends at the same version, one refused"):
        racing = [added(other, 4, "plum", 1, 30), added(other, 4, "pear", 2, 80)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(lambda e: append(e), racing))
        for result in results:
            scenario.note(f"append v4 -> {result.get('version') or result.get('message')}")
        scenario.check(
            "outcomes",
            expected=[1, 0],
            seen=sorted((r["appended"] for r in results), reverse=True),
        )
        scenario.check(
            "the refusal",
            expected=["VersionConflict"],
            seen=[r["error"] for r in results if "error" in r],
        )
        # A writer that read version 3 just before the winner appended would pass the version
        # check; the transaction's conditions are what stop it.
        late = {
            "stream_id": {"S": other},
            "version": {"N": "4"},
            "type": {"S": "ItemAdded"},
            "data": {"S": json.dumps({"sku": "fig", "quantity": 1, "price": 25})},
            "at": {"S": "2026-01-01T00:00:00+00:00"},
        }
        try:
            dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": resources.events_table,
                            "Item": late,
                            "ConditionExpression": "attribute_not_exists(version)",
                        }
                    },
                    {
                        "ConditionCheck": {
                            "TableName": resources.state_table,
                            "Key": {"stream_id": {"S": other}},
                            "ConditionExpression": "version = :v",
                            "ExpressionAttributeValues": {":v": {"N": "3"}},
                        }
                    },
                ]
            )
            reasons = ["stored"]
        except dynamodb.exceptions.TransactionCanceledException as error:
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
        scenario.check(
            "a late append of version 4 (the append's transaction): cancelled because",
            expected=["ConditionalCheckFailed", "ConditionalCheckFailed"],
            seen=reasons,
        )
        scenario.check("versions stored", expected=[1, 2, 3, 4], seen=versions(other))

    with scenario.step("Bad events are refused with a clear error and stored nowhere"):
        ghost = unique_name("cart-ghost")
        no_stream = added(other, 5, "fig", 1, 25)
        del no_stream["stream_id"]
        no_version = added(other, 5, "fig", 1, 25)
        del no_version["version"]
        bad = [
            ([no_stream], "WrongStream"),
            ([added(ghost, 1, "fig", 1, 25)], "WrongStream"),
            ([added(other, 5, "fig", 1, 25), added(cart, 13, "fig", 1, 25)], "WrongStream"),
            ([no_version], "WrongVersion"),
            ([added(other, 7, "fig", 1, 25)], "WrongVersion"),
            ([added(other, 2, "fig", 1, 25)], "VersionConflict"),
            ([added(other, 5, "fig", 1, 25), added(other, 6, "fig", 0, 25)], "InvalidEvent"),
            ([added(cart, 13, "fig", 1, 25)], "Rejected"),
        ]
        for events, code in bad:
            answer = append(*events)
            scenario.check(
                f"{code}: {answer.get('message')}",
                expected=(0, code),
                seen=(answer["appended"], answer.get("error")),
            )
        scenario.check("events of the unknown stream", expected=[], seen=versions(ghost))
        scenario.check("versions of the other cart", expected=[1, 2, 3, 4], seen=versions(other))
        scenario.check(
            "versions of the checked-out cart", expected=list(range(1, 13)), seen=versions(cart)
        )

    with scenario.step("Rebuilt by replay = live state; snapshot + tail = full replay"):
        full, from_snapshot, live = (load(cart, src) for src in ("events", "snapshot", "live"))
        scenario.note(f"full replay read {full['events_read']} events")
        scenario.note(
            f"snapshot v{from_snapshot['snapshot_version']} + "
            f"{from_snapshot['events_read']} events after it"
        )
        scenario.check(
            "snapshot + tail = full replay", expected=full["state"], seen=from_snapshot["state"]
        )
        scenario.check("full replay = live state", expected=live["state"], seen=full["state"])
        scenario.check(
            "events read: full, from snapshot",
            expected=(12, 2),
            seen=(full["events_read"], from_snapshot["events_read"]),
        )
        scenario.check(
            "the cart",
            expected=("CHECKED_OUT", 640, 12),
            seen=(full["state"]["status"], full["state"]["total"], full["version"]),
        )
        other_full, other_snap = load(other, "events"), load(other, "snapshot")
        scenario.check(
            "a stream with no snapshot yet rebuilds the same",
            expected=other_full["state"],
            seen=other_snap["state"],
        )

    with scenario.step("A fresh consumer gets a replay: only the events its filter selects"):
        replay_name = unique_name("replay")
        pattern = {
            "source": [resources.event_source],
            "detail-type": ["ItemAdded"],
            "detail": {
                "replay_name": [replay_name],
                "data": {"quantity": [{"numeric": [">=", 2]}]},
            },
        }
        scenario.note(f"consumer filter: {json.dumps(pattern)}")
        consumer = _Consumer(aws, resources.bus, replay_name, pattern)
        try:
            stored = [
                e
                for stream in (cart, other)
                for e in _stored(dynamodb, resources.events_table, stream)
            ]
            wanted = sorted(
                (e["stream_id"], e["version"])
                for e in stored
                if e["type"] == "ItemAdded" and e["data"]["quantity"] >= 2
            )
            answer = invoke(
                aws,
                resources.replay_function,
                {"replay_name": replay_name, "stream_ids": [cart, other]},
            )
            scenario.check(
                "events replayed onto the bus",
                expected=(len(stored), 0),
                seen=(answer["published"], answer["failed"]),
            )
            await_value(
                consumer.receive,
                until=lambda got: len(got) >= len(wanted),
                timeout=30,
                waiting_for=f"{len(wanted)} events at the consumer",
            )
            got = holds_for(consumer.receive, until=lambda g: len(g) == len(wanted), duration=2)
            scenario.check(
                "events the consumer received (stream, version)",
                expected=wanted,
                seen=sorted((e["stream_id"], e["version"]) for e in got),
            )
            scenario.note(f"{len(stored)} events replayed, {len(got)} selected by the filter")
        finally:
            consumer.delete()


def _stored(dynamodb: Any, table: str, stream_id: str) -> list[dict[str, Any]]:
    items = dynamodb.query(
        TableName=table,
        KeyConditionExpression="stream_id = :id",
        ExpressionAttributeValues={":id": {"S": stream_id}},
        ConsistentRead=True,
    )["Items"]
    return [
        {
            "stream_id": i["stream_id"]["S"],
            "version": int(i["version"]["N"]),
            "type": i["type"]["S"],
            "data": json.loads(i["data"]["S"]),
        }
        for i in items
    ]


class _Consumer:
    """A consumer that did not exist when the events were stored: a rule on the bus with an
    event pattern, delivering to its own new queue. Removed again after the step."""

    def __init__(self, aws: Aws, bus: str, name: str, pattern: dict[str, Any]) -> None:
        self.aws, self.events, self.sqs = aws, aws.client("events"), aws.client("sqs")
        self.bus, self.rule = bus, f"event-sourcing-consumer-{name}"
        self.queue = ensure_queue(aws, self.rule)
        rule_arn = ensure_rule(
            aws,
            self.rule,
            targets=[{"Id": "queue", "Arn": self.queue.arn}],
            pattern=pattern,
            bus=bus,
        )
        allow_service_to_send(aws, self.queue, "events.amazonaws.com", [rule_arn])
        self.received: list[dict[str, Any]] = []

    def receive(self) -> list[dict[str, Any]]:
        """Every event delivered so far (the queue is this consumer's own: drained)."""
        drained = drain(self.aws, self.queue.url)
        self.received.extend(json.loads(m["Body"])["detail"] for m in drained)
        return list(self.received)

    def delete(self) -> None:
        self.events.remove_targets(Rule=self.rule, EventBusName=self.bus, Ids=["queue"])
        self.events.delete_rule(Name=self.rule, EventBusName=self.bus)
        self.sqs.delete_queue(QueueUrl=self.queue.url)
