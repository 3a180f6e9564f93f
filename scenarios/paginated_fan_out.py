"""Scenario for paginated-fan-out: one DynamoDB page per run, next token through SQS, and
every item's update paged out to the subscribers the update stream keeps.

1. The schedule rule exists, enabled, with the pager as its target and page 1's input (the
   scenario starts page 1 itself instead of waiting for the schedule).
2. Three subscriber queues subscribe to two batches (rows in the subscriptions table); its
   update stream fills the subscriber table the pager pages through.
3. Two batches of 25 items start at once, page 1 of each invoked directly, as the schedule
   would; a malformed page message is put on the pages queue at the same time.
4. The clean batch: at page size 10 it takes exactly 3 page runs (10, 10, 5), one attempt
   each, each item is processed once and sent to its 3 subscribers (2 subscriber pages),
   and a DONE marker is written.
5. The flaky batch (feed-13 on page 2 fails once): SQS redelivers page 2, which is retried
   from the same token; still 3 pages, each item processed once, DONE written.
6. Each subscriber queue receives every item of both batches, once.
7. Bad input: a direct start without a batch gets a MalformedPage error; the malformed page
   message ends in the DLQ; nothing is lost (page messages = pages run + dead-lettered).
8. A fourth queue subscribes and the first unsubscribes, through the subscriptions table:
   the next run of the clean batch reaches the new one with every item and the removed one
   with none.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bootstrap.paginated_fan_out import PaginatedFanOut
from sandbox import items, observe
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, holds_for, unique_name
from sandbox.provision import Queue

ITEMS = 25
FLAKY_ITEM = "feed-13"  # on page 2
ITEM_IDS = [f"feed-{number:02d}" for number in range(ITEMS)]
FIRST_SUBSCRIBERS = 3  # queues 1..3 subscribe first; queue 4 joins later


@dataclass
class Batches:
    """This run's batches, the run page 1 started for each, and the malformed page."""

    clean: str = field(default_factory=lambda: unique_name("clean"))
    flaky: str = field(default_factory=lambda: unique_name("flaky"))
    bad: str = field(default_factory=lambda: unique_name("bad"))
    runs: dict[str, str] = field(default_factory=dict)
    bad_message_id: str = ""


def run(aws: Aws, resources: PaginatedFanOut, scenario: Scenario) -> None:
    batches = Batches()
    check_schedule_rule(aws, resources, scenario)
    subscribe_first_queues(aws, resources, scenario, batches)
    start_two_batches(aws, resources, scenario, batches)
    with scenario.step(
        f"{ITEMS} items at page size {resources.page_size} take exactly 3 page runs"
    ):
        _check_batch(
            aws, resources, scenario, batches.clean, batches.runs[batches.clean], [1, 1, 1]
        )
    failed_page_retries_from_same_token(aws, resources, scenario, batches)
    each_subscriber_receives_every_item(aws, resources, scenario, batches)
    bad_input_is_refused_or_dead_lettered(aws, resources, scenario, batches)
    subscriber_changes_reach_the_next_updates(aws, resources, scenario, batches)


def check_schedule_rule(aws: Aws, resources: PaginatedFanOut, scenario: Scenario) -> None:
    with scenario.step("The schedule rule exists with the pager as its target"):
        targets = observe.check_schedule(scenario, aws, resources.schedule_rule, resources.schedule)
        function_arn = aws.client("lambda").get_function_configuration(
            FunctionName=resources.function
        )["FunctionArn"]
        scenario.check(
            "target and its input",
            expected=[(function_arn, resources.schedule_input)],
            seen=[(target["Arn"], target.get("Input")) for target in targets],
        )


def subscribe_first_queues(
    aws: Aws, resources: PaginatedFanOut, scenario: Scenario, batches: Batches
) -> None:
    with scenario.step(
        f"{FIRST_SUBSCRIBERS} queues subscribe; the update stream fills the subscriber table"
    ):
        first = resources.subscriber_queues[:FIRST_SUBSCRIBERS]
        for batch in (batches.clean, batches.flaky):
            for queue in first:
                _subscribe(aws, resources, batch, queue)
        for batch in (batches.clean, batches.flaky):
            _await_subscribers(aws, resources, batch, [queue.name for queue in first])
        scenario.note(
            f"{resources.subscribers_table} holds {', '.join(queue.name for queue in first)} "
            "for both batches"
        )


