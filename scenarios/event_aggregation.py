"""Scenario for event-aggregation: exactly-once totals from versioned events on SQS FIFO.

1. Item A=100 (v1) and item B=30 (v1) make the total 130.
2. Changing A from 100 to 150 (v2) moves the total by 50.
3. A duplicate delivery of A v2 (a new message with the same event) is ignored.
4. An older version arriving late (A v1=120) is ignored; A stays at v2.
5. A Lambda retry: B v2=70 crashes after its transaction committed, SQS redelivers it, and
   the retry leaves the total alone (the total moves by 40 once; the message was tried twice).
6. A malformed message lands in the FIFO DLQ after maxReceiveCount receives; nothing is
   lost: each message sent is applied, ignored or in the DLQ, read from the system.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from bootstrap.event_aggregation import EventAggregation
from sandbox import observe
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, holds_for, unique_name


def run(aws: Aws, resources: EventAggregation, scenario: Scenario) -> None:
    sqs, dynamodb = aws.client("sqs"), aws.client("dynamodb")
    group = unique_name("meters")
    sent: list[str] = []  # message ids

    def send(item: str, version: int, value: int, **extra: Any) -> str:
        body = {"group": group, "item": item, "version": version, "value": value, **extra}
        return send_body(json.dumps(body), f"{group}:{item}")

    def send_body(body: str, message_group: str) -> str:
        message_id = sqs.send_message(
            QueueUrl=resources.queue.url,
            MessageBody=body,
            MessageGroupId=message_group,
            # Every send is a new message, even with the same body: that is a duplicate delivery.
            MessageDeduplicationId=unique_name("dedup"),
        )["MessageId"]
        sent.append(message_id)
        return message_id

    def get(key: str) -> dict[str, Any]:
        return dynamodb.get_item(
            TableName=resources.table, Key={"id": {"S": key}}, ConsistentRead=True
        ).get("Item", {})

    def total() -> int | None:
        item = get(f"total#{group}")
        return int(Decimal(item["total"]["N"])) if item else None

    def outcome(message_id: str) -> dict[str, Any]:
        return get(f"outcome#{group}#{message_id}")

    def settled(message_id: str) -> dict[str, Any]:
        return await_value(
            lambda: outcome(message_id), timeout=30, waiting_for=f"message {message_id} handled"
        )

    with scenario.step("Two items make a total"):
        a1, b1 = send("A", 1, 100), send("B", 1, 30)
        scenario.check("A v1", expected="applied", seen=settled(a1)["outcome"]["S"])
        scenario.check("B v1", expected="applied", seen=settled(b1)["outcome"]["S"])
        scenario.check("total", expected=130, seen=total())

    with scenario.step("Changing A from 100 to 150 moves the total by 50"):
        a2 = send("A", 2, 150)
        scenario.check("A v2", expected="applied", seen=settled(a2)["outcome"]["S"])
        scenario.check("total", expected=180, seen=total())

    with scenario.step("A duplicate delivery of A v2 does not change the total"):
        dup = send("A", 2, 150)
        scenario.check("duplicate", expected="ignored", seen=settled(dup)["outcome"]["S"])
        scenario.check("total", expected=180, seen=total())

    with scenario.step("An older version arriving late is ignored"):
        late = send("A", 1, 120)
        scenario.check("A v1 (late)", expected="ignored", seen=settled(late)["outcome"]["S"])
        scenario.check("total", expected=180, seen=total())
        stored = get(f"item#{group}#A")
        scenario.check(
            "A's stored version and value",
            expected=("2", "150"),
            seen=(stored["version"]["N"], stored["value"]["N"]),
        )

    with scenario.step("A Lambda retry after commit does not change the total"):
        b2 = send("B", 2, 70, fail_after_commit=True)
        tried = await_value(
            lambda: outcome(b2),
            until=lambda o: int(o.get("attempts", {}).get("N", "0")) >= 2,
            timeout=30,
            waiting_for="B v2 to be delivered a second time",
        )
        scenario.check(
            "B v2 outcome (first attempt)", expected="applied", seen=tried["outcome"]["S"]
        )
        scenario.check(
            "attempts (the crash, then SQS's redelivery)", expected="2", seen=tried["attempts"]["N"]
        )
        scenario.check("total (moved by 40 once)", expected=220, seen=total())
        lines = _log_lines(aws, resources.function, b2)
        scenario.check(
            "the retry's log line says",
            expected=("ignored", 2),
            seen=next(
                ((x["outcome"], x["receive_count"]) for x in lines if x["receive_count"] == 2), None
            ),
        )

    with scenario.step(
        f"A malformed message goes to the DLQ (maxReceiveCount={resources.max_receive_count})"
    ):
        bad_body = json.dumps({"group": group, "item": "C", "version": "three", "value": 5})
        bad = send_body(bad_body, f"{group}:bad")
        observe.check_dead_lettered(
            scenario,
            aws,
            resources.dlq,
            observe.with_id(bad),
            max_receive_count=resources.max_receive_count,
            timeout=40,
            keep=True,
        )
        # Each message's outcome from the system: the aggregator's record of it, or the DLQ.
        dead_lettered = {
            m["MessageId"]
            for m in observe.take_all(aws, resources.dlq.url, lambda m: m["MessageId"] in sent)
        }
        outcomes = {
            m: "dead-lettered"
            if m in dead_lettered
            else outcome(m).get("outcome", {}).get("S", "lost")
            for m in sent
        }
        tally = {o: list(outcomes.values()).count(o) for o in sorted(set(outcomes.values()))}
        scenario.check(
            "outcomes", expected={"applied": 4, "dead-lettered": 1, "ignored": 2}, seen=tally
        )
        scenario.check(
            "messages sent with no outcome and not in the DLQ (lost)",
            expected=[],
            seen=[m for m, found in outcomes.items() if found == "lost"],
        )
        applied = int(get(f"total#{group}")["applied"]["N"])
        scenario.check("events the total counts", expected=4, seen=applied)
        holds_for(total, until=lambda t: t == 220, duration=1)
        scenario.check("total", expected=220, seen=total())


def _log_lines(aws: Aws, function: str, message_id: str) -> list[dict[str, Any]]:
    """The aggregator's structured log lines about one message."""

    def lines() -> list[dict[str, Any]]:
        found = []
        for line in observe.log_lines(aws, function, containing=message_id):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return found

    return await_value(
        lines, until=lambda found: len(found) >= 2, timeout=15, waiting_for="two log lines"
    )
