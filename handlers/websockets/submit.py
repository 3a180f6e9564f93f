"""websockets `submit` route and `$default`: accept a job from a connected client.

`submit` body: {"action": "submit", "jobId": str, "text": str, "steps": 1-5?}. The job is
written to the jobs table as QUEUED (its stream tells the client) and sent to the queue for
the worker. A body that is not a valid job gets an error message on the same connection,
saying what to fix; `$default` (any other action) says which actions exist.
Environment: JOBS_TABLE, QUEUE_URL, CONNECTIONS_URL (the management API's endpoint:
https://{api-id}.execute-api.{region}.amazonaws.com/{stage} on AWS).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

logger = Logger(service="websockets")
MAX_STEPS = 5


class InvalidJob(ValueError):
    """The message is not a job: says what to fix."""


def parse_job(body: str | None) -> dict[str, Any]:
    """{"jobId", "text", "steps"} from a submit message; InvalidJob otherwise (pure)."""
    try:
        message = json.loads(body or "")
    except ValueError as error:
        raise InvalidJob(f"the message is not JSON: {error}") from error
    if not isinstance(message, dict):
        raise InvalidJob("the message must be a JSON object")
    job_id, text, steps = message.get("jobId"), message.get("text"), message.get("steps", 3)
    if not isinstance(job_id, str) or not 1 <= len(job_id) <= 64:
        raise InvalidJob("jobId must be a string of 1 to 64 characters")
    if not isinstance(text, str) or not text:
        raise InvalidJob("text must be a non-empty string")
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        raise InvalidJob(f"steps must be an integer from 1 to {MAX_STEPS}")
    return {"jobId": job_id, "text": text, "steps": steps}


@cache
def _jobs() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["JOBS_TABLE"])


@cache
def _connections_api() -> Any:
    return boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["CONNECTIONS_URL"])


def _tell(connection_id: str, message: dict[str, Any]) -> None:
    _connections_api().post_to_connection(
        ConnectionId=connection_id, Data=json.dumps(message).encode()
    )


def submit(event: dict[str, Any], context: Any) -> dict[str, Any]:
    connection_id = event["requestContext"]["connectionId"]
    try:
        job = parse_job(event.get("body"))
    except InvalidJob as error:
        _tell(connection_id, {"type": "error", "message": f"submit refused: {error}"})
        return {"statusCode": 400}
    try:
        _jobs().put_item(
            Item={
                **job,
                "connectionId": connection_id,
                "status": "QUEUED",
                "progress": 0,
                "updatedAt": datetime.now(UTC).isoformat(timespec="milliseconds"),
            },
            ConditionExpression="attribute_not_exists(jobId)",
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        _tell(connection_id, {"type": "error", "message": f"job {job['jobId']} exists already"})
        return {"statusCode": 409}
    boto3.client("sqs").send_message(QueueUrl=os.environ["QUEUE_URL"], MessageBody=json.dumps(job))
    logger.info("Queued job", extra={"job_id": job["jobId"], "connection_id": connection_id})
    return {"statusCode": 202}


def default(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _tell(
        event["requestContext"]["connectionId"],
        {"type": "error", "message": 'unknown action: send {"action": "submit", ...}'},
    )
    return {"statusCode": 400}