def start_two_batches(
    aws: Aws, resources: PaginatedFanOut, scenario: Scenario, batches: Batches
) -> None:
    with scenario.step("Two batches of 25 start at once; a malformed page message is queued too"):
        _seed(aws, resources.feeds_table, batches.clean)
        _seed(aws, resources.feeds_table, batches.flaky, fail_once=FLAKY_ITEM)
        scenario.note(
            f"{FLAKY_ITEM} of {batches.flaky} fails its page the first time it is reached"
        )
        bad = {"batch": batches.bad, "run": "r1", "token": "not-a-token!", "page": 2, "seen": 10}
        batches.bad_message_id = aws.client("sqs").send_message(
            QueueUrl=resources.pages.url, MessageBody=json.dumps(bad)
        )["MessageId"]
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = list(
                pool.map(
                    lambda batch: observe.call(aws, resources.function, {"batch": batch}),
                    [batches.clean, batches.flaky],
                )
            )
        for (error, first), batch in zip(answers, [batches.clean, batches.flaky], strict=True):
            scenario.check(
                f"page 1 of {batch} (started directly): error, items, next",
                expected=(None, resources.page_size, True),
                seen=(error, first.get("items"), first.get("next")) if not error else first,
            )
            batches.runs[batch] = first["run"]


def failed_page_retries_from_same_token(
    aws: Aws, resources: PaginatedFanOut, scenario: Scenario, batches: Batches
) -> None:
    with scenario.step("A failed page is redelivered by SQS and retried from the same token"):
        pages = _check_batch(
            aws, resources, scenario, batches.flaky, batches.runs[batches.flaky], [1, 2, 1]
        )
        tokens = pages[1]["tokens"]
        scenario.check_that(
            "page 2's two attempts started from the same token",
            len(tokens) == 2 and tokens[0] == tokens[1] and tokens[0] != "-",
            expected="two equal tokens",
            seen=[token[:24] + "…" for token in tokens],
        )
        failed = _record(aws, resources, f"failed-once#{batches.flaky}#{FLAKY_ITEM}")
        scenario.check("the injected failure happened", expected=True, seen=bool(failed))


def each_subscriber_receives_every_item(
    aws: Aws, resources: PaginatedFanOut, scenario: Scenario, batches: Batches
) -> None:
    with scenario.step("Each subscriber receives every item, once"):
        for queue in resources.subscriber_queues[:FIRST_SUBSCRIBERS]:
            got = _received(aws, queue, [batches.clean, batches.flaky], ITEMS)
            for batch in (batches.clean, batches.flaky):
                scenario.check(
                    f"{queue.name}, {batch.split('-')[0]} batch: messages, distinct items",
                    expected=(ITEMS, ITEMS),
                    seen=(len(got[batch]), len(set(got[batch]) & set(ITEM_IDS))),
                )


def bad_input_is_refused_or_dead_lettered(
    aws: Aws, resources: PaginatedFanOut, scenario: Scenario, batches: Batches
) -> None:
    with scenario.step(
        f"Bad input: a clear error; a DLQ entry after {resources.max_receive_count} receives"
    ):
        _, answer = observe.call(aws, resources.function, {"page": 1})
        scenario.check(
            "start without a batch: error type",
            expected="MalformedPage",
            seen=answer.get("errorType"),
        )
        scenario.note(answer.get("errorMessage", ""))
        observe.check_dead_lettered(
            scenario,
            aws,
            resources.pages_dlq,
            observe.with_id(batches.bad_message_id),
            max_receive_count=resources.max_receive_count,
            timeout=40,
            keep=True,
        )
        scenario.check(
            "no page of the bad batch ran",
            expected=[],
            seen=_pages_of(aws, resources, batches.bad, "r1"),
        )
        # Page messages that went through the queue in this run: the pager's (pages 2..n of
        # each batch, as their DONE markers say) and the bad one.
        started = [
            (batches.clean, batches.runs[batches.clean]),
            (batches.flaky, batches.runs[batches.flaky]),
        ]
        sent = (
            sum(
                _record(aws, resources, f"done#{batch}#{run_id}")["pages"] - 1
                for batch, run_id in started
            )
            + 1
        )
        ran = [
            page
            for batch, run_id in started
            for page in _pages_of(aws, resources, batch, run_id)
            if page["page"] > 1
        ]
        observe.check_nothing_lost(
            scenario,
            aws,
            sent=sent,
            processed=sum(1 for page in ran if page.get("status") == "DONE"),
            dlq=resources.pages_dlq,
            of_run=lambda message: message["MessageId"] == batches.bad_message_id
            or any(batch in message["Body"] for batch, _ in started),
        )


