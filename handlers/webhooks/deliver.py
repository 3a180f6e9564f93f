"""Deliver webhooks: signed POSTs with retries, every attempt recorded (webhooks-deliver).

Event: an SQS batch from webhooks-deliveries (ReportBatchItemFailures); each body is a job
{"delivery_id": str, "round": int}. Round 0 is the first delivery, each replay adds one.
For the job's delivery: re-check the subscriber URL against the allowlist, then POST the
stored body with `X-Signature: t=<unix>,v1=<hmac>` (see webhooks_core) up to MAX_ATTEMPTS
times, waiting a full-jitter backoff between attempts. Each attempt is written to the
attempts table (status code or error, the wait before it); the delivery ends DELIVERED, or
FAILED with the last error, kept for replay (webhooks-replay).
Powertools idempotency keyed on [delivery_id, round]: a job SQS hands over again after it
completed returns the stored result without POSTing again. A job for an old round, or for a
delivery already DELIVERED, is skipped.
Environment: DELIVERIES_TABLE, ATTEMPTS_TABLE, SUBSCRIPTIONS_TABLE, IDEMPOTENCY_TABLE,
ALLOWED_HOSTS, ALLOWED_SCHEMES, MAX_ATTEMPTS, BACKOFF_BASE, BACKOFF_CAP (seconds),
HTTP_TIMEOUT (seconds).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from webhooks_core import SIGNATURE_HEADER, InvalidUrl, backoff_delays, sign, validate_url

logger = Logger(service="webhooks-deliver")
# A batch that fails entirely is reported record by record rather than raised, so the
# poller does not back off as it would after a function error.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
idempotency_config = IdempotencyConfig(
    event_key_jmespath="[delivery_id, round]", raise_on_no_idempotency_key=True
)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None  # HTTP status, None when no response came
    error: str | None


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
    """One POST; a 2xx answer is success, anything else (or no answer) is a failure."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Outcome(200 <= response.status < 300, response.status, None)
    except urllib.error.HTTPError as error:
        return Outcome(False, error.code, f"HTTP {error.code}")
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        return Outcome(False, None, f"{type(error).__name__}: {reason}")


@cache
def _dynamodb() -> Any:
    return boto3.resource("dynamodb")


def _table(variable: str) -> Any:
    return _dynamodb().Table(os.environ[variable])


def _record_attempt(
    delivery: dict[str, Any], round_: int, number: int, waited: float, outcome: Outcome
) -> None:
    _table("ATTEMPTS_TABLE").put_item(
        Item={
            "delivery_id": delivery["id"],
            "attempt": f"{round_:03d}-{number:02d}",
            "round": round_,
            "number": number,
            "at": str(time.time()),
            "waited": str(round(waited, 3)),
            "status_code": outcome.status or 0,
            "ok": outcome.ok,
            "error": outcome.error or "",
        }
    )


def _finish(delivery_id: str, status: str, error: str | None, attempts: int = 0) -> None:
    """End the round: its status, last error, and the attempts it made (added to earlier
    rounds' count)."""
    _table("DELIVERIES_TABLE").update_item(
        Key={"id": delivery_id},
        UpdateExpression="SET #s = :s, last_error = :e, finished_at = :t ADD attempts :n",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":s": status,
            ":e": error or "",
            ":t": int(time.time()),
            ":n": attempts,
        },
    )


def deliver(job: dict[str, Any]) -> dict[str, Any]:
    """Deliver one job's round; returns {"delivery_id", "round", "status", "attempts"}."""
    delivery_id, round_ = job["delivery_id"], int(job["round"])
    delivery = _table("DELIVERIES_TABLE").get_item(Key={"id": delivery_id}, ConsistentRead=True)
    item = delivery.get("Item")
    if item is None:
        raise LookupError(f"no delivery {delivery_id}")
    result = {"delivery_id": delivery_id, "round": round_}
    if item["status"] == "DELIVERED" or int(item["round"]) != round_:
        logger.info("Skipped job", extra={"delivery": delivery_id, "status": item["status"]})
        return result | {"status": "SKIPPED", "attempts": 0}
    subscription = (
        _table("SUBSCRIPTIONS_TABLE")
        .get_item(
            Key={"tenant": item["tenant"], "id": item["subscription_id"]}, ConsistentRead=True
        )
        .get("Item")
    )
    if subscription is None:
        _finish(delivery_id, "FAILED", "subscription no longer exists")
        return result | {"status": "FAILED", "attempts": 0}
    try:
        validate_url(
            subscription["url"],
            os.environ.get("ALLOWED_HOSTS", "").split(","),
            os.environ.get("ALLOWED_SCHEMES", "https").split(","),
        )
    except InvalidUrl as error:
        _finish(delivery_id, "FAILED", f"refused before sending: {error}")
        return result | {"status": "FAILED", "attempts": 0}

    max_attempts = int(os.environ.get("MAX_ATTEMPTS", "3"))
    waits = [0.0] + backoff_delays(
        max_attempts,
        float(os.environ.get("BACKOFF_BASE", "0.2")),
        float(os.environ.get("BACKOFF_CAP", "1")),
    )
    body = item["body"].encode()
    outcome = Outcome(False, None, "not attempted")
    for number, wait in enumerate(waits, start=1):
        time.sleep(wait)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "sandbox-webhooks/1",
            SIGNATURE_HEADER: sign(subscription["secret"], body, int(time.time())),
            "X-Webhook-Id": delivery_id,
            "X-Webhook-Event": item["event_type"],
            "X-Webhook-Attempt": str(number),
        }
        outcome = post(
            subscription["url"], body, headers, float(os.environ.get("HTTP_TIMEOUT", "2"))
        )
        _record_attempt(item, round_, number, wait, outcome)
        if outcome.ok:
            _finish(delivery_id, "DELIVERED", None, number)
            logger.info("Delivered", extra={"delivery": delivery_id, "attempts": number})
            return result | {"status": "DELIVERED", "attempts": number}
    _finish(delivery_id, "FAILED", outcome.error, len(waits))
    logger.warning("Delivery failed", extra={"delivery": delivery_id, "last_error": outcome.error})
    return result | {"status": "FAILED", "attempts": len(waits)}


@cache
def _guarded_deliver() -> Any:
    """`deliver` behind Powertools idempotency (made on first use: it needs the table name)."""
    persistence = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])
    return idempotent_function(
        data_keyword_argument="job", persistence_store=persistence, config=idempotency_config
    )(deliver)


def record_handler(record: SQSRecord) -> None:
    job = json.loads(record.body)
    _guarded_deliver()(job=job)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    idempotency_config.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
