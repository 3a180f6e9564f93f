"""Scenario for scheduled-ingest: what a user would check after wiring the seed's design.

1. The schedule rule exists, fires every minute, and targets the queue.
2. An event matching the rules lands in DynamoDB as an item with id, timestamp and message
   (sent with PutEvents, and as the schedule would send it, so nobody waits a minute).
3. A malformed message sent with a good one: the good one is stored once, the bad one is
   retried, then moved to the DLQ after maxReceiveCount receives; nothing is lost.
4. What the handler logged reached CloudWatch Logs.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, unique_name
from sandbox.observe import (
    check_dead_lettered,
    check_logged,
    check_nothing_lost,
    check_schedule,
    with_body,
)


def run(aws: Aws, res: Any, s: Scenario) -> None:
    events, sqs, dynamodb = aws.client("events"), aws.client("sqs"), aws.client("dynamodb")
    run_id = unique_name("run")

    def item(event_id: str) -> dict[str, Any] | None:
        return dynamodb.get_item(TableName=res.table, Key={"id": {"S": event_id}}).get("Item")

    with s.step("The schedule rule exists with its target"):
        targets = check_schedule(s, aws, res.schedule_rule, res.schedule)
        s.check("target", expected=[res.queue.arn], seen=[t["Arn"] for t in targets])

    with s.step("An event matching the rule lands as an item"):
        message = f"hello from {run_id}"
        sent = events.put_events(
            Entries=[
                {
                    "Source": res.event_source,
                    "DetailType": res.detail_type,
                    "Detail": json.dumps({"message": message}),
                }
            ]
        )
        s.check("PutEvents failures", expected=0, seen=sent["FailedEntryCount"])
        event_id = sent["Entries"][0]["EventId"]
        s.note(f"put event {event_id} on the default bus")
        stored = await_value(lambda: item(event_id), timeout=20, waiting_for=f"item {event_id}")
        s.check("item message", expected=message, seen=stored["message"]["S"])
        timestamp = stored["timestamp"]["S"]
        s.check_that(
            "item timestamp is ISO 8601",
            _is_iso(timestamp),
            expected="an ISO 8601 time",
            seen=timestamp,
        )

    with s.step("A tick of the schedule, delivered as the rule would, lands as an item"):
        tick = _scheduled_event(aws, res)
        sqs.send_message(QueueUrl=res.queue.url, MessageBody=json.dumps(tick))
        stored = await_value(lambda: item(tick["id"]), timeout=20, waiting_for="the tick's item")
        s.check("item message", expected="Lambda function triggered", seen=stored["message"]["S"])
        s.check("item detail type", expected="Scheduled Event", seen=stored["detail_type"]["S"])

    with s.step(
        f"A malformed message is retried, then lands in the DLQ "
        f"(maxReceiveCount={res.max_receive_count})"
    ):
        good = _scheduled_event(aws, res)
        bad_body = f"not an event {run_id}"
        sqs.send_message_batch(
            QueueUrl=res.queue.url,
            Entries=[
                {"Id": "good", "MessageBody": json.dumps(good)},
                {"Id": "bad", "MessageBody": bad_body},
            ],
        )
        s.note("sent one good and one malformed message in one batch")
        stored = await_value(
            lambda: item(good["id"]), timeout=20, waiting_for="the good message's item"
        )
        s.check("good message stored as", expected=good["id"], seen=stored["id"]["S"])
        check_dead_lettered(
            s,
            aws,
            res.dlq,
            with_body(bad_body),
            max_receive_count=res.max_receive_count,
            keep=True,
        )
        check_nothing_lost(
            s,
            aws,
            sent=2,
            processed=sum(item(e["id"]) is not None for e in [good]),
            dlq=res.dlq,
            of_run=lambda message: run_id in message["Body"],
        )

    with s.step("The handler's log lines reached CloudWatch Logs"):
        check_logged(s, aws, res.function, event_id, "Stored event", timeout=15)


def _scheduled_event(aws: Aws, res: Any) -> dict[str, Any]:
    """An event shaped like the ones the schedule rule sends every minute."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": aws.account_id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": aws.region,
        "resources": [f"arn:aws:events:{aws.region}:{aws.account_id}:rule/{res.schedule_rule}"],
        "detail": {},
    }


def _is_iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False
