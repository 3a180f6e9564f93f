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
from dataclasses import dataclass
from typing import Any

from bootstrap.content_aggregation import ContentAggregation
from sandbox import executions, items
from sandbox.aws import Aws
from sandbox.executions import Execution
from sandbox.harness import Scenario, unique_name
from sandbox.local_http import LocalServer, Reply, Request, serve
from sandbox.observe import check_schedule


@dataclass
class Sources:
    """This run's source set: two good feeds, one source answering 500, one not a feed."""

    run_id: str
    feeds: dict[str, dict[str, Any]]
    down: str
    broken: str

    @property
    def ids(self) -> list[str]:
        return [*self.feeds, self.down, self.broken]

    def respond(self, request: Request) -> Reply:
        source_id = request.path.rsplit("/", 1)[-1].removesuffix(".json")
        if source_id in self.feeds:
            return Reply(body=json.dumps(self.feeds[source_id]).encode())
        if source_id == self.broken:
            return Reply(body=b"<html>Moved to a new CMS</html>", headers={})
        return Reply(status=500, body=b'{"message": "upstream error"}')


def run(aws: Aws, resources: ContentAggregation, scenario: Scenario) -> None:
    run_id = unique_name("ca")
    sources = Sources(
        run_id=run_id,
        feeds={
            f"{run_id}-news": _feed(run_id, "news", 3),
            f"{run_id}-blog": _feed(run_id, "blog", 2),
        },
        down=f"{run_id}-down",
        broken=f"{run_id}-broken",
    )
    schedule_tick_succeeds(scenario, aws, resources)
    with serve(sources.respond) as server:
        try:
            register_sources(scenario, aws, resources, sources, server)
            malformed, stored = first_run_stores_new_items(
                scenario, aws, resources, sources, server
            )
            second_run_adds_nothing(scenario, aws, resources, sources, stored)
        finally:  # the sources point at a server that stops with this block
            _unregister_sources(aws, resources, sources)
    malformed_input_is_rejected(scenario, aws, malformed)


def schedule_tick_succeeds(scenario: Scenario, aws: Aws, resources: ContentAggregation) -> None:
    with scenario.step("The schedule rule starts the workflow; a tick with its input succeeds"):
        targets = check_schedule(scenario, aws, resources.schedule_rule, resources.schedule)
        scenario.check(
            "target and input",
            expected=[(resources.state_machine, resources.scheduled_input)],
            seen=[(target["Arn"], target.get("Input")) for target in targets],
        )
        tick = executions.run(aws, resources.state_machine, json.loads(resources.scheduled_input))
        scenario.check("tick with the rule's input", expected="SUCCEEDED", seen=tick.status)
        scenario.note(f"it went {' -> '.join(tick.entered[:4])}…")


def register_sources(
    scenario: Scenario,
    aws: Aws,
    resources: ContentAggregation,
    sources: Sources,
    server: LocalServer,
) -> None:
    with scenario.step("Register 4 sources: two feeds, one answering 500, one not a feed"):
        for source_id in sources.ids:
            aws.client("dynamodb").put_item(
                TableName=resources.sources_table,
                Item={
                    "source_set": {"S": sources.run_id},
                    "source_id": {"S": source_id},
                    "url": {"S": f"{server.url}/feeds/{source_id}.json"},
                },
            )
        scenario.note(f"source set {sources.run_id} served by {server.url}")


