"""Provision webhooks: outbound (signed deliveries with retries and replay), inbound (a
generic endpoint onto an EventBridge bus) and aggregation (bursts collapsed with a delay
queue). One REST API fronts the register, replay, inbound and aggregation functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.aws import Aws
from sandbox.provision import (
    Queue,
    allow_service_to_send,
    ensure_event_bus,
    ensure_event_source_mapping,
    ensure_function,
    ensure_queue_with_dlq,
    ensure_rule,
    ensure_table,
)
from sandbox.restapi import RestApi, allow_api_to_invoke, ensure_rest_api, lambda_proxy

PREFIX = "webhooks"
# The scenario's receiver listens on this machine without TLS, so the sandbox allows http; a
# real deployment would allow https only, and list its subscribers' hosts. Functions reach the
# receiver at 127.0.0.1 (embedded mode) or host.docker.internal (Docker: sandbox.local_http).
ALLOWED_HOSTS = ("127.0.0.1", "localhost", "host.docker.internal")
ALLOWED_SCHEMES = ("http", "https")
MAX_ATTEMPTS = 3
# Whole seconds: a retry is re-queued with SQS DelaySeconds, equal jitter in
# [ceiling / 2, ceiling] with ceiling min(cap, base * 2**n), at least 1 s.
BACKOFF_BASE = 1
BACKOFF_CAP = 4
HTTP_TIMEOUT = 2
AGGREGATION_WINDOW = 3  # seconds: the delay queue's DelaySeconds
MAX_RECEIVE_COUNT = 2
INBOUND_SOURCE_PREFIX = "webhook."
INBOUND_DETAIL_TYPE = "Webhook Received"


@dataclass(frozen=True)
class Webhooks:
    api: RestApi
    subscriptions_table: str
    deliveries_table: str
    attempts_table: str
    idempotency_table: str
    inbound_senders_table: str
    pending_table: str
    runs_table: str
    outbound_queue: Queue
    outbound_dlq: Queue
    deliveries_queue: Queue
    deliveries_dlq: Queue
    inbound_queue: Queue
    inbound_dlq: Queue
    delay_queue: Queue
    delay_dlq: Queue
    inbound_bus: str
    inbound_rule: str
    functions: tuple[str, ...]
    deliver_function: str
    allowed_hosts: tuple[str, ...]
    max_attempts: int
    backoff_base: int
    backoff_cap: int
    aggregation_window: int
    max_receive_count: int
    inbound_detail_type: str


def provision(aws: Aws) -> Webhooks:
    subscriptions = ensure_table(aws, f"{PREFIX}-subscriptions", hash_key="tenant", range_key="id")
    deliveries = ensure_table(aws, f"{PREFIX}-deliveries")
    attempts = ensure_table(aws, f"{PREFIX}-attempts", hash_key="delivery_id", range_key="attempt")
    idempotency = ensure_table(aws, f"{PREFIX}-idempotency")
    senders = ensure_table(aws, f"{PREFIX}-inbound-senders", hash_key="source")
    pending = ensure_table(aws, f"{PREFIX}-aggregate-pending", hash_key="resource")
    runs = ensure_table(aws, f"{PREFIX}-aggregate-runs", hash_key="resource", range_key="window_id")

    # Visibility timeouts cover the function timeouts (AWS checks this for mappings).
    outbound, outbound_dlq = ensure_queue_with_dlq(
        aws, f"{PREFIX}-outbound", max_receive_count=MAX_RECEIVE_COUNT, visibility_timeout=5
    )
    # One attempt per job: a POST of up to HTTP_TIMEOUT s and a few writes.
    deliveries_queue, deliveries_dlq = ensure_queue_with_dlq(
        aws, f"{PREFIX}-deliveries", max_receive_count=MAX_RECEIVE_COUNT, visibility_timeout=20
    )
    inbound_queue, inbound_dlq = ensure_queue_with_dlq(
        aws, f"{PREFIX}-inbound-events", max_receive_count=MAX_RECEIVE_COUNT, visibility_timeout=5
    )
    delay_queue, delay_dlq = ensure_queue_with_dlq(
        aws,
        f"{PREFIX}-aggregate-delay",
        max_receive_count=MAX_RECEIVE_COUNT,
        visibility_timeout=5,
        DelaySeconds=str(AGGREGATION_WINDOW),
    )
    bus = f"{PREFIX}-inbound"
    ensure_event_bus(aws, bus)

    allowlist = {
        "ALLOWED_HOSTS": ",".join(ALLOWED_HOSTS),
        "ALLOWED_SCHEMES": ",".join(ALLOWED_SCHEMES),
    }
    fn = {
        "register": f"{PREFIX}-register",
        "dispatch": f"{PREFIX}-dispatch",
        "deliver": f"{PREFIX}-deliver",
        "replay": f"{PREFIX}-replay",
        "inbound": f"{PREFIX}-inbound",
        "intake": f"{PREFIX}-aggregate-intake",
        "run": f"{PREFIX}-aggregate-run",
    }
    arns = {
        "register": ensure_function(
            aws,
            fn["register"],
            "webhooks",
            handler="register.handler",
            timeout=5,
            environment={"SUBSCRIPTIONS_TABLE": subscriptions, **allowlist},
        ),
        "dispatch": ensure_function(
            aws,
            fn["dispatch"],
            "webhooks",
            handler="dispatch.handler",
            timeout=5,
            environment={
                "SUBSCRIPTIONS_TABLE": subscriptions,
                "DELIVERIES_TABLE": deliveries,
                "DELIVERIES_QUEUE_URL": deliveries_queue.url,
            },
        ),
        "deliver": ensure_function(
            aws,
            fn["deliver"],
            "webhooks",
            handler="deliver.handler",
            timeout=20,
            environment={
                "DELIVERIES_TABLE": deliveries,
                "ATTEMPTS_TABLE": attempts,
                "SUBSCRIPTIONS_TABLE": subscriptions,
                "IDEMPOTENCY_TABLE": idempotency,
                "DELIVERIES_QUEUE_URL": deliveries_queue.url,
                "MAX_ATTEMPTS": str(MAX_ATTEMPTS),
                "BACKOFF_BASE": str(BACKOFF_BASE),
                "BACKOFF_CAP": str(BACKOFF_CAP),
                "HTTP_TIMEOUT": str(HTTP_TIMEOUT),
                **allowlist,
            },
        ),
        "replay": ensure_function(
            aws,
            fn["replay"],
            "webhooks",
            handler="replay.handler",
            timeout=5,
            environment={
                "DELIVERIES_TABLE": deliveries,
                "DELIVERIES_QUEUE_URL": deliveries_queue.url,
            },
        ),
        "inbound": ensure_function(
            aws,
            fn["inbound"],
            "webhooks",
            handler="inbound.handler",
            timeout=5,
            environment={"INBOUND_BUS": bus, "INBOUND_SENDERS_TABLE": senders},
        ),
        "intake": ensure_function(
            aws,
            fn["intake"],
            "webhooks",
            handler="aggregate.intake_handler",
            timeout=5,
            environment={"PENDING_TABLE": pending, "DELAY_QUEUE_URL": delay_queue.url},
        ),
        "run": ensure_function(
            aws,
            fn["run"],
            "webhooks",
            handler="aggregate.run_handler",
            timeout=5,
            environment={"PENDING_TABLE": pending, "RUNS_TABLE": runs},
        ),
    }
    ensure_event_source_mapping(aws, fn["dispatch"], outbound.arn, batch_size=10)
    # Small batches: one record's retries should not hold up many others.
    ensure_event_source_mapping(aws, fn["deliver"], deliveries_queue.arn, batch_size=1)
    ensure_event_source_mapping(aws, fn["run"], delay_queue.arn, batch_size=10)

    rule = f"{PREFIX}-inbound-to-queue"
    rule_arn = ensure_rule(
        aws,
        rule,
        bus=bus,
        targets=[{"Id": "inbound-queue", "Arn": inbound_queue.arn}],
        pattern={
            "source": [{"prefix": INBOUND_SOURCE_PREFIX}],
            "detail-type": [INBOUND_DETAIL_TYPE],
        },
        description="Every inbound webhook, parsed or flagged, to the queue consumers read",
    )
    allow_service_to_send(aws, inbound_queue, "events.amazonaws.com", [rule_arn])

    def post(name: str) -> dict[str, Any]:
        return {"post": {"x-amazon-apigateway-integration": lambda_proxy(aws, arns[name])}}

    api = ensure_rest_api(
        aws,
        f"{PREFIX}-api",
        {
            "/subscriptions": post("register"),
            "/deliveries/{id}/replay": _with_path(post("replay"), "id"),
            "/hooks/{source}": _with_path(post("inbound"), "source"),
            "/resources/{resource}/hooks": _with_path(post("intake"), "resource"),
        },
    )
    for name in ("register", "replay", "inbound", "intake"):
        allow_api_to_invoke(aws, fn[name], api)

    return Webhooks(
        api=api,
        subscriptions_table=subscriptions,
        deliveries_table=deliveries,
        attempts_table=attempts,
        idempotency_table=idempotency,
        inbound_senders_table=senders,
        pending_table=pending,
        runs_table=runs,
        outbound_queue=outbound,
        outbound_dlq=outbound_dlq,
        deliveries_queue=deliveries_queue,
        deliveries_dlq=deliveries_dlq,
        inbound_queue=inbound_queue,
        inbound_dlq=inbound_dlq,
        delay_queue=delay_queue,
        delay_dlq=delay_dlq,
        inbound_bus=bus,
        inbound_rule=rule,
        functions=tuple(fn.values()),
        deliver_function=fn["deliver"],
        allowed_hosts=ALLOWED_HOSTS,
        max_attempts=MAX_ATTEMPTS,
        backoff_base=BACKOFF_BASE,
        backoff_cap=BACKOFF_CAP,
        aggregation_window=AGGREGATION_WINDOW,
        max_receive_count=MAX_RECEIVE_COUNT,
        inbound_detail_type=INBOUND_DETAIL_TYPE,
    )


def _with_path(operation: dict[str, Any], parameter: str) -> dict[str, Any]:
    """Declare the path parameter on each method, as OpenAPI import expects."""
    for method in operation.values():
        method["parameters"] = [
            {"name": parameter, "in": "path", "required": True, "schema": {"type": "string"}}
        ]
    return operation