def subscriber_changes_reach_the_next_updates(
    aws: Aws, resources: PaginatedFanOut, scenario: Scenario, batches: Batches
) -> None:
    removed, kept, added = (
        resources.subscriber_queues[0],
        resources.subscriber_queues[1:FIRST_SUBSCRIBERS],
        resources.subscriber_queues[FIRST_SUBSCRIBERS],
    )
    with scenario.step(
        f"{added.name} subscribes and {removed.name} unsubscribes: the next run follows"
    ):
        _subscribe(aws, resources, batches.clean, added)
        aws.client("dynamodb").delete_item(
            TableName=resources.subscriptions_table,
            Key=items.wire({"batch": batches.clean, "id": removed.name}),
        )
        now_subscribed = [queue.name for queue in [*kept, added]]
        _await_subscribers(aws, resources, batches.clean, now_subscribed)
        scenario.note(f"the subscriber table now lists {', '.join(now_subscribed)}")
        error, first = observe.call(aws, resources.function, {"batch": batches.clean})
        scenario.check("page 1 of the next run: error", expected=None, seen=error)
        next_run = first["run"]
        _check_batch(aws, resources, scenario, batches.clean, next_run, [1, 1, 1])
        got = _received(aws, added, [batches.clean], ITEMS)
        scenario.check(
            f"{added.name} (added): messages, distinct items",
            expected=(ITEMS, ITEMS),
            seen=(len(got[batches.clean]), len(set(got[batches.clean]) & set(ITEM_IDS))),
        )
        for queue in kept:
            got = _received(aws, queue, [batches.clean], ITEMS)
            scenario.check(
                f"{queue.name} (kept): messages, distinct items",
                expected=(ITEMS, ITEMS),
                seen=(len(got[batches.clean]), len(set(got[batches.clean]) & set(ITEM_IDS))),
            )
        left = observe.take_all(aws, removed.url, _of_batches([batches.clean]))
        scenario.check(f"messages {removed.name} (removed) got", expected=0, seen=len(left))


# -- reading and writing the tables --------------------------------------------------------
def _subscribe(aws: Aws, resources: PaginatedFanOut, batch: str, queue: Queue) -> None:
    """A subscription row, as a sign-up would write it (keyed by the queue's name)."""
    aws.client("dynamodb").put_item(
        TableName=resources.subscriptions_table,
        Item=items.wire({"batch": batch, "id": queue.name, "queue_url": queue.url}),
    )


def _await_subscribers(
    aws: Aws, resources: PaginatedFanOut, batch: str, names: list[str]
) -> list[items.Item]:
    """Wait until the subscriber table lists exactly these queues for the batch."""
    return await_value(
        lambda: items.query(
            aws,
            resources.subscribers_table,
            KeyConditionExpression="#b = :b",
            ExpressionAttributeNames={"#b": "batch"},
            ExpressionAttributeValues={":b": {"S": batch}},
            ConsistentRead=True,
        ),
        until=lambda found: sorted(item["id"] for item in found) == sorted(names),
        timeout=30,
        waiting_for=f"{resources.subscribers_table} to list {names} for {batch}",
    )


def _record(aws: Aws, resources: PaginatedFanOut, key: str) -> items.Item:
    return items.get(aws, resources.runs_table, {"id": key}) or {}


