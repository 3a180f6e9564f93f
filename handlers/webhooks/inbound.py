"""Generic inbound webhook endpoint: any post becomes an event on a bus (webhooks-inbound,
behind POST /hooks/{source}), after the vacationtracker generic-webhook-to-eventbridge design.

Request: any body. JSON (`application/json`, `*+json`) and form posts
(`application/x-www-form-urlencoded`) are parsed; a body that does not parse, or of another
content type, is forwarded raw and flagged, never dropped.
Event put on INBOUND_BUS: Source "webhook.<source>", DetailType "Webhook Received", Detail
{"source", "format": "json"|"form"|"raw", "malformed": bool, "payload" | ("raw", "reason"),
"content_type", "received_at"}.
202 -> {"eventId", "format", "malformed"}; 400 for a bad source name; 413 for a body too
big for an event; 502 if EventBridge refused the entry.
Environment: INBOUND_BUS.
"""

from __future__ import annotations

import json
import os
import re
import time
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from http_api import header, path_parameter, respond
from webhooks_core import decode_body, parse_inbound

logger = Logger(service="webhooks-inbound")
SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DETAIL_TYPE = "Webhook Received"
MAX_BODY = 200_000  # EventBridge entries are at most 256 KB


def to_entry(source: str, content_type: str | None, body: str, bus: str) -> dict[str, Any]:
    """The PutEvents entry for one inbound post."""
    parsed = parse_inbound(content_type, body)
    detail = {"source": source, **parsed.detail(), "content_type": content_type or ""}
    detail["received_at"] = int(time.time())
    return {
        "Source": f"webhook.{source}",
        "DetailType": DETAIL_TYPE,
        "Detail": json.dumps(detail),
        "EventBusName": bus,
    }


@cache
def _events() -> Any:
    return boto3.client("events")


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    source = path_parameter(event, "source")
    if not SOURCE_NAME.match(source):
        return respond(400, {"error": f"source {source!r} must match {SOURCE_NAME.pattern}"})
    body = decode_body(event.get("body"), bool(event.get("isBase64Encoded")))
    if len(body.encode()) > MAX_BODY:
        return respond(413, {"error": f"body is larger than {MAX_BODY} bytes"})
    entry = to_entry(source, header(event, "content-type"), body, os.environ["INBOUND_BUS"])
    detail = json.loads(entry["Detail"])
    put = _events().put_events(Entries=[entry])
    if put.get("FailedEntryCount"):
        reason = put["Entries"][0].get("ErrorMessage", "unknown")
        logger.error("EventBridge refused the entry", extra={"reason": reason})
        return respond(502, {"error": f"EventBridge refused the event: {reason}"})
    event_id = put["Entries"][0]["EventId"]
    logger.info(
        "Forwarded webhook",
        extra={"event_id": event_id, "format": detail["format"], "malformed": detail["malformed"]},
    )
    return respond(
        202, {"eventId": event_id, "format": detail["format"], "malformed": detail["malformed"]}
    )
