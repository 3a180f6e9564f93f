"""Register a webhook subscription (webhooks-register, behind POST /subscriptions).

Request body (JSON): {"tenant": str, "url": str, "events": [str, ...]} ("*" = every type).
201 -> {"id", "tenant", "url", "events", "secret"}: the signing secret is shown only here.
400 -> {"error": reason}: bad JSON, a missing field, or a URL refused by the allowlist
(scheme, host, credentials), checked before anything is stored.
Environment: SUBSCRIPTIONS_TABLE (keys tenant, id), ALLOWED_HOSTS and ALLOWED_SCHEMES
(comma-separated).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from http_api import respond
from webhooks_core import InvalidUrl, validate_url

logger = Logger(service="webhooks-register")


class InvalidSubscription(ValueError):
    """The registration request is refused; the message says why."""


def allowlist() -> tuple[list[str], list[str]]:
    hosts = os.environ.get("ALLOWED_HOSTS", "").split(",")
    schemes = os.environ.get("ALLOWED_SCHEMES", "https").split(",")
    return hosts, schemes


def parse_subscription(body: str | None, hosts: list[str], schemes: list[str]) -> dict[str, Any]:
    """The subscription to store, or InvalidSubscription with the reason."""
    try:
        request = json.loads(body or "")
    except json.JSONDecodeError as error:
        raise InvalidSubscription(f"body is not JSON: {error}") from error
    if not isinstance(request, dict):
        raise InvalidSubscription("body must be a JSON object")
    tenant, events = request.get("tenant"), request.get("events")
    if not isinstance(tenant, str) or not tenant.strip():
        raise InvalidSubscription("'tenant' must be a non-empty string")
    if (
        not isinstance(events, list)
        or not events
        or not all(isinstance(e, str) and e for e in events)
    ):
        raise InvalidSubscription("'events' must be a non-empty list of event types")
    try:
        url = validate_url(request.get("url"), hosts, schemes)
    except InvalidUrl as error:
        raise InvalidSubscription(str(error)) from error
    return {"tenant": tenant, "url": url, "events": sorted(set(events))}


@cache
def _table() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["SUBSCRIPTIONS_TABLE"])


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    hosts, schemes = allowlist()
    try:
        subscription = parse_subscription(event.get("body"), hosts, schemes)
    except InvalidSubscription as error:
        logger.info("Refused subscription", extra={"reason": str(error)})
        return respond(400, {"error": str(error)})
    subscription |= {
        "id": f"sub_{secrets.token_hex(8)}",
        "secret": f"whsec_{secrets.token_hex(24)}",
        "status": "ACTIVE",
        "created_at": int(time.time()),
    }
    _table().put_item(Item=subscription)
    logger.info("Registered subscription", extra={"subscription": subscription["id"]})
    shown = ("id", "tenant", "url", "events", "secret")
    return respond(201, {k: subscription[k] for k in shown})
