"""Bench: one DynamoDB item per SQS record (table from TABLE_NAME), written with boto3's batch
writer (BatchWriteItem, up to 25 items a request), as SQS-to-table code usually is."""

import os
from typing import Any

import boto3

TABLE = boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with TABLE.batch_writer() as batch:
        for record in event["Records"]:
            batch.put_item(Item={"id": record["messageId"], "invocation": context.aws_request_id})
    return {}
