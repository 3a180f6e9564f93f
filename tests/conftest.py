"""Shared test helpers, and how a parallel run is arranged.

`make test` runs the suite on pytest-xdist workers in two runs (the Makefile): the tests
marked `waits_long` (the scenarios, the poison fault, the lifecycle faults: they wait on
queues, timers and starts, and a loaded machine can upset the scenarios), then the rest.
A test file stays on one worker (`--dist loadfile`): the scenarios share one session
fixture, a module's tests share its own sandbox. The files in LONGEST_FIRST are handed out
first (make test passes --no-loadscope-reorder), each to a worker of its own.
"""

from __future__ import annotations

import importlib.util
import io
import os
import resource
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sandbox import modes, settings

ROOT = Path(__file__).resolve().parent.parent
LONGEST_FIRST = (
    "tests/integration/test_scenarios.py",
    "tests/faults/test_poison.py",
    "tests/faults/test_sandbox_lifecycle.py",
    "tests/integration/test_lifecycle.py",
)
# A worker that started the sandbox leaves its stopping to the controller, at the very end
# (other workers may still be using it): it leaves this file, named by the controller.
STOP_FILE = "sandbox_stop_file"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the rest keep the files' order


def controllers_stop_file() -> Path:
    """The file a worker of this (controller) process leaves when it started the sandbox."""
    return settings.STATE_DIR / f"stop-after-tests-{os.getpid()}"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist's controller, for each worker: where to say it started the sandbox."""
    node.workerinput[STOP_FILE] = str(controllers_stop_file())


def stop_when_the_run_ends(config: pytest.Config, mode: modes.Mode) -> None:
    """Stop the sandbox this session started: now, or, on an xdist worker, at the end of
    the whole run (pytest_sessionfinish below, in the controller, whose mode is the same)."""
    worker = getattr(config, "workerinput", None)
    if worker is None:
        mode.stop()
        return
    Path(worker[STOP_FILE]).touch()


def pytest_sessionfinish(session: pytest.Session) -> None:
    stop_file = controllers_stop_file()
    if not hasattr(session.config, "workerinput") and stop_file.is_file():
        modes.choose().stop()
        stop_file.unlink()


def load_handler(folder: str, module: str = "app") -> ModuleType:
    """Import handlers/<folder>/<module>.py the way Lambda would (its folder on sys.path)."""
    path = ROOT / "handlers" / folder / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"handlers_{folder}_{module}", path)
    assert spec and spec.loader
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded  # dataclasses look their module up there
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(loaded)
    finally:
        sys.path.remove(str(path.parent))
    return loaded


def zip_files(files: dict[str, str]) -> bytes:
    """A Lambda deployment zip holding these files (name -> source text)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def failed_record(slug: str, started: float = 1_700_000_000.0) -> dict:
    """A scenario record as the harness writes it, for a run whose second step failed its
    check, with a Lambda invocation, a Step Functions execution and a DLQ arrival."""
    return {
        "slug": slug,
        "ok": False,
        "started": started,
        "seconds": 4.0,
        "steps": [
            {
                "title": "Provision (idempotent)",
                "started": started,
                "seconds": 1.0,
                "ok": True,
                "checks": [],
                "check_details": [],
                "error": None,
            },
            {
                "title": "Write the orders",
                "started": started + 1.0,
                "seconds": 3.0,
                "ok": False,
                "checks": ["orders accepted: 3"],
                "check_details": [
                    {
                        "what": "orders accepted",
                        "at": started + 1.5,
                        "outcome": "passed",
                        "seen": "3",
                    },
                    {"what": "engine limit", "at": started + 2.0, "outcome": "not proven"},
                    {
                        "what": "items written",
                        "at": started + 3.5,
                        "outcome": "failed",
                        "expected": ["a", "b", "c"],
                        "seen": ["a", "b"],
                    },
                ],
                "error": "ScenarioFailed: items written: expected ['a', 'b', 'c'], saw ['a', 'b']",
            },
        ],
        "activity": {
            "window": [started, started + 4.0],
            "problems": [],
            "invocations": [
                {
                    "function": f"{slug}-writer",
                    "request_id": "r1",
                    "start": started + 1.2,
                    "seconds": 0.5,
                    "cold": True,
                    "init_seconds": 0.1,
                    "error": "[ERROR] ValueError: boom",
                }
            ],
            "executions": [
                {
                    "state_machine": slug,
                    "name": "run-1",
                    "status": "FAILED",
                    "start": started + 1.1,
                    "stop": started + 2.5,
                    "states": [
                        {
                            "name": "Write",
                            "entered": started + 1.1,
                            "exited": started + 2.5,
                            "error": "States.TaskFailed: boom",
                        },
                    ],
                }
            ],
            "dlqs": [
                {
                    "queue": f"{slug}-dlq",
                    "messages_at_end": 1,
                    "arrivals": [{"at": started + 3.0, "count": 1}],
                }
            ],
        },
    }


HELD_DESCRIPTORS = 1100  # enough that the next descriptors are numbered over 1024


@pytest.fixture
def descriptors_numbered_over_1024() -> Iterator[None]:
    """Holds descriptors until the next ones are numbered over 1024, as LocalStack's are with
    every pattern in use: select() refuses those. Skips where the host's limit is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * HELD_DESCRIPTORS
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"this host allows {hard} open files per process; the test needs {wanted}")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(HELD_DESCRIPTORS)]
    try:
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
