"""Integration tests run against a real sandbox: the one already running (`make up`), or
one this session starts (embedded, or Docker when an engine answers) and stops at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import modes
from sandbox.aws import Aws
from sandbox.cli import provision_patterns
from sandbox.health import health
from sandbox.patterns import catalogue


@pytest.fixture(scope="session")
def sandbox() -> Iterator[modes.Mode]:
    mode = modes.choose()
    if health(mode.endpoint) is not None:
        yield mode
        return
    if mode.name == "external":
        pytest.fail(f"SANDBOX_MODE=external, but nothing answers at {mode.endpoint}")
    mode.start()
    try:
        # As `make up` does: every pattern provisioned before the scenarios run side by side,
        # so their first minutes are not also LocalStack loading every service at once.
        provision_patterns(Aws(mode.endpoint), catalogue())
        yield mode
    finally:
        mode.stop()


@pytest.fixture(scope="session")
def aws(sandbox: modes.Mode) -> Aws:
    return Aws(sandbox.endpoint)
