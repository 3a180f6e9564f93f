"""Paginated fan-out: a scheduled Lambda works through a DynamoDB partition one page at a
time, handing the next page's token to itself through SQS (seed 003, "Asynchronous batch
processing of indefinite data sizes"), and fans every item's update out to each subscriber
queue directly, without SNS. The subscribers are paged from SUBSCRIBERS_TABLE (its batch's
partition, SUBSCRIBER_PAGE_SIZE at a time, until no LastEvaluatedKey), which the
subscriptions table's update stream keeps (subscribers.py): no fixed list.

Events:
- page 1, from the schedule rule (its constant input) or a direct invoke: {"batch": str}
  -> {"batch", "run", "page": 1, "items": int, "next": bool}. It starts a run (a pass over
  the batch) named by the invocation's request id. A bad request raises MalformedPage.
- later pages: an SQS batch (event source mapping, batch size 1, ReportBatchItemFailures)
  whose bodies are {"batch", "run", "token", "page", "seen"}. A page that fails is retried
  by SQS from the same token; a malformed page message ends in the DLQ after
  maxReceiveCount receives.
Each page: Query Limit=PAGE_SIZE from the token; for each item (in parallel), send
{batch, id, title} to every subscriber of the batch, once per item and run (Powertools idempotency
on [batch, run, id], so a retried page skips the items it already sent); then send the next
token, or write the DONE marker when DynamoDB returns no LastEvaluatedKey.
An item with fail_once=true fails its page the first time it is ever reached (a marker in
RUNS_TABLE remembers that it has).
Environment: FEEDS_TABLE (hash "batch", range "id"), RUNS_TABLE (key "id": records
page#<batch>#<run>#<n>, item#<batch>#<run>#<id>, done#<batch>#<run>, failed-once#<batch>#<id>),
IDEMPOTENCY_TABLE (key "id"), PAGES_QUEUE_URL, SUBSCRIBERS_TABLE (hash "batch", range
"id", with "queue_url"), SUBSCRIBER_PAGE_SIZE, PAGE_SIZE, RETRY_DELAY_SECONDS (how soon
SQS offers a failed page again).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
from boto3.dynamodb.conditions import Key
from pages import MalformedPage, PageRequest, decode_token, next_step, parse_page_request

logger = Logger(service="paginated-fan-out")
processor = BatchProcessor(event_type=EventType.SQS)
item_config = IdempotencyConfig(event_key_jmespath="[batch, run, id]")


class InjectedFailure(RuntimeError):
    """An item marked fail_once was reached for the first time."""


@cache
def _dynamodb() -> Any:
    return boto3.resource("dynamodb")


@cache
def _sqs() -> Any:
    return boto3.client("sqs")


@cache
def _client() -> Any:
    """A low-level client, which threads may share (resources may not; and a resource's own
    client expects plain Python values, not typed attribute values)."""
    return boto3.client("dynamodb")


def _runs() -> Any:
    return _dynamodb().Table(os.environ["RUNS_TABLE"])


def subscriber_pages(batch: str) -> Iterator[list[str]]:
    """The batch's subscriber queue URLs, one DynamoDB page at a time."""
    query: dict[str, Any] = {
        "TableName": os.environ["SUBSCRIBERS_TABLE"],
        "KeyConditionExpression": "#b = :b",
        "ExpressionAttributeNames": {"#b": "batch"},
        "ExpressionAttributeValues": {":b": {"S": batch}},
        "Limit": int(os.environ["SUBSCRIBER_PAGE_SIZE"]),
        "ConsistentRead": True,
    }
    while True:
        page = _client().query(**query)
        yield [item["queue_url"]["S"] for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def fan_out(item: dict[str, Any]) -> dict[str, Any]:
    """Send one item's update to every subscriber of its batch (the first time only: see
    `_process_item`). Fails once, before sending, for an item marked fail_once."""
    if item.get("fail_once") and _first_failure(item["batch"], item["id"]):
        raise InjectedFailure(f"item {item['id']} fails its page once (fail_once)")
    update = {"batch": item["batch"], "id": item["id"], "title": item.get("title", "")}
    sent = 0
    for urls in subscriber_pages(item["batch"]):
        for url in urls:
            _sqs().send_message(QueueUrl=url, MessageBody=json.dumps(update))
            sent += 1
    _client().update_item(
        TableName=os.environ["RUNS_TABLE"],
        Key={"id": {"S": f"item#{item['batch']}#{item['run']}#{item['id']}"}},
        UpdateExpression="SET #b = :b, subscribers = :sent ADD runs :one",
        ExpressionAttributeNames={"#b": "batch"},
        ExpressionAttributeValues={
            ":b": {"S": item["batch"]},
            ":sent": {"N": str(sent)},
            ":one": {"N": "1"},
        },
    )
    return {"id": item["id"], "subscribers": sent}


def _first_failure(batch: str, item_id: str) -> bool:
    try:
        _client().put_item(
            TableName=os.environ["RUNS_TABLE"],
            Item={"id": {"S": f"failed-once#{batch}#{item_id}"}},
            ConditionExpression="attribute_not_exists(id)",
        )
        return True
    except _client().exceptions.ConditionalCheckFailedException:
        return False


@cache
def _process_item() -> Any:
    """`fan_out` behind Powertools idempotency, keyed on [batch, run, id]."""
    persistence = DynamoDBPersistenceLayer(
        table_name=os.environ["IDEMPOTENCY_TABLE"], boto3_client=_client()
    )
    return idempotent_function(
        data_keyword_argument="item", persistence_store=persistence, config=item_config
    )(fan_out)


def run_page(request: PageRequest) -> dict[str, Any]:
    """Process one page and hand on the next token (or write DONE)."""
    batch, run, token, page = request.batch, request.run, request.token, request.page
    key = f"page#{batch}#{run}#{page}"
    record = _runs().update_item(
        Key={"id": key},
        UpdateExpression="SET #b = :b, #r = :r, page = :p, "
        "tokens = list_append(if_not_exists(tokens, :none), :t) ADD attempts :one",
        ExpressionAttributeNames={"#b": "batch", "#r": "run"},
        ExpressionAttributeValues={
            ":b": batch,
            ":r": run,
            ":p": page,
            ":t": [token or "-"],
            ":none": [],
            ":one": 1,
        },
        ReturnValues="ALL_NEW",
    )["Attributes"]
    if record.get("status") == "DONE":
        # SQS delivered a page that had finished (e.g. a crash before the acknowledgement):
        # its next token was sent already, so sending it again would run a page twice.
        logger.info("Page already done", extra={"batch": batch, "run": run, "page": page})
        return {
            "batch": batch,
            "run": run,
            "page": page,
            "items": int(record["items"]),
            "next": False,
        }
    query: dict[str, Any] = {
        "KeyConditionExpression": Key("batch").eq(batch),
        "Limit": int(os.environ["PAGE_SIZE"]),
        "ConsistentRead": True,
    }
    if token:
        query["ExclusiveStartKey"] = decode_token(token, batch)
    result = _dynamodb().Table(os.environ["FEEDS_TABLE"]).query(**query)
    items = result["Items"]
    plain = [
        {
            "batch": batch,
            "run": run,
            "id": item["id"],
            "title": str(item.get("title", "")),
            "fail_once": bool(item.get("fail_once")),
        }
        for item in items
    ]
    # The items of a page are independent: work on them in parallel. One failing fails the
    # page (after the others finished and were recorded, so the retry skips them).
    # Made here, before the threads: creating clients is not thread-safe.
    process, _ = _process_item(), _sqs()
    with ThreadPoolExecutor(max_workers=len(plain) or 1) as pool:
        list(pool.map(lambda item: process(item=item), plain))
    step, fields = next_step(request, len(items), result.get("LastEvaluatedKey"))
    if step == "next":
        _sqs().send_message(QueueUrl=os.environ["PAGES_QUEUE_URL"], MessageBody=json.dumps(fields))
    else:
        _runs().put_item(Item={"id": f"done#{batch}#{run}", **fields})
    _runs().update_item(
        Key={"id": key},
        UpdateExpression="SET #s = :done, #n = :n",
        ExpressionAttributeNames={"#s": "status", "#n": "items"},
        ExpressionAttributeValues={":done": "DONE", ":n": len(items)},
    )
    logger.info(
        "Page done",
        extra={"batch": batch, "run": run, "page": page, "items": len(items), "step": step},
    )
    return {"batch": batch, "run": run, "page": page, "items": len(items), "next": step == "next"}


def record_handler(record: SQSRecord) -> None:
    try:
        run_page(parse_page_request(json.loads(record.body)))
    except Exception:
        _retry_soon(record)
        raise


def _retry_soon(record: SQSRecord) -> None:
    """Make a failed page visible again after RETRY_DELAY_SECONDS rather than after the
    queue's whole visibility timeout (which is sized for a slow page, not for a retry)."""
    try:
        _sqs().change_message_visibility(
            QueueUrl=os.environ["PAGES_QUEUE_URL"],
            ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=int(os.environ["RETRY_DELAY_SECONDS"]),
        )
    except Exception:  # the retry then simply waits for the visibility timeout
        logger.exception("Could not shorten the failed page's visibility")


@logger.inject_lambda_context
def handler(event: Any, context: Any) -> Any:
    item_config.register_lambda_context(context)
    if isinstance(event, dict) and "Records" in event:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    request = parse_page_request(event)
    if request.page != 1:
        raise MalformedPage("only page 1 is started directly; later pages come through SQS")
    # Page 1 starts a run: this invocation's id names it for the pages that follow.
    return run_page(request._replace(run=request.run or context.aws_request_id))
