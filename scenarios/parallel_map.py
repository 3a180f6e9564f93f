"""Scenario for parallel-map: what Step Functions records when one Parallel state runs an
inline Map and a distributed Map (items read from S3) at once.

1. Three executions start together: a good run (one distributed item fails, within the 25%
   tolerance), a run where 3 of 8 distributed items fail (over the tolerance), and a run
   with malformed input.
2. Good run: SUCCEEDED; both Maps return every result in item order, although items
   finished in another order; the failed item is a null in its place; the map run counts
   7 succeeded and 1 failed.
3. Concurrency never exceeded each Map's MaxConcurrency: the worker's in-flight counter
   (raised on entry, lowered on exit) kept a peak <= the limit, and > 1 (items overlapped).
4. Over the tolerance: AWS fails the Map with States.ExceedToleratedFailureThreshold and the
   Parallel state's Catch ends the run in TooManyItemsFailed. LocalStack 4.14 does not
   enforce the tolerance (failed items become nulls): the scenario says so when it happens.
5. Malformed input fails in RejectInput with InvalidInput; no item was processed.
"""

from __future__ import annotations

import json
from typing import Any

from bootstrap.parallel_map import ParallelMap
from sandbox import executions
from sandbox.aws import Aws
from sandbox.harness import Scenario, unique_name

ITEMS = 8
SLOW_FIRST_ITEM = 1.0  # seconds: item 0 finishes after items started with or after it


