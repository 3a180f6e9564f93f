"""The Docker path: the LocalStack image docker-compose.yml pins, started here with
testcontainers, runs every pattern's scenario (Lambda in sibling containers, through the
mounted Docker socket), with the same speed settings as embedded mode."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from testcontainers.community.localstack import LocalStackContainer
from testcontainers.core.exceptions import ContainerStartException

from sandbox import modes, patterns, settings
from sandbox.aws import Aws
from sandbox.embedded import launcher

if not modes.docker_engine_answers():
    pytest.skip(
        "no Docker engine answers (`docker info` failed): the Docker path needs one",
        allow_module_level=True,
    )

pytestmark = pytest.mark.docker
START_TIMEOUT_S = 300  # after the image pull: LocalStack's own start, on a possibly slow machine
STOP_TIMEOUT_S = 30  # a graceful stop lets LocalStack remove the Lambda containers it started
DOCKER_SOCKET = "/var/run/docker.sock"


def pinned_image() -> str:
    """The image docker-compose.yml runs by default: `${LOCALSTACK_IMAGE:-<this>}`."""
    compose = yaml.safe_load((settings.PROJECT_ROOT / "docker-compose.yml").read_text())
    image = compose["services"]["localstack"]["image"]
    default = re.fullmatch(r"\$\{LOCALSTACK_IMAGE:-(?P<image>[^}]+)\}", image)
    return default["image"] if default else image


@pytest.fixture(scope="module")
def container() -> Iterator[LocalStackContainer]:
    localstack = (
        LocalStackContainer(image=pinned_image(), region_name=settings.DEFAULT_REGION)
        .with_volume_mapping(DOCKER_SOCKET, DOCKER_SOCKET, "rw")
        .with_envs(DISABLE_EVENTS="1", **launcher.speed_settings())
    )
    try:
        localstack.start(timeout=START_TIMEOUT_S)
        yield localstack
    finally:
        # Stop before removing (remove() kills it), so LocalStack ends its Lambda containers.
        with contextlib.suppress(ContainerStartException):  # it was never created
            localstack.get_wrapped_container().stop(timeout=STOP_TIMEOUT_S)
        localstack.stop()


@pytest.fixture
def aws(container: LocalStackContainer, monkeypatch: pytest.MonkeyPatch) -> Aws:
    url = container.get_url()
    host = urlparse(url).hostname or ""
    if not settings.is_local_host(host):
        # With a remote Docker engine (DOCKER_HOST=tcp://...) or in a container talking to the
        # host's engine, testcontainers gives the engine's host or a gateway IP. The sandbox
        # refuses non-local endpoints (so it never reaches real AWS by accident); this one is
        # the container this test just started, so opt in for this test only.
        monkeypatch.setenv(settings.ALLOW_REMOTE_SETTING, "1")
    return Aws(url)


@pytest.mark.parametrize("pattern", patterns.catalogue(), ids=lambda p: p.slug)
def test_scenario_passes_in_docker(
    pattern: patterns.Pattern, aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This throwaway container's records must not replace those of the sandbox in .sandbox/.
    monkeypatch.setattr(patterns, "REPORTS_DIR", tmp_path / "reports")
    out = io.StringIO()
    scenario = patterns.run_scenario(pattern, aws, out=out)
    assert scenario.ok, out.getvalue()
