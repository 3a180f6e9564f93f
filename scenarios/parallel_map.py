"""Scenario for parallel-map: what Step Functions records when one Parallel state runs an
inline Map and a distributed Map (items read from S3) at once.

1. Three executions start together: a good run (one distributed item fails, within the 25%
   tolerance), a run where 3 of 8 distributed items fail (over the tolerance), and a run
   with malformed input.
2. Good run: SUCCEEDED; both Maps return every result in item order, although items
   finished in another order; the failed item is a null in its place; the map run counts
   7 succeeded and 1 failed, the worker's own record names the failed item.
3. Concurrency never exceeded each Map's MaxConcurrency: the worker's in-flight counter
   (raised on entry, lowered on exit) kept a peak <= the limit, and > 1 (items overlapped).
4. Over the tolerance: the map run and the worker both count exactly the 3 injected
   failures, the other items' results are right. AWS then fails the Map with
   States.ExceedToleratedFailureThreshold and the Parallel state's Catch ends the run in
   TooManyItemsFailed; LocalStack 4.14 does not enforce the tolerance, so that part is
   reported "not proven here", never as a pass.
5. Malformed input fails in RejectInput with InvalidInput; no item was processed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bootstrap.parallel_map import ParallelMap
from sandbox import executions, items
from sandbox.aws import Aws
from sandbox.executions import Execution
from sandbox.harness import Scenario, unique_name

ITEMS = 8
SLOW_FIRST_ITEM = 1.0  # seconds: item 0 finishes after items started with or after it
GOOD_FAILS, OVER_FAILS = {4}, {1, 4, 6}
# The limits the pattern promises (its page): the peaks are held to these, not to whatever
# the deployed definition says, so a definition that loosens a limit fails.
INLINE_LIMIT, DISTRIBUTED_LIMIT = 3, 2
# The design's tolerance (1 failed item of 8 passes, 3 do not), judged against the map run
# itself rather than the bootstrap's reading of the definition.
TOLERATED_PERCENTAGE = 25.0


@dataclass(frozen=True)
class Runs:
    """The three executions, finished, and the run ids that name their counter rows."""

    good_id: str
    over_id: str
    bad_id: str
    good: Execution
    over: Execution
    bad: Execution


@dataclass(frozen=True)
class Counters:
    """The worker's counter row of one run and lane."""

    peak: int
    done: int
    inflight: int
    finished: list[int]
    failed: list[int]


def run(aws: Aws, resources: ParallelMap, scenario: Scenario) -> None:
    runs = start_three_runs(aws, resources, scenario)
    check_good_run(aws, resources, scenario, runs)
    check_concurrency(aws, resources, scenario, runs.good_id)
    check_over_tolerance(aws, resources, scenario, runs)
    check_malformed_input(aws, resources, scenario, runs)


def start_three_runs(aws: Aws, resources: ParallelMap, scenario: Scenario) -> Runs:
    with scenario.step(
        f"Start three runs at once: {ITEMS} items each; inline MaxConcurrency "
        f"{resources.inline_max_concurrency}, distributed MaxConcurrency "
        f"{resources.distributed_max_concurrency}, ToleratedFailurePercentage "
        f"{resources.tolerated_failure_percentage}"
    ):
        good_id, over_id, bad_id = unique_name("pm"), unique_name("pm-over"), unique_name("pm-bad")
        arns = {
            "good": _start(aws, resources, good_id, GOOD_FAILS),
            "over": _start(aws, resources, over_id, OVER_FAILS),
            "bad": executions.start(
                aws,
                resources.state_machine,
                # Only items is wrong: CheckInput must look at it, not stop at a missing key.
                {"run_id": bad_id, "items": "not a list", "items_key": f"runs/{bad_id}/none"},
                name=bad_id,
            ),
        }
        scenario.note(f"good run {good_id}: distributed item {sorted(GOOD_FAILS)} fails")
        scenario.note(f"over run {over_id}: distributed items {sorted(OVER_FAILS)} fail")
        scenario.note(f"bad run {bad_id}: items is not a list")
        done = {name: executions.finish(aws, arn, timeout=90) for name, arn in arns.items()}
        for name, execution in done.items():
            scenario.note(f"{name}: {execution.status} {execution.error or ''}".rstrip())
    return Runs(good_id, over_id, bad_id, done["good"], done["over"], done["bad"])


def check_good_run(aws: Aws, resources: ParallelMap, scenario: Scenario, runs: Runs) -> None:
    good, expected = runs.good, _expected_results()
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
        scenario.check(
            "distributed Map results (input order, null for the failed item)",
            expected=[
                None if index in GOOD_FAILS else result for index, result in enumerate(expected)
            ],
            seen=good.output["distributed"],
        )
        finished = _counters(aws, resources, runs.good_id, "inline").finished
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
            seen={name: counts[name] for name in ("total", "succeeded", "failed")},
        )
        scenario.check(
            "items the worker failed (its own record)",
            expected=sorted(GOOD_FAILS),
            seen=sorted(_counters(aws, resources, runs.good_id, "distributed").failed),
        )


