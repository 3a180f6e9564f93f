"""Provision websockets: a WebSocket API ($connect, $disconnect, submit, $default) -> SQS ->
worker Lambda -> job status in DynamoDB -> its stream -> notifier Lambda -> the client's
connection, through the management API (@connections)."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox import websocket_api
from sandbox.aws import Aws
from sandbox.provision import (
    Queue,
    ensure_event_source_mapping,
    ensure_function,
    ensure_queue_with_dlq,
    ensure_table,
)
from sandbox.websocket_api import ApiDefinition

STEP_MS = 150
MAX_RECEIVE_COUNT = 2


@dataclass(frozen=True)
class WebSockets:
    url: str  # where clients connect
    callback_url: str  # the management API's endpoint_url
    connections_table: str
    jobs_table: str
    queue: Queue
    dlq: Queue
    connect_function: str
    disconnect_function: str
    notifier: str


def provision(aws: Aws) -> WebSockets:
    connections = ensure_table(aws, "websockets-connections", hash_key="connectionId")
    jobs = ensure_table(aws, "websockets-jobs", hash_key="jobId", stream_view="NEW_IMAGE")
    queue, dlq = ensure_queue_with_dlq(
        aws, "websockets-jobs", max_receive_count=MAX_RECEIVE_COUNT, visibility_timeout=10
    )
    api = ApiDefinition(
        name="websockets",
        stage="dev",
        routes={
            "$connect": "websockets-connect",
            "$disconnect": "websockets-disconnect",
            "$default": "websockets-default",
            "submit": "websockets-submit",
        },
        route_selection_expression="$request.body.action",
    )
    callback = websocket_api.callback_url(api, aws.endpoint_url)
    for route, handler in (
        ("$connect", "connections.connect"),
        ("$disconnect", "connections.disconnect"),
        ("$default", "submit.default"),
        ("submit", "submit.submit"),
    ):
        ensure_function(
            aws,
            api.routes[route],
            "websockets",
            handler=handler,
            environment={
                "CONNECTIONS_TABLE": connections,
                "JOBS_TABLE": jobs,
                "QUEUE_URL": queue.url,
                "CONNECTIONS_URL": callback,
            },
            timeout=10,
        )
    # The scenario throttles $disconnect for one step; a run cut short must not leave it so.
    aws.client("lambda").delete_function_concurrency(FunctionName=api.routes["$disconnect"])
    worker = ensure_function(
        aws,
        "websockets-worker",
        "websockets",
        handler="worker.handler",
        environment={"JOBS_TABLE": jobs, "STEP_MS": str(STEP_MS)},
        timeout=10,  # <= the queue's visibility timeout
    )
    ensure_event_source_mapping(aws, worker, queue.arn, batch_size=1)
    notifier = "websockets-notifier"
    ensure_function(
        aws,
        notifier,
        "websockets",
        handler="notifier.handler",
        environment={"CONNECTIONS_TABLE": connections, "CONNECTIONS_URL": callback},
        timeout=10,
    )
    stream_arn = aws.client("dynamodb").describe_table(TableName=jobs)["Table"]["LatestStreamArn"]
    ensure_event_source_mapping(
        aws, notifier, stream_arn, batch_size=10, StartingPosition="TRIM_HORIZON"
    )
    websocket_api.register(api)
    return WebSockets(
        websocket_api.websocket_url(api, aws.endpoint_url),
        callback,
        connections,
        jobs,
        queue,
        dlq,
        api.routes["$connect"],
        api.routes["$disconnect"],
        notifier,
    )
