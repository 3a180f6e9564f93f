"""The Docker path as a user runs it: the project's own docker-compose.yml, started with a bare
`docker compose up` (testcontainers' compose support), provisions every pattern by itself (the
one-shot bootstrap service); then every scenario runs against it, Lambda functions in sibling
containers reaching the stand-in servers on this machine; `docker compose down` leaves no
Lambda container behind.

It runs in its own compose project on a free port, so a sandbox started by `make up` is left
alone. Where no Docker engine (or no compose plugin) answers, the module skips saying which."""

from __future__ import annotations

import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from testcontainers.compose import DockerCompose

from sandbox import modes, patterns, settings
from sandbox.aws import Aws
from sandbox.harness import await_value, unique_name
from sandbox.health import free_port, health

if not modes.docker_engine_answers():
    pytest.skip(
        "no Docker engine answers (`docker info` failed): the Docker path needs one",
        allow_module_level=True,
    )
if not modes.compose_plugin_present():
    pytest.skip(
        "Docker answers but has no compose plugin (`docker compose version` failed)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.docker
# Building the bootstrap image and LocalStack's start, on a possibly slow machine.
BOOTSTRAP_TIMEOUT_S = 900
PROJECT = unique_name("sandbox-docker-test")


def compose_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*modes.COMPOSE, *args], capture_output=True, text=True, env=os.environ, check=False
    )


def bootstrap_state() -> dict[str, object]:
    """The bootstrap container's state as compose reports it ({} before it exists)."""
    listed = compose_command("ps", "--all", "--format", "json", "bootstrap").stdout.strip()
    if listed.startswith("["):  # compose before 2.21 prints one array, later one row a line
        rows = json.loads(listed)
    else:
        rows = [json.loads(line) for line in listed.splitlines() if line.strip()]
    return rows[0] if rows else {}


@pytest.fixture(scope="module")
def compose_up() -> Iterator[str]:
    """`docker compose up` of the project's file, as a user would run it; the endpoint."""
    port = free_port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COMPOSE_PROJECT_NAME", PROJECT)
        env.setenv("LOCALSTACK_PORT", str(port))
        env.setenv("AWS_ENDPOINT_URL", f"http://localhost:{port}")
        env.setenv("SANDBOX_MODE", "docker")  # stand-in servers and packaging for containers
        compose = DockerCompose(settings.PROJECT_ROOT, build=True, wait=False)
        compose.start()
        try:
            yield f"http://localhost:{port}"
        finally:
            compose.stop()


def test_compose_up_alone_provisions_every_pattern(compose_up: str) -> None:
    # GIVEN `docker compose up` (nothing run from this host)
    # WHEN the bootstrap service has finished
    state = await_value(
        bootstrap_state,
        until=lambda found: found.get("State") == "exited",
        timeout=BOOTSTRAP_TIMEOUT_S,
        waiting_for="the bootstrap service to finish",
    )

    # THEN it succeeded, and provisioned every pattern in the catalogue
    logs = compose_command("logs", "bootstrap").stdout
    assert state.get("ExitCode") == 0, logs
    count = len(patterns.catalogue())
    assert f"Provisioned {count} of {count}" in logs, logs
    assert health(compose_up) is not None


STOCK_POLLERS = pytest.mark.xfail(
    reason="docs/engine-limits.md#event-source-mapping-pollers: Docker mode runs LocalStack's "
    "stock pollers, which never apply ScalingConfig.MaximumConcurrency",
    strict=False,
)


def docker_cases() -> list[object]:
    """Every pattern; rate-limiter's concurrency check meets a known limit of the image."""
    return [
        pytest.param(pattern, id=pattern.slug, marks=[STOCK_POLLERS])
        if pattern.slug == "rate-limiter"
        else pytest.param(pattern, id=pattern.slug)
        for pattern in patterns.catalogue()
    ]


@pytest.mark.parametrize("pattern", docker_cases())
def test_scenario_passes_in_docker(
    pattern: patterns.Pattern, compose_up: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This compose project's records must not replace those of the sandbox in .sandbox/.
    monkeypatch.setattr(patterns, "REPORTS_DIR", tmp_path / "reports")
    out = io.StringIO()
    scenario = patterns.run_scenario(pattern, Aws(compose_up), out=out)
    assert scenario.ok, out.getvalue()


def test_down_removes_the_lambda_containers(compose_up: str) -> None:
    """The stop grace period lets LocalStack remove the function containers it started."""
    lambda_containers = [
        "docker",
        "ps",
        "--all",
        "--quiet",
        "--filter",
        f"name={PROJECT}-localstack-1-lambda",
    ]
    started = subprocess.run(lambda_containers, capture_output=True, text=True).stdout.split()
    assert len(started) > 2, "scenarios ran, so Lambda containers should be running"
    compose_command("down")
    left = subprocess.run(lambda_containers, capture_output=True, text=True).stdout.split()
    assert left == []
