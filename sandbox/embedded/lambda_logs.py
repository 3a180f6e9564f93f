"""Lambda's log lines sent to CloudWatch Logs in batches: what arrives within a quarter of a
second goes in one `PutLogEvents` per log stream, not one call per invocation.

LocalStack 4.14's log handler (one thread per function version) sends each invocation's
output with a call of its own through the gateway; under a burst those calls compete with
the invocations for the GIL. AWS itself delivers Lambda logs to CloudWatch seconds later.
Each line keeps the time its invocation handed it over (LocalStack stamped the time it was
sent), and a batch stays within PutLogEvents' limits. `entry.py` applies the patches.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from queue import Empty
from typing import Any

from localstack.aws.connect import connect_to
from localstack.services.lambda_.invocation import logs
from localstack.utils.aws.client_types import ServicePrincipal
from localstack.utils.patch import Patch

BATCH_WINDOW_S = 0.25
MAX_EVENTS_PER_CALL = 10_000  # PutLogEvents' limits
MAX_BYTES_PER_CALL = 1_048_576
EVENT_OVERHEAD_BYTES = 26


@dataclass(frozen=True)
class StampedLogs:
    """One invocation's output and the time it was handed over (milliseconds)."""

    item: logs.LogItem
    at_ms: int


def add_logs(self: logs.LogHandler, log_item: logs.LogItem) -> None:
    if logs.is_api_enabled("logs"):
        self.log_queue.put(StampedLogs(log_item, int(time.time() * 1000)))  # type: ignore[arg-type]


def run_log_loop(self: logs.LogHandler, *args: Any, **kwargs: Any) -> None:
    """LocalStack's loop, sending what arrives within BATCH_WINDOW_S together. Its client is
    made when the function first logs (LocalStack made it as the version started: an STS
    call and a client for each function `make up` creates)."""
    client = None
    stopping = False
    while not stopping and not self._shutdown_event.is_set():
        first = self.log_queue.get()
        if first is logs.QUEUE_SHUTDOWN:
            return
        batch: list[StampedLogs] = [first]  # type: ignore[list-item]
        deadline = time.monotonic() + BATCH_WINDOW_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self.log_queue.get(timeout=left)
            except Empty:
                break
            if item is logs.QUEUE_SHUTDOWN:
                stopping = True
                break
            batch.append(item)  # type: ignore[arg-type]
        if client is None:
            client = connect_to.with_assumed_role(
                region_name=self.region,
                role_arn=self.role_arn,
                service_principal=ServicePrincipal.lambda_,  # type: ignore[arg-type]
            ).logs
        for (group, stream), events in _by_stream(batch).items():
            for chunk in _within_limits(events):
                _put(client, group, stream, chunk, self.region)


def apply() -> list[Patch]:
    patches = [
        Patch(logs.LogHandler, "add_logs", add_logs),
        Patch(logs.LogHandler, "run_log_loop", run_log_loop),
    ]
    for one in patches:
        one.apply()
    return patches


def _by_stream(batch: list[StampedLogs]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Log events per (group, stream), in the order they arrived; empty lines dropped, as
    CloudWatch refuses them."""
    streams: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for stamped in batch:
        events = streams.setdefault((stamped.item.log_group, stamped.item.log_stream), [])
        for line in stamped.item.logs.split("\n"):
            if line:
                events.append({"timestamp": stamped.at_ms, "message": line + "\n"})
    return streams


def _within_limits(events: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    size = 0
    for event in events:
        event_size = len(event["message"].encode()) + EVENT_OVERHEAD_BYTES
        if chunk and (len(chunk) == MAX_EVENTS_PER_CALL or size + event_size > MAX_BYTES_PER_CALL):
            yield chunk
            chunk, size = [], 0
        chunk.append(event)
        size += event_size
    if chunk:
        yield chunk


def _put(client: Any, group: str, stream: str, events: list[dict[str, Any]], region: str) -> None:
    try:
        try:
            client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
        except client.exceptions.ResourceNotFoundException:
            try:
                client.create_log_group(logGroupName=group)
            except client.exceptions.ResourceAlreadyExistsException:
                pass
            client.create_log_stream(logGroupName=group, logStreamName=stream)
            client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
    except Exception as error:  # as LocalStack does: a lost batch must not stop the loop
        logs.LOG.warning("Error saving logs to group %s in region %s: %s", group, region, error)
