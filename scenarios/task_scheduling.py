"""Scenario for task-scheduling: jobs in DynamoDB, a rule-driven tick, SQS delays.

1. The rule that drives the tick exists: rate(1 minute), targeting the tick function.
2. Malformed job definitions are refused at creation with a clear error; nothing is stored.
3. Jobs are created: some due in a few seconds, one overdue, one an hour ahead, and one
   that is cancelled before it is due.
4. Two ticks run at once (invoked directly rather than waiting for the rule): no job is
   dispatched by both, and every due job is dispatched (status DONE).
5. Each due job is delivered exactly once, not before its due time (the SQS delay gives
   sub-minute precision); the overdue job runs on this tick; the future job is not
   delivered and still pending; the cancelled job is never delivered.
6. Another tick dispatches none of them again: a done job is not delivered twice.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from bootstrap.task_scheduling import TaskScheduling
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, holds_for, unique_name
from sandbox.observe import check_schedule, invoke

DUE_SOON_JOBS = 6
SOON_SECONDS = 8
PRECISION_SECONDS = 15  # well under the one-minute tick


def run(aws: Aws, resources: TaskScheduling, scenario: Scenario) -> None:
    dynamodb = aws.client("dynamodb")
    run_id = unique_name("run")

    def create(due: datetime | str, **payload: Any) -> dict[str, Any]:
        when = due if isinstance(due, str) else due.isoformat()
        request = {"due": when, "payload": {"run": run_id, **payload}}
        return invoke(aws, resources.create_function, request)

    def job(job_id: str) -> dict[str, Any]:
        item = dynamodb.get_item(
            TableName=resources.table,
            Key={"bucket": {"S": job_id[:16]}, "job_key": {"S": job_id}},
            ConsistentRead=True,
        )["Item"]
        return {k: v.get("S", v.get("N")) for k, v in item.items()}

    def deliveries(job_id: str) -> int:
        return int(job(job_id).get("deliveries") or 0)

    def stored_for_run() -> int:
        pages = dynamodb.get_paginator("scan").paginate(
            TableName=resources.table,
            FilterExpression="contains(payload, :run)",
            ExpressionAttributeValues={":run": {"S": run_id}},
        )
        return sum(page["Count"] for page in pages)

    with scenario.step("The rule that drives the tick exists with its target"):
        targets = check_schedule(scenario, aws, resources.rule, resources.schedule)
        scenario.check(
            "target", expected=[resources.tick_function_arn], seen=[t["Arn"] for t in targets]
        )

    with scenario.step("Malformed job definitions are refused at creation"):
        soon = datetime.now(UTC) + timedelta(seconds=30)
        bad = [
            {"payload": {"run": run_id}},
            {"due": "next tuesday", "payload": {"run": run_id}},
            {"due": soon.replace(tzinfo=None).isoformat(), "payload": {"run": run_id}},
            {"due": soon.isoformat(), "payload": f"run {run_id}"},
            {"due": soon.isoformat(), "payload": {"run": run_id}, "retries": 3},
        ]
        for definition in bad:
            answer = invoke(aws, resources.create_function, definition)
            scenario.check(
                f"refused: {answer.get('message')}",
                expected=(False, "InvalidJob"),
                seen=(answer["created"], answer.get("error")),
            )
        scenario.check(
            "jobs stored for the malformed definitions", expected=0, seen=stored_for_run()
        )

    with scenario.step("Jobs are created: due soon, overdue, an hour ahead, and one cancelled"):
        now = datetime.now(UTC)
        overdue = create(now - timedelta(minutes=10), kind="overdue")
        scenario.note(f"overdue job (due {overdue['due']}) is set to run at {overdue['run_at']}")
        scenario.check_that(
            "the overdue job runs now, not in the past",
            overdue["run_at"] >= _iso(now),
            expected=f">= {_iso(now)}",
            seen=overdue["run_at"],
        )
        future = create(now + timedelta(hours=1), kind="future")["job_id"]
        cancelled = create(now + timedelta(seconds=3), kind="cancelled")["job_id"]
        answer = invoke(aws, resources.cancel_function, {"job_id": cancelled})
        scenario.check("cancel", expected=True, seen=answer["cancelled"])
        again = invoke(aws, resources.cancel_function, {"job_id": cancelled})
        scenario.check("cancel twice", expected=False, seen=again["cancelled"])
        scenario.note(again["message"])
        # Due a few seconds from now, so the tick must hold them back with an SQS delay.
        first_due = datetime.now(UTC) + timedelta(seconds=SOON_SECONDS)
        with ThreadPoolExecutor(max_workers=3) as pool:
            created = pool.map(
                lambda n: create(first_due + timedelta(milliseconds=250 * n), n=n),
                range(DUE_SOON_JOBS),
            )
            due_soon = [c["job_id"] for c in created]
        scenario.note(f"{DUE_SOON_JOBS} jobs due from {_iso(first_due)[11:]}, 250 ms apart")
        due = [*due_soon, overdue["job_id"]]
        scenario.check("jobs stored", expected=len(due) + 2, seen=stored_for_run())

    with scenario.step("Two ticks run at once: no job is dispatched by both"):
        with ThreadPoolExecutor(max_workers=2) as pool:
            ticks = list(pool.map(lambda _: invoke(aws, resources.tick_function, {}), range(2)))
        mine = [[j for j in t["dispatched"] if j in due] for t in ticks]
        lost = [[j for j in t["lost"] if j in due] for t in ticks]
        for n, (t, got, missed) in enumerate(zip(ticks, mine, lost, strict=True), start=1):
            scenario.note(
                f"tick {n} ({t['started_at'][11:]}..{t['finished_at'][11:]}): dispatched "
                f"{len(got)} of ours, lost {len(missed)} claims to the other tick"
            )
        both = set(mine[0]) & set(mine[1])
        scenario.check("jobs dispatched by both ticks", expected=set(), seen=both)
        # The rule's own tick may have claimed one a moment ago: give it time to finish.
        statuses = await_value(
            lambda: {job(j)["status"] for j in due},
            until=lambda seen: seen == {"DONE"},
            timeout=10,
            waiting_for="every due job to be DONE",
        )
        scenario.check("status of every due job", expected={"DONE"}, seen=statuses)
        by_other = [j for j in due if j not in mine[0] + mine[1]]
        if by_other:
            scenario.note(f"{len(by_other)} were dispatched by the rule's own tick meanwhile")

    with scenario.step("Each due job is delivered exactly once, not before it is due"):
        for job_id in due:
            await_value(
                partial(deliveries, job_id),
                timeout=30,
                waiting_for=f"delivery of {job_id}",
            )
        counts = holds_for(
            lambda: [deliveries(j) for j in due],
            until=lambda c: all(n == 1 for n in c),
            duration=3,
        )
        scenario.check("deliveries per due job", expected=[1] * len(due), seen=counts)
        late = []
        for job_id in due_soon:
            item = job(job_id)
            scenario.check_that(
                f"delivered at or after due ({item['due'][11:]})",
                item["delivered_at"] >= item["run_at"],
                expected=f">= {item['run_at']}",
                seen=item["delivered_at"],
            )
            late.append(_seconds(item["delivered_at"]) - _seconds(item["run_at"]))
        dispatched_early = [
            _seconds(job(j)["run_at"]) - _seconds(job(j)["dispatched_at"]) for j in due_soon
        ]
        scenario.note(
            f"dispatched {min(dispatched_early):.1f}-{max(dispatched_early):.1f} s before due "
            f"(held back by the SQS delay), delivered {min(late):.1f}-{max(late):.1f} s after due"
        )
        scenario.check_that(
            "sub-minute precision: latest delivery after due (s)",
            max(late) < PRECISION_SECONDS,
            expected=f"< {PRECISION_SECONDS}",
            seen=round(max(late), 1),
        )
        scenario.check(
            "the overdue job ran", expected="1", seen=job(overdue["job_id"]).get("deliveries")
        )
        future_job = job(future)
        scenario.check(
            "the future job",
            expected=("PENDING", None),
            seen=(future_job["status"], future_job.get("deliveries")),
        )
        cancelled_job = job(cancelled)
        scenario.check(
            "the cancelled job (its due time has passed)",
            expected=("CANCELLED", None),
            seen=(cancelled_job["status"], cancelled_job.get("deliveries")),
        )

    with scenario.step("A later tick does not dispatch a done job again"):
        later = invoke(aws, resources.tick_function, {})
        scenario.check(
            "our jobs in the later tick",
            expected=[],
            seen=[j for j in later["dispatched"] if j in due or j in (future, cancelled)],
        )
        counts = holds_for(
            lambda: [deliveries(j) for j in [*due, future, cancelled]],
            until=lambda c: c == [1] * len(due) + [0, 0],
            duration=3,
        )
        scenario.check(
            "deliveries (due jobs, future, cancelled)",
            expected=[1] * len(due) + [0, 0],
            seen=counts,
        )


def _iso(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
