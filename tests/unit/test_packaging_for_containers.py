"""Handler dependencies are installed for where the functions run: Linux wheels for the Lambda
runtime's Python in Docker mode (whatever this host is), this host's own in embedded mode;
functions declare this machine's architecture; embedded functions get their code as a folder."""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

import pytest

from sandbox import provision
from sandbox.aws import Aws


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


def handler_with_dependencies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A handler folder whose requirements are 'installed' in a folder of their own."""
    deps = tmp_path / "deps"
    (deps / "powertools").mkdir(parents=True)
    (deps / "powertools" / "__init__.py").write_text("")
    (deps / "__pycache__").mkdir()
    monkeypatch.setattr(provision, "_vendored_dependencies", lambda _requirements: deps)
    folder = tmp_path / "handler"
    (folder / "lib").mkdir(parents=True)
    (folder / "app.py").write_text("def handler(event, context):\n    return 1\n")
    (folder / "lib" / "rules.py").write_text("LIMIT = 3\n")
    return folder


def test_embedded_functions_get_their_code_as_a_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Functions that run on this host are made from a folder (no zip for LocalStack to
    decode, store and unzip): the handler's files, and its dependencies linked beside them."""
    monkeypatch.setattr(provision, "BUILD_DIR", tmp_path / "build")
    folder = handler_with_dependencies(tmp_path, monkeypatch)
    aws = Aws("http://localhost:4566")
    aws.functions_run_here = True

    code, deployed_as = provision._function_code(aws, folder)

    assert code["S3Bucket"] == provision.HOST_FOLDER_BUCKET
    made = Path(code["S3Key"])
    assert made.parent == tmp_path / "build" / "code" and deployed_as == f"file://{made}"
    assert (made / "app.py").read_text() == (folder / "app.py").read_text()
    assert (made / "lib" / "rules.py").read_text() == "LIMIT = 3\n"
    assert (made / "powertools").resolve() == tmp_path / "deps" / "powertools"
    assert not (made / "__pycache__").exists()
    function = {"Code": {"Location": deployed_as}, "Configuration": {"CodeSha256": "n/a"}}
    assert provision._deployed_code(function) == deployed_as
    # The same content is the same folder; an edit makes a new one (a function's code never
    # changes under it).
    assert provision._function_code(aws, folder)[0] == code
    (folder / "app.py").write_text("def handler(event, context):\n    return 2\n")
    assert Path(provision._function_code(aws, folder)[0]["S3Key"]) != made
    assert (made / "app.py").read_text().endswith("return 1\n")


def test_functions_elsewhere_get_a_zip_as_on_aws(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(provision, "BUILD_DIR", tmp_path / "build")
    folder = handler_with_dependencies(tmp_path, monkeypatch)
    aws = Aws("http://localhost:4566")
    aws.functions_run_here = False

    code, deployed_as = provision._function_code(aws, folder)

    names = set(zipfile.ZipFile(io.BytesIO(code["ZipFile"])).namelist())
    assert names == {"app.py", "lib/rules.py", "powertools/__init__.py"}
    function = {"Code": {"Location": "http://s3/presigned"}, "Configuration": {"CodeSha256": "x"}}
    assert provision._deployed_code(function) == "x" != deployed_as
    function["Configuration"]["CodeSha256"] = deployed_as
    assert provision._deployed_code(function) == deployed_as
