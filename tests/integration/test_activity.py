"""What a scenario's record says the system did: DLQ arrivals, watched as they happen (the
invocations and Step Functions transitions of real runs are checked in test_scenarios.py,
on the runs that suite makes anyway)."""

from __future__ import annotations

import pytest

from sandbox import activity, provision
from sandbox.aws import Aws
from sandbox.harness import await_value, unique_name


@pytest.mark.integration
def test_dlq_arrivals_are_recorded(aws: Aws) -> None:
    """A message that stays in a DLQ for longer than a sample shows as an arrival (one a
    scenario deletes at once may be missed by design: the depth is sampled)."""
    # GIVEN a pattern-like slug with one DLQ, watched
    slug = unique_name("watched")
    queue = provision.ensure_queue(aws, f"{slug}-dlq")
    with activity.DlqWatch(aws, slug) as watch:
        # WHEN a message arrives in it
        aws.client("sqs").send_message(QueueUrl=queue.url, MessageBody="dead")
        # THEN the watch sees it arrive
        await_value(lambda: watch.arrivals.get(queue.name), timeout=10, interval=0.1)
    (dlq,) = watch.record()
    assert (dlq["queue"], dlq["messages_at_end"]) == (queue.name, 1)
    assert sum(arrival["count"] for arrival in dlq["arrivals"]) == 1
    aws.client("sqs").delete_queue(QueueUrl=queue.url)
