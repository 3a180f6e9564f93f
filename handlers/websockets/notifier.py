"""websockets notifier: tell each job's client about every status the jobs table records.

Event: a DynamoDB stream batch of the jobs table (NEW_IMAGE), in order per job.
Environment: CONNECTIONS_TABLE, CONNECTIONS_URL (the management API's endpoint).
Each new image is posted to the connection that submitted the job, and only to it. A post
that answers 410 GoneException means the client has gone (its $disconnect may have been
missed): the connection is dropped from the connections table and the record counts as
done, so the job's other updates still flow. Any other error fails the record (retried).
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
)

logger = Logger(service="websockets")
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def update_for(image: dict[str, Any]) -> dict[str, Any]:
    """What the client is told about a job's new state (pure)."""
    update = {
        "type": "status",
        "jobId": image["jobId"],
        "status": image["status"],
        "progress": int(image.get("progress", 0)),
        "steps": int(image["steps"]),
    }
    if "result" in image:
        update["result"] = image["result"]
    return update


def recipients(image: dict[str, Any]) -> list[str]:
    """The connections to tell: the one that submitted the job."""
    return [image["connectionId"]]


@cache
def _connections_api() -> Any:
    return boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["CONNECTIONS_URL"])


@cache
def _connections() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["CONNECTIONS_TABLE"])


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, Decimal) else str(value)


def record_handler(record: DynamoDBRecord) -> None:
    image = record.dynamodb.new_image if record.dynamodb else None
    if not image:
        return  # a deleted job: nothing to tell
    data = json.dumps(update_for(image), default=_plain).encode()
    api = _connections_api()
    for connection_id in recipients(image):
        try:
            api.post_to_connection(ConnectionId=connection_id, Data=data)
        except api.exceptions.GoneException:
            _connections().delete_item(Key={"connectionId": connection_id})
            logger.info("Connection gone: dropped", extra={"connection_id": connection_id})


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