def first_run_stores_new_items(
    scenario: Scenario,
    aws: Aws,
    resources: ContentAggregation,
    sources: Sources,
    server: LocalServer,
) -> tuple[str, dict[str, items.Item]]:
    """Also starts the malformed-input execution, checked in the last step, so it runs
    meanwhile. Returns its arn and the items the first run stored."""
    with scenario.step("First run (started directly): the new items are stored"):
        malformed = executions.start(aws, resources.state_machine, {"sources": ["not", "a", "set"]})
        first = executions.run(
            aws, resources.state_machine, {"source_set": sources.run_id}, timeout=60
        )
        scenario.check("status", expected="SUCCEEDED", seen=first.status)
        outcome = _by_source(first)
        scenario.check(
            "per source",
            expected={
                f"{sources.run_id}-news": "ok: 3 new, 0 known",
                f"{sources.run_id}-blog": "ok: 2 new, 0 known",
                sources.down: "failed: SourceUnavailable",
                sources.broken: "failed: FeedInvalid",
            },
            seen=outcome,
        )
        stored = _stored_items(aws, resources, sources.run_id)
        scenario.check("items stored", expected=5, seen=len(stored))
        scenario.check(
            "stored by",
            expected={first.arn.rsplit(":", 1)[-1]},
            seen={item["stored_by"] for item in stored.values()},
        )
        requests = Counter(request.path.rsplit("/", 1)[-1] for request in server.requests)
        scenario.check(
            "requests to the failing sources (500 retried once; bad feed not retried)",
            expected={"down": 2, "broken": 1},
            seen={
                "down": requests[f"{sources.down}.json"],
                "broken": requests[f"{sources.broken}.json"],
            },
        )
        scenario.check(
            "Catch taken (SourceFailed entered)",
            expected=2,
            seen=first.entered.count("SourceFailed"),
        )
        scenario.check("puts that found a new item", expected=5, seen=first.entered.count("New"))
        return malformed, stored


def second_run_adds_nothing(
    scenario: Scenario,
    aws: Aws,
    resources: ContentAggregation,
    sources: Sources,
    stored: dict[str, items.Item],
) -> None:
    with scenario.step("Second run over the same feeds adds nothing"):
        second = executions.run(
            aws, resources.state_machine, {"source_set": sources.run_id}, timeout=60
        )
        scenario.check("status", expected="SUCCEEDED", seen=second.status)
        outcome = _by_source(second)
        scenario.check(
            "good sources",
            expected=["ok: 0 new, 3 known", "ok: 0 new, 2 known"],
            seen=[outcome[f"{sources.run_id}-news"], outcome[f"{sources.run_id}-blog"]],
        )
        scenario.check(
            "paths taken by the puts",
            expected={"New": 0, "AlreadyKnown": 5},
            seen={
                "New": second.entered.count("New"),
                "AlreadyKnown": second.entered.count("AlreadyKnown"),
            },
        )
        again = _stored_items(aws, resources, sources.run_id)
        stored_by = sorted({item["stored_by"] for item in again.values()})
        scenario.check_that(
            "items stored, unchanged (same ids, same stored_by)",
            again == stored,
            expected=f"the first run's {len(stored)} items",
            seen=f"{len(again)} items, stored by {stored_by}",
        )


def malformed_input_is_rejected(scenario: Scenario, aws: Aws, malformed: str) -> None:
    with scenario.step("Malformed input fails in a named state; nothing is fetched"):
        rejected = executions.finish(aws, malformed)
        scenario.check("status", expected="FAILED", seen=rejected.status)
        scenario.check("error", expected="InvalidInput", seen=rejected.error)
        scenario.check(
            "states entered", expected=["CheckInput", "RejectInput"], seen=rejected.entered
        )
        scenario.check("tasks scheduled", expected=0, seen=rejected.count("TaskScheduled"))


def _unregister_sources(aws: Aws, resources: ContentAggregation, sources: Sources) -> None:
    for source_id in sources.ids:
        aws.client("dynamodb").delete_item(
            TableName=resources.sources_table,
            Key={"source_set": {"S": sources.run_id}, "source_id": {"S": source_id}},
        )


def _stored_items(aws: Aws, resources: ContentAggregation, run_id: str) -> dict[str, items.Item]:
    """This run's stored items, by item id."""
    found = items.scan(
        aws,
        resources.items_table,
        FilterExpression="begins_with(source_id, :run)",
        ExpressionAttributeValues={":run": {"S": run_id}},
        ConsistentRead=True,
    )
    return {item["id"]: item for item in found}


def _feed(run_id: str, name: str, count: int) -> dict[str, Any]:
    return {
        "version": "https://jsonfeed.org/version/1.1",
        "title": f"{name} ({run_id})",
        "items": [
            {
                # Plain numbers, as many feeds use: the same ids in both feeds, so only
                # the source in the stored key keeps their items apart.
                "id": str(number),
                "url": f"https://example.com/{name}/{number}",
                "title": f"{name} post {number}",
                "date_published": f"2026-11-{number + 1:02d}T09:00:00Z",
            }
            for number in range(1, count + 1)
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
