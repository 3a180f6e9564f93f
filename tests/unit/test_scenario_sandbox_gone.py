"""A scenario whose sandbox stops answering (`make down` meanwhile, a crash) fails with a
sentence that says so, not a traceback."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from sandbox import patterns
from sandbox.aws import Aws
from sandbox.patterns import Pattern, run_scenario


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_scenario_whose_sandbox_is_gone_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(patterns, "REPORTS_DIR", tmp_path)
    pattern = Pattern("gone", "Gone", "a pattern whose sandbox stopped", ("sqs",), "test")
    # Its provisioning is the first request, to a port nothing listens on.
    pattern.__dict__["bootstrap"] = SimpleNamespace(
        provision=lambda aws: aws.client("sqs").list_queues()
    )
    out = io.StringIO()
    aws = Aws(f"http://localhost:{unused_port()}")
    scenario = run_scenario(pattern, aws, out=out)
    text = out.getvalue()
    assert not scenario.ok
    assert f"FAILED gone: the sandbox at {aws.endpoint_url} stopped answering" in text, text
    assert "make up" in text and "Traceback" not in text, text
    record = json.loads((tmp_path / "gone.json").read_text())
    assert record["activity"]["problems"] == ["the sandbox was gone"]
