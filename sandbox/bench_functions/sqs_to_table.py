"""Bench: one DynamoDB item per SQS record (table from TABLE_NAME), noting the invocation and
the execution environment (process) that stored it."""

import os
from typing import Any

import boto3

DYNAMODB = boto3.client("dynamodb")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    for record in event["Records"]:
        DYNAMODB.put_item(
            TableName=os.environ["TABLE_NAME"],
            Item={
                "id": {"S": record["messageId"]},
                "invocation": {"S": context.aws_request_id},
                "environment": {"N": str(os.getpid())},
            },
        )
    return {}
