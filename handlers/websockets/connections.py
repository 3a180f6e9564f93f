"""websockets $connect and $disconnect routes: keep the table of who is connected.

$connect event: API Gateway's, with queryStringParameters. A client must connect with
`?token=<user token>`; the token stands in for a verified credential (a JWT checked here, or
a Lambda authorizer on AWS) and names the user. No token: 401, and API Gateway refuses the
connection. $disconnect deletes the row (best effort on AWS: the notifier also drops a
connection whose post answers 410).
Environment: CONNECTIONS_TABLE.
Row: {connectionId, userId, connectedAt}.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger

logger = Logger(service="websockets")
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")


def user_of(query: dict[str, str] | None) -> str | None:
    """The user a connection request is from, or None when its token is missing or malformed
    (pure)."""
    token = (query or {}).get("token", "")
    if not TOKEN.fullmatch(token):
        return None
    return token


@cache
def _table() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["CONNECTIONS_TABLE"])


def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    user = user_of(event.get("queryStringParameters"))
    connection_id = event["requestContext"]["connectionId"]
    if user is None:
        logger.info("Refused a connection without a valid token", extra={"id": connection_id})
        return {"statusCode": 401, "body": "a token query parameter is required"}
    _table().put_item(
        Item={
            "connectionId": connection_id,
            "userId": user,
            "connectedAt": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
    )
    return {"statusCode": 200}


def disconnect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _table().delete_item(Key={"connectionId": event["requestContext"]["connectionId"]})
    return {"statusCode": 200}