def _pages_of(aws: Aws, resources: PaginatedFanOut, batch: str, run_id: str) -> list[items.Item]:
    """A run's page records, page 1 first (one page further, to see none ran)."""
    found = [_record(aws, resources, f"page#{batch}#{run_id}#{number}") for number in range(1, 5)]
    return [page for page in found if page]


def _check_batch(
    aws: Aws,
    resources: PaginatedFanOut,
    scenario: Scenario,
    batch: str,
    run_id: str,
    attempts: list[int],
) -> list[items.Item]:
    """Check one run of a batch from what the pager recorded; returns its page records."""
    done = await_value(
        lambda: _record(aws, resources, f"done#{batch}#{run_id}"),
        timeout=40,
        waiting_for=f"the DONE marker of {batch}",
    )
    scenario.check(
        "DONE marker: pages, items", expected=(3, ITEMS), seen=(done["pages"], done["items"])
    )
    pages = _pages_of(aws, resources, batch, run_id)
    scenario.check("page runs", expected=[1, 2, 3], seen=[page["page"] for page in pages])
    scenario.check("items per page", expected=[10, 10, 5], seen=[page["items"] for page in pages])
    scenario.check(
        "attempts per page", expected=attempts, seen=[page["attempts"] for page in pages]
    )
    processed = _item_records(aws, resources, f"{batch}#{run_id}")
    scenario.check(
        "items processed other than once",
        expected={},
        seen={
            item_id: record.get("runs", 0)
            for item_id, record in processed.items()
            if record.get("runs") != 1
        },
    )
    scenario.check(
        "subscribers each item was sent to (paged from the subscriber table)",
        expected={FIRST_SUBSCRIBERS},
        seen={record.get("subscribers") for record in processed.values()},
    )
    return pages


def _item_records(aws: Aws, resources: PaginatedFanOut, batch_run: str) -> dict[str, items.Item]:
    """The pager's item#<batch>#<run>#<id> record of each item ({} where there is none)."""
    dynamodb = aws.client("dynamodb")
    table = resources.runs_table
    found: dict[str, items.Item] = dict.fromkeys(ITEM_IDS, {})
    keys = [items.wire({"id": f"item#{batch_run}#{item_id}"}) for item_id in ITEM_IDS]
    for start in range(0, len(keys), 100):
        pending: dict[str, Any] = {
            table: {"Keys": keys[start : start + 100], "ConsistentRead": True}
        }
        while pending:
            answer = dynamodb.batch_get_item(RequestItems=pending)
            for raw in answer["Responses"].get(table, []):
                record = items.plain(raw)
                found[record["id"].rsplit("#", 1)[1]] = record
            pending = answer["UnprocessedKeys"]
    return found


def _seed(aws: Aws, table: str, batch: str, fail_once: str = "") -> None:
    requests = []
    for item_id in ITEM_IDS:
        item: dict[str, Any] = {"batch": batch, "id": item_id, "title": f"Feed {item_id}"}
        if item_id == fail_once:
            item["fail_once"] = True
        requests.append({"PutRequest": {"Item": items.wire(item)}})
    dynamodb = aws.client("dynamodb")
    for start in range(0, len(requests), 25):
        pending: dict[str, Any] = {table: requests[start : start + 25]}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending)["UnprocessedItems"]


def _of_batches(batches: list[str]) -> Any:
    def match(message: observe.Message) -> bool:
        return json.loads(message["Body"]).get("batch") in batches

    return match


def _received(aws: Aws, queue: Queue, batches: list[str], count: int) -> dict[str, list[str]]:
    """Take (delete) a subscriber queue's messages of these batches until `count` per batch
    could have come, then make sure no more of them arrive for a moment; ids per batch,
    repeats included."""
    of_batches = _of_batches(batches)
    expected = count * len(batches)
    taken = observe.collect(
        aws, queue.url, of_batches, expected, waiting_for=f"messages of {batches} on {queue.name}"
    )

    def so_far() -> int:
        taken.extend(observe.take_all(aws, queue.url, of_batches))
        return len(taken)

    holds_for(so_far, until=lambda total: total == expected, duration=0.5)
    got: dict[str, list[str]] = {batch: [] for batch in batches}
    for message in taken:
        body = json.loads(message["Body"])
        got[body["batch"]].append(body["id"])
    return got
