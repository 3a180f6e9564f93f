"""rate-limiter buffer consumer: deliver queued jobs to a downstream API that must not see
more than a few calls at once.

Event: an SQS batch (event source mapping, batch size 1, ReportBatchItemFailures; its
ScalingConfig.MaximumConcurrency and the function's reserved concurrency cap how many run at
once). Each body is a JSON job, posted as it is to the downstream.
Environment: DOWNSTREAM_URL (the downstream's endpoint; empty means none configured).

A downstream answer other than 2xx, or no answer, fails the record: SQS retries it and then
moves it to the dead-letter queue.
"""

from __future__ import annotations

import os
import urllib.request
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = Logger(service="rate-limiter")
processor = BatchProcessor(event_type=EventType.SQS)


class DownstreamFailed(RuntimeError):
    """The downstream did not accept the job."""


def deliver(url: str, body: str, timeout: float = 3) -> int:
    if not url:
        raise DownstreamFailed("no DOWNSTREAM_URL configured")
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return int(answer.status)
    except OSError as error:  # URLError and HTTPError (non-2xx) are OSErrors
        raise DownstreamFailed(f"downstream refused the job: {error}") from error


def record_handler(record: SQSRecord) -> None:
    status = deliver(os.environ.get("DOWNSTREAM_URL", ""), record.body)
    logger.info("Delivered job", extra={"message_id": record.message_id, "status": status})


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
