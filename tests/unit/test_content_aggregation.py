"""content-aggregation: reading feeds, the stable item key, and how fetch failures are named."""

from __future__ import annotations

import json

import pytest

from sandbox.local_http import Reply, serve
from tests.conftest import load_handler

app = load_handler("content_aggregation")

FEED = {
    "version": "https://jsonfeed.org/version/1.1",
    "items": [
        {"id": "p1", "url": "https://e.com/1", "title": "One", "date_published": "2026-11-01"},
        {"url": "https://e.com/2"},
    ],
}


def test_a_feed_becomes_normalised_items_keyed_by_source_and_guid() -> None:
    items = app.parse_feed("blog", json.dumps(FEED).encode())
    assert items[0] == {
        "id": app.item_key("blog", "p1"),
        "source_id": "blog",
        "guid": "p1",
        "url": "https://e.com/1",
        "title": "One",
        "published": "2026-11-01",
    }
    assert items[1]["guid"] == "https://e.com/2" and items[1]["title"] == ""


def test_the_item_key_is_stable_and_differs_between_sources() -> None:
    assert app.item_key("blog", "p1") == app.item_key("blog", "p1")
    assert app.item_key("blog", "p1") != app.item_key("news", "p1")
    assert len(app.item_key("blog", "p1")) == 32


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>nope</html>", "not JSON"),
        (b'{"title": "x"}', "no 'items' list"),
        (b'{"items": [{"title": "no id"}]}', "item 0 has neither id nor url"),
    ],
)
def test_a_bad_feed_is_feed_invalid(body: bytes, reason: str) -> None:
    with pytest.raises(app.FeedInvalid, match=reason):
        app.parse_feed("blog", body)


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, "SourceUnavailable"), (503, "SourceUnavailable"), (404, "FeedInvalid")],
)
def test_http_errors_are_retryable_only_when_the_server_is_at_fault(
    status: int, error: str
) -> None:
    with serve(lambda request: Reply(status=status)) as server:
        with pytest.raises(getattr(app, error)):
            app.fetch(f"{server.url}/feed.json", timeout=3)


def test_an_unreachable_source_is_unavailable() -> None:
    with serve(lambda request: Reply()) as server:
        url = server.url
    with pytest.raises(app.SourceUnavailable, match="unreachable"):
        app.fetch(f"{url}/feed.json", timeout=1)


def test_the_handler_returns_the_sources_items() -> None:
    with serve(lambda request: Reply(body=json.dumps(FEED).encode())) as server:
        out = app.handler({"source_id": "blog", "url": f"{server.url}/f.json"}, None)
    assert out["source_id"] == "blog" and [i["guid"] for i in out["items"]] == [
        "p1",
        "https://e.com/2",
    ]
