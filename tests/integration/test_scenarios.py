"""Every pattern's scenario, end to end, against the running sandbox (the CI suite)."""

from __future__ import annotations

import io

import pytest

from sandbox import patterns
from sandbox.aws import Aws


@pytest.mark.integration
@pytest.mark.parametrize("pattern", patterns.catalogue(), ids=lambda p: p.slug)
def test_scenario_passes(pattern: patterns.Pattern, aws: Aws) -> None:
    out = io.StringIO()
    scenario = patterns.run_scenario(pattern, aws, out=out)
    assert scenario.ok, out.getvalue()


@pytest.mark.integration
@pytest.mark.parametrize("pattern", patterns.catalogue(), ids=lambda p: p.slug)
def test_bootstrap_is_idempotent(pattern: patterns.Pattern, aws: Aws) -> None:
    assert pattern.provision(aws) == pattern.provision(aws)
