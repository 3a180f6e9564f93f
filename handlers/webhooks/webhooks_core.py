"""Pure logic of the webhooks pattern (no AWS calls; the unit tests call these directly).

- Signatures: `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, the
  scheme Stripe documents. The timestamp is signed too, so a captured request cannot be
  replayed after the tolerance; several `v1=` entries are accepted (secret rotation).
- Allowlist: a subscriber URL must use an allowed scheme and name an allowed host, checked at
  registration and again before every delivery.
- Backoff: "equal jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter") in whole
  seconds, since a retry is re-queued with SQS DelaySeconds: the wait before retry n is
  ceil(half + uniform(0, half)) with half = min(cap, base * 2**n) / 2, so it is never 0.
- Inbound bodies: JSON or form posts become a dict; anything else is kept raw and flagged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import random
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

SIGNATURE_HEADER = "X-Signature"
DEFAULT_TOLERANCE = 300  # seconds a signed request stays acceptable
MAX_URL_LENGTH = 2048


# -- signatures ------------------------------------------------------------------------
class SignatureError(ValueError):
    """The signature header is missing, malformed, stale or does not match the body."""


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The X-Signature header value for this body, signed at `timestamp` (unix seconds)."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify(
    secrets: str | Iterable[str],
    header: str | None,
    body: bytes,
    *,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE,
) -> int:
    """Check a signature header as a receiver would; return its timestamp or raise
    SignatureError saying why it is refused. `secrets` may hold an old and a new secret."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: {header[:80]!r}")
    if abs(now - timestamp) > tolerance:
        raise SignatureError(
            f"timestamp {timestamp} is {abs(now - timestamp):.0f} s away from now "
            f"(tolerance {tolerance} s)"
        )
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    for secret in keys:
        expected = _digest(secret, timestamp, body)
        if any(hmac.compare_digest(expected, given) for given in signatures):
            return timestamp
    raise SignatureError("signature does not match the body")


# -- allowlist -------------------------------------------------------------------------
class InvalidUrl(ValueError):
    """A subscriber URL that may not receive webhooks; the message says why."""


def validate_url(
    url: Any, allowed_hosts: Iterable[str], allowed_schemes: Iterable[str] = ("https",)
) -> str:
    """Return the URL if webhooks may be sent to it, else raise InvalidUrl with the reason.
    Hosts compare case-insensitively and exactly (no suffix matching: `127.0.0.1.evil.com`
    is not `127.0.0.1`)."""
    hosts = sorted({h.strip().lower().rstrip(".") for h in allowed_hosts if h.strip()})
    schemes = sorted({s.strip().lower() for s in allowed_schemes if s.strip()})
    if not isinstance(url, str) or not url.strip():
        raise InvalidUrl("'url' must be a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidUrl(f"'url' is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidUrl("'url' contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as error:
        raise InvalidUrl(f"'url' is not a valid URL: {error}") from error
    if parts.scheme.lower() not in schemes:
        raise InvalidUrl(
            f"scheme {parts.scheme or '(none)'!r} is not allowed (allowed: {', '.join(schemes)})"
        )
    if not host:
        raise InvalidUrl("'url' has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidUrl("'url' must not carry credentials")
    if host not in hosts:
        raise InvalidUrl(f"host {host!r} is not on the allowlist ({', '.join(hosts)})")
    return url


# -- backoff ---------------------------------------------------------------------------
def backoff_ceiling(retry: int, base: float, cap: float) -> float:
    """The longest wait before retry number `retry` (0 for the first retry)."""
    return min(cap, base * 2**retry)


def retry_delay(
    retry: int, base: float, cap: float, rand: Callable[[float, float], float] = random.uniform
) -> int:
    """Whole seconds to re-queue retry number `retry` (0 for the first retry) with: equal
    jitter, at least 1 s, at most the ceiling rounded up (and SQS's 900 s)."""
    half = backoff_ceiling(retry, base, cap) / 2
    return min(900, max(1, math.ceil(half + rand(0.0, half))))


# -- inbound bodies --------------------------------------------------------------------
class Parsed(NamedTuple):
    """An inbound body as it goes on the bus: `payload` when it parsed, else `raw`."""

    format: str  # "json", "form" or "raw"
    payload: Any = None
    raw: str | None = None
    malformed: bool = False
    reason: str | None = None

    def detail(self) -> dict[str, Any]:
        if self.malformed:
            return {
                "format": self.format,
                "malformed": True,
                "reason": self.reason,
                "raw": self.raw,
            }
        return {"format": self.format, "malformed": False, "payload": self.payload}


def decode_body(body: str | None, is_base64: bool) -> str:
    """The request body as text (API Gateway base64-encodes bodies it thinks are binary)."""
    if not body:
        return ""
    if is_base64:
        return base64.b64decode(body).decode("utf-8", errors="replace")
    return body


def parse_inbound(content_type: str | None, body: str) -> Parsed:
    """JSON (`application/json`, `+json`) and form posts become a payload; a body that does
    not parse as its content type says, or of another type, is kept raw and flagged."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            return Parsed("json", payload=json.loads(body))
        except json.JSONDecodeError as error:
            return Parsed("raw", raw=body, malformed=True, reason=f"invalid JSON: {error}")
    if media == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body, keep_blank_values=True, strict_parsing=bool(body))
        except ValueError as error:
            return Parsed("raw", raw=body, malformed=True, reason=f"invalid form body: {error}")
        return Parsed("form", payload={k: v[0] if len(v) == 1 else v for k, v in fields.items()})
    return Parsed(
        "raw", raw=body, malformed=True, reason=f"unsupported content type {media or '(none)'!r}"
    )
