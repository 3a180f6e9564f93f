"""Lambda's CloudWatch metrics, counted per function and published together
(sandbox/embedded/lambda_metrics.py): the sums stay those of one datapoint per invocation."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip(
    "localstack",
    reason="LocalStack is not installed on this host (Docker mode runs it in a container)",
)
from localstack.services.lambda_.invocation import version_manager

from sandbox.embedded import lambda_metrics


def test_the_patches_replace_localstacks_per_invocation_publishers() -> None:
    patches = lambda_metrics.apply()
    try:
        assert version_manager.record_cw_metric_invocation is lambda_metrics.record_invocation
        assert version_manager.record_cw_metric_error is lambda_metrics.record_error
    finally:
        for patch in patches:
            patch.undo()
    assert version_manager.record_cw_metric_invocation is not lambda_metrics.record_invocation


def test_counts_are_published_once_per_function_and_metric(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    published: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        lambda_metrics,
        "publish_lambda_metric",
        lambda metric, value, dimensions, account_id, region_name: published.append(
            (metric, value, dimensions["func_name"], account_id, region_name)
        ),
    )
    monkeypatch.setattr(lambda_metrics, "_flusher", object())  # no background publishing here
    for _ in range(3):
        lambda_metrics.record_invocation("f", account_id="1", region_name="r")
    lambda_metrics.record_error("f", account_id="1", region_name="r")
    lambda_metrics.record_invocation("g", account_id="1", region_name="r")
    lambda_metrics.flush()
    assert sorted(published) == [
        ("Errors", 1, "f", "1", "r"),
        ("Invocations", 1, "g", "1", "r"),
        ("Invocations", 4, "f", "1", "r"),
    ]
    lambda_metrics.flush()
    assert len(published) == 3  # nothing twice
