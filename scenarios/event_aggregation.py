"""Scenario for event-aggregation: exactly-once totals from versioned events on SQS FIFO.

0. A malformed message goes first, in a message group of its own (a failed message holds
   back only its own group): SQS's retries of it run while steps 1-7 do.
1. Item A=100 (v1) and item B=30 (v1) make the total 130.
2. Changing A from 100 to 150 (v2) moves the total by 50.
3. A duplicate delivery of A v2 (a new message with the same event) is ignored.
4. An older version arriving late (A v1=120) is ignored; A stays at v2.
5. A Lambda retry: B v2=70 crashes after its transaction committed, SQS redelivers it, and
   the retry leaves the total alone (the total moves by 40 once; the message was tried twice).
6. Two aggregator invocations race on one item, forced through the handler: invocation A
   (C v2=50) reads C at v1=10 and is held (test hook) before its transaction; C v3=70 goes
   through the queue and is applied; A, released, has its transaction cancelled by the
   item's version condition, reads again and ignores its older version. No lost update: the
   total moved by 60, once.
7. A record carrying the message id of A v1 (applied in step 1) but naming a new item E is
   refused by the outcome record's condition: E is not stored, the total does not move.
8. The malformed message is in the FIFO DLQ after maxReceiveCount receives; nothing is
   lost: each message sent is applied, ignored or in the DLQ, read from the system; the
   total equals the sum of each item's last value, and counts every applied message.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bootstrap.event_aggregation import EventAggregation
from sandbox import items, observe
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, unique_name
from sandbox.race import HeldCall


class Aggregation:
    """The pattern as a producer sees it, in one group, and its state table to inspect."""

    def __init__(self, aws: Aws, resources: EventAggregation) -> None:
        self.aws, self.resources = aws, resources
        self.group = unique_name("meters")
        self.sent: list[str] = []  # message ids, each looked up in the system at the end

    def send(self, item: str, version: int, value: int, **extra: Any) -> str:
        body = {"group": self.group, "item": item, "version": version, "value": value, **extra}
        return self.send_body(json.dumps(body), f"{self.group}:{item}")

    def send_body(self, body: str, message_group: str) -> str:
        message_id: str = (
            self.aws.client("sqs")
            .send_message(
                QueueUrl=self.resources.queue.url,
                MessageBody=body,
                MessageGroupId=message_group,
                # Every send is a new message, even with the same body: a duplicate delivery.
                MessageDeduplicationId=unique_name("dedup"),
            )
            .get("MessageId")
        )
        self.sent.append(message_id)
        return message_id

    def get(self, key: str) -> dict[str, Any]:
        return items.get(self.aws, self.resources.table, {"id": key}) or {}

    def total(self) -> int | None:
        return self.get(f"total#{self.group}").get("total")

    def item(self, name: str) -> tuple[int | None, int | None]:
        stored = self.get(f"item#{self.group}#{name}")
        return stored.get("version"), stored.get("value")

    def outcome(self, message_id: str) -> dict[str, Any]:
        return self.get(f"outcome#{self.group}#{message_id}")

    def settled(self, message_id: str) -> str:
        """What the aggregator did with the message, once it has."""
        found = await_value(
            lambda: self.outcome(message_id),
            timeout=30,
            waiting_for=f"message {message_id} handled",
        )
        return str(found["outcome"])

    def stored(self, prefix: str) -> list[dict[str, Any]]:
        """This group's records of one kind (item# or outcome#)."""
        return items.scan(
            self.aws,
            self.resources.table,
            FilterExpression="begins_with(id, :prefix)",
            ExpressionAttributeValues=items.wire({":prefix": f"{prefix}#{self.group}#"}),
            ConsistentRead=True,
        )


def run(aws: Aws, resources: EventAggregation, scenario: Scenario) -> None:
    aggregation = Aggregation(aws, resources)
    bad = a_malformed_message_goes_first(scenario, aggregation)
    first = two_items_make_a_total(scenario, aggregation)
    a_newer_version_moves_the_total(scenario, aggregation)
    a_duplicate_is_ignored(scenario, aggregation)
    an_older_version_is_ignored(scenario, aggregation)
    a_retry_after_commit_changes_nothing(scenario, aggregation)
    racing_invocations_lose_no_update(scenario, aggregation)
    an_applied_message_is_not_applied_again(scenario, aggregation, first)
    malformed_message_dead_lettered_nothing_lost(scenario, aggregation, bad)


