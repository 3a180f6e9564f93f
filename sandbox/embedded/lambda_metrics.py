"""Lambda's CloudWatch metrics, published once a second per function instead of once per
invocation.

LocalStack 4.14 starts a thread for every invocation that publishes its `Invocations` metric
(and `Errors`, for a failed one) through its own gateway; that work competes with the next
invocations for the GIL and made a warm invoke ~13 ms where it is ~9-10 ms without it. AWS
aggregates these metrics per minute and shows them after a delay, so the sandbox counts
invocations and errors per function and publishes each count at most once a second: the
sums CloudWatch reports stay the same. `entry.py` applies the patch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from localstack.services.lambda_.invocation import version_manager
from localstack.utils.cloudwatch.cloudwatch_util import publish_lambda_metric
from localstack.utils.patch import Patch

LOG = logging.getLogger(__name__)
FLUSH_EVERY_S = 1.0

# (account, region, function, metric name) -> count not yet published
_pending: Counter[tuple[str, str, str, str]] = Counter()
_changed = threading.Condition()
_flusher: threading.Thread | None = None


def record_invocation(function_name: str, account_id: str, region_name: str) -> None:
    _count(account_id, region_name, function_name, "Invocations")


def record_error(function_name: str, account_id: str, region_name: str) -> None:
    _count(account_id, region_name, function_name, "Invocations")
    _count(account_id, region_name, function_name, "Errors")


def flush() -> None:
    """Publish every pending count, one datapoint per function and metric."""
    with _changed:
        due = dict(_pending)
        _pending.clear()
    for (account, region, function, metric), count in due.items():
        publish_lambda_metric(
            metric, count, {"func_name": function}, account_id=account, region_name=region
        )


def apply() -> list[Patch]:
    patches = [
        Patch(version_manager, "record_cw_metric_invocation", record_invocation),
        Patch(version_manager, "record_cw_metric_error", record_error),
    ]
    for one in patches:
        one.apply()
    return patches


def _count(account: str, region: str, function: str, metric: str) -> None:
    global _flusher
    with _changed:
        _pending[(account, region, function, metric)] += 1
        _changed.notify()
        if _flusher is None:
            _flusher = threading.Thread(target=_flush_forever, name="lambda-metrics", daemon=True)
            _flusher.start()


def _flush_forever() -> None:
    """Sleep until something is counted (no wake-ups while idle), then publish a second later."""
    while True:
        with _changed:
            _changed.wait_for(lambda: bool(_pending))
        time.sleep(FLUSH_EVERY_S)  # the batching interval: counts of the next second join
        try:
            flush()
        except Exception as error:  # a lost datapoint must not stop later ones
            LOG.warning("Publishing Lambda metrics failed: %s", error)
