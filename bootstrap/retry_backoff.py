"""Provision retry-backoff: a client Lambda that backs off with full jitter, an SQS queue (DLQ)
whose worker turns throttling into jittered redelivery, and a state machine whose Retry backs
off with BackoffRate, MaxDelaySeconds and JitterStrategy FULL before its Catch."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import (
    Queue,
    ensure_event_source_mapping,
    ensure_function,
    ensure_queue_with_dlq,
    ensure_state_machine,
)

# The client's own backoff (seconds): delays in [0, min(cap, base * 2**attempt)].
BASE_DELAY, MAX_DELAY, MAX_ATTEMPTS = 0.1, 0.5, 5
# SQS redelivery backoff (whole seconds), and how many receives before the DLQ.
VISIBILITY_BASE, VISIBILITY_CAP, MAX_RECEIVE_COUNT = 1, 2, 3
# The state machine's Retry on DownstreamThrottled (state_machines/retry_backoff.json).
SFN_MAX_ATTEMPTS, SFN_MAX_DELAY = 3, 2


@dataclass(frozen=True)
class RetryBackoff:
    queue: Queue
    dlq: Queue
    client_function: str
    worker_function: str
    state_machine_arn: str
    base_delay: float
    max_delay: float
    max_attempts: int
    visibility_cap: int
    max_receive_count: int
    sfn_max_attempts: int
    sfn_max_delay: int


def provision(aws: Aws) -> RetryBackoff:
    queue, dlq = ensure_queue_with_dlq(
        aws, "retry-backoff", max_receive_count=MAX_RECEIVE_COUNT, visibility_timeout=5
    )
    environment = {
        "BASE_DELAY_SECONDS": str(BASE_DELAY),
        "MAX_DELAY_SECONDS": str(MAX_DELAY),
        "MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "VISIBILITY_BASE_SECONDS": str(VISIBILITY_BASE),
        "VISIBILITY_CAP_SECONDS": str(VISIBILITY_CAP),
        "QUEUE_URL": queue.url,
        "DLQ_URL": dlq.url,
        "POWERTOOLS_SERVICE_NAME": "retry-backoff",
    }
    client, worker = "retry-backoff-client", "retry-backoff-worker"
    client_arn = ensure_function(
        aws,
        client,
        "retry_backoff",
        handler="app.client_handler",
        environment=environment,
        timeout=15,
    )
    ensure_function(
        aws,
        worker,
        "retry_backoff",
        handler="app.worker_handler",
        environment=environment,
        timeout=5,
    )
    ensure_event_source_mapping(aws, worker, queue.arn, batch_size=10)
    state_machine = ensure_state_machine(
        aws, "retry-backoff", "retry_backoff.json", {"ClientFunctionArn": client_arn}
    )
    return RetryBackoff(
        queue,
        dlq,
        client,
        worker,
        state_machine,
        BASE_DELAY,
        MAX_DELAY,
        MAX_ATTEMPTS,
        VISIBILITY_CAP,
        MAX_RECEIVE_COUNT,
        SFN_MAX_ATTEMPTS,
        SFN_MAX_DELAY,
    )
