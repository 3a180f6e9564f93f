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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from bootstrap.scheduled_ingest import ScheduledIngest
from sandbox import items
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, unique_name
from sandbox.observe import (
    check_dead_lettered,
    check_logged,
    check_nothing_lost,
    check_schedule,
    depth,
    with_body,
)

SEED_SCHEDULE = "rate(1 minute)"  # seed 004: "a rule with a schedule, e.g., rate(1 minute)"


def run(aws: Aws, resources: ScheduledIngest, scenario: Scenario) -> None:
    run_id = unique_name("run")
    schedule_rule_targets_the_queue(scenario, aws, resources)
    event_id = matching_event_lands_as_item(scenario, aws, resources, run_id)
    schedule_tick_lands_as_item(scenario, aws, resources)
    malformed_message_is_dead_lettered(scenario, aws, resources, run_id)
    handler_logs_reach_cloudwatch(scenario, aws, resources, event_id)


def schedule_rule_targets_the_queue(
    scenario: Scenario, aws: Aws, resources: ScheduledIngest
) -> None:
    """Judged against the seed's schedule, not the bootstrap's own constant."""
    with scenario.step("The schedule rule exists with its target"):
        targets = check_schedule(scenario, aws, resources.schedule_rule, SEED_SCHEDULE)
        scenario.check(
            "target",
            expected=[resources.queue.arn],
            seen=[target["Arn"] for target in targets],
        )


def matching_event_lands_as_item(
    scenario: Scenario, aws: Aws, resources: ScheduledIngest, run_id: str
) -> str:
    """Returns the event's id, to find the handler's log line for it at the end."""
    with scenario.step("An event matching the rule lands as an item"):
        message = f"hello from {run_id}"
        sent = aws.client("events").put_events(
            Entries=[
                {
                    "Source": resources.event_source,
                    "DetailType": resources.detail_type,
                    "Detail": json.dumps({"message": message}),
                }
            ]
        )
        scenario.check("PutEvents failures", expected=0, seen=sent["FailedEntryCount"])
        event_id: str = sent["Entries"][0]["EventId"]
        scenario.note(f"put event {event_id} on the default bus")
        stored = await_value(
            lambda: _item(aws, resources, event_id), timeout=20, waiting_for=f"item {event_id}"
        )
        scenario.check("item message", expected=message, seen=stored["message"])
        timestamp = stored["timestamp"]
        scenario.check_that(
            "item timestamp is ISO 8601",
            _is_iso(timestamp),
            expected="an ISO 8601 time",
            seen=timestamp,
        )
        return event_id


def schedule_tick_lands_as_item(scenario: Scenario, aws: Aws, resources: ScheduledIngest) -> None:
    with scenario.step("A tick of the schedule, delivered as the rule would, lands as an item"):
        tick = _scheduled_event(aws, resources)
        aws.client("sqs").send_message(QueueUrl=resources.queue.url, MessageBody=json.dumps(tick))
        stored = await_value(
            lambda: _item(aws, resources, tick["id"]), timeout=20, waiting_for="the tick's item"
        )
        scenario.check("item message", expected="Lambda function triggered", seen=stored["message"])
        scenario.check("item detail type", expected="Scheduled Event", seen=stored["detail_type"])
        scenario.check(
            "item timestamp (the event's own time)", expected=tick["time"], seen=stored["timestamp"]
        )


def malformed_message_is_dead_lettered(
    scenario: Scenario, aws: Aws, resources: ScheduledIngest, run_id: str
) -> None:
    with scenario.step(
        f"A malformed message is retried, then lands in the DLQ "
        f"(maxReceiveCount={resources.max_receive_count})"
    ):
        batch_marker = f"{run_id}-batch"
        good = _scheduled_event(aws, resources) | {"detail": {"message": f"good {batch_marker}"}}
        bad_body = f"not an event {batch_marker}"
        entries = [
            {"Id": "good", "MessageBody": json.dumps(good)},
            {"Id": "bad", "MessageBody": bad_body},
        ]
        with _writer_paused(aws, resources):
            sqs = aws.client("sqs")
            sqs.send_message_batch(QueueUrl=resources.queue.url, Entries=entries)
            await_value(
                lambda: depth(aws, resources.queue.url) >= len(entries),
                timeout=10,
                waiting_for="both messages in the queue",
            )
        scenario.note("sent one good and one malformed message; the writer gets them together")
        await_value(
            lambda: _item(aws, resources, good["id"]),
            timeout=20,
            waiting_for="the good message's item",
        )
        check_dead_lettered(
            scenario,
            aws,
            resources.dlq,
            with_body(bad_body),
            max_receive_count=resources.max_receive_count,
            keep=True,
        )
        check_nothing_lost(
            scenario,
            aws,
            sent=len(entries),
            processed=len(
                items.scan(
                    aws,
                    resources.table,
                    FilterExpression="contains(message, :batch)",
                    ExpressionAttributeValues={":batch": {"S": batch_marker}},
                    ConsistentRead=True,
                )
            ),
            dlq=resources.dlq,
            of_run=lambda message: batch_marker in message["Body"],
        )


def handler_logs_reach_cloudwatch(
    scenario: Scenario, aws: Aws, resources: ScheduledIngest, event_id: str
) -> None:
    with scenario.step("The handler's log lines reached CloudWatch Logs"):
        check_logged(scenario, aws, resources.function, event_id, "Stored event", timeout=15)


@contextmanager
def _writer_paused(aws: Aws, resources: ScheduledIngest) -> Iterator[None]:
    """The writer's queue mapping off while messages are queued, then on again: they reach
    the writer in one batch, so a failure of one must not take the other down with it."""
    lambda_ = aws.client("lambda")
    (mapping,) = lambda_.list_event_source_mappings(
        FunctionName=resources.function, EventSourceArn=resources.queue.arn
    )["EventSourceMappings"]
    _set_mapping(lambda_, mapping["UUID"], enabled=False)
    try:
        yield
    finally:
        _set_mapping(lambda_, mapping["UUID"], enabled=True)


def _set_mapping(lambda_: Any, mapping_id: str, *, enabled: bool) -> None:
    lambda_.update_event_source_mapping(UUID=mapping_id, Enabled=enabled)
    wanted = "Enabled" if enabled else "Disabled"
    await_value(
        lambda: lambda_.get_event_source_mapping(UUID=mapping_id)["State"] == wanted,
        timeout=20,
        waiting_for=f"the writer's mapping to be {wanted}",
    )


def _item(aws: Aws, resources: ScheduledIngest, event_id: str) -> items.Item | None:
    return items.get(aws, resources.table, {"id": event_id})


def _scheduled_event(aws: Aws, resources: ScheduledIngest) -> dict[str, Any]:
    """An event shaped like the ones the schedule rule sends every minute."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": aws.account_id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": aws.region,
        "resources": [
            f"arn:aws:events:{aws.region}:{aws.account_id}:rule/{resources.schedule_rule}"
        ],
        "detail": {},
    }


def _is_iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False
