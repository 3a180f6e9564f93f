"""Replay a failed delivery (webhooks-replay, behind POST /deliveries/{id}/replay).

The delivery must be FAILED: it moves to PENDING with its round one higher (one conditional
update, so two replays at once start one round), and a job {"delivery_id", "round",
"attempt": 1, "delay": 0} goes to webhooks-deliveries; the worker then POSTs the same
body with a fresh signature.
202 -> {"delivery_id", "round", "status": "PENDING"}; 404 unknown delivery;
409 {"error"} when the delivery is not FAILED (e.g. DELIVERED or still PENDING).
Environment: DELIVERIES_TABLE, DELIVERIES_QUEUE_URL.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from http_api import path_parameter, respond

logger = Logger(service="webhooks-replay")


@cache
def _deliveries() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["DELIVERIES_TABLE"])


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    delivery_id = path_parameter(event, "id")
    try:
        updated = _deliveries().update_item(
            Key={"id": delivery_id},
            UpdateExpression="SET #s = :pending ADD #r :one",
            ConditionExpression="#s = :failed",
            ExpressionAttributeNames={"#s": "status", "#r": "round"},
            ExpressionAttributeValues={":pending": "PENDING", ":failed": "FAILED", ":one": 1},
            ReturnValues="ALL_NEW",
        )["Attributes"]
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        found = _deliveries().get_item(Key={"id": delivery_id}, ConsistentRead=True).get("Item")
        if found is None:
            return respond(404, {"error": f"no delivery {delivery_id!r}"})
        return respond(
            409,
            {
                "error": f"delivery {delivery_id} is {found['status']}; "
                "only FAILED deliveries can be replayed"
            },
        )
    round_ = int(updated["round"])
    boto3.client("sqs").send_message(
        QueueUrl=os.environ["DELIVERIES_QUEUE_URL"],
        MessageBody=json.dumps(
            {"delivery_id": delivery_id, "round": round_, "attempt": 1, "delay": 0}
        ),
    )
    logger.info("Replaying delivery", extra={"delivery": delivery_id, "round": round_})
    return respond(202, {"delivery_id": delivery_id, "round": round_, "status": "PENDING"})
