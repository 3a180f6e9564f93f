"""circuit-breaker's handler logic: when a circuit is open, and what the service refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import load_handler

circuit = load_handler("circuit_breaker", "circuit")
service = load_handler("circuit_breaker", "service")

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def test_a_circuit_never_opened_is_closed() -> None:
    assert circuit.state_of("svc", None, NOW) == {
        "service": "svc",
        "state": "CLOSED",
        "expiresAt": None,
    }


def test_an_opened_circuit_is_open_until_its_expiry_then_closed() -> None:
    # GIVEN a circuit opened now for 5 s
    item = circuit.open_item("svc", NOW, 5, {"Error": "ServiceUnavailable", "Cause": "down"})
    # THEN it is open just before the expiry and closed from the expiry on
    assert circuit.state_of("svc", item, NOW + timedelta(seconds=4.9))["state"] == "OPEN"
    assert circuit.state_of("svc", item, NOW + timedelta(seconds=5))["state"] == "CLOSED"


def test_the_open_item_carries_expiry_ttl_and_the_error() -> None:
    item = circuit.open_item("svc", NOW, 5, {"Error": "ServiceUnavailable", "Cause": "down"})
    assert item["expiresAt"] == "2026-11-23T12:00:05+00:00"
    assert item["ttl"] == int((NOW + timedelta(seconds=5)).timestamp()) + 1
    assert (item["lastError"], item["lastCause"]) == ("ServiceUnavailable", "down")


def test_the_service_answers_a_good_request() -> None:
    answer = service.answer({"caller": "c", "request": {"b": 1, "a": 2}})
    assert answer == {"caller": "c", "answer": "served ['a', 'b']"}


def test_a_simulated_outage_is_a_retryable_service_error() -> None:
    with pytest.raises(service.ServiceUnavailable):
        service.answer({"caller": "c", "request": {}, "simulateFailure": True})


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"request": {}}, "'caller'"),
        ({"caller": "c", "request": "oops"}, "'request' must be an object"),
    ],
)
def test_malformed_requests_are_client_errors(event: dict, reason: str) -> None:
    with pytest.raises(service.InvalidRequest, match=reason):
        service.answer(event)
