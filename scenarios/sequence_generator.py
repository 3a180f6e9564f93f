"""Scenario for sequence-generator: ids from DynamoDB under concurrent callers.

1. 20 concurrent creates in a new scope get exactly the ids 1..20 (transaction: counter
   condition + attribute_not_exists put), and the counter ends at 20.
2. Contention, forced through the create handler: create A reads the counter and is held
   (test hook) before its transaction; create B takes the next number; A, released, has its
   transaction cancelled by the counter condition, re-reads and takes the number after B's.
3. 20 concurrent calls of the atomic counter (UpdateItem ADD) get exactly 1..20 too.
4. A duplicate name cancels the transaction: a DuplicateName error, the counter does not
   move, and the next create takes the next number (no gap).
5. A retried request (same request_id) returns the same id and the counter does not move.
6. A malformed request gets an InvalidRequest error and takes no number.
7. Nothing lost, read from the tables: every number the counter gave is held by exactly one
   record, and every accepted answer is one of those records.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.config import Config

from bootstrap.sequence_generator import SequenceGenerator
from sandbox import items
from sandbox.aws import Aws
from sandbox.harness import Scenario, unique_name
from sandbox.race import HeldCall

CONCURRENT = 20
Answer = tuple[str | None, dict[str, Any]]  # (FunctionError or None, payload)


class Sequences:
    """The pattern as a client sees it, in one scope, and its tables to inspect."""

    def __init__(self, aws: Aws, resources: SequenceGenerator) -> None:
        self.aws, self.resources = aws, resources
        self.scope = unique_name("orders")
        self.accepted: list[dict[str, Any]] = []  # answers with an id, checked against the table
        # One client for all threads, with a pool as large as the number of callers.
        self.lambda_ = aws.session.client(
            "lambda",
            endpoint_url=aws.endpoint_url,
            region_name=aws.region,
            config=Config(max_pool_connections=CONCURRENT + 5, read_timeout=60),
        )

    def invoke(self, function: str, payload: dict[str, Any]) -> Answer:
        answer = self.lambda_.invoke(FunctionName=function, Payload=json.dumps(payload))
        return answer.get("FunctionError"), json.loads(answer["Payload"].read())

    def request(self, name: str, request_id: str | None = None) -> dict[str, Any]:
        return {"request_id": request_id or unique_name("req"), "scope": self.scope, "name": name}

    def create(self, name: str, request_id: str | None = None) -> Answer:
        error, payload = self.invoke(self.resources.create_function, self.request(name, request_id))
        self.keep(error, payload)
        return error, payload

    def keep(self, error: str | None, payload: dict[str, Any]) -> None:
        if not error:
            self.accepted.append(payload)

    def counter(self) -> int | None:
        item = items.get(self.aws, self.resources.counters_table, {"id": f"counter#{self.scope}"})
        return item["value"] if item else None

    def records(self) -> list[dict[str, Any]]:
        """Every record stored in the scope, by number."""
        found = items.scan(
            self.aws,
            self.resources.records_table,
            FilterExpression="#scope = :scope",
            ExpressionAttributeNames={"#scope": "scope"},
            ExpressionAttributeValues=items.wire({":scope": self.scope}),
            ConsistentRead=True,
        )
        return sorted(found, key=lambda record: record["seq"])


def run(aws: Aws, resources: SequenceGenerator, scenario: Scenario) -> None:
    sequences = Sequences(aws, resources)
    names = [f"order-{number:02d}" for number in range(CONCURRENT)]
    concurrent_creates_get_one_to_n(scenario, sequences, names)
    contention_is_retried(scenario, sequences)
    atomic_counter_under_concurrency(scenario, sequences)
    duplicate_name_takes_no_number(scenario, sequences, names[3])
    retried_request_gets_the_same_id(scenario, sequences)
    malformed_request_takes_no_number(scenario, sequences)
    nothing_lost(scenario, sequences)


def concurrent_creates_get_one_to_n(
    scenario: Scenario, sequences: Sequences, names: list[str]
) -> None:
    with scenario.step(f"{CONCURRENT} concurrent creates get exactly 1..{CONCURRENT}"):
        with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
            answers = list(pool.map(sequences.create, names))
        scenario.check("errors", expected=[], seen=[payload for error, payload in answers if error])
        ids = sorted(payload["id"] for _, payload in answers)
        scenario.check("ids handed out", expected=list(range(1, CONCURRENT + 1)), seen=ids)
        attempts = [payload["attempts"] for _, payload in answers]
        scenario.note(
            f"transactions lost to a concurrent caller and retried: {sum(attempts) - CONCURRENT}"
            f" (most attempts by one caller: {max(attempts)})"
        )
        scenario.check("counter", expected=CONCURRENT, seen=sequences.counter())
        scenario.check(
            "records stored (seq -> name) match the answers",
            expected=sorted((payload["id"], payload["name"]) for _, payload in answers),
            seen=[(record["seq"], record["name"]) for record in sequences.records()],
        )


def contention_is_retried(scenario: Scenario, sequences: Sequences) -> None:
    with scenario.step("Contention, forced: a create that lost the counter race retries"):
        before = sequences.counter() or 0
        resources = sequences.resources
        request = sequences.request("order-held")
        with HeldCall(sequences.aws, resources.held_create, sequences.scope, request) as held:
            scenario.note(f"create A read the counter at {before} and is held")
            winner_error, winner = sequences.create("order-racer")
            scenario.note(f"create B -> {winner}")
            error, loser = held.release()
        sequences.keep(error, loser)
        scenario.note(f"create A, released -> {loser}")
        scenario.check(
            "create B (finished first): id, attempts",
            expected=(None, before + 1, 1),
            seen=(winner_error, winner.get("id"), winner.get("attempts")),
        )
        scenario.check(
            "create A: id, attempts (its first transaction cancelled by the counter condition)",
            expected=(None, before + 2, 2),
            seen=(error, loser.get("id"), loser.get("attempts")),
        )
        scenario.check("counter", expected=before + 2, seen=sequences.counter())


def atomic_counter_under_concurrency(scenario: Scenario, sequences: Sequences) -> None:
    function, scope = sequences.resources.next_function, sequences.scope
    with scenario.step(f"{CONCURRENT} concurrent atomic-counter calls get exactly 1..{CONCURRENT}"):
        with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
            answers = list(
                pool.map(lambda _: sequences.invoke(function, {"scope": scope}), range(CONCURRENT))
            )
        scenario.check("errors", expected=[], seen=[payload for error, payload in answers if error])
        values = sorted(payload["value"] for _, payload in answers)
        scenario.check("values handed out", expected=list(range(1, CONCURRENT + 1)), seen=values)


def duplicate_name_takes_no_number(scenario: Scenario, sequences: Sequences, taken: str) -> None:
    with scenario.step("A duplicate name cancels the transaction; the counter does not move"):
        before = sequences.counter() or 0
        error, payload = sequences.create(taken)
        scenario.check(
            "function error, error type",
            expected=("Unhandled", "DuplicateName"),
            seen=(error, payload.get("errorType")),
        )
        scenario.note(payload.get("errorMessage", ""))
        scenario.check("counter", expected=before, seen=sequences.counter())
        error, payload = sequences.create("order-next")
        scenario.check(
            "the next create takes the next number (no gap)",
            expected=(None, before + 1),
            seen=(error, payload.get("id")),
        )


def retried_request_gets_the_same_id(scenario: Scenario, sequences: Sequences) -> None:
    with scenario.step("A retried request (same request_id) gets the same id; the counter stays"):
        request_id = unique_name("req")
        first_error, first = sequences.create("order-retried", request_id)
        retried_error, retried = sequences.create("order-retried", request_id)
        scenario.check(
            "id on retry (answered again, not created again)",
            expected=(None, first.get("id")),
            seen=(retried_error, retried.get("id")),
        )
        scenario.check("counter", expected=first.get("id"), seen=sequences.counter())


def malformed_request_takes_no_number(scenario: Scenario, sequences: Sequences) -> None:
    with scenario.step("A malformed request gets a clear error and takes no number"):
        before = sequences.counter()
        error, payload = sequences.create("")
        scenario.check("error type", expected="InvalidRequest", seen=payload.get("errorType"))
        scenario.note(payload.get("errorMessage", ""))
        scenario.check("counter", expected=before, seen=sequences.counter())
        error, payload = sequences.invoke(sequences.resources.next_function, {"scope": 7})
        scenario.check(
            "atomic counter error type", expected="InvalidRequest", seen=payload.get("errorType")
        )


def nothing_lost(scenario: Scenario, sequences: Sequences) -> None:
    with scenario.step("Nothing lost: the counter, the records and the answers agree"):
        counter = sequences.counter() or 0
        records = sequences.records()
        scenario.check(
            "numbers held by a record (each once) = 1..counter",
            expected=list(range(1, counter + 1)),
            seen=[record["seq"] for record in records],
        )
        stored = {(record["seq"], record["name"]) for record in records}
        answered = {(answer["id"], answer["name"]) for answer in sequences.accepted}
        scenario.check(
            "accepted answers (id, name) = the records stored",
            expected=sorted(stored),
            seen=sorted(answered),
        )
        scenario.note(
            f"{len(sequences.accepted)} answers with an id, {len(answered)} distinct "
            f"(a retried request is answered again), {len(records)} records, counter {counter}"
        )
