"""Embedded mode's set-up: what LocalStack is told, and clear errors for what is missing."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import pytest

from sandbox import modes
from sandbox.embedded import dynamodb_local, launcher


def test_localstack_binds_to_loopback_and_uses_the_process_executor(tmp_path: Path) -> None:
    env = launcher.localstack_environment(4599, "token", tmp_path)
    assert env["GATEWAY_LISTEN"] == "127.0.0.1:4599"
    assert env["LAMBDA_RUNTIME_EXECUTOR"] == "local-process"
    assert env["DNS_ADDRESS"] == "0"
    assert env["FILESYSTEM_ROOT"] == str(tmp_path)
    assert env["SANDBOX_INSTANCE"] == "token"


def test_the_users_own_localstack_settings_win(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LAMBDA_RETRY_BASE_DELAY", "3")
    monkeypatch.setenv("GATEWAY_LISTEN", "0.0.0.0:4566")
    env = launcher.localstack_environment(4566, "token", tmp_path)
    assert env["LAMBDA_RETRY_BASE_DELAY"] == "3"
    assert env["GATEWAY_LISTEN"] == "127.0.0.1:4566", "the sandbox only ever listens locally"


def test_missing_java_names_the_fix(monkeypatch) -> None:
    monkeypatch.setattr(dynamodb_local.shutil, "which", lambda _: None)
    with pytest.raises(dynamodb_local.SetupError, match="Install OpenJDK 17"):
        dynamodb_local.find_java_home()


def test_missing_npm_names_the_fix_when_dynamodb_local_is_not_cached(
    monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(dynamodb_local.shutil, "which", lambda _: None)
    with pytest.raises(dynamodb_local.SetupError, match="Install Node.js with npm"):
        dynamodb_local.cached_emulator(tmp_path)


def test_a_cached_dynamodb_local_needs_no_npm(monkeypatch, tmp_path: Path) -> None:
    cached = tmp_path / f"dynamodb-local-{dynamodb_local.NPM_VERSION}"
    cached.mkdir()
    (cached / "DynamoDBLocal.jar").write_bytes(b"jar")
    monkeypatch.setattr(dynamodb_local.shutil, "which", lambda _: None)
    assert dynamodb_local.cached_emulator(tmp_path) == cached


def test_unknown_mode_lists_the_modes() -> None:
    with pytest.raises(modes.ModeError, match="docker, embedded, external"):
        modes.choose({"SANDBOX_MODE": "kubernetes"})


def test_docker_mode_without_an_engine_says_so(monkeypatch) -> None:
    monkeypatch.setattr(modes, "docker_engine_answers", lambda: False)
    with pytest.raises(modes.ModeError, match="no Docker engine answers"):
        modes.choose({"SANDBOX_MODE": "docker"})


def test_external_mode_uses_aws_endpoint_url() -> None:
    mode = modes.choose({"SANDBOX_MODE": "external", "AWS_ENDPOINT_URL": "http://127.0.0.1:4510"})
    assert (mode.name, mode.endpoint, mode.port) == ("external", "http://127.0.0.1:4510", 4510)


def test_without_docker_the_default_is_embedded(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(modes, "docker_engine_answers", lambda: False)
    monkeypatch.setattr(modes, "MODE_FILE", tmp_path / "mode")
    assert modes.choose({}).name == "embedded"


def test_what_the_embedded_sandbox_lacks_is_named(monkeypatch, tmp_path: Path) -> None:
    """The lifecycle tests skip with this reason on a machine with Docker but no Java."""
    monkeypatch.setattr(launcher, "check_localstack_version", lambda: None)
    monkeypatch.setattr(dynamodb_local.shutil, "which", lambda _: None)
    assert "Java is not installed" in (launcher.missing_prerequisites(tmp_path) or "")


def test_localstack_missing_says_how_to_install_it(monkeypatch) -> None:
    """Docker mode's venv has no LocalStack; embedded mode then says how to add it."""

    def not_installed(name: str) -> str:
        raise launcher.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(launcher.metadata, "version", not_installed)
    with pytest.raises(launcher.WrongLocalStackVersion, match="SANDBOX_MODE=embedded"):
        launcher.check_localstack_version()


def test_a_recorded_pid_reused_by_another_program_is_neither_running_nor_stopped(
    tmp_path: Path,
) -> None:
    """After a crash the recorded pid can belong to someone else's process: `make up` must
    not take it for the sandbox, and `make down` must not signal it."""
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        sandbox = launcher.EmbeddedSandbox(port=1, state_dir=tmp_path)
        recorded = launcher.Running(stranger.pid, uuid.uuid4().hex, 1, "log", time.time())
        sandbox.state_file.write_text(json.dumps(asdict(recorded)))
        assert sandbox.running() is None
        sandbox.stop(grace=0.5)
        assert stranger.poll() is None, "stop() signalled a process that is not the sandbox's"
    finally:
        stranger.kill()
        stranger.wait()


def test_the_service_catalog_one_sandbox_built_is_reused_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a sandbox folder where LocalStack built its service catalog
    shared = tmp_path / "machine-cache"
    monkeypatch.setattr(launcher, "SHARED_CATALOG_DIR", shared)
    first, second = tmp_path / "first", tmp_path / "second"
    built = first / "var/lib/localstack/cache/service-catalog-4_14_0-1_42_54.dill"
    built.parent.mkdir(parents=True)
    built.write_bytes(b"index")
    # WHEN the first sandbox has started, and a second is about to start in another folder
    launcher.keep_service_catalog(first)
    launcher.reuse_service_catalog(second)
    # THEN the second has it where LocalStack looks before building one
    static = second / "usr/lib/localstack/service-catalog-4_14_0-1_42_54.dill"
    assert static.read_bytes() == b"index"
    assert [p.name for p in shared.iterdir()] == [built.name]  # no partial copy left


def test_no_service_catalog_kept_yet_means_none_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launcher, "SHARED_CATALOG_DIR", tmp_path / "empty-cache")
    launcher.reuse_service_catalog(tmp_path / "root")
    assert not (tmp_path / "root").exists()
