"""Scenario for event-sourcing: an append-only store, rebuild by replay, snapshots, and a
replay of stored events to a fresh consumer through an EventBridge rule.

1. Two carts' events are appended in batches; the store snapshots every N versions.
2. The store is append-only: two appends sent at once for the same version -> one is refused.
3. A late append loses, decided by the append handler itself: append A reads the stream at
   version 4 and is held (test hook) before its transaction; append B of version 5 is
   stored; A, released, is refused with VersionConflict by its transaction's conditions.
   The stream has versions 1..5, no gap and no duplicate, and version 5 is B's.
4. Bad events (no or wrong stream id, no, used or skipped version, a batch with one bad
   event) are refused with a clear error and stored nowhere.
5. The cart rebuilt by full replay equals the live state, and the latest snapshot plus the
   events after it gives the same state while reading fewer events.
6. A consumer created now (a rule with an event pattern -> a new SQS queue) is fed a replay
   of the stored events and receives exactly the events its filter selects.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bootstrap.event_sourcing import EventSourcing
from sandbox import items
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, holds_for, unique_name
from sandbox.observe import drain, invoke
from sandbox.provision import allow_service_to_send, ensure_queue, ensure_rule
from sandbox.race import HeldCall


class Store:
    """The pattern as a client sees it: append, load, replay, and the event table to inspect."""

    def __init__(self, aws: Aws, resources: EventSourcing) -> None:
        self.aws, self.resources = aws, resources

    def append(self, *events: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = invoke(
            self.aws, self.resources.append_function, {"events": list(events)}
        )
        return answer

    def load(self, stream_id: str, source: str) -> dict[str, Any]:
        answer: dict[str, Any] = invoke(
            self.aws, self.resources.load_function, {"stream_id": stream_id, "source": source}
        )
        return answer

    def stored(self, stream_id: str) -> list[dict[str, Any]]:
        """The stream's events as the table holds them, in version order (data decoded)."""
        found = items.query(
            self.aws,
            self.resources.events_table,
            KeyConditionExpression="stream_id = :id",
            ExpressionAttributeValues=items.wire({":id": stream_id}),
            ConsistentRead=True,
        )
        return [{**event, "data": json.loads(event["data"])} for event in found]

    def versions(self, stream_id: str) -> list[int]:
        return [event["version"] for event in self.stored(stream_id)]


def event(stream: str, version: int, kind: str, **data: Any) -> dict[str, Any]:
    return {"stream_id": stream, "version": version, "type": kind, "data": data}


def added(stream: str, version: int, sku: str, quantity: int, price: int) -> dict[str, Any]:
    return event(stream, version, "ItemAdded", sku=sku, quantity=quantity, price=price)


def run(aws: Aws, resources: EventSourcing, scenario: Scenario) -> None:
    store = Store(aws, resources)
    cart, other = unique_name("cart-a"), unique_name("cart-b")
    events_are_appended_with_snapshots(scenario, store, cart, other)
    appends_racing_at_one_version(scenario, store, other)
    late_append_loses(scenario, store, other)
    bad_events_are_refused(scenario, store, cart, other)
    rebuilt_states_agree(scenario, store, cart, other)
    fresh_consumer_gets_a_replay(scenario, aws, store, [cart, other])


def events_are_appended_with_snapshots(
    scenario: Scenario, store: Store, cart: str, other: str
) -> None:
    every = store.resources.snapshot_every
    with scenario.step(f"Events are appended; a snapshot is kept every {every} versions"):
        batches = [
            [
                event(cart, 1, "CartOpened", customer="Ada"),
                added(cart, 2, "apple", 2, 50),
                added(cart, 3, "pear", 1, 80),
                added(cart, 4, "fig", 3, 20),
            ],
            [
                event(cart, 5, "ItemRemoved", sku="pear"),
                added(cart, 6, "apple", 1, 50),
                added(cart, 7, "kiwi", 5, 10),
                added(cart, 8, "plum", 1, 30),
            ],
            [
                event(cart, 9, "ItemRemoved", sku="plum"),
                added(cart, 10, "grape", 2, 40),
                added(cart, 11, "melon", 1, 300),
                event(cart, 12, "CartCheckedOut"),
            ],
            [
                event(other, 1, "CartOpened", customer="Bo"),
                added(other, 2, "fig", 4, 25),
                added(other, 3, "kiwi", 1, 99),
            ],
        ]
        answers = [store.append(*batch) for batch in batches]
        for answer in answers:
            scenario.note(
                f"{answer['stream_id']}: +{answer['appended']} -> version {answer['version']}, "
                f"snapshot {answer['snapshot']}"
            )
        scenario.check("versions stored", expected=list(range(1, 13)), seen=store.versions(cart))
        scenario.check(
            "snapshots taken",
            expected=[None, 5, 10, None],
            seen=[answer["snapshot"] for answer in answers],
        )


def appends_racing_at_one_version(scenario: Scenario, store: Store, other: str) -> None:
    with scenario.step("Two appends sent at once for the same version: one refused"):
        racing = [added(other, 4, "plum", 1, 30), added(other, 4, "pear", 2, 80)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(lambda racer: store.append(racer), racing))
        for result in results:
            scenario.note(f"append v4 -> {result.get('version') or result.get('message')}")
        scenario.check(
            "events appended by each",
            expected=[1, 0],
            seen=sorted((result["appended"] for result in results), reverse=True),
        )
        scenario.check(
            "the refusal",
            expected=["VersionConflict"],
            seen=[result["error"] for result in results if "error" in result],
        )
        scenario.check("versions stored", expected=[1, 2, 3, 4], seen=store.versions(other))


