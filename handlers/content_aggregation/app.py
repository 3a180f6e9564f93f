"""Content aggregation: fetch one source's feed and list its items (the workflow stores only
the new ones).

Event (one iteration of the workflow's Map over the sources):
    {"source_set": "default", "source_id": "aws-blog", "url": "https://.../feed.json"}
The feed is a JSON Feed (https://jsonfeed.org/version/1.1): {"items": [{"id", "url",
"title", "date_published"}, ...]}.
Returns {"source_id", "items": [{"id", "source_id", "guid", "url", "title", "published"}]},
where `id` is a hash of the source and the item's own id: the key the workflow's
conditional put uses, so an item seen before is never stored twice.
Errors: SourceUnavailable (HTTP 5xx, timeout, connection refused: the workflow retries),
FeedInvalid (not a JSON Feed, or a 4xx: retrying would not help).
Environment: FETCH_TIMEOUT (seconds, default 3).
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from typing import Any

USER_AGENT = "content-aggregation/1.0"


class SourceUnavailable(Exception):
    """The source did not answer usefully now; a later try may work."""


class FeedInvalid(Exception):
    """The source answered, but not with a feed this workflow can read."""


def item_key(source_id: str, guid: str) -> str:
    """The stored item's id: stable for the same item of the same source."""
    return hashlib.sha256(f"{source_id}\n{guid}".encode()).hexdigest()[:32]


def parse_feed(source_id: str, body: bytes) -> list[dict[str, str]]:
    """The items of a JSON Feed, normalised; FeedInvalid says what is wrong with it."""
    try:
        feed = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FeedInvalid(f"{source_id}: not JSON ({error})") from error
    if not isinstance(feed, dict) or not isinstance(feed.get("items"), list):
        raise FeedInvalid(f"{source_id}: not a JSON Feed (no 'items' list)")
    items = []
    for position, entry in enumerate(feed["items"]):
        if not isinstance(entry, dict) or not (entry.get("id") or entry.get("url")):
            raise FeedInvalid(f"{source_id}: item {position} has neither id nor url")
        guid = str(entry.get("id") or entry["url"])
        items.append(
            {
                "id": item_key(source_id, guid),
                "source_id": source_id,
                "guid": guid,
                "url": str(entry.get("url") or ""),
                "title": str(entry.get("title") or ""),
                "published": str(entry.get("date_published") or ""),
            }
        )
    return items


def fetch(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        if error.code >= 500 or error.code == 429:
            raise SourceUnavailable(f"{url} answered {error.code}") from error
        raise FeedInvalid(f"{url} answered {error.code}") from error
    except (urllib.error.URLError, TimeoutError) as error:
        raise SourceUnavailable(f"{url} unreachable: {error}") from error


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    source_id, url = event["source_id"], event["url"]
    body = fetch(url, float(os.environ.get("FETCH_TIMEOUT", "3")))
    return {"source_id": source_id, "items": parse_feed(source_id, body)}
