"""Provision batch-processing: SQS (DLQ) -> Lambda with partial batch failures, and a Step
Functions Map over chunks of an input in S3; records land in DynamoDB through Powertools'
idempotency."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import (
    Queue,
    ensure_bucket,
    ensure_event_source_mapping,
    ensure_function,
    ensure_queue_with_dlq,
    ensure_state_machine,
    ensure_table,
)

MAX_RECEIVE_COUNT = 2
WORKER_TIMEOUT = 5
# Twice the worker's timeout: a batch still running when its messages become visible again
# would be received a second time by another of the mapping's concurrent batches.
VISIBILITY_TIMEOUT = 2 * WORKER_TIMEOUT


@dataclass(frozen=True)
class BatchProcessing:
    records_table: str
    attempts_table: str
    idempotency_table: str
    queue: Queue
    dlq: Queue
    worker_function: str
    bucket: str
    state_machine_arn: str
    max_receive_count: int
    visibility_timeout: int


def provision(aws: Aws) -> BatchProcessing:
    records = ensure_table(aws, "batch-processing-records")
    attempts = ensure_table(aws, "batch-processing-attempts")
    idempotency = ensure_table(aws, "batch-processing-idempotency")
    queue, dlq = ensure_queue_with_dlq(
        aws,
        "batch-processing",
        max_receive_count=MAX_RECEIVE_COUNT,
        visibility_timeout=VISIBILITY_TIMEOUT,
    )
    environment = {
        "RECORDS_TABLE": records,
        "ATTEMPTS_TABLE": attempts,
        "IDEMPOTENCY_TABLE": idempotency,
        "POWERTOOLS_SERVICE_NAME": "batch-processing",
    }
    arns = {}
    for role, handler, timeout in [
        ("worker", "handler", WORKER_TIMEOUT),
        ("split", "split_handler", 10),
        ("chunk", "chunk_handler", 10),
        ("summary", "summary_handler", 10),
    ]:
        arns[role] = ensure_function(
            aws,
            f"batch-processing-{role}",
            "batch_processing",
            handler=f"app.{handler}",
            environment=environment,
            timeout=timeout,
        )
    # A short batching window gathers a send_message_batch into one invocation.
    ensure_event_source_mapping(
        aws, "batch-processing-worker", queue.arn, batch_size=10, MaximumBatchingWindowInSeconds=1
    )
    bucket = ensure_bucket(aws, "batch-processing-input")
    state_machine = ensure_state_machine(
        aws,
        "batch-processing",
        "batch_processing.json",
        {
            "SplitFunctionArn": arns["split"],
            "ChunkFunctionArn": arns["chunk"],
            "SummaryFunctionArn": arns["summary"],
        },
    )
    return BatchProcessing(
        records,
        attempts,
        idempotency,
        queue,
        dlq,
        "batch-processing-worker",
        bucket,
        state_machine,
        MAX_RECEIVE_COUNT,
        VISIBILITY_TIMEOUT,
    )
