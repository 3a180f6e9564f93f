"""Handler dependencies are installed for where the functions run: Linux wheels for the Lambda
runtime's Python in Docker mode (whatever this host is), this host's own in embedded mode;
functions declare this machine's architecture."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sandbox import provision


@pytest.fixture
def pip_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[str]]:
    """pip as provision calls it, recorded (it creates the target folder and succeeds)."""
    calls: list[list[str]] = []

    def pip(args: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        Path(args[args.index("--target") + 1]).mkdir(parents=True)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(provision, "BUILD_DIR", tmp_path / "build")
    monkeypatch.setattr(provision.subprocess, "run", pip)
    return calls


def requirements(tmp_path: Path) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text("aws-lambda-powertools\n")
    return path


def test_docker_mode_installs_linux_wheels_for_the_runtime(
    pip_calls: list[list[str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SANDBOX_MODE", "docker")
    monkeypatch.setattr(provision.platform, "machine", lambda: "arm64")  # an Apple Silicon Mac
    provision._vendored_dependencies(requirements(tmp_path))
    [args] = pip_calls
    assert "--platform=manylinux2014_aarch64" in args and "--only-binary=:all:" in args
    assert "--python-version=3.13" in args and "--implementation=cp" in args


def test_embedded_mode_installs_this_hosts_wheels(
    pip_calls: list[list[str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SANDBOX_MODE", "embedded")
    monkeypatch.delenv("SANDBOX_FUNCTIONS_IN_DOCKER", raising=False)
    provision._vendored_dependencies(requirements(tmp_path))
    [args] = pip_calls
    assert not [arg for arg in args if arg.startswith("--platform")]


def test_the_two_builds_are_cached_apart(
    pip_calls: list[list[str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A folder vendored for this host is never zipped into a Linux container's function."""
    needs = requirements(tmp_path)
    monkeypatch.setenv("SANDBOX_MODE", "embedded")
    for_host = provision._vendored_dependencies(needs)
    monkeypatch.setenv("SANDBOX_MODE", "docker")
    for_containers = provision._vendored_dependencies(needs)
    assert for_host != for_containers and len(pip_calls) == 2


@pytest.mark.parametrize(
    ("machine", "architecture"),
    [("x86_64", "x86_64"), ("AMD64", "x86_64"), ("arm64", "arm64"), ("aarch64", "arm64")],
)
def test_functions_declare_this_machines_architecture(
    machine: str, architecture: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provision.platform, "machine", lambda: machine)
    assert provision.lambda_architecture() == architecture
