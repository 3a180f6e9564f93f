"""Deliver webhooks: one signed POST per invocation, a failed one re-queued with a delay,
every attempt recorded (webhooks-deliver).

Event: an SQS batch from webhooks-deliveries (ReportBatchItemFailures); each body is a job
{"delivery_id": str, "round": int, "attempt": int (from 1), "delay": int (the seconds it
was queued with, 0 for a first attempt)}. Round 0 is the first delivery, each replay adds
one. For the job's delivery: re-check the subscriber URL against the allowlist, then POST
the stored body once with `X-Signature: t=<unix>,v1=<hmac>` (see webhooks_core). The
attempt is written to the attempts table (status code or error, the delay it was queued
with, when it ran and which invocation ran it). On success the delivery is DELIVERED; on a
failure before MAX_ATTEMPTS the next attempt goes back on the queue with DelaySeconds from
the backoff (no Lambda waits); after the last one the delivery is FAILED with the last
error, kept for replay (webhooks-replay).
Powertools idempotency keyed on [delivery_id, round, attempt]: a job SQS hands over again
after it completed returns the stored result without POSTing again. A job for an old
round, or for a delivery already DELIVERED, is skipped.
Environment: DELIVERIES_TABLE, ATTEMPTS_TABLE, SUBSCRIPTIONS_TABLE, IDEMPOTENCY_TABLE,
DELIVERIES_QUEUE_URL, ALLOWED_HOSTS, ALLOWED_SCHEMES, MAX_ATTEMPTS, BACKOFF_BASE,
BACKOFF_CAP (seconds), HTTP_TIMEOUT (seconds).
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
from webhooks_core import SIGNATURE_HEADER, InvalidUrl, retry_delay, sign, validate_url

logger = Logger(service="webhooks-deliver")
# A batch that fails entirely is reported record by record rather than raised, so the
# poller does not back off as it would after a function error.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
idempotency_config = IdempotencyConfig(
    event_key_jmespath="[delivery_id, round, attempt]", raise_on_no_idempotency_key=True
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


@cache
def _sqs() -> Any:
    return boto3.client("sqs")


def _table(variable: str) -> Any:
    return _dynamodb().Table(os.environ[variable])


def _record_attempt(job: Job, invocation: str, outcome: Outcome) -> None:
    _table("ATTEMPTS_TABLE").put_item(
        Item={
            "delivery_id": job.delivery_id,
            "attempt": f"{job.round:03d}-{job.attempt:02d}",
            "round": job.round,
            "number": job.attempt,
            "at": str(time.time()),
            "delay": job.delay,
            "invocation": invocation,
            "status_code": outcome.status or 0,
            "ok": outcome.ok,
            "error": outcome.error or "",
        }
    )


def _finish(delivery_id: str, status: str, error: str | None, attempts: int = 0) -> None:
    """Set the delivery's status and last error, and add `attempts` to its count (which
    spans rounds)."""
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


@dataclass(frozen=True)
class Job:
    delivery_id: str
    round: int
    attempt: int
    delay: int

    @classmethod
    def parse(cls, job: dict[str, Any]) -> Job:
        return cls(
            str(job["delivery_id"]),
            int(job["round"]),
            int(job.get("attempt", 1)),
            int(job.get("delay", 0)),
        )


def _requeue(job: Job, error: str | None) -> int:
    """Put the next attempt back on the queue, delayed by the backoff; the delivery stays
    PENDING with this attempt counted. Returns the delay."""
    delay = retry_delay(
        job.attempt - 1,
        float(os.environ.get("BACKOFF_BASE", "1")),
        float(os.environ.get("BACKOFF_CAP", "4")),
    )
    _finish(job.delivery_id, "PENDING", error, 1)
    _sqs().send_message(
        QueueUrl=os.environ["DELIVERIES_QUEUE_URL"],
        MessageBody=json.dumps(
            {
                "delivery_id": job.delivery_id,
                "round": job.round,
                "attempt": job.attempt + 1,
                "delay": delay,
            }
        ),
        DelaySeconds=delay,
    )
    return delay


def deliver(job: dict[str, Any], invocation: str = "") -> dict[str, Any]:
    """Make one attempt of a job; returns {"delivery_id", "round", "attempt", "status"}."""
    parsed = Job.parse(job)
    delivery = _table("DELIVERIES_TABLE").get_item(
        Key={"id": parsed.delivery_id}, ConsistentRead=True
    )
    item = delivery.get("Item")
    if item is None:
        raise LookupError(f"no delivery {parsed.delivery_id}")
    result = {"delivery_id": parsed.delivery_id, "round": parsed.round, "attempt": parsed.attempt}
    if item["status"] == "DELIVERED" or int(item["round"]) != parsed.round:
        logger.info("Skipped job", extra={"delivery": parsed.delivery_id, "status": item["status"]})
        return result | {"status": "SKIPPED"}
    subscription = (
        _table("SUBSCRIPTIONS_TABLE")
        .get_item(
            Key={"tenant": item["tenant"], "id": item["subscription_id"]}, ConsistentRead=True
        )
        .get("Item")
    )
    if subscription is None:
        _finish(parsed.delivery_id, "FAILED", "subscription no longer exists")
        return result | {"status": "FAILED"}
    try:
        validate_url(
            subscription["url"],
            os.environ.get("ALLOWED_HOSTS", "").split(","),
            os.environ.get("ALLOWED_SCHEMES", "https").split(","),
        )
    except InvalidUrl as error:
        _finish(parsed.delivery_id, "FAILED", f"refused before sending: {error}")
        return result | {"status": "FAILED"}

    body = item["body"].encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "sandbox-webhooks/1",
        SIGNATURE_HEADER: sign(subscription["secret"], body, int(time.time())),
        "X-Webhook-Id": parsed.delivery_id,
        "X-Webhook-Event": item["event_type"],
        "X-Webhook-Attempt": str(parsed.attempt),
    }
    outcome = post(subscription["url"], body, headers, float(os.environ.get("HTTP_TIMEOUT", "2")))
    _record_attempt(parsed, invocation, outcome)
    if outcome.ok:
        _finish(parsed.delivery_id, "DELIVERED", None, 1)
        logger.info("Delivered", extra={"delivery": parsed.delivery_id, "attempt": parsed.attempt})
        return result | {"status": "DELIVERED"}
    if parsed.attempt < int(os.environ.get("MAX_ATTEMPTS", "3")):
        delay = _requeue(parsed, outcome.error)
        logger.info(
            "Attempt failed, re-queued",
            extra={"delivery": parsed.delivery_id, "error": outcome.error, "delay": delay},
        )
        return result | {"status": "RETRYING", "delay": delay}
    _finish(parsed.delivery_id, "FAILED", outcome.error, 1)
    logger.warning(
        "Delivery failed", extra={"delivery": parsed.delivery_id, "last_error": outcome.error}
    )
    return result | {"status": "FAILED"}


@cache
def _guarded_deliver() -> Any:
    """`deliver` behind Powertools idempotency (made on first use: it needs the table name)."""
    persistence = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])
    return idempotent_function(
        data_keyword_argument="job", persistence_store=persistence, config=idempotency_config
    )(deliver)


def record_handler(record: SQSRecord, lambda_context: Any) -> None:
    job = json.loads(record.body)
    _guarded_deliver()(job=job, invocation=lambda_context.aws_request_id)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    idempotency_config.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
