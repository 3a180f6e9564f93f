"""Provision consistent-hashing: the ring table, five shard queues, router and admin Lambdas."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import Queue, ensure_function, ensure_queue_with_dlq, ensure_table

SHARDS = ("a", "b", "c", "d", "e")  # a..d start the ring; e is added by the scenario
VNODES = 64


@dataclass(frozen=True)
class ConsistentHashing:
    ring_table: str
    shards: dict[str, Queue]
    shard_dlqs: dict[str, Queue]
    router_function: str
    admin_function: str
    vnodes: int


def provision(aws: Aws) -> ConsistentHashing:
    table = ensure_table(
        aws, "consistent-hashing-ring", hash_key="ring", range_key="token", key_types={"token": "N"}
    )
    shards, dlqs = {}, {}
    for shard in SHARDS:
        # The shards' consumers are the scenario here; in a system each shard has a worker.
        shards[shard], dlqs[shard] = ensure_queue_with_dlq(
            aws, f"consistent-hashing-shard-{shard}", max_receive_count=2, visibility_timeout=3
        )
    environment = {"RING_TABLE": table}
    router, admin = "consistent-hashing-router", "consistent-hashing-ring-admin"
    ensure_function(
        aws, router, "consistent_hashing", handler="app.router_handler", environment=environment
    )
    ensure_function(
        aws, admin, "consistent_hashing", handler="app.admin_handler", environment=environment
    )
    return ConsistentHashing(table, shards, dlqs, router, admin, VNODES)
