"""Scenario for content-aggregation: feeds served by a local HTTP server stand in for the
web; the workflow keeps only items it has not stored before.

1. The schedule rule exists, enabled, with the state machine as its target and the default
   source set as input; a tick started with exactly that input succeeds.
2. Four sources are registered for this run: two good feeds (3 and 2 items), one answering
   500, one answering something that is not a feed. The first run (started directly, so
   nobody waits for the schedule) SUCCEEDS: the 5 new items are stored; the 500 source was
   retried once and then caught, the bad feed caught without a retry.
3. A second run over the same feeds adds nothing: every put hits its condition and takes the
   AlreadyKnown path; the stored items are still the first run's.
4. Malformed input fails in RejectInput with InvalidInput; nothing is fetched.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from bootstrap.content_aggregation import ContentAggregation
from sandbox import executions, items
from sandbox.aws import Aws
from sandbox.executions import Execution
from sandbox.harness import Scenario, unique_name
from sandbox.local_http import Reply, Request, serve
from sandbox.observe import check_schedule


def run(aws: Aws, resources: ContentAggregation, scenario: Scenario) -> None:
    dynamodb = aws.client("dynamodb")
    run_id = unique_name("ca")
    feeds = {
        f"{run_id}-news": _feed(run_id, "news", 3),
        f"{run_id}-blog": _feed(run_id, "blog", 2),
    }
    down, broken = f"{run_id}-down", f"{run_id}-broken"

    def respond(request: Request) -> Reply:
        source_id = request.path.rsplit("/", 1)[-1].removesuffix(".json")
        if source_id in feeds:
            return Reply(body=json.dumps(feeds[source_id]).encode())
        if source_id == broken:
            return Reply(body=b"<html>Moved to a new CMS</html>", headers={})
        return Reply(status=500, body=b'{"message": "upstream error"}')

    def stored_items() -> dict[str, items.Item]:
        """This run's stored items, by item id."""
        found = items.scan(
            aws,
            resources.items_table,
            FilterExpression="begins_with(source_id, :run)",
            ExpressionAttributeValues={":run": {"S": run_id}},
            ConsistentRead=True,
        )
        return {item["id"]: item for item in found}

    with scenario.step("The schedule rule starts the workflow; a tick with its input succeeds"):
        targets = check_schedule(scenario, aws, resources.schedule_rule, resources.schedule)
        scenario.check(
            "target and input",
            expected=[(resources.state_machine, resources.scheduled_input)],
            seen=[(t["Arn"], t.get("Input")) for t in targets],
        )
        tick = executions.run(aws, resources.state_machine, json.loads(resources.scheduled_input))
        scenario.check("tick with the rule's input", expected="SUCCEEDED", seen=tick.status)
        scenario.note(f"it went {' -> '.join(tick.entered[:4])}…")

    with serve(respond) as server:
        try:
            with scenario.step("Register 4 sources: two feeds, one answering 500, one not a feed"):
                for source_id in [*feeds, down, broken]:
                    dynamodb.put_item(
                        TableName=resources.sources_table,
                        Item={
                            "source_set": {"S": run_id},
                            "source_id": {"S": source_id},
                            "url": {"S": f"{server.url}/feeds/{source_id}.json"},
                        },
                    )
                scenario.note(f"source set {run_id} served by {server.url}")

            with scenario.step("First run (started directly): the new items are stored"):
                bad = executions.start(
                    aws, resources.state_machine, {"sources": ["not", "a", "set"]}
                )
                first = executions.run(
                    aws, resources.state_machine, {"source_set": run_id}, timeout=60
                )
                scenario.check("status", expected="SUCCEEDED", seen=first.status)
                outcome = _by_source(first)
                scenario.check(
                    "per source",
                    expected={
                        f"{run_id}-news": "ok: 3 new, 0 known",
                        f"{run_id}-blog": "ok: 2 new, 0 known",
                        down: "failed: SourceUnavailable",
                        broken: "failed: FeedInvalid",
                    },
                    seen=outcome,
                )
                stored = stored_items()
                scenario.check("items stored", expected=5, seen=len(stored))
                scenario.check(
                    "stored by",
                    expected={first.arn.rsplit(":", 1)[-1]},
                    seen={item["stored_by"] for item in stored.values()},
                )
                requests = Counter(r.path.rsplit("/", 1)[-1] for r in server.requests)
                scenario.check(
                    "requests to the failing sources (500 retried once; bad feed not retried)",
                    expected={"down": 2, "broken": 1},
                    seen={"down": requests[f"{down}.json"], "broken": requests[f"{broken}.json"]},
                )
                scenario.check(
                    "Catch taken (SourceFailed entered)",
                    expected=2,
                    seen=first.entered.count("SourceFailed"),
                )
                scenario.check(
                    "puts that found a new item", expected=5, seen=first.entered.count("New")
                )

            with scenario.step("Second run over the same feeds adds nothing"):
                second = executions.run(
                    aws, resources.state_machine, {"source_set": run_id}, timeout=60
                )
                scenario.check("status", expected="SUCCEEDED", seen=second.status)
                outcome = _by_source(second)
                scenario.check(
                    "good sources",
                    expected=["ok: 0 new, 3 known", "ok: 0 new, 2 known"],
                    seen=[outcome[f"{run_id}-news"], outcome[f"{run_id}-blog"]],
                )
                scenario.check(
                    "paths taken by the puts",
                    expected={"New": 0, "AlreadyKnown": 5},
                    seen={
                        "New": second.entered.count("New"),
                        "AlreadyKnown": second.entered.count("AlreadyKnown"),
                    },
                )
                again = stored_items()
                by = sorted({item["stored_by"] for item in again.values()})
                scenario.check_that(
                    "items stored, unchanged (same ids, same stored_by)",
                    again == stored,
                    expected=f"the first run's {len(stored)} items",
                    seen=f"{len(again)} items, stored by {by}",
                )

        finally:  # the sources point at a server that stops with this block
            for source_id in [*feeds, down, broken]:
                dynamodb.delete_item(
                    TableName=resources.sources_table,
                    Key={"source_set": {"S": run_id}, "source_id": {"S": source_id}},
                )

    with scenario.step("Malformed input fails in a named state; nothing is fetched"):
        rejected = executions.finish(aws, bad)
        scenario.check("status", expected="FAILED", seen=rejected.status)
        scenario.check("error", expected="InvalidInput", seen=rejected.error)
        scenario.check(
            "states entered", expected=["CheckInput", "RejectInput"], seen=rejected.entered
        )
        scenario.check("tasks scheduled", expected=0, seen=rejected.count("TaskScheduled"))


def _feed(run_id: str, name: str, count: int) -> dict[str, Any]:
    return {
        "version": "https://jsonfeed.org/version/1.1",
        "title": f"{name} ({run_id})",
        "items": [
            {
                "id": f"{run_id}/{name}/{n}",
                "url": f"https://example.com/{name}/{n}",
                "title": f"{name} post {n}",
                "date_published": f"2026-11-{n + 1:02d}T09:00:00Z",
            }
            for n in range(1, count + 1)
        ],
    }


def _by_source(execution: Execution) -> dict[str, str]:
    """Each source's outcome from the workflow's output, e.g. "ok: 3 new, 0 known"."""
    outcome = {}
    for result in execution.output["results"]:
        if result["status"] == "ok":
            new = sum(item["new"] for item in result["items"])
            outcome[result["source_id"]] = f"ok: {new} new, {len(result['items']) - new} known"
        else:
            outcome[result["source_id"]] = f"failed: {result['error']}"
    return outcome
