"""Generic inbound webhook endpoint: any post becomes an event on a bus (webhooks-inbound,
behind POST /hooks/{source}), after the vacationtracker generic-webhook-to-eventbridge design.

Request: any body, signed by its sender: `X-Signature: t=<unix>,v1=<HMAC-SHA256 of
"<t>.<raw body>">` (webhooks_core's scheme) with the secret INBOUND_SENDERS_TABLE keeps for
the source (`{"source", "secret"}`, and `previous_secret` while a secret is rotated).
A source with no sender there gets 403, a missing, stale or wrong signature 401; neither
reaches the bus. JSON (`application/json`, `*+json`) and form posts
(`application/x-www-form-urlencoded`) are parsed; a body that does not parse, or of another
content type, is forwarded raw and flagged, never dropped.
Event put on INBOUND_BUS: Source "webhook.<source>", DetailType "Webhook Received", Detail
{"source", "format": "json"|"form"|"raw", "malformed": bool, "payload" | ("raw", "reason"),
"content_type", "received_at"}.
202 -> {"eventId", "format", "malformed"}; 400 for a bad source name; 401/403 as above; 413
for a body too big for an event; 502 if EventBridge refused the entry.
Environment: INBOUND_BUS, INBOUND_SENDERS_TABLE.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from http_api import header, path_parameter, respond
from webhooks_core import SIGNATURE_HEADER, SignatureError, decode_body, parse_inbound, verify

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


@cache
def _senders() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["INBOUND_SENDERS_TABLE"])


def _raw_body(event: dict[str, Any]) -> bytes:
    """The bytes the sender signed."""
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()


def refusal(event: dict[str, Any], source: str) -> dict[str, Any] | None:
    """The response refusing this post (unknown sender 403, bad signature 401), or None
    when its signature verifies with the source's secret."""
    sender = _senders().get_item(Key={"source": source}, ConsistentRead=True).get("Item")
    if sender is None:
        return respond(403, {"error": f"no sender is registered for source {source!r}"})
    secrets = [
        sender["secret"],
        *([sender["previous_secret"]] if "previous_secret" in sender else []),
    ]
    try:
        verify(secrets, header(event, SIGNATURE_HEADER), _raw_body(event), now=time.time())
    except SignatureError as error:
        return respond(401, {"error": f"signature refused: {error}"})
    return None


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    source = path_parameter(event, "source")
    if not SOURCE_NAME.match(source):
        return respond(400, {"error": f"source {source!r} must match {SOURCE_NAME.pattern}"})
    body = decode_body(event.get("body"), bool(event.get("isBase64Encoded")))
    if len(body.encode()) > MAX_BODY:
        return respond(413, {"error": f"body is larger than {MAX_BODY} bytes"})
    refused = refusal(event, source)
    if refused is not None:
        logger.warning("Refused an inbound post", extra={"source": source, "why": refused["body"]})
        return refused
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
