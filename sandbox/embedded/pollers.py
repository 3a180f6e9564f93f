"""Event source mapping pollers that wait without spinning and run SQS batches in parallel.

LocalStack 4.14's pollers (`localstack.services.lambda_.event_source_mapping`) poll in a loop:
an SQS mapping short-polls its queue every 0.5 s (one request each, ~26 a second for the
patterns' 13 queues), a stream mapping calls GetRecords back to back with no pause at all
(kinesis-mock then burns half a core per stream), and an SQS mapping runs one batch at a time,
whatever `ScalingConfig.MaximumConcurrency` says. AWS's pollers long-poll, and start five
concurrent batches per SQS mapping. The patches here, applied by `entry.py`, make the embedded
sandbox behave like that:

- an idle SQS mapping sleeps on its queue's own condition variable (no request) and wakes the
  moment a message is visible, then receives as LocalStack did (same parameters, so receive
  counts, visibility and DLQ moves are LocalStack's own);
- each received batch runs on its own thread while the poller receives the next, up to the
  mapping's concurrency: 5 at first, one more each time every batch has been busy for
  SCALE_UP_AFTER_S while messages wait, never above `MaximumConcurrency`, the function's
  reserved concurrency or `MAX_CONCURRENT_BATCHES`. A FIFO queue hands out no message of a
  group whose earlier messages are in flight, so order within a group holds whatever the
  concurrency;
- an idle stream mapping waits until a DynamoDB table writes to a stream (or at most
  `KINESIS_IDLE_WAIT_S` for Kinesis sources, which give no such signal).

docs/engine-limits.md lists what still differs from AWS.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from localstack.services.dynamodbstreams import dynamodbstreams_api
from localstack.services.lambda_.event_source_mapping.esm_worker import EsmWorker
from localstack.services.lambda_.event_source_mapping.pollers.sqs_poller import (
    DEFAULT_MAX_RECEIVE_COUNT,
    DEFAULT_MAX_WAIT_TIME_SECONDS,
    SqsPoller,
    split_by_message_group_id,
)
from localstack.services.lambda_.event_source_mapping.pollers.stream_poller import StreamPoller
from localstack.services.lambda_.invocation.models import lambda_stores
from localstack.services.sqs.models import sqs_stores
from localstack.utils.aws.arns import parse_arn
from localstack.utils.patch import Patch

LOG = logging.getLogger(__name__)

INITIAL_CONCURRENT_BATCHES = 5  # what AWS starts an SQS mapping with
MAX_CONCURRENT_BATCHES = 10  # AWS goes to 1,000; on a laptop more only adds contention
SCALE_UP_AFTER_S = 3.0  # of every batch busy while messages wait: then one batch more
STOP_CHECK_S = 0.5  # how often a sleeping poller looks whether its mapping was stopped
SQS_IDLE_WAIT_S = 20.0  # AWS's longest long poll
DYNAMODB_STREAM_IDLE_WAIT_S = 20.0  # woken by every write; this only bounds a missed signal
KINESIS_IDLE_WAIT_S = 1.0

_stream_written = threading.Condition()
_stream_writes = 0  # counts DynamoDB's forwards to streams, so a poller sees one it slept through


@dataclass
class MappingState:
    """What a poller knows of its mapping beyond LocalStack's poller: when it is stopped, its
    configuration, and the SQS batches in flight."""

    stopping: threading.Event
    config: dict[str, Any]
    scale: int = INITIAL_CONCURRENT_BATCHES
    in_flight: int = 0
    empty_shard_polls: int = 0
    slots: threading.Condition = field(default_factory=threading.Condition)

    def capacity(self) -> int:
        """Batches allowed at once now: the scale reached, within every cap that applies."""
        caps = [self.scale, MAX_CONCURRENT_BATCHES]
        maximum = (self.config.get("ScalingConfig") or {}).get("MaximumConcurrency")
        if maximum:
            caps.append(int(maximum))
        reserved = reserved_concurrency(self.config.get("FunctionArn", ""))
        if reserved is not None:
            caps.append(reserved)
        return min(caps)

    def acquire_slot(self) -> bool:
        """Wait for room for one more batch (messages are waiting); False once the mapping is
        stopped. Having waited SCALE_UP_AFTER_S with every batch busy, allow one more."""
        with self.slots:
            busy_since = time.monotonic()
            while self.in_flight >= self.capacity():
                if self.stopping.is_set():
                    return False
                waited = time.monotonic() - busy_since
                if waited >= SCALE_UP_AFTER_S and self.scale < MAX_CONCURRENT_BATCHES:
                    self.scale += 1
                    busy_since = time.monotonic()
                    continue
                self.slots.wait(min(STOP_CHECK_S, max(0.01, SCALE_UP_AFTER_S - waited)))
            if self.stopping.is_set():
                return False
            self.in_flight += 1
            return True

    def release_slot(self) -> None:
        with self.slots:
            self.in_flight -= 1
            self.slots.notify()

    def went_idle(self) -> None:
        """AWS scales a mapping back down once its queue is empty."""
        with self.slots:
            self.scale = INITIAL_CONCURRENT_BATCHES


def reserved_concurrency(function_arn: str) -> int | None:
    """The function's reserved concurrency, read at each use so a change applies at once."""
    if not function_arn:
        return None
    arn = parse_arn(function_arn)
    name = arn["resource"].split(":")[1]
    function = lambda_stores[arn["account"]][arn["region"]].functions.get(name)
    return function.reserved_concurrent_executions if function else None


