"""Provision parallel-map: a state machine whose Parallel state runs an inline Map and a
distributed Map (items from S3) side by side, a worker function, and its counter table."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import (
    STATE_MACHINES_DIR,
    ensure_bucket,
    ensure_function,
    ensure_state_machine,
    ensure_table,
)

DEFINITION = "parallel_map.json"


@dataclass(frozen=True)
class ParallelMap:
    state_machine: str
    worker: str
    counters_table: str
    items_bucket: str
    inline_max_concurrency: int
    distributed_max_concurrency: int
    tolerated_failure_percentage: float


def map_settings() -> dict[str, dict[str, float]]:
    """MaxConcurrency and ToleratedFailurePercentage of each Map, as the ASL file sets them
    (one source of truth for the workflow and the scenario)."""
    found: dict[str, dict[str, float]] = {}

    def walk(states: dict[str, dict]) -> None:
        for name, state in states.items():
            if state.get("Type") == "Map":
                found[name] = {
                    k: state[k]
                    for k in ("MaxConcurrency", "ToleratedFailurePercentage")
                    if k in state
                }
                walk(state["ItemProcessor"]["States"])
            for branch in state.get("Branches", []):
                walk(branch["States"])

    walk(json.loads((STATE_MACHINES_DIR / DEFINITION).read_text())["States"])
    return found


def provision(aws: Aws) -> ParallelMap:
    table = ensure_table(aws, "parallel-map-counters")
    bucket = ensure_bucket(aws, "parallel-map-items")
    worker = "parallel-map-worker"
    worker_arn = ensure_function(
        aws,
        worker,
        "parallel_map",
        environment={"TABLE_NAME": table, "WORK_SECONDS": "0.3"},
        # An item takes at most ~1 s; the margin is for a cold start on a loaded machine
        # (the Map's Retry does not cover a timed-out item).
        timeout=30,
    )
    state_machine = ensure_state_machine(
        aws,
        "parallel-map",
        DEFINITION,
        {"WorkerArn": worker_arn, "ItemsBucket": bucket},
    )
    maps = map_settings()
    return ParallelMap(
        state_machine=state_machine,
        worker=worker,
        counters_table=table,
        items_bucket=bucket,
        inline_max_concurrency=int(maps["InlineMap"]["MaxConcurrency"]),
        distributed_max_concurrency=int(maps["DistributedMap"]["MaxConcurrency"]),
        tolerated_failure_percentage=float(maps["DistributedMap"]["ToleratedFailurePercentage"]),
    )
