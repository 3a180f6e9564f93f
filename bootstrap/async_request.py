"""Provision async-request: REST API -> SQS (service integration, no Lambda in front) ->
worker Lambda -> status in DynamoDB, completion on SNS; GET /status/{id} and /result/{id}
through a Lambda proxy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.aws import Aws
from sandbox.provision import (
    Queue,
    allow_invoke,
    allow_service_to_send,
    ensure_event_source_mapping,
    ensure_function,
    ensure_queue,
    ensure_queue_with_dlq,
    ensure_table,
    ensure_topic,
    subscribe_queue,
)
from sandbox.restapi import (
    RestApi,
    body_models,
    ensure_rest_api,
    lambda_proxy,
    sqs_send_message,
    validated_json_body,
)

MAX_RECEIVE_COUNT = 2
MAX_WORK_MS = 3000
# The worker's test-only hold (handlers/async_request/worker.py: wait_while_held): at most
# this long, within the worker's timeout with MAX_WORK_MS.
HOLD_MAX_MS = 6000
WORKER_TIMEOUT = 10
# The message is the client's body untouched; the id API Gateway gave the request travels
# as a message attribute, and the same id is the answer to the POST.
ID_ATTRIBUTE = "requestId"
MESSAGE = (
    "$util.urlEncode($input.body)"
    f"&MessageAttribute.1.Name={ID_ATTRIBUTE}"
    "&MessageAttribute.1.Value.DataType=String"
    "&MessageAttribute.1.Value.StringValue=$context.requestId"
)
ACCEPTED = '{"id": "$context.requestId", "status": "accepted"}'
JOB_REQUEST = {
    "type": "object",
    "required": ["text"],
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": 1000},
        "work_ms": {"type": "integer", "minimum": 0, "maximum": MAX_WORK_MS},
    },
    "additionalProperties": False,
}


@dataclass(frozen=True)
class AsyncRequest:
    api: RestApi
    table: str
    idempotency_table: str
    queue: Queue
    dlq: Queue
    topic: str
    subscriber: Queue
    webhook_dlq: Queue
    holds_table: str
    worker: str
    status_function: str
    id_attribute: str
    max_receive_count: int


def provision(aws: Aws) -> AsyncRequest:
    table = ensure_table(aws, "async-request-requests")
    idempotency_table = ensure_table(aws, "async-request-idempotency")
    holds_table = ensure_table(aws, "async-request-holds", hash_key="text")
    queue, dlq = ensure_queue_with_dlq(
        aws,
        "async-request",
        max_receive_count=MAX_RECEIVE_COUNT,
        visibility_timeout=WORKER_TIMEOUT,
    )
    topic = ensure_topic(aws, "async-request-completed")
    # A subscriber of the completion topic: it only collects, so it cannot fail (no DLQ).
    subscriber = ensure_queue(aws, "async-request-subscriber")
    subscribe_queue(aws, topic, subscriber)
    # Where SNS puts a completion a client's webhook endpoint refused: the RedrivePolicy of
    # the client's HTTP subscription (the client subscribes its own endpoint).
    webhook_dlq = ensure_queue(aws, "async-request-webhook-dlq")
    allow_service_to_send(aws, webhook_dlq, "sns.amazonaws.com", [topic])

    worker = "async-request-worker"
    ensure_function(
        aws,
        worker,
        "async_request",
        handler="worker.handler",
        environment={
            "TABLE_NAME": table,
            "IDEMPOTENCY_TABLE": idempotency_table,
            "TOPIC_ARN": topic,
            "ID_ATTRIBUTE": ID_ATTRIBUTE,
            "MAX_WORK_MS": str(MAX_WORK_MS),
            "HOLD_TABLE": holds_table,
            "HOLD_MAX_MS": str(HOLD_MAX_MS),
        },
        timeout=WORKER_TIMEOUT,  # <= the queue's visibility timeout
    )
    ensure_event_source_mapping(aws, worker, queue.arn, batch_size=10)

    status_function = "async-request-status"
    status_arn = ensure_function(
        aws,
        status_function,
        "async_request",
        handler="status.handler",
        environment={"TABLE_NAME": table},
        timeout=5,
    )
    api = ensure_rest_api(
        aws,
        "async-request-api",
        _paths(aws, queue, status_arn),
        **body_models(JobRequest=JOB_REQUEST),
    )
    allow_invoke(
        aws,
        status_function,
        "apigateway.amazonaws.com",
        f"arn:aws:execute-api:{aws.region}:{aws.account_id}:{api.id}/*",
    )
    return AsyncRequest(
        api,
        table,
        idempotency_table,
        queue,
        dlq,
        topic,
        subscriber,
        webhook_dlq,
        holds_table,
        worker,
        status_function,
        ID_ATTRIBUTE,
        MAX_RECEIVE_COUNT,
    )


def _paths(aws: Aws, queue: Queue, status_arn: str) -> dict[str, Any]:
    by_id = {
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "x-amazon-apigateway-integration": lambda_proxy(aws, status_arn),
        "responses": {"200": {"description": "found"}, "404": {"description": "not found"}},
    }
    return {
        "/requests": {
            "post": {
                **validated_json_body("JobRequest"),
                "x-amazon-apigateway-integration": sqs_send_message(
                    aws, queue, message_body=MESSAGE, response_template=ACCEPTED
                ),
                "responses": {"202": {"description": "queued"}},
            }
        },
        "/status/{id}": {"get": by_id},
        "/result/{id}": {"get": by_id},
    }
