"""Provision task-scheduling: jobs table (DynamoDB) <- create/cancel Lambdas; EventBridge
rule rate(1 minute) -> tick Lambda -> SQS (delayed, with DLQ) -> worker Lambda."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import (
    Queue,
    allow_invoke,
    ensure_event_source_mapping,
    ensure_function,
    ensure_queue_with_dlq,
    ensure_rule,
    ensure_table,
)
from sandbox.race import HeldVariant, ensure_held_variant

SCHEDULE = "rate(1 minute)"
LOOKAHEAD_SECONDS = 60  # the rule's period: each tick dispatches what falls due before the next
LOOKBACK_MINUTES = 2
MAX_RECEIVE_COUNT = 2
# AWS's advice for an SQS event source: a visibility timeout of six times the function's
# timeout. At 5 s, a worker's cold start on a busy machine outlived it and SQS delivered the
# job a second time.
WORKER_TIMEOUT = 5


@dataclass(frozen=True)
class TaskScheduling:
    table: str
    queue: Queue
    dlq: Queue
    create_function: str
    cancel_function: str
    tick_function: str
    tick_function_arn: str
    worker_function: str
    rule: str
    schedule: str
    lookahead_seconds: int
    held_tick: HeldVariant  # the tick function with its test hold on (races)


def provision(aws: Aws) -> TaskScheduling:
    table = ensure_table(aws, "task-scheduling-jobs", hash_key="bucket", range_key="job_key")
    queue, dlq = ensure_queue_with_dlq(
        aws,
        "task-scheduling-due",
        max_receive_count=MAX_RECEIVE_COUNT,
        visibility_timeout=WORKER_TIMEOUT * 6,
    )
    env = {"JOBS_TABLE": table}
    create_fn, cancel_fn = "task-scheduling-create-job", "task-scheduling-cancel-job"
    tick_fn, worker_fn = "task-scheduling-tick", "task-scheduling-worker"
    ensure_function(
        aws, create_fn, "task_scheduling", handler="app.create_handler", environment=env, timeout=5
    )
    ensure_function(
        aws, cancel_fn, "task_scheduling", handler="app.cancel_handler", environment=env, timeout=5
    )
    tick_env = {
        **env,
        "QUEUE_URL": queue.url,
        "LOOKAHEAD_SECONDS": str(LOOKAHEAD_SECONDS),
        "LOOKBACK_MINUTES": str(LOOKBACK_MINUTES),
    }
    tick_arn = ensure_function(
        aws,
        tick_fn,
        "task_scheduling",
        handler="app.tick_handler",
        environment=tick_env,
        timeout=30,
    )
    held_tick = ensure_held_variant(
        aws,
        tick_fn,
        "task_scheduling",
        handler="app.tick_handler",
        environment=tick_env,
        timeout=30,
    )
    ensure_function(
        aws,
        worker_fn,
        "task_scheduling",
        handler="app.worker_handler",
        environment=env,
        timeout=WORKER_TIMEOUT,
    )
    ensure_event_source_mapping(aws, worker_fn, queue.arn, batch_size=10)

    rule = "task-scheduling-tick"
    rule_arn = ensure_rule(
        aws,
        rule,
        schedule=SCHEDULE,
        targets=[{"Id": "tick", "Arn": tick_arn}],
        description="Drives the scheduler: one tick a minute",
    )
    allow_invoke(aws, tick_fn, "events.amazonaws.com", rule_arn)
    return TaskScheduling(
        table,
        queue,
        dlq,
        create_fn,
        cancel_fn,
        tick_fn,
        tick_arn,
        worker_fn,
        rule,
        SCHEDULE,
        LOOKAHEAD_SECONDS,
        held_tick,
    )
