"""What docker-compose.yml asks of LocalStack, run through LocalStack 4.14's own code (the
package embedded mode installs is the same code the pinned image runs): the Lambda container
flags, the architecture setting, and the start hook that keeps function creation offline."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import yaml

pytest.importorskip(
    "localstack",
    reason="LocalStack is not installed on this host (Docker mode runs it in a container)",
)
from localstack import config
from localstack.services.lambda_.invocation import docker_runtime_executor
from localstack.services.lambda_.invocation.lambda_models import Architecture
from localstack.utils.container_utils.container_client import NoSuchImage, Util

from sandbox import modes
from sandbox.patterns import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
ENVIRONMENT = dict(item.split("=", 1) for item in COMPOSE["services"]["localstack"]["environment"])
HOOK = ROOT / "docker" / "localstack" / "start.d" / "use_local_runtime_images.py"


def test_the_lambda_docker_flags_give_containers_the_host_alias() -> None:
    flags = Util.parse_additional_flags(ENVIRONMENT["LAMBDA_DOCKER_FLAGS"])
    assert flags.extra_hosts == {"host.docker.internal": "host-gateway"}


def test_ignoring_the_architecture_drops_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    """x86_64 functions would otherwise run as linux/amd64 images on an ARM engine."""
    assert docker_runtime_executor.docker_platform(Architecture.x86_64) == "linux/amd64"
    monkeypatch.setattr(
        config, "LAMBDA_IGNORE_ARCHITECTURE", ENVIRONMENT["LAMBDA_IGNORE_ARCHITECTURE"] == "1"
    )
    assert docker_runtime_executor.docker_platform(Architecture.x86_64) is None


def test_preparing_a_function_goes_through_the_function_the_hook_replaces() -> None:
    source = inspect.getsource(docker_runtime_executor.DockerRuntimeExecutor.prepare_version)
    assert "_ensure_runtime_image_present(image_name, platform)" in source


class Engine:
    """LocalStack's container client, answering from a set of local images."""

    def __init__(self, images: set[str]) -> None:
        self.images = images
        self.pulled: list[str] = []

    def inspect_image(self, image: str, pull: bool = True) -> dict[str, Any]:
        if image not in self.images:
            raise NoSuchImage(image)
        return {"Id": image}

    def pull_image(self, image: str, platform: Any = None) -> None:
        self.pulled.append(image)


@pytest.fixture
def hooked(monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The hook run as LocalStack runs a start.d script, against a stand-in engine; LocalStack
    is restored afterwards."""
    engine = Engine({"public.ecr.aws/lambda/python:3.13"})
    monkeypatch.setattr(docker_runtime_executor, "CONTAINER_CLIENT", engine)
    monkeypatch.setattr(docker_runtime_executor, "PULLED_IMAGES", set())
    monkeypatch.setattr(
        docker_runtime_executor,
        "_ensure_runtime_image_present",
        docker_runtime_executor._ensure_runtime_image_present,
    )
    exec(HOOK.read_bytes(), {})  # as localstack.runtime.init.PythonScriptRunner does
    return engine


def test_an_image_already_here_is_not_pulled(hooked: Engine) -> None:
    docker_runtime_executor._ensure_runtime_image_present("public.ecr.aws/lambda/python:3.13", None)
    assert hooked.pulled == []


def test_a_missing_image_is_still_pulled(hooked: Engine) -> None:
    docker_runtime_executor._ensure_runtime_image_present("public.ecr.aws/lambda/nodejs:22", None)
    assert hooked.pulled == ["public.ecr.aws/lambda/nodejs:22"]


def test_make_pull_fetches_the_images_localstack_will_ask_for() -> None:
    for runtime, image in modes.LAMBDA_RUNTIME_IMAGES.items():
        assert docker_runtime_executor.get_default_image_for_runtime(runtime) == image