def mapping_of(poller: Any) -> MappingState:
    state: MappingState | None = getattr(poller, "sandbox_mapping", None)
    if state is None:  # a poller made outside an EsmWorker: never stopped from here
        state = poller.sandbox_mapping = MappingState(threading.Event(), {})
    return state


# -- patches -------------------------------------------------------------------------------
def worker_init(
    original: Any, self: EsmWorker, esm_config: Any, poller: Any, *args: Any, **kwargs: Any
) -> None:
    """Hand the poller its mapping's stop signal and configuration."""
    original(self, esm_config, poller, *args, **kwargs)
    poller.sandbox_mapping = MappingState(self._shutdown_event, dict(esm_config))


def sqs_poll_events(self: SqsPoller) -> None:
    """One round of an SQS mapping: sleep until a message is visible, take a slot, receive a
    batch as LocalStack does, and hand it to its own thread."""
    mapping = mapping_of(self)
    if not _await_visible_message(self, mapping):
        return
    if not mapping.acquire_slot():
        return
    try:
        response = self.source_client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(self.batch_size, DEFAULT_MAX_RECEIVE_COUNT),
            WaitTimeSeconds=min(self.maximum_batching_window, DEFAULT_MAX_WAIT_TIME_SECONDS),
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
            sqs_override_max_message_count=self.batch_size,
            sqs_override_wait_time_seconds=self.maximum_batching_window,
        )
    except BaseException:
        mapping.release_slot()
        raise
    messages = response.get("Messages", [])
    if not messages:  # another consumer was quicker, or every message went to the DLQ
        mapping.release_slot()
        return
    threading.Thread(
        target=_run_batch,
        args=(self, mapping, messages),
        name=f"esm-batch-{self.queue_url.rsplit('/', 1)[-1]}",
        daemon=True,
    ).start()


def stream_get_records(original: Any, self: StreamPoller, shard_iterator: str) -> dict[str, Any]:
    """Remember whether the shard had records, for `stream_poll_events`."""
    response: dict[str, Any] = original(self, shard_iterator)
    mapping = mapping_of(self)
    mapping.empty_shard_polls = 0 if response.get("Records") else mapping.empty_shard_polls + 1
    return response


def stream_poll_events(original: Any, self: StreamPoller) -> None:
    """Poll as LocalStack does; once every shard came back empty, sleep until a stream is
    written to instead of asking again at once."""
    writes_before = _stream_writes
    original(self)
    mapping = mapping_of(self)
    if mapping.empty_shard_polls < max(1, len(self.shards or {})):
        return
    mapping.empty_shard_polls = 0
    limit = (
        DYNAMODB_STREAM_IDLE_WAIT_S if ":dynamodb:" in str(self.source_arn) else KINESIS_IDLE_WAIT_S
    )
    deadline = time.monotonic() + limit
    with _stream_written:
        while _stream_writes == writes_before and not mapping.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            _stream_written.wait(min(left, STOP_CHECK_S))


def forward_events(original: Any, *args: Any, **kwargs: Any) -> None:
    """After DynamoDB put a table's changes on its stream, wake the stream pollers."""
    global _stream_writes
    original(*args, **kwargs)
    with _stream_written:
        _stream_writes += 1
        _stream_written.notify_all()


def apply() -> list[Patch]:
    """Apply the patches (each raises if LocalStack no longer has its target)."""
    patches = [
        Patch.function(EsmWorker.__init__, worker_init),
        Patch.function(SqsPoller.poll_events, sqs_poll_events, pass_target=False),
        Patch.function(StreamPoller.get_records, stream_get_records),
        Patch.function(StreamPoller.poll_events, stream_poll_events),
        Patch.function(dynamodbstreams_api.forward_events, forward_events),
    ]
    for one in patches:
        one.apply()
    return patches


# -- helpers -------------------------------------------------------------------------------
def _await_visible_message(poller: SqsPoller, mapping: MappingState) -> bool:
    """Sleep on the queue's own condition variable until a message (FIFO: a message group) is
    visible; False if the mapping stopped or SQS_IDLE_WAIT_S passed. Where the queue cannot
    be found, return True and let the receive report why."""
    arn = parse_arn(str(poller.source_arn))
    queue: Any = sqs_stores[arn["account"]][arn["region"]].queues.get(arn["resource"])
    if queue is None:
        return True
    ready = getattr(queue, "message_group_queue", None) or queue.visible
    deadline = time.monotonic() + SQS_IDLE_WAIT_S
    with ready.not_empty:
        while not ready._qsize():
            left = deadline - time.monotonic()
            if mapping.stopping.is_set() or left <= 0:
                mapping.went_idle()
                return False
            ready.not_empty.wait(min(left, STOP_CHECK_S))
    return not mapping.stopping.is_set()


def _run_batch(poller: SqsPoller, mapping: MappingState, messages: list[dict[str, Any]]) -> None:
    """Invoke the function with one received batch (a FIFO queue's: group by group, in
    order), deleting what succeeded, as LocalStack's own poller does. A group whose
    invocation fails leaves its messages to SQS; the batch's other groups still run (left
    undeleted with it, they would be received again beside it and dead-lettered with it)."""
    groups = split_by_message_group_id(messages).values() if poller.is_fifo_queue else [messages]
    try:
        for group in groups:
            try:
                poller.handle_messages(group)
            except Exception as error:
                LOG.warning(
                    "Batch processing failed: %s", error, exc_info=LOG.isEnabledFor(logging.DEBUG)
                )
    finally:
        mapping.release_slot()