def check_concurrency(aws: Aws, resources: ParallelMap, scenario: Scenario, run_id: str) -> None:
    with scenario.step("Concurrency never exceeded each Map's MaxConcurrency"):
        for lane, limit in (("inline", INLINE_LIMIT), ("distributed", DISTRIBUTED_LIMIT)):
            seen = _counters(aws, resources, run_id, lane)
            scenario.check_that(
                f"{lane}: peak in-flight items <= {limit}",
                1 < seen.peak <= limit,
                expected=f"more than 1 (items overlapped), at most {limit}",
                seen=seen.peak,
            )
            scenario.check(
                f"{lane}: items processed, none left in flight",
                expected=(ITEMS, 0),
                seen=(seen.done, seen.inflight),
            )


def check_over_tolerance(aws: Aws, resources: ParallelMap, scenario: Scenario, runs: Runs) -> None:
    over = runs.over
    with scenario.step("Over the tolerance (3 of 8 = 37.5% > 25%)"):
        counts = executions.map_run_counts(aws, over.arn)
        scenario.check(
            "map run: total, failed items, tolerated percentage",
            expected=(ITEMS, len(OVER_FAILS), TOLERATED_PERCENTAGE),
            seen=(counts["total"], counts["failed"], counts["toleratedFailurePercentage"]),
        )
        worker = _counters(aws, resources, runs.over_id, "distributed")
        scenario.check(
            "items the worker failed (its own record): the injected ones",
            expected=sorted(OVER_FAILS),
            seen=sorted(worker.failed),
        )
        if over.status == "FAILED":  # what AWS does
            scenario.check("error", expected="TooManyItemsFailed", seen=over.error)
            scenario.check("Catch taken", expected="TooManyItemsFailed", seen=over.entered[-1])
            return
        # LocalStack 4.14 counts failed items but never compares them with the tolerance
        # (distributed_item_processor_worker.py): the run goes on with nulls.
        scenario.not_proven(
            "a run over the tolerance fails in TooManyItemsFailed "
            "(States.ExceedToleratedFailureThreshold)",
            reason="LocalStack 4.14 counts failed items but never compares them with "
            f"ToleratedFailurePercentage; this run ended {over.status}",
            limit="distributed-map-tolerance",
        )
        expected = _expected_results()
        scenario.check(
            "distributed results the engine returned: good items in place, failed ones null",
            expected=[
                None if index in OVER_FAILS else result for index, result in enumerate(expected)
            ],
            seen=over.output["distributed"],
        )


def check_malformed_input(aws: Aws, resources: ParallelMap, scenario: Scenario, runs: Runs) -> None:
    bad = runs.bad
    with scenario.step("Malformed input fails in a named state; nothing is processed"):
        scenario.check("status", expected="FAILED", seen=bad.status)
        scenario.check("error", expected="InvalidInput", seen=bad.error)
        scenario.check("states entered", expected=["CheckInput", "RejectInput"], seen=bad.entered)
        scenario.check("tasks scheduled", expected=0, seen=bad.count("TaskScheduled"))
        scenario.check(
            "items processed",
            expected=(0, 0),
            seen=(
                _counters(aws, resources, runs.bad_id, "inline").done,
                _counters(aws, resources, runs.bad_id, "distributed").done,
            ),
        )


def _start(aws: Aws, resources: ParallelMap, run_id: str, failing: set[int]) -> str:
    """Put the distributed Map's items in S3 and start the run."""
    key = f"runs/{run_id}/items.json"
    aws.client("s3").put_object(
        Bucket=resources.items_bucket, Key=key, Body=json.dumps(_items(failing)).encode()
    )
    payload = {"run_id": run_id, "items": _items(set()), "items_key": key}
    return executions.start(aws, resources.state_machine, payload, name=run_id)


def _counters(aws: Aws, resources: ParallelMap, run_id: str, lane: str) -> Counters:
    row = items.get(aws, resources.counters_table, {"id": f"{run_id}#{lane}"}) or {}
    return Counters(
        peak=row.get("peak", 0),
        done=row.get("done", 0),
        inflight=row.get("inflight", 0),
        finished=row.get("finished", []),
        failed=row.get("failed", []),
    )


def _values() -> list[int]:
    return [7, 3, 9, 1, 12, 5, 2, 8][:ITEMS]


def _expected_results() -> list[dict[str, int]]:
    return [
        {"index": index, "n": number, "square": number * number}
        for index, number in enumerate(_values())
    ]


def _items(failing: set[int]) -> list[dict[str, Any]]:
    made: list[dict[str, Any]] = []
    for index, number in enumerate(_values()):
        item: dict[str, Any] = {"n": number}
        if index == 0:
            item["work"] = SLOW_FIRST_ITEM
        if index in failing:
            item["fail"] = True
        made.append(item)
    return made
