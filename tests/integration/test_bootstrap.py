"""Every pattern's bootstrap is idempotent: provisioning it again returns the same record.

Not in test_scenarios.py: these are quick and wait on nothing, so they run in `make test`'s
second run instead of after the scenarios, whose run waits on them."""

from __future__ import annotations

import pytest

from sandbox import patterns
from sandbox.aws import Aws


@pytest.mark.integration
@pytest.mark.parametrize("pattern", patterns.catalogue(), ids=lambda p: p.slug)
def test_bootstrap_is_idempotent(pattern: patterns.Pattern, aws: Aws) -> None:
    assert pattern.provision(aws) == pattern.provision(aws)