def a_malformed_message_goes_first(scenario: Scenario, aggregation: Aggregation) -> str:
    with scenario.step("A malformed message goes first, in a group of its own"):
        bad_body = json.dumps(
            {"group": aggregation.group, "item": "D", "version": "three", "value": 5}
        )
        bad = aggregation.send_body(bad_body, f"{aggregation.group}:bad")
        scenario.note("its version is not a number; SQS retries it while the next steps run")
        return bad


def two_items_make_a_total(scenario: Scenario, aggregation: Aggregation) -> str:
    """Returns the message id of A v1."""
    with scenario.step("Two items make a total"):
        a_v1, b_v1 = aggregation.send("A", 1, 100), aggregation.send("B", 1, 30)
        scenario.check("A v1", expected="applied", seen=aggregation.settled(a_v1))
        scenario.check("B v1", expected="applied", seen=aggregation.settled(b_v1))
        scenario.check("total", expected=130, seen=aggregation.total())
        return a_v1


def a_newer_version_moves_the_total(scenario: Scenario, aggregation: Aggregation) -> None:
    with scenario.step("Changing A from 100 to 150 moves the total by 50"):
        a_v2 = aggregation.send("A", 2, 150)
        scenario.check("A v2", expected="applied", seen=aggregation.settled(a_v2))
        scenario.check("total", expected=180, seen=aggregation.total())


def a_duplicate_is_ignored(scenario: Scenario, aggregation: Aggregation) -> None:
    with scenario.step("A duplicate delivery of A v2 does not change the total"):
        duplicate = aggregation.send("A", 2, 150)
        scenario.check("duplicate", expected="ignored", seen=aggregation.settled(duplicate))
        scenario.check("total", expected=180, seen=aggregation.total())


def an_older_version_is_ignored(scenario: Scenario, aggregation: Aggregation) -> None:
    with scenario.step("An older version arriving late is ignored"):
        late = aggregation.send("A", 1, 120)
        scenario.check("A v1 (late)", expected="ignored", seen=aggregation.settled(late))
        scenario.check("total", expected=180, seen=aggregation.total())
        scenario.check(
            "A's stored version and value", expected=(2, 150), seen=aggregation.item("A")
        )


def a_retry_after_commit_changes_nothing(scenario: Scenario, aggregation: Aggregation) -> None:
    with scenario.step("A Lambda retry after commit does not change the total"):
        b_v2 = aggregation.send("B", 2, 70, fail_after_commit=True)
        tried = await_value(
            lambda: aggregation.outcome(b_v2),
            until=lambda found: found.get("attempts", 0) >= 2,
            timeout=30,
            waiting_for="B v2 to be delivered a second time",
        )
        scenario.check(
            "B v2: outcome (its first attempt), attempts (the crash, then SQS's redelivery)",
            expected=("applied", 2),
            seen=(tried["outcome"], tried["attempts"]),
        )
        scenario.check("total (moved by 40 once)", expected=220, seen=aggregation.total())
        lines = _log_lines(aggregation, b_v2)
        scenario.check(
            "the retry's log line says",
            expected=("ignored", 2),
            seen=next(
                (
                    (line["outcome"], line["receive_count"])
                    for line in lines
                    if line["receive_count"] == 2
                ),
                None,
            ),
        )


def racing_invocations_lose_no_update(scenario: Scenario, aggregation: Aggregation) -> None:
    with scenario.step("Two aggregator invocations race on one item: no lost update"):
        c_v1 = aggregation.send("C", 1, 10)
        scenario.check("C v1", expected="applied", seen=aggregation.settled(c_v1))
        before = aggregation.total() or 0
        resources, key = aggregation.resources, f"{aggregation.group}#C"
        batch = _sqs_batch(aggregation, "C", version=2, value=50)
        held_id = batch["Records"][0]["messageId"]
        with HeldCall(aggregation.aws, resources.held_function, key, batch) as held:
            scenario.note("invocation A (C v2=50) read C at v1=10 and is held")
            c_v3 = aggregation.send("C", 3, 70)
            scenario.check(
                "C v3 (through the queue, while A is held)",
                expected="applied",
                seen=aggregation.settled(c_v3),
            )
            error, answer = held.release()
        scenario.note(f"invocation A, released -> {answer}")
        scenario.check(
            "invocation A: error, failed records, outcome (its transaction cancelled; read again)",
            expected=(None, [], "ignored"),
            seen=(
                error,
                (answer or {}).get("batchItemFailures"),
                aggregation.outcome(held_id).get("outcome"),
            ),
        )
        scenario.check("C's stored version and value", expected=(3, 70), seen=aggregation.item("C"))
        scenario.check(
            "total (moved by 60 once, by C v3)", expected=before + 60, seen=aggregation.total()
        )


