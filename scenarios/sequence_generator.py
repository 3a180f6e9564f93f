"""Scenario for sequence-generator: ids from DynamoDB under concurrent callers.

1. 20 concurrent creates in a new scope get exactly the ids 1..20 (transaction: counter
   condition + attribute_not_exists put), and the counter ends at 20.
2. 20 concurrent calls of the atomic counter (UpdateItem ADD) get exactly 1..20 too.
3. A duplicate name cancels the transaction: a DuplicateName error, the counter does not
   move, and the next create takes 21 (no gap).
4. A retried request (same request_id) returns the same id and the counter does not move.
5. A malformed request gets an InvalidRequest error and takes no number; nothing is lost:
   requests = records created + requests refused.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.config import Config

from bootstrap.sequence_generator import SequenceGenerator
from sandbox.aws import Aws
from sandbox.harness import Scenario, unique_name

CONCURRENT = 20


def run(aws: Aws, resources: SequenceGenerator, scenario: Scenario) -> None:
    dynamodb = aws.client("dynamodb")
    # One client for all threads, with a pool as large as the number of callers.
    lambda_ = aws.session.client(
        "lambda",
        endpoint_url=aws.endpoint_url,
        region_name=aws.region,
        config=Config(max_pool_connections=CONCURRENT + 5, read_timeout=60),
    )
    scope = unique_name("orders")

    def invoke(function: str, payload: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        answer = lambda_.invoke(FunctionName=function, Payload=json.dumps(payload))
        return answer.get("FunctionError"), json.loads(answer["Payload"].read())

    def counter(key: str) -> int | None:
        item = dynamodb.get_item(
            TableName=resources.counters_table, Key={"id": {"S": key}}, ConsistentRead=True
        ).get("Item")
        return int(item["value"]["N"]) if item else None

    sent: list[str] = []  # every create request, by name, to count at the end

    def create(name: str, request_id: str | None = None) -> tuple[str | None, dict[str, Any]]:
        sent.append(name)
        request = {"request_id": request_id or unique_name("req"), "scope": scope, "name": name}
        return invoke(resources.create_function, request)

    with scenario.step(f"{CONCURRENT} concurrent creates get exactly 1..{CONCURRENT}"):
        names = [f"order-{i:02d}" for i in range(CONCURRENT)]
        with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
            answers = list(pool.map(create, names))
        errors = [payload for error, payload in answers if error]
        scenario.check("errors", expected=[], seen=errors)
        ids = sorted(payload["id"] for _, payload in answers)
        scenario.check("ids handed out", expected=list(range(1, CONCURRENT + 1)), seen=ids)
        attempts = [payload["attempts"] for _, payload in answers]
        scenario.note(
            f"transactions lost to a concurrent caller and retried: {sum(attempts) - CONCURRENT}"
            f" (most attempts by one caller: {max(attempts)})"
        )
        scenario.check("counter", expected=CONCURRENT, seen=counter(f"counter#{scope}"))
        stored = _records(dynamodb, resources.records_table, scope)
        scenario.check(
            "records stored (seq -> name) match the answers",
            expected=dict(sorted((p["id"], p["name"]) for _, p in answers)),
            seen=stored,
        )

    with scenario.step(f"{CONCURRENT} concurrent atomic-counter calls get exactly 1..{CONCURRENT}"):
        with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
            answers = list(
                pool.map(lambda _: invoke(resources.next_function, {"scope": scope}), names)
            )
        scenario.check("errors", expected=[], seen=[p for e, p in answers if e])
        values = sorted(payload["value"] for _, payload in answers)
        scenario.check("values handed out", expected=list(range(1, CONCURRENT + 1)), seen=values)

    with scenario.step("A duplicate name cancels the transaction; the counter does not move"):
        error, payload = create(names[3])
        scenario.check("function error", expected="Unhandled", seen=error)
        scenario.check("error type", expected="DuplicateName", seen=payload.get("errorType"))
        scenario.note(payload.get("errorMessage", ""))
        scenario.check("counter", expected=CONCURRENT, seen=counter(f"counter#{scope}"))
        error, payload = create("order-next")
        scenario.check(
            "the next create takes the next number (no gap)", expected=21, seen=payload["id"]
        )

    with scenario.step("A retried request (same request_id) gets the same id; the counter stays"):
        request_id = unique_name("req")
        first = create("order-retried", request_id)[1]
        retried = create("order-retried", request_id)[1]
        scenario.check("id on retry", expected=first["id"], seen=retried["id"])
        scenario.check("counter", expected=first["id"], seen=counter(f"counter#{scope}"))

    with scenario.step("A malformed request gets a clear error and takes no number"):
        before = counter(f"counter#{scope}")
        error, payload = create("")
        scenario.check("error type", expected="InvalidRequest", seen=payload.get("errorType"))
        scenario.note(payload.get("errorMessage", ""))
        scenario.check("counter", expected=before, seen=counter(f"counter#{scope}"))
        error, payload = invoke(resources.next_function, {"scope": 7})
        scenario.check(
            "atomic counter error type", expected="InvalidRequest", seen=payload.get("errorType")
        )
        created = len(_records(dynamodb, resources.records_table, scope))
        refused, replayed = 2, 1  # the duplicate and the malformed one; the retried request
        scenario.check(
            "create requests = records + refused + answered again for a retry",
            expected=len(sent),
            seen=created + refused + replayed,
        )


def _records(dynamodb: Any, table: str, scope: str) -> dict[int, str]:
    """seq -> name of every record stored for the scope."""
    found: dict[int, str] = {}
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="#s = :scope",
        ExpressionAttributeNames={"#s": "scope"},
        ExpressionAttributeValues={":scope": {"S": scope}},
        ConsistentRead=True,
    )
    for page in pages:
        for item in page["Items"]:
            found[int(item["seq"]["N"])] = item["name"]["S"]
    return dict(sorted(found.items()))