def run(aws: Aws, resources: ParallelMap, scenario: Scenario) -> None:
    s3, dynamodb = aws.client("s3"), aws.client("dynamodb")

    def counters(run_id: str, lane: str) -> dict[str, Any]:
        item = dynamodb.get_item(
            TableName=resources.counters_table, Key={"id": {"S": f"{run_id}#{lane}"}}
        ).get("Item", {})
        return {
            "peak": int(item["peak"]["N"]) if "peak" in item else 0,
            "done": int(item["done"]["N"]) if "done" in item else 0,
            "inflight": int(item["inflight"]["N"]) if "inflight" in item else 0,
            "finished": [int(v["N"]) for v in item.get("finished", {}).get("L", [])],
        }

    def start(run_id: str, failing: set[int], **overrides: Any) -> str:
        key = f"runs/{run_id}/items.json"
        s3.put_object(
            Bucket=resources.items_bucket, Key=key, Body=json.dumps(_items(failing)).encode()
        )
        payload = {"run_id": run_id, "items": _items(set()), "items_key": key, **overrides}
        return executions.start(aws, resources.state_machine, payload, name=run_id)

    with scenario.step(
        f"Start three runs at once: {ITEMS} items each; inline MaxConcurrency "
        f"{resources.inline_max_concurrency}, distributed MaxConcurrency "
        f"{resources.distributed_max_concurrency}, ToleratedFailurePercentage "
        f"{resources.tolerated_failure_percentage}"
    ):
        good_id, over_id, bad_id = unique_name("pm"), unique_name("pm-over"), unique_name("pm-bad")
        good_fails, over_fails = {4}, {1, 4, 6}
        arns = {
            "good": start(good_id, good_fails),
            "over": start(over_id, over_fails),
            "bad": executions.start(
                aws, resources.state_machine, {"run_id": bad_id, "items": "not a list"}, name=bad_id
            ),
        }
        scenario.note(
            f"good run {good_id}: distributed item {sorted(good_fails)} fails (1 of {ITEMS})"
        )
        scenario.note(
            f"over run {over_id}: distributed items {sorted(over_fails)} fail (3 of {ITEMS})"
        )
        scenario.note(f"bad run {bad_id}: items is not a list")
        done = {name: executions.finish(aws, arn, timeout=90) for name, arn in arns.items()}
        for name, execution in done.items():
            scenario.note(f"{name}: {execution.status} {execution.error or ''}".rstrip())

    good, over, bad = done["good"], done["over"], done["bad"]
    expected = [{"index": i, "n": n, "square": n * n} for i, n in enumerate(_values())]

    with scenario.step("Good run: complete results, in item order, one failure tolerated"):
        scenario.check("status", expected="SUCCEEDED", seen=good.status)
        scenario.check_that(
            "states entered",
            {"CheckInput", "FanOut", "InlineMap", "DistributedMap"} <= set(good.entered),
            expected="CheckInput, FanOut, InlineMap, DistributedMap",
            seen=sorted(set(good.entered)),
        )
        scenario.check(
            "inline Map results (input order)", expected=expected, seen=good.output["inline"]
        )
        tolerated = [None if i in good_fails else r for i, r in enumerate(expected)]
        scenario.check(
            "distributed Map results (input order, null for the failed item)",
            expected=tolerated,
            seen=good.output["distributed"],
        )
        finished = counters(good_id, "inline")["finished"]
        scenario.check_that(
            "inline items finished in another order than they came back",
            finished != sorted(finished),
            expected="a completion order other than 0..7",
            seen=finished,
        )
        scenario.check(
            "inline iterations recorded", expected=ITEMS, seen=good.count("MapIterationStarted")
        )
        counts = executions.map_run_counts(aws, good.arn)
        scenario.check(
            "map run item counts",
            expected={"total": ITEMS, "succeeded": ITEMS - 1, "failed": 1},
            seen={k: counts[k] for k in ("total", "succeeded", "failed")},
        )

    with scenario.step("Concurrency never exceeded each Map's MaxConcurrency"):
        for lane, limit in (
            ("inline", resources.inline_max_concurrency),
            ("distributed", resources.distributed_max_concurrency),
        ):
            seen = counters(good_id, lane)
            scenario.check_that(
                f"{lane}: peak in-flight items <= {limit}",
                1 < seen["peak"] <= limit,
                expected=f"more than 1 (items overlapped), at most {limit}",
                seen=seen["peak"],
            )
            scenario.check(
                f"{lane}: items processed, none left in flight",
                expected=(ITEMS, 0),
                seen=(seen["done"], seen["inflight"]),
            )

    with scenario.step("Over the tolerance (3 of 8 = 37.5% > 25%)"):
        counts = executions.map_run_counts(aws, over.arn)
        scenario.check(
            "map run: failed items, tolerated percentage",
            expected=(len(over_fails), resources.tolerated_failure_percentage),
            seen=(counts["failed"], counts["toleratedFailurePercentage"]),
        )
        if over.status == "FAILED":  # what AWS does
            scenario.check("error", expected="TooManyItemsFailed", seen=over.error)
            scenario.check("Catch taken", expected="TooManyItemsFailed", seen=over.entered[-1])
        else:
            # LocalStack 4.14 counts failed items but never compares them with the tolerance
            # (distributed_item_processor_worker.py): the run succeeds with nulls.
            scenario.not_proven(
                "a run over the tolerance fails (States.ExceedToleratedFailureThreshold)",
                reason="LocalStack 4.14 counts failed items but never compares them with "
                f"ToleratedFailurePercentage; this run {over.status}",
                limit="distributed-map-tolerance",
            )
            nulls = [i for i, r in enumerate(over.output["distributed"]) if r is None]
            scenario.check(
                "failed items come back as null (engine limit)",
                expected=sorted(over_fails),
                seen=nulls,
            )

    with scenario.step("Malformed input fails in a named state; nothing is processed"):
        scenario.check("status", expected="FAILED", seen=bad.status)
        scenario.check("error", expected="InvalidInput", seen=bad.error)
        scenario.check("states entered", expected=["CheckInput", "RejectInput"], seen=bad.entered)
        scenario.check("tasks scheduled", expected=0, seen=bad.count("TaskScheduled"))
        scenario.check(
            "items processed",
            expected=(0, 0),
            seen=(counters(bad_id, "inline")["done"], counters(bad_id, "distributed")["done"]),
        )


def _values() -> list[int]:
    return [7, 3, 9, 1, 12, 5, 2, 8][:ITEMS]


def _items(failing: set[int]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for index, n in enumerate(_values()):
        item: dict[str, Any] = {"n": n}
        if index == 0:
            item["work"] = SLOW_FIRST_ITEM
        if index in failing:
            item["fail"] = True
        items.append(item)
    return items
