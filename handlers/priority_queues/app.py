"""priority-queues: two SQS queues drained high first, and a DynamoDB priority queue.

`consumer_handler` (priority-queues-consumer), invoked on demand or by a schedule:
  event {"budget": n (default 100)} -> {"processed": [{"id", "priority", "seq"}], "failed": [..]}.
  Before every batch it asks the high queue; it reads the normal queue only when high is
  empty. Bodies are {"id", "priority": "high"|"normal", "work": seconds (optional, at most
  1, stands in for the work a message takes)}; each processed one is stored in
  PROCESSED_TABLE with its order (`seq` in this drain, `at` in ns) and deleted from its
  queue. A body that is not valid is left on its queue: SQS redelivers it and moves it to
  the queue's DLQ after maxReceiveCount.
`items_handler` (priority-queues-items), the DynamoDB queue in ITEMS_TABLE:
  {"action": "enqueue", "queue", "id", "priority"}   -> the item (priority: lower first)
  {"action": "reprioritise", "queue", "id", "priority"} -> the item (only while queued)
  {"action": "dequeue", "queue", "worker", "max_items"} -> {"items": [...], "conflicts": n}
  Queued items carry `rank` (priority, then enqueue time), the sort key of the sparse index
  ITEMS_INDEX; a dequeue claims the best-ranked item with a conditional write (status still
  QUEUED and version unchanged), so concurrent dequeuers never get the same item.
  A request it refuses raises InvalidRequest saying why.
Environment: HIGH_QUEUE_URL, NORMAL_QUEUE_URL, PROCESSED_TABLE, ITEMS_TABLE, ITEMS_INDEX.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from priority import HIGH, NORMAL, InvalidRequest, claim_in_order, drain, parse_priority, rank

logger = Logger()
sqs = boto3.client("sqs")
dynamodb = boto3.resource("dynamodb")


class InvalidMessage(ValueError):
    """A queued body that is not {"id", "priority"}."""


# -- two SQS queues ------------------------------------------------------------------
def consumer_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    urls = {HIGH: os.environ["HIGH_QUEUE_URL"], NORMAL: os.environ["NORMAL_QUEUE_URL"]}
    processed_table = dynamodb.Table(os.environ["PROCESSED_TABLE"])
    seq = 0

    def receive(level: str) -> list[dict[str, Any]]:
        messages = sqs.receive_message(
            QueueUrl=urls[level],
            MaxNumberOfMessages=10,
            # A quick look at high before every batch; a short wait before calling normal empty.
            WaitTimeSeconds=0 if level == HIGH else 1,
        ).get("Messages", [])
        return [{**m, "level": level} for m in messages]

    def handle(message: dict[str, Any]) -> dict[str, Any]:
        nonlocal seq
        body = _parse_message(message["Body"])
        time.sleep(_work_seconds(body))  # stands in for real work
        seq += 1
        processed_table.put_item(
            Item={"id": body["id"], "priority": message["level"], "seq": seq, "at": time.time_ns()}
        )
        sqs.delete_message(QueueUrl=urls[message["level"]], ReceiptHandle=message["ReceiptHandle"])
        return {"id": body["id"], "priority": message["level"], "seq": seq}

    drained = drain(receive, handle, budget=int(event.get("budget", 100)))
    for message, reason in drained.failed:
        logger.warning(
            "Message left for redelivery", extra={"id": message["MessageId"], "reason": reason}
        )
    return {
        "processed": drained.processed,
        "failed": [{"message_id": m["MessageId"], "reason": r} for m, r in drained.failed],
    }


def _parse_message(body: str) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError as error:
        raise InvalidMessage(f"body is not JSON: {body[:60]!r}") from error
    if not isinstance(parsed, dict) or not isinstance(parsed.get("id"), str):
        raise InvalidMessage(f"body has no string id: {body[:60]!r}")
    return parsed


def _work_seconds(body: dict[str, Any]) -> float:
    work = body.get("work")
    valid = isinstance(work, int | float) and not isinstance(work, bool) and 0 <= work <= 1
    return float(work) if valid else 0.0


# -- the DynamoDB priority queue -----------------------------------------------------
def items_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    action = event.get("action")
    table = dynamodb.Table(os.environ["ITEMS_TABLE"])
    if not isinstance(event.get("queue"), str):
        raise InvalidRequest("the request needs a 'queue' name")
    if action == "enqueue":
        return _enqueue(table, event)
    if action == "reprioritise":
        return _reprioritise(table, event)
    if action == "dequeue":
        return _dequeue(table, event)
    raise InvalidRequest(f"unknown action {action!r}: use enqueue, reprioritise or dequeue")


def _item_id(event: dict[str, Any]) -> str:
    if not isinstance(event.get("id"), str) or not event["id"]:
        raise InvalidRequest("the request needs an 'id'")
    return f"{event['queue']}#{event['id']}"


def _enqueue(table: Any, event: dict[str, Any]) -> dict[str, Any]:
    priority, now = parse_priority(event.get("priority")), time.time_ns()
    key = _item_id(event)
    item = {
        "id": key,
        "queue": event["queue"],
        "item_id": event["id"],
        "priority": priority,
        "enqueued_at": now,
        "rank": rank(priority, now, event["id"]),
        "status": "QUEUED",
        "version": 1,
    }
    try:
        table.put_item(Item=item, ConditionExpression="attribute_not_exists(id)")
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        raise InvalidRequest(f"{event['id']} is already in queue {event['queue']}") from error
    return _plain(item)


def _reprioritise(table: Any, event: dict[str, Any]) -> dict[str, Any]:
    priority, key = parse_priority(event.get("priority")), _item_id(event)
    current = table.get_item(Key={"id": key}, ConsistentRead=True).get("Item")
    if current is None:
        raise InvalidRequest(f"{event['id']} is not in queue {event['queue']}")
    try:
        updated = table.update_item(
            Key={"id": key},
            UpdateExpression="SET priority = :p, #rank = :rank ADD version :one",
            ConditionExpression="#status = :queued AND version = :v",
            ExpressionAttributeNames={"#rank": "rank", "#status": "status"},
            ExpressionAttributeValues={
                ":p": priority,
                ":rank": rank(priority, int(current["enqueued_at"]), event["id"]),
                ":queued": "QUEUED",
                ":v": current["version"],
                ":one": 1,
            },
            ReturnValues="ALL_NEW",
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        raise InvalidRequest(f"{event['id']} was dequeued or changed meanwhile") from error
    return _plain(updated["Attributes"])


def _dequeue(table: Any, event: dict[str, Any]) -> dict[str, Any]:
    worker, limit = str(event.get("worker", "worker")), int(event.get("max_items", 1))

    def candidates() -> list[dict[str, Any]]:
        return table.query(
            IndexName=os.environ["ITEMS_INDEX"],
            KeyConditionExpression="#queue = :queue",
            ExpressionAttributeNames={"#queue": "queue"},
            ExpressionAttributeValues={":queue": event["queue"]},
            Limit=5,
        )["Items"]

    def claim(item: dict[str, Any]) -> bool:
        try:
            table.update_item(
                Key={"id": item["id"]},
                UpdateExpression=(
                    "SET #status = :processing, worker = :worker, dequeued_at = :now "
                    "REMOVE #rank ADD version :one"
                ),
                ConditionExpression="#status = :queued AND version = :v",
                ExpressionAttributeNames={"#status": "status", "#rank": "rank"},
                ExpressionAttributeValues={
                    ":processing": "PROCESSING",
                    ":worker": worker,
                    ":now": time.time_ns(),
                    ":queued": "QUEUED",
                    ":v": item["version"],
                    ":one": 1,
                },
            )
            return True
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

    claimed, conflicts = claim_in_order(candidates, claim, limit=limit)
    logger.info("Dequeued", extra={"worker": worker, "count": len(claimed), "conflicts": conflicts})
    return {"items": [_plain(i) for i in claimed], "conflicts": conflicts, "worker": worker}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """An item as JSON-friendly values (DynamoDB numbers come back as Decimal)."""
    return {
        k: int(v) if k in ("priority", "enqueued_at", "version") else v for k, v in item.items()
    }
