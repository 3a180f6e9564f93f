"""Provision rate-limiter: a token bucket and a fixed window (DynamoDB) in front of an API,
and an SQS buffer whose capped consumer regulates calls to a downstream."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import (
    Queue,
    allow_invoke,
    ensure_event_source_mapping,
    ensure_function,
    ensure_queue_with_dlq,
    ensure_table,
    ensure_ttl,
)
from sandbox.restapi import RestApi, ensure_rest_api, lambda_proxy, sqs_send_message

BUCKET_CAPACITY = 3  # the burst
REFILL_PER_SECOND = 0.5
WINDOW_LIMIT = 5
WINDOW_SECONDS = 3
DOWNSTREAM_CAP = 2  # calls the downstream may see at once
MAX_RECEIVE_COUNT = 2


@dataclass(frozen=True)
class RateLimiter:
    api: RestApi
    buckets_table: str
    windows_table: str
    limiter: str
    buffer: Queue
    dlq: Queue
    worker: str
    worker_mapping: str
    bucket_capacity: int
    refill_per_second: float
    window_limit: int
    window_seconds: int
    downstream_cap: int


def provision(aws: Aws) -> RateLimiter:
    buckets = ensure_table(aws, "rate-limiter-buckets")
    windows = ensure_table(aws, "rate-limiter-windows")
    ensure_ttl(aws, windows, "expires_at")
    limiter = "rate-limiter-api"
    limiter_arn = ensure_function(
        aws,
        limiter,
        "rate_limiter",
        environment={
            "BUCKETS_TABLE": buckets,
            "WINDOWS_TABLE": windows,
            "BUCKET_CAPACITY": str(BUCKET_CAPACITY),
            "REFILL_PER_SECOND": str(REFILL_PER_SECOND),
            "WINDOW_LIMIT": str(WINDOW_LIMIT),
            "WINDOW_SECONDS": str(WINDOW_SECONDS),
        },
        timeout=10,
    )

    buffer, dlq = ensure_queue_with_dlq(
        aws, "rate-limiter-buffer", max_receive_count=MAX_RECEIVE_COUNT, visibility_timeout=5
    )
    worker = "rate-limiter-worker"
    # DOWNSTREAM_URL is set by whoever runs the downstream (the scenario starts a stand-in).
    ensure_function(
        aws,
        worker,
        "rate_limiter",
        handler="worker.handler",
        environment={"DOWNSTREAM_URL": ""},
        timeout=5,  # <= the buffer's visibility timeout
    )
    # Two caps on the consumer: the mapping's MaximumConcurrency, and reserved concurrency
    # on the function (which also bounds any other invoker).
    aws.client("lambda").put_function_concurrency(
        FunctionName=worker, ReservedConcurrentExecutions=DOWNSTREAM_CAP
    )
    worker_mapping = ensure_event_source_mapping(
        aws, worker, buffer.arn, batch_size=1, ScalingConfig={"MaximumConcurrency": DOWNSTREAM_CAP}
    )

    proxy = {
        "x-amazon-apigateway-integration": lambda_proxy(aws, limiter_arn),
        "responses": {"200": {"description": "allowed"}, "429": {"description": "limited"}},
    }
    api = ensure_rest_api(
        aws,
        "rate-limiter-api",
        {
            "/bucket": {"get": proxy},
            "/window": {"get": proxy},
            "/jobs": {
                "post": {
                    "x-amazon-apigateway-integration": sqs_send_message(aws, buffer),
                    "responses": {"202": {"description": "buffered"}},
                }
            },
        },
    )
    allow_invoke(
        aws,
        limiter,
        "apigateway.amazonaws.com",
        f"arn:aws:execute-api:{aws.region}:{aws.account_id}:{api.id}/*",
    )
    return RateLimiter(
        api,
        buckets,
        windows,
        limiter,
        buffer,
        dlq,
        worker,
        worker_mapping,
        BUCKET_CAPACITY,
        REFILL_PER_SECOND,
        WINDOW_LIMIT,
        WINDOW_SECONDS,
        DOWNSTREAM_CAP,
    )
