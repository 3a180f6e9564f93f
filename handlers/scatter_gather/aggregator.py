"""Aggregator of the publish-subscribe loan broker (scatter-gather).

Event: an SQS batch from the quotes queue (ReportBatchItemFailures); each body is
  {"RequestId", "TaskToken", "Quote": {"bankId", "rate"}} as a bank sent it.
Environment: QUOTES_TABLE, QUOTES_REQUIRED (the completion condition: how many quotes are
  enough to answer before the workflow's timeout).

Each quote is appended to the request's item (created by the workflow before it publishes)
once per bank, so a redelivered reply changes nothing. When the item holds QUOTES_REQUIRED
quotes the aggregator resumes the workflow with SendTaskSuccess, once (a conditional
`completed` flag). A reply for a request without an item fails its own record (retried,
then dead-lettered).
"""

from __future__ import annotations

import json
import os
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
from botocore.exceptions import ClientError

logger = Logger(service="scatter-gather-aggregator")
processor = BatchProcessor(event_type=EventType.SQS)


class MalformedReply(ValueError):
    """The message is not a bank's reply."""


class UnknownRequest(LookupError):
    """No quote request with this id was recorded."""


def parse_reply(body: str) -> dict[str, Any]:
    try:
        reply = json.loads(body)
    except json.JSONDecodeError as error:
        raise MalformedReply(f"body is not JSON: {body[:80]!r}") from error
    quote = reply.get("Quote") if isinstance(reply, dict) else None
    if (
        not isinstance(quote, dict)
        or not reply.get("RequestId")
        or not reply.get("TaskToken")
        or not quote.get("bankId")
        or not isinstance(quote.get("rate"), int | float)
    ):
        raise MalformedReply(f"not a bank reply: {body[:120]!r}")
    return reply


def stored_quote(quote: dict[str, Any]) -> str:
    """A quote as stored in the item's list: JSON text, which the workflow turns back."""
    return json.dumps({"bankId": quote["bankId"], "rate": quote["rate"]})


def gathered(quotes: list[str]) -> list[dict[str, Any]]:
    return [json.loads(text) for text in quotes]


def is_complete(quotes: list[Any], required: int) -> bool:
    return len(quotes) >= required


@cache
def _table() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["QUOTES_TABLE"])


@cache
def _sfn() -> Any:
    return boto3.client("stepfunctions")


def _add(request_id: str, quote: dict[str, Any]) -> list[str]:
    """Append the bank's quote once; return the request's quotes."""
    try:
        updated = _table().update_item(
            Key={"requestId": request_id},
            UpdateExpression="SET quotes = list_append(quotes, :q) ADD banks :b",
            ConditionExpression=(
                "attribute_exists(requestId) AND "
                "(attribute_not_exists(banks) OR NOT contains(banks, :bank))"
            ),
            ExpressionAttributeValues={
                ":q": [stored_quote(quote)],
                ":b": {quote["bankId"]},
                ":bank": quote["bankId"],
            },
            ReturnValues="ALL_NEW",
        )
        return list(updated["Attributes"]["quotes"])
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
    # Either this bank's quote is in already (a redelivery) or there is no such request.
    item = _table().get_item(Key={"requestId": request_id}, ConsistentRead=True).get("Item")
    if not item:
        raise UnknownRequest(f"no quote request {request_id!r}")
    return list(item["quotes"])


def _complete_once(request_id: str) -> bool:
    try:
        _table().update_item(
            Key={"requestId": request_id},
            UpdateExpression="SET completed = :t",
            ConditionExpression="attribute_not_exists(completed)",
            ExpressionAttributeValues={":t": True},
        )
        return True
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise


def record_handler(record: SQSRecord) -> None:
    reply = parse_reply(record.body)
    request_id = reply["RequestId"]
    quotes = _add(request_id, reply["Quote"])
    logger.info("Quote gathered", extra={"request_id": request_id, "quotes": len(quotes)})
    if is_complete(quotes, int(os.environ["QUOTES_REQUIRED"])) and _complete_once(request_id):
        output = {"quotes": gathered(quotes), "complete": True}
        try:
            _sfn().send_task_success(taskToken=reply["TaskToken"], output=json.dumps(output))
        except (_sfn().exceptions.TaskTimedOut, _sfn().exceptions.InvalidToken):
            logger.info("The workflow stopped waiting already", extra={"request_id": request_id})


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
