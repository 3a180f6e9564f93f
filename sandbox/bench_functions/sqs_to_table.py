"""Bench: one DynamoDB item per SQS record (table from TABLE_NAME), noting the invocation,
the execution environment (process) and when its put_item started, so the bench can tell
where the time went."""

import os
import time
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
                "put_at": {"N": repr(time.time())},
            },
        )
    return {}
