"""Docker mode's set-up steps, each failing with advice instead of a traceback: no compose
plugin, the port held by another LocalStack or another program, an image missing offline,
`make pull` without an engine. The docker probes are replaced; ports and the other LocalStack
are real listeners on this machine."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox import cli, modes, settings
from sandbox.health import free_port
from sandbox.local_http import Reply, serve


def docker_answering(
    monkeypatch: pytest.MonkeyPatch, answer: Callable[[list[str]], tuple[int, str]]
) -> list[list[str]]:
    """Replace every docker command with `answer(args) -> (returncode, stderr)`; return the
    commands asked for."""
    asked: list[list[str]] = []

    def run(
        args: list[str], timeout: float | None = None, **_: object
    ) -> subprocess.CompletedProcess:
        asked.append(list(args))
        code, said = answer(list(args))
        return subprocess.CompletedProcess(args, code, "", said)

    monkeypatch.setattr(modes, "run_docker", run)
    monkeypatch.setattr(modes.subprocess, "run", run)
    monkeypatch.setattr(modes.shutil, "which", lambda _: "/usr/bin/docker")
    return asked


def engine_with_compose(args: list[str]) -> tuple[int, str]:
    return 0, ""


def test_without_the_compose_plugin_make_up_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an engine that answers, but whose client has no `compose`
    docker_answering(
        monkeypatch,
        lambda args: (1, "docker: 'compose' is not a docker command.")
        if args[:2] == ["docker", "compose"]
        else (0, ""),
    )
    monkeypatch.setattr(modes, "MODE_FILE", tmp_path / "mode")
    monkeypatch.setenv("SANDBOX_MODE", "docker")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://localhost:{free_port()}")

    # WHEN `make up` runs
    code = cli.main(["up"])

    # THEN it ends with the advice, not a traceback
    said = capsys.readouterr().err
    assert code == 2 and "Traceback" not in said
    assert "compose plugin is missing" in said and "SANDBOX_MODE=embedded" in said


def test_another_localstack_on_the_port_is_named_and_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN another LocalStack (a stand-in answering its health document) on the port
    monkeypatch.setenv("SANDBOX_MODE", "embedded")  # the stand-in listens on 127.0.0.1
    health = json.dumps({"version": "4.9.2", "services": {}}).encode()
    with serve(lambda request: Reply(200, health)) as other:
        port = int(other.url.rsplit(":", 1)[1])
        asked = docker_answering(monkeypatch, engine_with_compose)

        # WHEN Docker mode starts on that port
        with pytest.raises(modes.ModeError) as refused:
            modes.Mode("docker", f"http://127.0.0.1:{port}").start()

    # THEN the error names it and the ways on, and compose was never asked to start anything
    message = str(refused.value)
    assert f"Another LocalStack (4.9.2) already answers on port {port}" in message
    assert "SANDBOX_MODE=external" in message and f"localhost:{port + 1}" in message
    assert not [args for args in asked if "up" in args]


def test_another_program_on_the_port_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    docker_answering(monkeypatch, engine_with_compose)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(modes.ModeError, match=f"Port {port} is in use by another program"):
            modes.Mode("docker", f"http://127.0.0.1:{port}").start()


def test_an_image_missing_offline_says_run_make_pull(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no image here, and a registry that cannot be reached
    def offline(args: list[str]) -> tuple[int, str]:
        if args[:3] == ["docker", "image", "inspect"]:
            return 1, "Error: No such image"
        if args[:2] == ["docker", "pull"]:
            return (
                1,
                "Error response from daemon: dial tcp: lookup registry-1.docker.io: no such host",
            )
        return 0, ""

    asked = docker_answering(monkeypatch, offline)

    # WHEN Docker mode starts
    with pytest.raises(modes.ModeError) as refused:
        modes.Mode("docker", f"http://127.0.0.1:{free_port()}").start()

    # THEN it names the image and `make pull`, before compose started anything
    message = str(refused.value)
    assert "localstack/localstack:4.14.0 is not on this machine" in message
    assert "no such host" in message and "make pull" in message
    assert not [args for args in asked if "up" in args]


def test_the_lambda_runtime_images_are_checked_before_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LocalStack would otherwise pull them at the first function, and fail it offline."""
    missing = set(modes.LAMBDA_RUNTIME_IMAGES.values())

    def only_localstack_here(args: list[str]) -> tuple[int, str]:
        if args[:3] == ["docker", "image", "inspect"] and args[3] in missing:
            return 1, "Error: No such image"
        if args[:2] == ["docker", "pull"]:
            return 1, "no such host"
        return 0, ""

    docker_answering(monkeypatch, only_localstack_here)
    with pytest.raises(modes.ModeError, match="public.ecr.aws/lambda/python:3.13 is not on"):
        modes.Mode("docker", f"http://127.0.0.1:{free_port()}").start()


def test_a_failing_compose_command_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    docker_answering(
        monkeypatch,
        lambda args: (
            1,
            "Error response from daemon: driver failed programming external connectivity",
        )
        if "up" in args
        else (0, ""),
    )
    with pytest.raises(modes.ModeError, match="`docker compose up -d localstack` failed"):
        modes.Mode("docker", f"http://127.0.0.1:{free_port()}").start()


def test_make_pull_without_an_engine_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(modes, "docker_engine_answers", lambda: False)
    assert cli.main(["pull"]) == 2
    said = capsys.readouterr().err
    assert "no Docker engine answers" in said and "Traceback" not in said


def test_make_pull_fetches_localstack_the_runtime_images_and_builds_bootstrap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = docker_answering(monkeypatch, engine_with_compose)
    modes.pull()
    pulled = [args[2] for args in asked if args[:2] == ["docker", "pull"]]
    assert pulled == ["localstack/localstack:4.14.0", "public.ecr.aws/lambda/python:3.13"]
    assert [args[-2:] for args in asked if "build" in args] == [["build", "bootstrap"]]


def test_every_runtime_the_patterns_use_has_its_image_pulled() -> None:
    """Runtimes named in bootstrap/ (and provision's default) all have an image in the list."""
    from sandbox import provision

    sources = [path.read_text() for path in (settings.PROJECT_ROOT / "bootstrap").glob("*.py")]
    runtimes = {provision.LAMBDA_RUNTIME} | {
        found for source in sources for found in re.findall(r'runtime\s*=\s*"([^"]+)"', source)
    }
    assert runtimes <= set(modes.LAMBDA_RUNTIME_IMAGES), runtimes
