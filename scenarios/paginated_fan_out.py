"""Scenario for paginated-fan-out: one DynamoDB page per run, next token through SQS.

1. The schedule rule exists, enabled, with the pager as its target and page 1's input (the
   scenario starts page 1 itself instead of waiting for the schedule).
2. Two batches of 25 items start at once, page 1 of each invoked directly, as the schedule
   would; a malformed page message is put on the pages queue at the same time.
3. The clean batch: at page size 10 it takes exactly 3 page runs (10, 10, 5), one attempt
   each, each item is processed once, and a DONE marker is written.
4. The flaky batch (feed-13 on page 2 fails once): SQS redelivers page 2, which is retried
   from the same token; still 3 pages, each item processed once, DONE written.
5. Each subscriber queue receives every item of both batches, once.
6. Bad input: a direct start without a batch gets a MalformedPage error; the malformed page
   message ends in the DLQ; nothing is lost (page messages = pages run + dead-lettered).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bootstrap.paginated_fan_out import PaginatedFanOut
from sandbox import observe
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, holds_for, unique_name

ITEMS = 25
FLAKY_ITEM = "feed-13"  # on page 2


def run(aws: Aws, resources: PaginatedFanOut, scenario: Scenario) -> None:
    lambda_, sqs = aws.client("lambda"), aws.client("sqs")
    dynamodb = aws.client("dynamodb")
    ids = [f"feed-{i:02d}" for i in range(ITEMS)]
    clean, flaky, bad_batch = unique_name("clean"), unique_name("flaky"), unique_name("bad")

    def record(key: str) -> dict[str, Any]:
        return dynamodb.get_item(
            TableName=resources.runs_table, Key={"id": {"S": key}}, ConsistentRead=True
        ).get("Item", {})

    runs: dict[str, str] = {}  # batch -> the run page 1 started

    def pages_of(batch: str, run: str) -> list[dict[str, Any]]:
        """A run's page records, page 1 first (one page further, to see none ran)."""
        found = [record(f"page#{batch}#{run}#{n}") for n in range(1, 5)]
        return [p for p in found if p]

    def check_batch(batch: str, attempts: list[int]) -> list[dict[str, Any]]:
        run = runs[batch]
        done = await_value(
            lambda: record(f"done#{batch}#{run}"),
            timeout=40,
            waiting_for=f"the DONE marker of {batch}",
        )
        scenario.check(
            "DONE marker: pages, items",
            expected=(3, ITEMS),
            seen=(int(done["pages"]["N"]), int(done["items"]["N"])),
        )
        pages = pages_of(batch, run)
        scenario.check("page runs", expected=[1, 2, 3], seen=[int(p["page"]["N"]) for p in pages])
        scenario.check(
            "items per page", expected=[10, 10, 5], seen=[int(p["items"]["N"]) for p in pages]
        )
        scenario.check(
            "attempts per page", expected=attempts, seen=[int(p["attempts"]["N"]) for p in pages]
        )
        processed = _item_runs(dynamodb, resources.runs_table, f"{batch}#{run}", ids)
        scenario.check(
            "items processed exactly once", expected=ITEMS, seen=list(processed.values()).count(1)
        )
        scenario.check(
            "items processed other than once",
            expected={},
            seen={i: n for i, n in processed.items() if n != 1},
        )
        return pages

    with scenario.step("The schedule rule exists with the pager as its target"):
        targets = observe.check_schedule(scenario, aws, resources.schedule_rule, resources.schedule)
        function_arn = lambda_.get_function_configuration(FunctionName=resources.function)[
            "FunctionArn"
        ]
        scenario.check(
            "target and its input",
            expected=[(function_arn, resources.schedule_input)],
            seen=[(t["Arn"], t.get("Input")) for t in targets],
        )

    with scenario.step("Two batches of 25 start at once; a malformed page message is queued too"):
        _seed(dynamodb, resources.feeds_table, clean, ids)
        _seed(dynamodb, resources.feeds_table, flaky, ids, fail_once=FLAKY_ITEM)
        scenario.note(f"{FLAKY_ITEM} of {flaky} fails its page the first time it is reached")
        bad = {"batch": bad_batch, "run": "r1", "token": "not-a-token!", "page": 2, "seen": 10}
        bad_id = sqs.send_message(QueueUrl=resources.pages.url, MessageBody=json.dumps(bad))[
            "MessageId"
        ]
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = list(
                pool.map(
                    lambda b: observe.call(aws, resources.function, {"batch": b}), [clean, flaky]
                )
            )
        for (error, first), batch in zip(answers, [clean, flaky], strict=True):
            scenario.check(
                f"page 1 of {batch} (started directly): error, items, next",
                expected=(None, resources.page_size, True),
                seen=(error, first.get("items"), first.get("next")) if not error else first,
            )
            runs[batch] = first["run"]

    with scenario.step(
        f"{ITEMS} items at page size {resources.page_size} take exactly 3 page runs"
    ):
        check_batch(clean, attempts=[1, 1, 1])

    with scenario.step("A failed page is redelivered by SQS and retried from the same token"):
        pages = check_batch(flaky, attempts=[1, 2, 1])
        tokens = [t["S"] for t in pages[1]["tokens"]["L"]]
        scenario.check_that(
            "page 2's two attempts started from the same token",
            len(tokens) == 2 and tokens[0] == tokens[1] and tokens[0] != "-",
            expected="two equal tokens",
            seen=[t[:24] + "…" for t in tokens],
        )
        failed = record(f"failed-once#{flaky}#{FLAKY_ITEM}")
        scenario.check("the injected failure happened", expected=True, seen=bool(failed))

    with scenario.step("Each subscriber receives every item, once"):
        for number, queue in enumerate(resources.subscribers, start=1):
            got = _received(aws, queue, [clean, flaky], ITEMS)
            for batch in (clean, flaky):
                scenario.check(
                    f"subscriber {number}, {batch.split('-')[0]} batch: messages, distinct items",
                    expected=(ITEMS, ITEMS),
                    seen=(len(got[batch]), len(set(got[batch]) & set(ids))),
                )

    with scenario.step(
        f"Bad input: a clear error; a DLQ entry after {resources.max_receive_count} receives"
    ):
        error, answer = observe.call(aws, resources.function, {"page": 1})
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
            observe.with_id(bad_id),
            max_receive_count=resources.max_receive_count,
            timeout=40,
            keep=True,
        )
        scenario.check("no page of the bad batch ran", expected=[], seen=pages_of(bad_batch, "r1"))
        # Page messages that went through the queue in this run: the pager's (pages 2..n of
        # each batch, as their DONE markers say) and the bad one.
        batches = (clean, flaky)
        sent = sum(int(record(f"done#{b}#{runs[b]}")["pages"]["N"]) - 1 for b in batches) + 1
        ran = [p for b in batches for p in pages_of(b, runs[b]) if int(p["page"]["N"]) > 1]
        observe.check_nothing_lost(
            scenario,
            aws,
            sent=sent,
            processed=sum(1 for p in ran if p.get("status", {}).get("S") == "DONE"),
            dlq=resources.pages_dlq,
            of_run=lambda message: message["MessageId"] == bad_id
            or any(b in message["Body"] for b in batches),
        )


