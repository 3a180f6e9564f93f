"""scheduled-ingest's handler logic: which message bodies become which items."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_handler

app = load_handler("scheduled_ingest")

SCHEDULED = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "time": "2026-11-23T12:00:00Z",
    "detail": {},
}


def test_a_scheduled_event_becomes_an_item_with_the_default_message() -> None:
    assert app.to_item(json.dumps(SCHEDULED)) == {
        "id": SCHEDULED["id"],
        "timestamp": "2026-11-23T12:00:00Z",
        "message": "Lambda function triggered",
        "source": "aws.events",
        "detail_type": "Scheduled Event",
    }


def test_an_event_with_a_message_keeps_it() -> None:
    event = {**SCHEDULED, "detail": {"message": "hello"}, "detail-type": "Ingest Requested"}
    assert app.to_item(json.dumps(event))["message"] == "hello"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"id": "x", "time": "t"}), "missing: source, detail-type"),
    ],
)
def test_malformed_bodies_are_refused_saying_why(body: str, reason: str) -> None:
    with pytest.raises(app.MalformedEvent, match=reason):
        app.to_item(body)
