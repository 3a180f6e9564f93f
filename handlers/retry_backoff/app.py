"""retry-backoff: retrying a throttling downstream three ways.

`client_handler` (retry-backoff-client): {"url"[, "max_attempts"]} -> POSTs to the url, retrying
  429/502/503/504 with exponential backoff and full jitter (BASE_DELAY_SECONDS, capped at
  MAX_DELAY_SECONDS, at most MAX_ATTEMPTS calls). Returns {"status", "statuses", "delays"};
  raises DownstreamRejected after one call for any other status, DownstreamThrottled when the
  attempts run out (the state machine retries and catches these by name).
`worker_handler` (retry-backoff-worker): an SQS batch (ReportBatchItemFailures), bodies
  {"url"}. One call per delivery: SQS redelivery is the retry. A throttled record gets a
  full-jitter visibility timeout from its receive count (VISIBILITY_BASE_SECONDS, capped at
  VISIBILITY_CAP_SECONDS) and fails alone; after maxReceiveCount SQS moves it to the DLQ. A
  record that can never succeed (rejected by the downstream, or a body without a url) goes to
  DLQ_URL at once with a `reason` attribute, and is not retried.
Environment: BASE_DELAY_SECONDS, MAX_DELAY_SECONDS, MAX_ATTEMPTS, VISIBILITY_BASE_SECONDS,
VISIBILITY_CAP_SECONDS, QUEUE_URL, DLQ_URL.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from backoff import (
    RETRYABLE_STATUSES,
    DownstreamRejected,
    DownstreamThrottled,
    call_with_backoff,
    visibility_delay,
)

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)
sqs = boto3.client("sqs")

__all__ = ["DownstreamRejected", "DownstreamThrottled", "client_handler", "worker_handler"]


def post(url: str, payload: dict[str, Any]) -> int:
    """POST JSON, return the status code (a timeout counts as 504)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except TimeoutError:
        return 504


def client_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    url = event.get("url")
    if not isinstance(url, str) or not url.startswith("http"):
        raise DownstreamRejected(f"the request needs an http(s) 'url', got {url!r}")
    result = call_with_backoff(
        lambda: post(url, {"from": "retry-backoff-client"}),
        max_attempts=int(event.get("max_attempts") or os.environ["MAX_ATTEMPTS"]),
        base=float(os.environ["BASE_DELAY_SECONDS"]),
        cap=float(os.environ["MAX_DELAY_SECONDS"]),
        sleep=time.sleep,
    )
    logger.info("Downstream answered", extra={"url": url, "statuses": result["statuses"]})
    return {"status": result["statuses"][-1], **result}


class Throttled(RuntimeError):
    """This delivery was throttled; SQS redelivers it after the visibility timeout set."""


def _dead_letter(record: SQSRecord, reason: str) -> None:
    sqs.send_message(
        QueueUrl=os.environ["DLQ_URL"],
        MessageBody=record.body,
        MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:250]}},
    )
    logger.warning("Sent to the DLQ, not retried", extra={"reason": reason})


def record_handler(record: SQSRecord) -> None:
    try:
        url = json.loads(record.body)["url"]
    except (json.JSONDecodeError, KeyError, TypeError):
        _dead_letter(record, f"body is not {{'url': ...}}: {record.body[:80]!r}")
        return
    status = post(url, {"from": "retry-backoff-worker", "message_id": record.message_id})
    if 200 <= status < 300:
        return
    if status not in RETRYABLE_STATUSES:
        _dead_letter(record, f"downstream rejected it with status {status}")
        return
    receives = int(record.attributes.approximate_receive_count)
    delay = visibility_delay(
        receives,
        int(os.environ["VISIBILITY_BASE_SECONDS"]),
        int(os.environ["VISIBILITY_CAP_SECONDS"]),
    )
    sqs.change_message_visibility(
        QueueUrl=os.environ["QUEUE_URL"],
        ReceiptHandle=record.receipt_handle,
        VisibilityTimeout=delay,
    )
    raise Throttled(f"status {status} on receive {receives}; next try in {delay} s")


@logger.inject_lambda_context
def worker_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
