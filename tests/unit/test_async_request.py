"""async-request's pure logic: which messages are requests, what the work returns, and what
the status and result endpoints answer for a row."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import load_handler

# The worker builds its idempotency store (a boto3 client) at import, as it would in Lambda.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
worker = load_handler("async_request", "worker")
status = load_handler("async_request", "status")


def test_a_request_becomes_a_job_with_its_id() -> None:
    job = worker.parse_job(json.dumps({"text": "a b", "work_ms": 5}), "id-1", max_work_ms=100)
    assert job == {"id": "id-1", "request": {"text": "a b", "work_ms": 5}}


def test_work_time_defaults_to_zero() -> None:
    assert worker.parse_job('{"text": "a"}', "id-1", 100)["request"]["work_ms"] == 0


@pytest.mark.parametrize(
    ("body", "request_id", "reason"),
    [
        ('{"text": "a"}', None, "no request id"),
        ("not json", "id-1", "not JSON"),
        ("[1]", "id-1", "not a JSON object"),
        ('{"text": ""}', "id-1", "text must be"),
        ('{"text": "a", "work_ms": 101}', "id-1", "work_ms must be"),
        ('{"text": "a", "work_ms": true}', "id-1", "work_ms must be"),
    ],
)
def test_malformed_messages_are_refused_saying_why(
    body: str, request_id: str | None, reason: str
) -> None:
    with pytest.raises(worker.MalformedRequest, match=reason):
        worker.parse_job(body, request_id, 100)


def test_the_work_counts_and_shouts() -> None:
    assert worker.result_of({"text": "hello big world"}) == {
        "words": 3,
        "characters": 15,
        "upper": "HELLO BIG WORLD",
    }


def test_an_unknown_id_is_404_on_both_paths() -> None:
    for path in ("/status/{id}", "/result/{id}"):
        code, body = status.respond(path, "nope", None)
        assert code == 404 and body["id"] == "nope"


def test_a_pending_request_has_a_status_but_no_result() -> None:
    row = {"id": "r", "status": "PENDING", "received_at": "t0"}
    assert status.respond("/status/{id}", "r", row) == (
        200,
        {"id": "r", "status": "PENDING", "received_at": "t0"},
    )
    code, body = status.respond("/result/{id}", "r", row)
    assert (code, body["status"]) == (404, "PENDING")


def test_a_complete_request_has_its_result() -> None:
    row = {
        "id": "r",
        "status": "COMPLETE",
        "received_at": "t0",
        "completed_at": "t1",
        "result": {"words": 1},
    }
    assert status.respond("/result/{id}", "r", row) == (200, {"id": "r", "result": {"words": 1}})
    assert status.respond("/status/{id}", "r", row)[1]["completed_at"] == "t1"