def late_append_loses(scenario: Scenario, store: Store, other: str) -> None:
    with scenario.step("A late append loses: the append's own transaction decides"):
        late = {"events": [added(other, 5, "fig", 1, 25)]}
        with HeldCall(store.aws, store.resources.held_append, other, late) as held:
            scenario.note("append A (fig at version 5) read the stream at version 4 and is held")
            winner = store.append(added(other, 5, "lime", 3, 15))
            scenario.note(f"append B (lime at version 5) -> {winner}")
            error, loser = held.release()
        scenario.note(f"append A, released -> {loser}")
        scenario.check(
            "append B (finished first): appended, version",
            expected=(1, 5),
            seen=(winner["appended"], winner.get("version")),
        )
        scenario.check(
            "append A (read version 4 before B wrote; wrote after)",
            expected=(None, 0, "VersionConflict"),
            seen=(error, (loser or {}).get("appended"), (loser or {}).get("error")),
        )
        stored = store.stored(other)
        scenario.check(
            "the stream: versions (no gap, no duplicate) and the SKU at version 5 (B's)",
            expected=([1, 2, 3, 4, 5], "lime"),
            seen=([stored_event["version"] for stored_event in stored], stored[-1]["data"]["sku"]),
        )
        live = store.load(other, "live")
        scenario.check(
            "live state: version, and lime in the cart, fig once",
            expected=(5, 3, 4),
            seen=(
                live["version"],
                live["state"]["items"].get("lime", {}).get("quantity"),
                live["state"]["items"]["fig"]["quantity"],
            ),
        )


def bad_events_are_refused(scenario: Scenario, store: Store, cart: str, other: str) -> None:
    with scenario.step("Bad events are refused with a clear error and stored nowhere"):
        ghost = unique_name("cart-ghost")
        before = store.versions(other)
        following = before[-1] + 1
        no_stream = added(other, following, "fig", 1, 25)
        del no_stream["stream_id"]
        no_version = added(other, following, "fig", 1, 25)
        del no_version["version"]
        bad = [
            ([no_stream], "WrongStream"),
            ([added(ghost, 1, "fig", 1, 25)], "WrongStream"),
            (
                [added(other, following, "fig", 1, 25), added(cart, 13, "fig", 1, 25)],
                "WrongStream",
            ),
            ([no_version], "WrongVersion"),
            ([added(other, following + 2, "fig", 1, 25)], "WrongVersion"),
            ([added(other, 2, "fig", 1, 25)], "VersionConflict"),
            (
                [added(other, following, "fig", 1, 25), added(other, following + 1, "fig", 0, 25)],
                "InvalidEvent",
            ),
            ([added(cart, 13, "fig", 1, 25)], "Rejected"),
        ]
        for events, code in bad:
            answer = store.append(*events)
            scenario.check(
                f"{code}: {answer.get('message')}",
                expected=(0, code),
                seen=(answer["appended"], answer.get("error")),
            )
        scenario.check("events of the unknown stream", expected=[], seen=store.versions(ghost))
        scenario.check("versions of the other cart", expected=before, seen=store.versions(other))
        scenario.check(
            "versions of the checked-out cart",
            expected=list(range(1, 13)),
            seen=store.versions(cart),
        )


def rebuilt_states_agree(scenario: Scenario, store: Store, cart: str, other: str) -> None:
    with scenario.step("Rebuilt by replay = live state; snapshot + tail = full replay"):
        full, from_snapshot, live = (
            store.load(cart, source) for source in ("events", "snapshot", "live")
        )
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
            "the cart: status, total, version",
            expected=("CHECKED_OUT", 640, 12),
            seen=(full["state"]["status"], full["state"]["total"], full["version"]),
        )
        other_full, other_snapshot = store.load(other, "events"), store.load(other, "snapshot")
        scenario.check(
            "the other cart: snapshot + tail = full replay",
            expected=other_full["state"],
            seen=other_snapshot["state"],
        )
        scenario.check(
            "the other cart: full replay = live state",
            expected=store.load(other, "live")["state"],
            seen=other_full["state"],
        )


def fresh_consumer_gets_a_replay(
    scenario: Scenario, aws: Aws, store: Store, streams: list[str]
) -> None:
    resources = store.resources
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
            stored = [stored_event for stream in streams for stored_event in store.stored(stream)]
            wanted = sorted(
                (stored_event["stream_id"], stored_event["version"])
                for stored_event in stored
                if stored_event["type"] == "ItemAdded" and stored_event["data"]["quantity"] >= 2
            )
            answer = invoke(
                aws,
                resources.replay_function,
                {"replay_name": replay_name, "stream_ids": streams},
            )
            scenario.check(
                "events replayed onto the bus (published, failed)",
                expected=(len(stored), 0),
                seen=(answer["published"], answer["failed"]),
            )
            await_value(
                consumer.receive,
                until=lambda got: len(got) >= len(wanted),
                timeout=30,
                waiting_for=f"{len(wanted)} events at the consumer",
            )
            got = holds_for(
                consumer.receive, until=lambda received: len(received) == len(wanted), duration=2
            )
            scenario.check(
                "events the consumer received (stream, version)",
                expected=wanted,
                seen=sorted((received["stream_id"], received["version"]) for received in got),
            )
            scenario.note(f"{len(stored)} events replayed, {len(got)} selected by the filter")
        finally:
            consumer.delete()


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
        self.received.extend(json.loads(message["Body"])["detail"] for message in drained)
        return list(self.received)

    def delete(self) -> None:
        self.events.remove_targets(Rule=self.rule, EventBusName=self.bus, Ids=["queue"])
        self.events.delete_rule(Name=self.rule, EventBusName=self.bus)
        self.sqs.delete_queue(QueueUrl=self.queue.url)
