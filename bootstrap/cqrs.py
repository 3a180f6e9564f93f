"""Provision cqrs: command Lambda -> event store (DynamoDB, stream) -> projector Lambda ->
read model (DynamoDB) <- query Lambda."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import (
    Queue,
    ensure_event_source_mapping,
    ensure_function,
    ensure_queue,
    ensure_table,
)
from sandbox.race import HeldVariant, ensure_held_variant

MAX_RETRY_ATTEMPTS = 5


@dataclass(frozen=True)
class Cqrs:
    events_table: str
    events_stream_arn: str
    read_model_table: str
    faults_table: str
    command_function: str
    projector_function: str
    query_function: str
    projector_mapping: str
    projector_failures: Queue
    max_retry_attempts: int
    held_command: HeldVariant  # the command function with its test hold on (races)
    held_projector: HeldVariant  # the projector with its test hold on (races)


def provision(aws: Aws) -> Cqrs:
    events_table = ensure_table(
        aws,
        "cqrs-events",
        hash_key="aggregate_id",
        range_key="version",
        key_types={"version": "N"},
        stream_view="NEW_IMAGE",
    )
    stream_arn = aws.client("dynamodb").describe_table(TableName=events_table)["Table"][
        "LatestStreamArn"
    ]
    read_model = ensure_table(aws, "cqrs-read-model")
    # Sandbox-only: counts deliveries of events marked to fail once (see handlers/cqrs).
    faults = ensure_table(aws, "cqrs-projector-faults")
    # Batches the stream gives up on (after MaximumRetryAttempts) are recorded here.
    failures = ensure_queue(aws, "cqrs-projector-failures")

    command_fn, projector_fn, query_fn = "cqrs-commands", "cqrs-projector", "cqrs-queries"
    command_env = {"EVENTS_TABLE": events_table}
    ensure_function(
        aws, command_fn, "cqrs", handler="app.command_handler", environment=command_env, timeout=5
    )
    held_command = ensure_held_variant(
        aws, command_fn, "cqrs", handler="app.command_handler", environment=command_env, timeout=5
    )
    projector_env = {"READ_MODEL_TABLE": read_model, "FAULTS_TABLE": faults}
    ensure_function(
        aws,
        projector_fn,
        "cqrs",
        handler="app.projector_handler",
        environment=projector_env,
        timeout=10,
    )
    held_projector = ensure_held_variant(
        aws,
        projector_fn,
        "cqrs",
        handler="app.projector_handler",
        environment=projector_env,
        timeout=10,
    )
    ensure_function(
        aws,
        query_fn,
        "cqrs",
        handler="app.query_handler",
        environment={"READ_MODEL_TABLE": read_model},
        timeout=5,
    )
    mapping = ensure_event_source_mapping(
        aws,
        projector_fn,
        stream_arn,
        batch_size=10,
        StartingPosition="TRIM_HORIZON",
        MaximumRetryAttempts=MAX_RETRY_ATTEMPTS,
        DestinationConfig={"OnFailure": {"Destination": failures.arn}},
    )
    return Cqrs(
        events_table,
        stream_arn,
        read_model,
        faults,
        command_fn,
        projector_fn,
        query_fn,
        mapping,
        failures,
        MAX_RETRY_ATTEMPTS,
        held_command,
        held_projector,
    )
