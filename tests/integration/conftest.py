"""Integration tests run against a real sandbox: the one already running (`make up`), or
one this session starts (embedded, or Docker when an engine answers) and stops at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import modes
from sandbox.aws import Aws
from sandbox.cli import only_one_up, provision_patterns
from sandbox.health import health
from sandbox.patterns import catalogue
from tests.conftest import stop_when_the_run_ends


@pytest.fixture(scope="session")
def sandbox(request: pytest.FixtureRequest) -> Iterator[modes.Mode]:
    mode = modes.choose()
    if mode.name == "external" and health(mode.endpoint) is None:
        pytest.fail(f"SANDBOX_MODE=external, but nothing answers at {mode.endpoint}")
    started = start_unless_running(mode)
    yield mode
    if started:
        stop_when_the_run_ends(request.config, mode)


def start_unless_running(mode: modes.Mode) -> bool:
    """Start the sandbox if none answers; True if this session started it. The workers of a
    parallel run (tests/conftest.py) all ask at once: `make up`'s lock lets one start it."""
    with only_one_up():
        if health(mode.endpoint) is not None:
            return False
        mode.start()
        try:
            # As `make up` does: every pattern provisioned before the scenarios run side by
            # side, so their first minutes are not also LocalStack loading every service.
            provision_patterns(Aws(mode.endpoint), catalogue())
        except BaseException:
            mode.stop()
            raise
        return True


@pytest.fixture(scope="session")
def aws(sandbox: modes.Mode) -> Aws:
    return Aws(sandbox.endpoint)
