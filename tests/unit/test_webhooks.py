"""webhooks' pure logic: signatures, the allowlist, the backoff schedule, inbound parsing,
and the request checks of the register and dispatch handlers."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_handler

core = load_handler("webhooks", "webhooks_core")
register = load_handler("webhooks", "register")
dispatch = load_handler("webhooks", "dispatch")

SECRET = "whsec_test"
BODY = b'{"id":"evt-1","type":"order.created"}'
NOW = 1_800_000_000

# -- signatures ------------------------------------------------------------------------


def test_a_signed_body_verifies_and_the_header_has_the_documented_shape() -> None:
    header = core.sign(SECRET, BODY, NOW)
    assert header.startswith(f"t={NOW},v1=")
    assert len(header.split("v1=")[1]) == 64
    assert core.verify(SECRET, header, BODY, now=NOW + 10) == NOW


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert core.sign(SECRET, BODY, NOW) == f"t={NOW},v1={expected}"


@pytest.mark.parametrize(
    ("body", "secret", "now", "reason"),
    [
        (BODY.replace(b"order", b"refund"), SECRET, NOW, "does not match"),
        (BODY, "whsec_other", NOW, "does not match"),
        (BODY, SECRET, NOW + 301, "tolerance 300 s"),
        (BODY, SECRET, NOW - 301, "tolerance 300 s"),
    ],
)
def test_tampered_resigned_or_stale_requests_are_refused(
    body: bytes, secret: str, now: int, reason: str
) -> None:
    header = core.sign(SECRET, BODY, NOW)
    with pytest.raises(core.SignatureError, match=reason):
        core.verify(secret, header, body, now=now)


def test_a_timestamp_changed_in_the_header_breaks_the_signature() -> None:
    header = core.sign(SECRET, BODY, NOW).replace(f"t={NOW}", f"t={NOW + 5}")
    with pytest.raises(core.SignatureError, match="does not match"):
        core.verify(SECRET, header, BODY, now=NOW)


@pytest.mark.parametrize("header", [None, "", "v1=abc", f"t={NOW}", "t=soon,v1=abc", "garbage"])
def test_missing_or_malformed_headers_are_refused(header: str | None) -> None:
    with pytest.raises(core.SignatureError, match="missing|malformed"):
        core.verify(SECRET, header, BODY, now=NOW)


def test_during_rotation_either_secret_verifies() -> None:
    header = core.sign("whsec_old", BODY, NOW)
    assert core.verify(["whsec_new", "whsec_old"], header, BODY, now=NOW) == NOW


def test_the_tolerance_is_adjustable() -> None:
    header = core.sign(SECRET, BODY, NOW)
    with pytest.raises(core.SignatureError):
        core.verify(SECRET, header, BODY, now=NOW + 6, tolerance=5)


# -- allowlist -------------------------------------------------------------------------
HOSTS = ["127.0.0.1", "hooks.example.com"]
SCHEMES = ["http", "https"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://hooks.example.com/a?b=c",
        "https://HOOKS.example.com./a",
    ],
)
def test_urls_on_the_allowlist_pass(url: str) -> None:
    assert core.validate_url(url, HOSTS, SCHEMES) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "host '169.254.169.254' is not on the allow"),
        ("http://127.0.0.1.evil.example/", "not on the allowlist"),
        ("https://evil.example/#@hooks.example.com", "not on the allowlist"),
        ("https://hooks.example.com@evil.example/", "must not carry credentials"),
        ("https://user:pw@hooks.example.com/", "must not carry credentials"),
        ("ftp://127.0.0.1/hook", "scheme 'ftp' is not allowed"),
        ("127.0.0.1/hook", r"scheme '\(none\)' is not allowed"),
        ("http:///nohost", "has no host"),
        ("http://127.0.0.1:99999/", "not a valid URL"),
        ("http://127.0.0.1/a b", "whitespace"),
        ("", "non-empty string"),
        (None, "non-empty string"),
        ("https://hooks.example.com/" + "a" * 3000, "longer than"),
    ],
)
def test_urls_off_the_allowlist_are_refused_saying_why(url: object, reason: str) -> None:
    with pytest.raises(core.InvalidUrl, match=reason):
        core.validate_url(url, HOSTS, SCHEMES)


def test_https_only_by_default() -> None:
    with pytest.raises(core.InvalidUrl, match="scheme 'http' is not allowed"):
        core.validate_url("http://hooks.example.com/", HOSTS)


# -- backoff ---------------------------------------------------------------------------


def test_backoff_ceilings_double_up_to_the_cap() -> None:
    assert [core.backoff_ceiling(n, 0.2, 1.0) for n in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]


def test_equal_jitter_draws_each_delay_between_half_and_all_of_its_ceiling() -> None:
    asked: list[tuple[float, float]] = []

    def top(low: float, high: float) -> float:
        asked.append((low, high))
        return high

    assert [core.retry_delay(n, 1, 4, rand=top) for n in range(4)] == [1, 2, 4, 4]
    assert asked == [(0.0, 0.5), (0.0, 1.0), (0.0, 2.0), (0.0, 2.0)]


def test_a_retry_delay_is_whole_seconds_never_zero_and_within_sqs_limit() -> None:
    bottom = lambda low, high: low  # noqa: E731 - the smallest draw
    assert core.retry_delay(0, 0.2, 1, rand=bottom) == 1  # half of 0.2 s rounds up to 1 s
    assert core.retry_delay(20, 1, 10_000, rand=bottom) == 900  # SQS's longest DelaySeconds


def test_real_delays_stay_in_range() -> None:
    for _ in range(200):
        delays = [core.retry_delay(n, 1, 4) for n in range(4)]
        assert all(isinstance(d, int) for d in delays)
        assert all(1 <= d <= c for d, c in zip(delays, [1, 2, 4, 4], strict=True))


# -- inbound bodies --------------------------------------------------------------------


def test_json_posts_become_a_payload() -> None:
    parsed = core.parse_inbound("application/json; charset=utf-8", '{"a": [1, 2]}')
    assert parsed.detail() == {"format": "json", "malformed": False, "payload": {"a": [1, 2]}}
    assert core.parse_inbound("application/vnd.github+json", "[]").payload == []


def test_form_posts_become_fields_repeated_ones_a_list() -> None:
    parsed = core.parse_inbound("application/x-www-form-urlencoded", "a=1&b=x+y&b=%26&c=")
    assert parsed.format == "form"
    assert parsed.payload == {"a": "1", "b": ["x y", "&"], "c": ""}
    assert core.parse_inbound("application/x-www-form-urlencoded", "").payload == {}


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("application/json", '{"a": ', "invalid JSON"),
        ("application/x-www-form-urlencoded", "a=1&novalue", "invalid form body"),
        ("text/plain", "hello", "unsupported content type 'text/plain'"),
        (None, "hello", "unsupported content type '(none)'"),
    ],
)
def test_other_bodies_are_forwarded_raw_and_flagged(
    content_type: str | None, body: str, reason: str
) -> None:
    detail = core.parse_inbound(content_type, body).detail()
    assert detail["malformed"] is True
    assert detail["format"] == "raw"
    assert detail["raw"] == body
    assert reason in detail["reason"]


def test_base64_bodies_are_decoded() -> None:
    assert core.decode_body("eyJhIjogMX0=", True) == '{"a": 1}'
    assert core.decode_body(None, False) == ""


# -- handler request checks ------------------------------------------------------------


def test_a_good_registration_is_normalised() -> None:
    body = json.dumps({"tenant": "t", "url": "http://127.0.0.1:1/h", "events": ["b", "a", "a"]})
    assert register.parse_subscription(body, HOSTS, SCHEMES) == {
        "tenant": "t",
        "url": "http://127.0.0.1:1/h",
        "events": ["a", "b"],
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{", "not JSON"),
        ("[]", "JSON object"),
        (json.dumps({"url": "http://127.0.0.1/", "events": ["a"]}), "'tenant'"),
        (json.dumps({"tenant": "t", "url": "http://127.0.0.1/", "events": []}), "'events'"),
        (json.dumps({"tenant": "t", "url": "http://10.0.0.1/", "events": ["a"]}), "allowlist"),
    ],
)
def test_bad_registrations_are_refused_saying_why(body: str, reason: str) -> None:
    with pytest.raises(register.InvalidSubscription, match=reason):
        register.parse_subscription(body, HOSTS, SCHEMES)


def test_one_event_for_one_subscription_is_always_the_same_delivery() -> None:
    assert dispatch.delivery_id("e1", "s1") == dispatch.delivery_id("e1", "s1")
    assert dispatch.delivery_id("e1", "s1") != dispatch.delivery_id("e1", "s2")


def test_subscriptions_get_the_types_they_asked_for() -> None:
    assert dispatch.wants({"status": "ACTIVE", "events": ["a"]}, "a")
    assert dispatch.wants({"status": "ACTIVE", "events": ["*"]}, "b")
    assert not dispatch.wants({"status": "ACTIVE", "events": ["a"]}, "b")
    assert not dispatch.wants({"status": "DISABLED", "events": ["*"]}, "a")


def test_outbound_events_missing_fields_are_refused() -> None:
    with pytest.raises(dispatch.MalformedEvent, match="missing: tenant, type"):
        dispatch.parse_event(json.dumps({"id": "e"}))
    with pytest.raises(dispatch.MalformedEvent, match="not JSON"):
        dispatch.parse_event("nope")
