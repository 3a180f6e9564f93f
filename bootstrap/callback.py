"""Provision callback: a workflow that waits on an external worker (SQS + task token) and then
polls an asynchronous job API (Wait + Choice)."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import (
    Queue,
    ensure_function,
    ensure_queue_with_dlq,
    ensure_state_machine,
    ensure_table,
)

POLLS_UNTIL_DONE = 3
HEARTBEAT_SECONDS = 5  # as written in state_machines/callback.json
TASK_TIMEOUT_SECONDS = 60  # likewise
MAX_RECEIVE_COUNT = 2


@dataclass(frozen=True)
class Callback:
    state_machine: str
    work_queue: Queue
    work_dlq: Queue
    jobs_table: str
    job_api_function: str
    polls_until_done: int
    heartbeat_seconds: int
    task_timeout_seconds: int


def provision(aws: Aws) -> Callback:
    # The worker deletes what it takes; a message nobody handles goes to the DLQ.
    work_queue, work_dlq = ensure_queue_with_dlq(
        aws, "callback-work", max_receive_count=MAX_RECEIVE_COUNT, visibility_timeout=5
    )
    jobs_table = ensure_table(aws, "callback-jobs", hash_key="jobId")
    job_api_function = "callback-job-api"
    job_api_arn = ensure_function(
        aws,
        job_api_function,
        "callback",
        environment={"JOBS_TABLE": jobs_table, "POLLS_UNTIL_DONE": str(POLLS_UNTIL_DONE)},
        timeout=5,
    )
    state_machine = ensure_state_machine(
        aws,
        "callback",
        "callback.json",
        {"WorkQueueUrl": work_queue.url, "JobApiFunction": job_api_arn},
    )
    return Callback(
        state_machine,
        work_queue,
        work_dlq,
        jobs_table,
        job_api_function,
        POLLS_UNTIL_DONE,
        HEARTBEAT_SECONDS,
        TASK_TIMEOUT_SECONDS,
    )
