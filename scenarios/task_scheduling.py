"""Scenario for task-scheduling: jobs in DynamoDB, a rule-driven tick, SQS delays.

1. The rule that drives the tick exists: rate(1 minute), targeting the tick function.
2. Malformed job definitions are refused at creation with a clear error; nothing is stored.
3. Jobs are created: some due in a few seconds, one overdue, one left CLAIMED by a tick
   that died (its lease run out: a later tick must take it over), one an hour ahead, and
   one that is cancelled before it is due. The rule's target is taken off meanwhile, so that
   only the scenario's ticks dispatch them (it is put back after the race).
4. Two ticks race for the same due job, forced through the tick handler: tick B reads the
   due jobs and is held (test hook) before it claims the first due-soon one; tick A claims
   it and is held before sending it; B, released, loses its claim to A's live lease (the
   claim's condition) and dispatches the rest; no job is dispatched by both.
5. Each due job is delivered exactly once (counted by the worker, once the queue is empty),
   not before its due time (the SQS delay gives sub-minute precision); the overdue job runs
   on this tick; the future job is not delivered and still pending; the cancelled job is
   never delivered.
6. Another tick dispatches none of them again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from bootstrap.task_scheduling import TaskScheduling
from sandbox import items
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, unique_name
from sandbox.observe import check_schedule, invoke
from sandbox.race import HeldCall

DUE_SOON_JOBS = 6
SOON_SECONDS = 8
PRECISION_SECONDS = 15  # well under the one-minute tick


class Scheduler:
    """The pattern as a client sees it, and its jobs table to inspect."""

    def __init__(self, aws: Aws, resources: TaskScheduling) -> None:
        self.aws, self.resources = aws, resources
        self.run_id = unique_name("run")

    def create(self, due: datetime | str, **payload: Any) -> dict[str, Any]:
        when = due if isinstance(due, str) else due.isoformat()
        request = {"due": when, "payload": {"run": self.run_id, **payload}}
        answer: dict[str, Any] = invoke(self.aws, self.resources.create_function, request)
        return answer

    def cancel(self, job_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = invoke(
            self.aws, self.resources.cancel_function, {"job_id": job_id}
        )
        return answer

    def tick(self) -> dict[str, Any]:
        answer: dict[str, Any] = invoke(self.aws, self.resources.tick_function, {})
        return answer

    def job(self, job_id: str) -> dict[str, Any]:
        found = items.get(
            self.aws, self.resources.table, {"bucket": job_id[:16], "job_key": job_id}
        )
        assert found is not None, f"job {job_id} is not in {self.resources.table}"
        return found

    def deliveries(self, job_id: str) -> int:
        return int(self.job(job_id).get("deliveries", 0))

    def in_queue(self) -> int:
        """Messages visible or in flight on the due queue: a delivery still to come of a job
        already delivered once (a redelivery, or a second send with the same delay). Delayed
        ones are left out: each due job's own delay has run out once it was delivered, and a
        job of another run (dispatched ahead of its due time) may wait there for minutes."""
        attributes = self.aws.client("sqs").get_queue_attributes(
            QueueUrl=self.resources.queue.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(count) for count in attributes.values())

    def abandon_claim(self, job_id: str) -> None:
        """Leave the job as a tick that claimed it and then died leaves it: CLAIMED, its lease
        run out. (A live tick cannot be made to die here; the scenario writes that state.)"""
        lapsed = _iso(datetime.now(UTC) - timedelta(seconds=1))
        self.aws.client("dynamodb").update_item(
            TableName=self.resources.table,
            Key=items.wire({"bucket": job_id[:16], "job_key": job_id}),
            UpdateExpression="SET #s = :claimed, claimed_by = :dead, lease_until = :lapsed",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=items.wire(
                {":claimed": "CLAIMED", ":dead": "a-tick-that-died", ":lapsed": lapsed}
            ),
        )

    def stored_for_run(self) -> int:
        return len(
            items.scan(
                self.aws,
                self.resources.table,
                FilterExpression="contains(payload, :run)",
                ExpressionAttributeValues=items.wire({":run": self.run_id}),
            )
        )

    @contextmanager
    def rule_paused(self) -> Iterator[None]:
        """The rule's own tick would dispatch jobs due within a minute as soon as they exist,
        and could take the contested job before the race: the rule's target is taken off
        meanwhile and put back after. (Disabling the rule would be the AWS way, but LocalStack
        4.14 keeps firing a disabled schedule: docs/engine-limits.md#disabled-schedule-fires.)"""
        events, rule = self.aws.client("events"), self.resources.rule
        targets = events.list_targets_by_rule(Rule=rule)["Targets"]
        events.remove_targets(Rule=rule, Ids=[target["Id"] for target in targets])
        try:
            yield
        finally:
            events.put_targets(Rule=rule, Targets=targets)


@dataclass(frozen=True)
class Jobs:
    """The ids of the jobs the scenario created, by kind."""

    due_soon: list[str]
    overdue: str
    abandoned: str  # claimed by a tick that died: its lease has run out
    future: str
    cancelled: str

    @property
    def due(self) -> list[str]:
        return [*self.due_soon, self.overdue, self.abandoned]


def run(aws: Aws, resources: TaskScheduling, scenario: Scenario) -> None:
    scheduler = Scheduler(aws, resources)
    rule_drives_the_tick(scenario, aws, resources)
    malformed_jobs_are_refused(scenario, scheduler)
    with scheduler.rule_paused():
        jobs = jobs_are_created(scenario, scheduler)
        dispatched_by = ticks_race_for_a_job(scenario, scheduler, jobs)
    each_job_delivered_once_when_due(scenario, scheduler, jobs, dispatched_by)
    later_tick_dispatches_nothing_again(scenario, scheduler, jobs)


def rule_drives_the_tick(scenario: Scenario, aws: Aws, resources: TaskScheduling) -> None:
    """Each tick dispatches what falls due before the next one, so its look-ahead must cover
    the rule's period: a shorter one leaves jobs waiting a whole period past their due time."""
    with scenario.step("The rule that drives the tick exists with its target"):
        targets = check_schedule(scenario, aws, resources.rule, resources.schedule)
        scenario.check(
            "target",
            expected=[resources.tick_function_arn],
            seen=[target["Arn"] for target in targets],
        )
        period = _rate_seconds(
            aws.client("events").describe_rule(Name=resources.rule)["ScheduleExpression"]
        )
        settings = aws.client("lambda").get_function_configuration(
            FunctionName=resources.tick_function
        )
        lookahead = int(settings["Environment"]["Variables"]["LOOKAHEAD_SECONDS"])
        scenario.check_that(
            "the tick's look-ahead covers the rule's period (s)",
            lookahead >= period,
            expected=f">= {period}",
            seen=lookahead,
        )


def malformed_jobs_are_refused(scenario: Scenario, scheduler: Scheduler) -> None:
    with scenario.step("Malformed job definitions are refused at creation"):
        run_id = scheduler.run_id
        soon = datetime.now(UTC) + timedelta(seconds=30)
        bad = [
            {"payload": {"run": run_id}},
            {"due": "next tuesday", "payload": {"run": run_id}},
            {"due": soon.replace(tzinfo=None).isoformat(), "payload": {"run": run_id}},
            {"due": soon.isoformat(), "payload": f"run {run_id}"},
            {"due": soon.isoformat(), "payload": {"run": run_id}, "retries": 3},
        ]
        for definition in bad:
            answer = invoke(scheduler.aws, scheduler.resources.create_function, definition)
            scenario.check(
                f"refused: {answer.get('message')}",
                expected=(False, "InvalidJob"),
                seen=(answer["created"], answer.get("error")),
            )
        scenario.check(
            "jobs stored for the malformed definitions", expected=0, seen=scheduler.stored_for_run()
        )


def jobs_are_created(scenario: Scenario, scheduler: Scheduler) -> Jobs:
    with scenario.step(
        "Jobs are created: due soon, overdue, abandoned by a dead tick, an hour ahead, cancelled"
    ):
        now = datetime.now(UTC)
        overdue = scheduler.create(now - timedelta(minutes=10), kind="overdue")
        scenario.note(f"overdue job (due {overdue['due']}) is set to run at {overdue['run_at']}")
        scenario.check_that(
            "the overdue job runs now, not in the past",
            overdue["run_at"] >= _iso(now),
            expected=f">= {_iso(now)}",
            seen=overdue["run_at"],
        )
        abandoned = scheduler.create(now, kind="abandoned")["job_id"]
        scheduler.abandon_claim(abandoned)
        scenario.note(f"{abandoned} is left CLAIMED by a tick that died, its lease run out")
        future = scheduler.create(now + timedelta(hours=1), kind="future")["job_id"]
        cancelled = scheduler.create(now + timedelta(seconds=3), kind="cancelled")["job_id"]
        scenario.check("cancel", expected=True, seen=scheduler.cancel(cancelled)["cancelled"])
        again = scheduler.cancel(cancelled)
        scenario.check("cancel twice", expected=False, seen=again["cancelled"])
        scenario.note(again["message"])
        # Due a few seconds from now, so the tick must hold them back with an SQS delay.
        first_due = datetime.now(UTC) + timedelta(seconds=SOON_SECONDS)
        with ThreadPoolExecutor(max_workers=3) as pool:
            created = pool.map(
                lambda number: scheduler.create(
                    first_due + timedelta(milliseconds=250 * number), n=number
                ),
                range(DUE_SOON_JOBS),
            )
            due_soon = [answer["job_id"] for answer in created]
        scenario.note(f"{DUE_SOON_JOBS} jobs due from {_iso(first_due)[11:]}, 250 ms apart")
        jobs = Jobs(sorted(due_soon), overdue["job_id"], abandoned, future, cancelled)
        scenario.check("jobs stored", expected=len(jobs.due) + 2, seen=scheduler.stored_for_run())
        return jobs


def ticks_race_for_a_job(scenario: Scenario, scheduler: Scheduler, jobs: Jobs) -> dict[str, str]:
    """Tick B reads the contested job as PENDING and is held; tick A claims it and is held
    before sending it, its lease live (a tick mid-dispatch); B, released, must lose the claim
    to A's lease, not take the job over. Returns which tick dispatched each due job."""
    with scenario.step("Two ticks race for a due job: the claim and its lease decide"):
        contested = jobs.due_soon[0]
        variant = scheduler.resources.held_tick
        with HeldCall(scheduler.aws, variant, contested, {}) as held_b:
            scenario.note(f"tick B read the due jobs and is held before claiming {contested}")
            with HeldCall(scheduler.aws, variant, f"{contested}#claimed", {}) as held_a:
                scenario.note(f"tick A claimed {contested} and is held before sending it")
                error_b, tick_b = held_b.release()
            error_a, tick_a = held_a.release()
        ticks = {"A": tick_a or {}, "B": tick_b or {}}
        ours = {
            name: [job_id for job_id in tick.get("dispatched", []) if job_id in jobs.due]
            for name, tick in ticks.items()
        }
        scenario.note(f"tick A dispatched {len(ours['A'])} of ours; tick B {len(ours['B'])}")
        scenario.check(
            "the contested job: dispatched by A; B (released under A's lease) lost its claim",
            expected=(True, None, True, False, None),
            seen=(
                contested in ours["A"],
                error_a,
                contested in ticks["B"].get("lost", []),
                contested in ours["B"],
                error_b,
            ),
        )
        scenario.check(
            "jobs dispatched by both ticks", expected=set(), seen=set(ours["A"]) & set(ours["B"])
        )
        scenario.check(
            "due jobs dispatched by one tick or the other",
            expected=sorted(jobs.due),
            seen=sorted(ours["A"] + ours["B"]),
        )
        return {job_id: ticks[name]["tick_id"] for name in ours for job_id in ours[name]}


def each_job_delivered_once_when_due(
    scenario: Scenario, scheduler: Scheduler, jobs: Jobs, dispatched_by: dict[str, str]
) -> None:
    resources = scheduler.resources
    with scenario.step("Each due job is delivered exactly once, not before it is due"):
        for job_id in jobs.due:
            await_value(
                partial(scheduler.deliveries, job_id),
                timeout=30,
                waiting_for=f"delivery of {job_id}",
            )
        future_job = scheduler.job(jobs.future)
        scenario.check(
            "the future job: status, deliveries",
            expected=("PENDING", None),
            seen=(future_job["status"], future_job.get("deliveries")),
        )
        await_value(
            lambda: scheduler.in_queue() == 0,
            timeout=30,
            waiting_for=f"{resources.queue.name} to hold nothing visible or in flight "
            "(no delivery still to come)",
        )
        scenario.check(
            "due jobs marked DONE by the tick that dispatched them",
            expected=[("DONE", dispatched_by.get(job_id)) for job_id in jobs.due],
            seen=[(job["status"], job.get("claimed_by")) for job in map(scheduler.job, jobs.due)],
        )
        late = []
        for job_id in jobs.due_soon:
            job = scheduler.job(job_id)
            scenario.check_that(
                f"delivered at or after due ({job['due'][11:]})",
                job["delivered_at"] >= job["run_at"],
                expected=f">= {job['run_at']}",
                seen=job["delivered_at"],
            )
            late.append(_seconds(job["delivered_at"]) - _seconds(job["run_at"]))
        dispatched_early = [
            _seconds(job["run_at"]) - _seconds(job["dispatched_at"])
            for job in map(scheduler.job, jobs.due_soon)
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
            "deliveries per due job (the worker's count)",
            expected=[1] * len(jobs.due),
            seen=[scheduler.deliveries(job_id) for job_id in jobs.due],
        )
        cancelled_job = scheduler.job(jobs.cancelled)
        scenario.check(
            "the cancelled job (its due time has passed): status, deliveries",
            expected=("CANCELLED", None),
            seen=(cancelled_job["status"], cancelled_job.get("deliveries")),
        )


def later_tick_dispatches_nothing_again(
    scenario: Scenario, scheduler: Scheduler, jobs: Jobs
) -> None:
    with scenario.step("A later tick does not dispatch a done job again"):
        later = scheduler.tick()
        ours = {*jobs.due, jobs.future, jobs.cancelled}
        scenario.check(
            "our jobs in the later tick",
            expected=[],
            seen=[job_id for job_id in later["dispatched"] if job_id in ours],
        )


def _rate_seconds(expression: str) -> int:
    """Seconds between a rate() schedule's firings: "rate(1 minute)" -> 60."""
    match = re.fullmatch(r"rate\((\d+) (minute|hour|day)s?\)", expression)
    assert match, f"not a rate() schedule: {expression}"
    return int(match[1]) * {"minute": 60, "hour": 3600, "day": 86400}[match[2]]


def _iso(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
