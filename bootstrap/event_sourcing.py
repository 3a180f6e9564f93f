"""Provision event-sourcing: append Lambda -> append-only event store, live state and
snapshots (DynamoDB); load Lambda (rebuild by replay); replay Lambda -> EventBridge bus."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import ensure_event_bus, ensure_function, ensure_table
from sandbox.race import HeldVariant, ensure_held_variant

SNAPSHOT_EVERY = 5
EVENT_SOURCE = "sandbox.event-sourcing"


@dataclass(frozen=True)
class EventSourcing:
    events_table: str
    state_table: str
    snapshots_table: str
    bus: str
    bus_arn: str
    append_function: str
    load_function: str
    replay_function: str
    snapshot_every: int
    event_source: str
    held_append: HeldVariant  # the append function with its test hold on (races)


def provision(aws: Aws) -> EventSourcing:
    events_table = ensure_table(
        aws,
        "event-sourcing-events",
        hash_key="stream_id",
        range_key="version",
        key_types={"version": "N"},
    )
    state_table = ensure_table(aws, "event-sourcing-state", hash_key="stream_id")
    snapshots_table = ensure_table(aws, "event-sourcing-snapshots", hash_key="stream_id")
    bus = "event-sourcing-bus"
    bus_arn = ensure_event_bus(aws, bus)
    env = {
        "EVENTS_TABLE": events_table,
        "STATE_TABLE": state_table,
        "SNAPSHOTS_TABLE": snapshots_table,
        "SNAPSHOT_EVERY": str(SNAPSHOT_EVERY),
        "EVENT_BUS": bus,
    }
    names = ("event-sourcing-append", "event-sourcing-load", "event-sourcing-replay")
    handlers = ("app.append_handler", "app.load_handler", "app.replay_handler")
    for name, handler in zip(names, handlers, strict=True):
        ensure_function(aws, name, "event_sourcing", handler=handler, environment=env, timeout=10)
    held_append = ensure_held_variant(
        aws, names[0], "event_sourcing", handler=handlers[0], environment=env, timeout=10
    )
    return EventSourcing(
        events_table,
        state_table,
        snapshots_table,
        bus,
        bus_arn,
        *names,
        SNAPSHOT_EVERY,
        EVENT_SOURCE,
        held_append,
    )
