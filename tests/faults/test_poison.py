"""A poison message in every queue-driven pattern: each SQS event source mapping whose queue
has a redrive policy, found in the sandbox (not a hand list). The poison ends in that queue's
DLQ after maxReceiveCount receives; the pattern's valid messages sent with it are consumed
(deleted from the queue by the mapping after its handler succeeded) and none of them is
dead-lettered. Four patterns at a time (all thirteen at once start some thirty cold
environments together on two cores, and handlers with 2-5 s timeouts time out), each held
while its poison is in its queues: `make test` runs the scenarios meanwhile."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from sandbox import observe, pattern_lock
from sandbox.aws import Aws
from sandbox.harness import await_value, unique_name
from sandbox.patterns import catalogue, find, side_by_side
from sandbox.provision import Queue
from tests.faults.conftest import Accounting

pytestmark = [pytest.mark.integration, pytest.mark.waits_long]

NOT_JSON = "poison: this is not JSON {"
AT_ONCE = 4


@dataclass(frozen=True)
class Poison:
    body: str
    why: str
    # Valid messages of this pattern, sent with the poison (run -> bodies): none where a
    # valid message needs state the test does not make (a quote request, a subscription).
    valid: Callable[[str], list[str]] = lambda run: []
    attributes: dict[str, Any] | None = None
    # retry-backoff's worker sends a message that can never succeed to the DLQ itself, at
    # once: that copy's receive count says nothing of the source queue's.
    handler_dead_letters: bool = False


def eventbridge_event(run: str, number: int) -> str:
    event = {"id": f"{run}-{number}", "time": "2026-01-01T00:00:00Z", "source": "fault"}
    return json.dumps({**event, "detail-type": "Ingest Requested", "detail": {}})


# Per queue (the mapping's source): what its handler rejects, and why (read in its handler).
POISON = {
    "async-request": Poison(
        NOT_JSON,
        "worker.parse_job: body is not JSON",
        lambda run: [json.dumps({"text": f"{run} {n}"}) for n in range(3)],
        attributes={"requestId": {"DataType": "String", "StringValue": "poison"}},
    ),
    "batch-processing": Poison(
        json.dumps({"id": "poison", "amount": -1}),
        "records.parse_body: amount is negative",
        lambda run: [json.dumps({"id": f"{run}-{n}", "amount": n}) for n in range(3)],
    ),
    "event-aggregation.fifo": Poison(
        NOT_JSON,
        "parse_event: body is not JSON",
        lambda run: [
            json.dumps({"group": run, "item": f"i{n}", "version": 1, "value": n}) for n in range(3)
        ],
    ),
    "paginated-fan-out-pages": Poison(NOT_JSON, "record_handler: json.loads of the page fails"),
    "rate-limiter-buffer": Poison(
        NOT_JSON, "worker posts the job as it is; with no downstream accepting it, it fails"
    ),
    "retry-backoff": Poison(
        NOT_JSON,
        "record_handler: not {'url': ...}; it sends the message to the DLQ itself, at once",
        handler_dead_letters=True,
    ),
    "scatter-gather-quotes": Poison(NOT_JSON, "aggregator.parse_reply: body is not JSON"),
    "scheduled-ingest": Poison(
        json.dumps({"id": "poison"}),
        "to_item: not an EventBridge event (no time, source, detail-type)",
        lambda run: [eventbridge_event(run, n) for n in range(3)],
    ),
    "storage-first": Poison(
        json.dumps({"order_id": "poison", "customer": "c", "amount": -5}),
        "parse_order: amount must be a positive number",
        lambda run: [
            json.dumps({"order_id": f"{run}-{n}", "customer": "fault", "amount": 1 + n})
            for n in range(3)
        ],
    ),
    "task-scheduling-due": Poison(NOT_JSON, "worker: a due job's body must be JSON"),
    "webhooks-outbound": Poison(NOT_JSON, "dispatch.parse_event: body is not JSON"),
    "webhooks-deliveries": Poison(NOT_JSON, "deliver.record_handler: json.loads of the job"),
    "webhooks-aggregate-delay": Poison(NOT_JSON, "aggregate.record_handler: json.loads"),
    "websockets-jobs": Poison(NOT_JSON, "worker.record_handler: json.loads of the job"),
}


@dataclass(frozen=True)
class Mapping:
    pattern: str
    queue: Queue
    dlq: Queue
    max_receive_count: int
    visibility_timeout: int

    @property
    def poison_s(self) -> int:
        """How long its poison takes to reach the DLQ: a visibility timeout per receive."""
        return self.max_receive_count * self.visibility_timeout


def queue_driven_mappings(aws: Aws) -> list[Mapping]:
    """Every SQS mapping in the sandbox whose queue dead-letters, with its pattern (the
    function's name starts with the pattern's slug)."""
    lambda_, sqs = aws.client("lambda"), aws.client("sqs")
    pages = lambda_.get_paginator("list_event_source_mappings").paginate()
    slugs = sorted((pattern.slug for pattern in catalogue()), key=len, reverse=True)
    found = []
    for mapping in (m for page in pages for m in page["EventSourceMappings"]):
        source = mapping["EventSourceArn"]
        function = mapping["FunctionArn"].split(":")[-1]
        pattern = next((slug for slug in slugs if function.startswith(f"{slug}-")), None)
        if ":sqs:" not in source or pattern is None:
            continue  # a stream mapping, or a fault's own
        url = sqs.get_queue_url(QueueName=source.split(":")[-1])["QueueUrl"]
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["RedrivePolicy", "VisibilityTimeout"]
        )["Attributes"]
        redrive = json.loads(attributes.get("RedrivePolicy", "null"))
        if redrive is None:
            continue
        dlq_name = redrive["deadLetterTargetArn"].split(":")[-1]
        found.append(
            Mapping(
                pattern,
                Queue(source.split(":")[-1], url, source),
                Queue(dlq_name, sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"], ""),
                int(redrive["maxReceiveCount"]),
                int(attributes["VisibilityTimeout"]),
            )
        )
    return found


def test_a_poison_message_in_each_queue_driven_pattern(aws: Aws, sandbox, accounting) -> None:
    mappings = queue_driven_mappings(aws)
    accounting.checked = f"{len(mappings)} queue-driven mappings found; a row each below"
    unknown = sorted({m.queue.name for m in mappings} - set(POISON))
    assert not unknown, f"no poison message known for these queues (add one to POISON): {unknown}"
    run = unique_name("fault-poison")
    by_pattern: dict[str, list[Mapping]] = {}
    for mapping in mappings:
        by_pattern.setdefault(mapping.pattern, []).append(mapping)
    # The longest poisons first, so the last to end ends soonest; a pattern a scenario holds
    # waits while others are free (`make test` runs the scenarios meanwhile).
    order = sorted(
        by_pattern, key=lambda slug: max(m.poison_s for m in by_pattern[slug]), reverse=True
    )
    runs = side_by_side(
        [find(slug) for slug in order],
        lambda pattern: poison_pattern(aws, pattern.slug, by_pattern[pattern.slug], run),
        AT_ONCE,
        free=lambda pattern: pattern_lock.free(aws.endpoint_url, pattern.slug),
    )
    outcomes = [outcome for slug in order for outcome in runs[slug].result()]
    accounting.messages_in = sum(row.messages_in for row, _ in outcomes)
    accounting.processed = sum(row.processed for row, _ in outcomes)
    accounting.dead_lettered = sum(row.dead_lettered for row, _ in outcomes)
    accounting.lost = sum(row.lost for row, _ in outcomes)
    accounting.parts.extend(outcomes)
    failures = [f"{row.fault}: {problem}" for row, problem in outcomes if problem != "passed"]
    assert not failures, "\n".join(failures)


def poison_pattern(
    aws: Aws, slug: str, mappings: list[Mapping], run: str
) -> list[tuple[Accounting, str]]:
    """Poison each of the pattern's queues at once, with the pattern held: no scenario of it
    runs meanwhile (it would count the poison as its own), as `make test` runs both."""
    with pattern_lock.exclusive(aws.endpoint_url, slug, "the poison fault test"):
        # As bootstrapped: a scenario that failed midway may have left a consumer broken.
        find(slug).provision(aws)
        with ThreadPoolExecutor(len(mappings)) as pool:
            return list(pool.map(lambda mapping: poison_one(aws, mapping, run), mappings))


def poison_one(aws: Aws, mapping: Mapping, run: str) -> tuple[Accounting, str]:
    """Send the poison and the valid messages to one queue; account for each. Returns the
    row and "passed", or the row and what went wrong."""
    poison = POISON[mapping.queue.name]
    row = Accounting(fault=f"  poison: {mapping.queue.name}", checked=poison.why)
    sqs = aws.client("sqs")
    fifo = mapping.queue.name.endswith(".fifo")
    valid = poison.valid(run)
    for number, body in enumerate([poison.body, *valid]):
        extra: dict[str, Any] = {}
        if fifo:  # the poison in a group of its own: a failed message holds back its group
            extra = {
                "MessageGroupId": run if number else f"{run}-poison",
                "MessageDeduplicationId": f"{run}-{number}",
            }
        if poison.attributes:
            extra["MessageAttributes"] = {
                **poison.attributes,
                "requestId": {"DataType": "String", "StringValue": f"{run}-{number}"},
            }
        sqs.send_message(QueueUrl=mapping.queue.url, MessageBody=body, **extra)
    row.messages_in = 1 + len(valid)
    try:
        dead = await_value(
            lambda: observe.take(aws, mapping.dlq.url, observe.with_body(poison.body)),
            timeout=90,
            interval=1,
            waiting_for=f"the poison in {mapping.dlq.name}",
        )
        observe.await_empty(
            aws, mapping.queue.url, timeout=60, waiting_for=f"{mapping.queue.name} to be empty"
        )
    except AssertionError as waited:
        return row, str(waited)
    valid_dead = len(observe.take_all(aws, mapping.dlq.url, lambda m: m["Body"] in valid))
    receives = int(dead["Attributes"]["ApproximateReceiveCount"])
    row.dead_lettered = 1 + valid_dead
    row.processed = len(valid) - valid_dead
    row.lost = row.messages_in - row.processed - row.dead_lettered
    if not poison.handler_dead_letters and receives < mapping.max_receive_count:
        return row, (
            f"the poison was received {receives} times before the move; "
            f"maxReceiveCount is {mapping.max_receive_count}"
        )
    if valid_dead:
        return row, f"{valid_dead} valid messages dead-lettered"
    return row, "passed"
