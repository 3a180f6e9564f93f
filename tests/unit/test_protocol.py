"""The executor's side of the runtime protocol: pure functions, no processes."""

from __future__ import annotations

import json

import pytest

from sandbox.executor import protocol


def test_messages_round_trip_as_single_lines() -> None:
    line = protocol.encode({"type": "log", "data": "two\nlines\n"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert protocol.decode(line) == {"type": "log", "data": "two\nlines\n"}


@pytest.mark.parametrize("line", [b"[1, 2]\n", b'{"no": "type"}\n', b"not json\n"])
def test_decode_rejects_what_is_not_a_protocol_message(line: bytes) -> None:
    with pytest.raises(ValueError):
        protocol.decode(line)


def test_invoke_request_carries_the_deadline_from_the_timeout() -> None:
    payload = {
        "invoke-id": "req-1",
        "invoked-function-arn": "arn:aws:lambda:us-east-1:000000000000:function:f",
        "payload": '{"a": 1}',
        "trace-id": "Root=1-abc",
    }
    request = protocol.invoke_request(payload, timeout_s=3, now_ms=1_000_000)
    assert request == {
        "request_id": "req-1",
        "invoked_function_arn": "arn:aws:lambda:us-east-1:000000000000:function:f",
        "payload": '{"a": 1}',
        "trace_id": "Root=1-abc",
        "deadline_ms": 1_003_000,
    }


def test_runtime_environment_keeps_localstack_variables_and_little_of_the_host() -> None:
    lambda_env = {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": 128, "_HANDLER": "app.handler", "X": None}
    host = {"PATH": "/bin", "HOME": "/root", "GATEWAY_LISTEN": "127.0.0.1:4566"}
    env = protocol.runtime_environment(lambda_env, "/code", host)
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert env["LAMBDA_TASK_ROOT"] == "/code"
    assert env["PATH"] == "/bin"
    assert "GATEWAY_LISTEN" not in env and "X" not in env


def test_timeout_is_reported_as_lambda_reports_it() -> None:
    error = protocol.timeout_error("req-1", 3)
    assert error["errorMessage"] == "RequestId: req-1 Error: Task timed out after 3.00 seconds"
    assert error["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 3.00 seconds" in protocol.timeout_log_line("req-1", 3)


def test_a_crashed_runtime_is_an_exit_error() -> None:
    assert "exit status 1" in protocol.exit_error("r", 1)["errorMessage"]
    assert "signal: 9" in protocol.exit_error("r", -9)["errorMessage"]
    unknown = protocol.exit_error("r", None)["errorMessage"]
    assert "Runtime exited without providing a reason" in unknown


def test_report_line_has_lambdas_fields_and_init_duration_only_when_cold() -> None:
    cold = protocol.end_lines("r", 12.3, 256, init_ms=150.0)
    warm = protocol.end_lines("r", 12.3, 256, init_ms=None)
    assert cold.startswith("END RequestId: r\nREPORT RequestId: r\tDuration: 12.30 ms")
    assert "Billed Duration: 13 ms" in cold and "Memory Size: 256 MB" in cold
    assert "Init Duration: 150.00 ms" in cold and "Init Duration" not in warm


@pytest.mark.parametrize(
    ("runtime", "family"), [("python3.13", "python"), ("nodejs20.x", "nodejs")]
)
def test_supported_runtimes(runtime: str, family: str) -> None:
    assert protocol.runtime_family(runtime) == family


def test_unsupported_runtime_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="SANDBOX_MODE=docker"):
        protocol.runtime_family("java21")


def test_error_shape_is_lambdas() -> None:
    shape = protocol.error_shape("ValueError", "bad", ["  File x"])
    assert json.loads(json.dumps(shape)) == {
        "errorMessage": "bad",
        "errorType": "ValueError",
        "stackTrace": ["  File x"],
    }


def test_hot_reload_change_is_seen_when_a_file_moves(tmp_path) -> None:
    (tmp_path / "app.py").write_text("x = 1")
    before = protocol.newest_mtime(str(tmp_path))
    assert not protocol.is_hot_reload_change(before, before)
    assert not protocol.is_hot_reload_change(None, before)
    assert protocol.is_hot_reload_change(before, before + 1)
