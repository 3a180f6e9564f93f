"""Provision sequence-generator: two Lambda functions over DynamoDB counters and records."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import ensure_function, ensure_table
from sandbox.race import HeldVariant, ensure_held_variant


@dataclass(frozen=True)
class SequenceGenerator:
    counters_table: str
    records_table: str
    idempotency_table: str
    create_function: str
    next_function: str
    held_create: HeldVariant  # the create function with its test hold on (races)


def provision(aws: Aws) -> SequenceGenerator:
    counters = ensure_table(aws, "sequence-generator-counters")
    records = ensure_table(aws, "sequence-generator-records")
    idempotency = ensure_table(aws, "sequence-generator-idempotency")
    environment = {
        "COUNTERS_TABLE": counters,
        "RECORDS_TABLE": records,
        "IDEMPOTENCY_TABLE": idempotency,
    }
    create, next_ = "sequence-generator-create", "sequence-generator-next"
    ensure_function(
        aws,
        create,
        "sequence_generator",
        handler="app.create_handler",
        environment=environment,
        timeout=20,
    )
    held_create = ensure_held_variant(
        aws,
        create,
        "sequence_generator",
        handler="app.create_handler",
        environment=environment,
        timeout=20,
    )
    ensure_function(
        aws, next_, "sequence_generator", handler="app.next_handler", environment=environment
    )
    return SequenceGenerator(counters, records, idempotency, create, next_, held_create)
