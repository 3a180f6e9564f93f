"""Provision storage-first: the API stores each request before any code runs.

POST /orders: REST API -> SQS SendMessage integration -> consumer Lambda -> DynamoDB (the
queue has a DLQ). POST /inbox: the DynamoDB variant, a PutItem integration into an inbox
table whose stream feeds the same consumer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.aws import Aws
from sandbox.provision import (
    Queue,
    ensure_event_source_mapping,
    ensure_function,
    ensure_queue_with_dlq,
    ensure_table,
)
from sandbox.restapi import (
    RestApi,
    body_models,
    ensure_rest_api,
    gateway_role,
    sqs_send_message,
    validated_json_body,
)

MAX_RECEIVE_COUNT = 2
ORDER = {
    "type": "object",
    "required": ["order_id", "customer", "amount"],
    "properties": {
        "order_id": {"type": "string", "minLength": 1, "maxLength": 100},
        "customer": {"type": "string", "minLength": 1, "maxLength": 100},
        "amount": {"type": "number", "exclusiveMinimum": 0},
    },
    "additionalProperties": False,
}


@dataclass(frozen=True)
class StorageFirst:
    api: RestApi
    queue: Queue
    dlq: Queue
    orders_table: str
    inbox_table: str
    consumer: str
    queue_mapping: str
    stream_mapping: str
    max_receive_count: int


def provision(aws: Aws) -> StorageFirst:
    orders = ensure_table(aws, "storage-first-orders")
    inbox = ensure_table(aws, "storage-first-inbox", stream_view="NEW_IMAGE")
    queue, dlq = ensure_queue_with_dlq(
        aws, "storage-first", max_receive_count=MAX_RECEIVE_COUNT, visibility_timeout=2
    )
    consumer = "storage-first-consumer"
    # BROKEN is how the scenario breaks the consumer (as a bad deploy would); provisioning
    # always puts it back to healthy.
    ensure_function(
        aws,
        consumer,
        "storage_first",
        environment={"ORDERS_TABLE": orders, "BROKEN": "false"},
        timeout=2,  # <= the queue's visibility timeout
    )
    queue_mapping = ensure_event_source_mapping(aws, consumer, queue.arn, batch_size=10)
    stream_arn = aws.client("dynamodb").describe_table(TableName=inbox)["Table"]["LatestStreamArn"]
    stream_mapping = ensure_event_source_mapping(
        aws,
        consumer,
        stream_arn,
        batch_size=10,
        StartingPosition="TRIM_HORIZON",
        MaximumRetryAttempts=MAX_RECEIVE_COUNT,
        DestinationConfig={"OnFailure": {"Destination": dlq.arn}},
    )
    api = ensure_rest_api(
        aws, "storage-first-api", _paths(aws, queue, inbox), **body_models(Order=ORDER)
    )
    return StorageFirst(
        api, queue, dlq, orders, inbox, consumer, queue_mapping, stream_mapping, MAX_RECEIVE_COUNT
    )


def _paths(aws: Aws, queue: Queue, inbox: str) -> dict[str, Any]:
    return {
        "/orders": {
            "post": {
                **validated_json_body("Order"),
                "x-amazon-apigateway-integration": sqs_send_message(aws, queue),
                "responses": {"202": {"description": "stored in the queue"}},
            }
        },
        "/inbox": {
            "post": {
                **validated_json_body("Order"),
                "x-amazon-apigateway-integration": dynamodb_put_item(aws, inbox),
                "responses": {"202": {"description": "stored in the inbox table"}},
            }
        },
    }


def dynamodb_put_item(aws: Aws, table: str) -> dict[str, Any]:
    """A service integration straight into DynamoDB: PutItem of the raw body, keyed by the
    request id API Gateway gives the call (a retried POST is a new request)."""
    template = (
        "{"
        f'"TableName": "{table}",'
        '"Item": {'
        '"id": {"S": "$context.requestId"},'
        '"order_id": {"S": "$util.escapeJavaScript($input.path(\'$.order_id\'))"},'
        '"body": {"S": "$util.escapeJavaScript($input.body)"},'
        '"received_at": {"N": "$context.requestTimeEpoch"}'
        "},"
        '"ConditionExpression": "attribute_not_exists(id)"'
        "}"
    )
    return {
        "type": "aws",
        "httpMethod": "POST",
        "uri": f"arn:aws:apigateway:{aws.region}:dynamodb:action/PutItem",
        "credentials": gateway_role(aws),
        "requestTemplates": {"application/json": template},
        "passthroughBehavior": "never",
        "responses": {
            "default": {
                "statusCode": "202",
                "responseTemplates": {"application/json": '{"id": "$context.requestId"}'},
            }
        },
    }
