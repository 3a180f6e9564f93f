"""Page tokens and page messages for paginated-fan-out (pure logic, no AWS).

A token is DynamoDB's LastEvaluatedKey for the batch's partition, as URL-safe base64 JSON,
so it travels in an SQS message unchanged and a retried page restarts from the same key.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, NamedTuple


class MalformedPage(ValueError):
    """A page request that cannot be run: no batch, a bad token or page number."""


def encode_token(last_key: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(last_key, sort_keys=True).encode()).decode()


def decode_token(token: str, batch: str) -> dict[str, str]:
    """The ExclusiveStartKey in a token; it must be a key of this batch's partition."""
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError) as error:
        raise MalformedPage(f"token is not base64 JSON: {token[:40]!r}") from error
    if not isinstance(key, dict) or set(key) != {"batch", "id"} or key["batch"] != batch:
        raise MalformedPage(f"token is not a key of batch {batch!r}: {key!r}")
    return key


class PageRequest(NamedTuple):
    batch: str
    run: str | None  # one pass over the batch; page 1 starts a new one
    token: str | None
    page: int
    seen: int  # items in the pages before this one


def parse_page_request(data: Any) -> PageRequest:
    """The page request in an event or message; page 1 (from the schedule or a direct
    invoke) carries only the batch, later pages carry the run, token, page and count."""
    if not isinstance(data, dict):
        raise MalformedPage("the page request must be a JSON object")
    batch, run, token = data.get("batch"), data.get("run"), data.get("token")
    page, seen = data.get("page", 1), data.get("seen", 0)
    if not isinstance(batch, str) or not batch:
        raise MalformedPage("'batch' must be a non-empty string")
    if token is not None and not isinstance(token, str):
        raise MalformedPage("'token' must be a string")
    if not isinstance(page, int) or page < 1 or (page > 1) != (token is not None):
        raise MalformedPage("'page' must be 1 without a token, or > 1 with one")
    if page > 1 and (not isinstance(run, str) or not run):
        raise MalformedPage("a later page needs its 'run'")
    if not isinstance(seen, int) or seen < 0:
        raise MalformedPage("'seen' must be a count")
    if token is not None:
        decode_token(token, batch)
    return PageRequest(batch, run, token, page, seen)


def next_step(
    request: PageRequest, count: int, last_key: dict[str, str] | None
) -> tuple[str, dict[str, Any]]:
    """After a page of `count` items: ("next", the next page's message) while DynamoDB gave a
    LastEvaluatedKey, else ("done", the DONE marker's fields)."""
    total = request.seen + count
    if last_key:
        return "next", {
            "batch": request.batch,
            "run": request.run,
            "token": encode_token(last_key),
            "page": request.page + 1,
            "seen": total,
        }
    return "done", {
        "batch": request.batch,
        "run": request.run,
        "pages": request.page,
        "items": total,
    }
