"""Consistent hashing: a router that sends each key to one SQS shard queue, by a hash ring
with virtual nodes kept in DynamoDB (seed 000 §3, Ably's "implementing efficient consistent
hashing").

`router_handler` (consistent-hashing-router), synchronous invoke:
    {"ring": str, "messages": [{"key": str, "body": str}, ...]}
    -> {"routed": [{"key", "node"}...], "rejected": [{"index", "reason"}...]}
  Loads the ring's points (one Query: the table keeps them sorted by token), sends each
  message to its node's queue with SendMessageBatch, and reports where each key went.
  A message without a string key is rejected (listed with the reason), the rest still go.
`admin_handler` (consistent-hashing-ring-admin), synchronous invoke:
    {"action": "add", "ring": str, "node": str, "queue_url": str, "vnodes"?: int}
    {"action": "remove", "ring": str, "node": str}
    -> {"ring", "nodes": {node: points}}
  Writes or deletes the node's virtual-node points.

Bad requests raise InvalidRequest; routing on a ring with no nodes raises EmptyRing.
Environment: RING_TABLE (hash key "ring" S, range key "token" N; items carry node, queue_url).
"""

from __future__ import annotations

import os
from collections import defaultdict
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from hash_ring import DEFAULT_VNODES, HashRing, vnode_points

logger = Logger(service="consistent-hashing")


class InvalidRequest(ValueError):
    """The request is missing a field or has one of the wrong type."""


class EmptyRing(LookupError):
    """The ring has no nodes to route to."""


def _text(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"'{key}' must be a non-empty string")
    return value


def split_messages(messages: Any) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """(key, body) pairs to route, and the rejected entries with their index and reason."""
    if not isinstance(messages, list):
        raise InvalidRequest("'messages' must be a list of {key, body}")
    good, rejected = [], []
    for index, message in enumerate(messages):
        key = message.get("key") if isinstance(message, dict) else None
        if not isinstance(key, str) or not key:
            rejected.append({"index": index, "reason": "no string 'key'"})
            continue
        good.append((key, str(message.get("body", ""))))
    return good, rejected


def route(ring: HashRing, messages: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """node -> the (key, body) pairs it gets."""
    by_node: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key, body in messages:
        by_node[ring.node_for(key)].append((key, body))
    return by_node


@cache
def _dynamodb() -> Any:
    return boto3.client("dynamodb")


@cache
def _sqs() -> Any:
    return boto3.client("sqs")


def load_ring(table: str, ring: str) -> tuple[HashRing, dict[str, str]]:
    """The ring's points and each node's queue URL."""
    points, queues = [], {}
    pages = (
        _dynamodb()
        .get_paginator("query")
        .paginate(
            TableName=table,
            KeyConditionExpression="#r = :ring",
            ExpressionAttributeNames={"#r": "ring"},
            ExpressionAttributeValues={":ring": {"S": ring}},
            ConsistentRead=True,
        )
    )
    for page in pages:
        for item in page["Items"]:
            node = item["node"]["S"]
            points.append((int(item["token"]["N"]), node))
            queues[node] = item["queue_url"]["S"]
    return HashRing(points), queues


def send(queue_url: str, messages: list[tuple[str, str]]) -> None:
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        entries = [
            {"Id": str(i), "MessageBody": body, "MessageAttributes": _key_attribute(key)}
            for i, (key, body) in enumerate(chunk)
        ]
        sent = _sqs().send_message_batch(QueueUrl=queue_url, Entries=entries)
        if sent.get("Failed"):
            raise RuntimeError(f"SQS refused {sent['Failed']}")


def _key_attribute(key: str) -> dict[str, Any]:
    return {"key": {"DataType": "String", "StringValue": key}}


@logger.inject_lambda_context
def router_handler(event: Any, context: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidRequest("the request must be a JSON object")
    ring_name = _text(event, "ring")
    messages, rejected = split_messages(event.get("messages"))
    ring, queues = load_ring(os.environ["RING_TABLE"], ring_name)
    if not len(ring):
        raise EmptyRing(f"ring '{ring_name}' has no nodes")
    routed = []
    for node, pairs in route(ring, messages).items():
        send(queues[node], pairs)
        routed += [{"key": key, "node": node} for key, _ in pairs]
    logger.info("Routed", extra={"ring": ring_name, "routed": len(routed), "rejected": rejected})
    return {"routed": routed, "rejected": rejected}


@logger.inject_lambda_context
def admin_handler(event: Any, context: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidRequest("the request must be a JSON object")
    table, ring, node = os.environ["RING_TABLE"], _text(event, "ring"), _text(event, "node")
    action = event.get("action")
    if action == "add":
        queue_url = _text(event, "queue_url")
        vnodes = event.get("vnodes", DEFAULT_VNODES)
        if not isinstance(vnodes, int) or vnodes < 1:
            raise InvalidRequest("'vnodes' must be a positive integer")
        writes = [
            {
                "PutRequest": {
                    "Item": {
                        "ring": {"S": ring},
                        "token": {"N": str(token)},
                        "node": {"S": node},
                        "vnode": {"N": str(i)},
                        "queue_url": {"S": queue_url},
                    }
                }
            }
            for i, token in enumerate(vnode_points(node, vnodes))
        ]
    elif action == "remove":
        current, _ = load_ring(table, ring)
        writes = [
            {"DeleteRequest": {"Key": {"ring": {"S": ring}, "token": {"N": str(token)}}}}
            for token in current.points_of(node)
        ]
    else:
        raise InvalidRequest("'action' must be 'add' or 'remove'")
    for start in range(0, len(writes), 25):
        pending: dict[str, Any] = {table: writes[start : start + 25]}
        while pending:
            pending = _dynamodb().batch_write_item(RequestItems=pending)["UnprocessedItems"]
    after, _ = load_ring(table, ring)
    logger.info("Ring changed", extra={"ring": ring, "action": action, "node": node})
    return {"ring": ring, "nodes": after.point_counts()}
