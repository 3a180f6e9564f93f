"""Every pattern's scenario, end to end, against the running sandbox (the CI suite).

The scenarios run side by side, `patterns.SCENARIO_JOBS` at a time (each pattern has its own
resources); each test waits for its own and fails with the scenario's whole account."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from sandbox import patterns
from sandbox.aws import Aws


@pytest.fixture(scope="session")
def scenario_runs(aws: Aws) -> Iterator[dict[str, Future[patterns.ScenarioRun]]]:
    with ThreadPoolExecutor(patterns.SCENARIO_JOBS) as pool:
        yield {
            pattern.slug: pool.submit(patterns.run_buffered, pattern, aws)
            for pattern in patterns.longest_first(patterns.catalogue())
        }


@pytest.mark.integration
@pytest.mark.parametrize("pattern", patterns.catalogue(), ids=lambda p: p.slug)
def test_scenario_passes(
    pattern: patterns.Pattern, scenario_runs: dict[str, Future[patterns.ScenarioRun]]
) -> None:
    run = scenario_runs[pattern.slug].result()
    assert run.scenario.ok, run.output


@pytest.mark.integration
@pytest.mark.parametrize("pattern", patterns.catalogue(), ids=lambda p: p.slug)
def test_bootstrap_is_idempotent(pattern: patterns.Pattern, aws: Aws) -> None:
    assert pattern.provision(aws) == pattern.provision(aws)