def _seed(dynamodb: Any, table: str, batch: str, ids: list[str], fail_once: str = "") -> None:
    items = []
    for item_id in ids:
        item: dict[str, dict[str, Any]] = {
            "batch": {"S": batch},
            "id": {"S": item_id},
            "title": {"S": f"Feed {item_id}"},
        }
        if item_id == fail_once:
            item["fail_once"] = {"BOOL": True}
        items.append({"PutRequest": {"Item": item}})
    for start in range(0, len(items), 25):
        pending: dict[str, Any] = {table: items[start : start + 25]}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending)["UnprocessedItems"]


def _item_runs(dynamodb: Any, table: str, batch_run: str, ids: list[str]) -> dict[str, int]:
    """How many times each item was processed (the pager's item#<batch>#<run>#<id> counters)."""
    runs = dict.fromkeys(ids, 0)
    keys = [{"id": {"S": f"item#{batch_run}#{i}"}} for i in ids]
    for start in range(0, len(keys), 100):
        pending: dict[str, Any] = {
            table: {"Keys": keys[start : start + 100], "ConsistentRead": True}
        }
        while pending:
            answer = dynamodb.batch_get_item(RequestItems=pending)
            for item in answer["Responses"].get(table, []):
                runs[item["id"]["S"].rsplit("#", 1)[1]] = int(item["runs"]["N"])
            pending = answer["UnprocessedKeys"]
    return runs


def _received(aws: Aws, queue: Any, batches: list[str], count: int) -> dict[str, list[str]]:
    """Take (delete) a subscriber queue's messages of these batches until `count` per batch
    could have come, then make sure no more of them arrive for a moment; ids per batch,
    repeats included."""

    def of_batches(message: observe.Message) -> bool:
        return json.loads(message["Body"]).get("batch") in batches

    expected = count * len(batches)
    taken = observe.collect(
        aws, queue.url, of_batches, expected, waiting_for=f"messages of {batches} on {queue.name}"
    )

    def so_far() -> int:
        taken.extend(observe.take_all(aws, queue.url, of_batches))
        return len(taken)

    holds_for(so_far, until=lambda n: n == expected, duration=0.5)
    got: dict[str, list[str]] = {b: [] for b in batches}
    for message in taken:
        body = json.loads(message["Body"])
        got[body["batch"]].append(body["id"])
    return got
