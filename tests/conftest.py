"""Shared test helpers."""

from __future__ import annotations

import importlib.util
import io
import sys
import zipfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


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