def an_applied_message_is_not_applied_again(
    scenario: Scenario, aggregation: Aggregation, applied_id: str
) -> None:
    """The outcome record is the message's idempotency key: its condition refuses a record
    whose message id was applied already, even when the item it names has not moved (here
    a new item E, so the item's own version condition cannot be what refuses it)."""
    with scenario.step("A record with an applied message's id is not applied again"):
        before = aggregation.total()
        batch = _sqs_batch(aggregation, "E", version=1, value=5, message_id=applied_id)
        error, answer = observe.call(aggregation.aws, aggregation.resources.function, batch)
        said = answer.get("errorMessage") if error else answer
        scenario.note(f"sent E v1=5 under the message id of A v1 -> {said}")
        recorded = aggregation.outcome(applied_id)
        scenario.check(
            "total, E's stored version and value, A v1's outcome and attempts",
            expected=(before, (None, None), ("applied", 1)),
            seen=(
                aggregation.total(),
                aggregation.item("E"),
                (recorded.get("outcome"), recorded.get("attempts")),
            ),
        )


def malformed_message_dead_lettered_nothing_lost(
    scenario: Scenario, aggregation: Aggregation, bad: str
) -> None:
    resources = aggregation.resources
    with scenario.step(
        "The malformed message is in the DLQ "
        f"(maxReceiveCount={resources.max_receive_count}); nothing lost"
    ):
        observe.check_dead_lettered(
            scenario,
            aggregation.aws,
            resources.dlq,
            observe.with_id(bad),
            max_receive_count=resources.max_receive_count,
            timeout=40,
            keep=True,
        )
        # Each message's outcome from the system: the aggregator's record of it, or the DLQ.
        dead_lettered = {
            message["MessageId"]
            for message in observe.take_all(
                aggregation.aws,
                resources.dlq.url,
                lambda message: message["MessageId"] in aggregation.sent,
            )
        }
        outcomes = {
            message_id: "dead-lettered"
            if message_id in dead_lettered
            else aggregation.outcome(message_id).get("outcome", "lost")
            for message_id in aggregation.sent
        }
        tally = {
            outcome: list(outcomes.values()).count(outcome)
            for outcome in sorted(set(outcomes.values()))
        }
        scenario.check(
            "outcomes of the messages sent through the queue",
            expected={"applied": 6, "dead-lettered": 1, "ignored": 2},
            seen=tally,
        )
        scenario.check(
            "messages sent with no outcome and not in the DLQ (lost)",
            expected=[],
            seen=[message_id for message_id, found in outcomes.items() if found == "lost"],
        )
        totals = aggregation.get(f"total#{aggregation.group}")
        applied = [
            record for record in aggregation.stored("outcome") if record["outcome"] == "applied"
        ]
        scenario.check(
            "messages the total counts = outcome records saying applied",
            expected=len(applied),
            seen=totals.get("applied"),
        )
        last_values = {record["id"]: record["value"] for record in aggregation.stored("item")}
        scenario.check(
            "total = the sum of each item's last value (A, B, C)",
            expected=(sum(last_values.values()), 3),
            seen=(totals.get("total"), len(last_values)),
        )


def _sqs_batch(
    aggregation: Aggregation, item: str, *, version: int, value: int, message_id: str = ""
) -> dict[str, Any]:
    """One record shaped as the FIFO event source mapping delivers it, for a direct invoke."""
    resources = aggregation.resources
    body = {"group": aggregation.group, "item": item, "version": version, "value": value}
    return {
        "Records": [
            {
                "messageId": message_id or unique_name("direct"),
                "receiptHandle": "direct-invoke",
                "body": json.dumps(body),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": str(int(time.time() * 1000)),
                    "MessageGroupId": f"{aggregation.group}:{item}",
                    "MessageDeduplicationId": unique_name("dedup"),
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": resources.queue.arn,
                "awsRegion": aggregation.aws.region,
            }
        ]
    }


def _log_lines(aggregation: Aggregation, message_id: str) -> list[dict[str, Any]]:
    """The aggregator's structured log lines about one message."""
    function = aggregation.resources.function

    def lines() -> list[dict[str, Any]]:
        found = []
        for line in observe.log_lines(aggregation.aws, function, containing=message_id):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return found

    return await_value(
        lines, until=lambda found: len(found) >= 2, timeout=15, waiting_for="two log lines"
    )
