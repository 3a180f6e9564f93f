"""Scenario for webhooks: outbound deliveries, the inbound endpoint, and aggregation.

1. Registration refuses subscriber URLs outside the allowlist with 400 and the reason.
2. Two subscriptions for a fresh tenant, pointing at a receiver this scenario runs on
   127.0.0.1: one healthy, one failing (503) for now. The receiver checks every request's
   signature and timestamp the way a subscriber would, from the documented scheme.
3. Three events: the healthy receiver gets each once, signed; the failing one gets
   MAX_ATTEMPTS attempts per event, then the delivery is FAILED. Each attempt is its own
   invocation of the deliver function: a failed one is re-queued with SQS DelaySeconds
   (no Lambda waits), and the attempts table shows them at least their delays apart.
4. A tampered body, a stale timestamp, a forged request are refused by the receiver.
5. A job SQS hands over again is not POSTed again (Powertools idempotency).
6. The receiver is fixed; replaying each FAILED delivery delivers it; replaying a DELIVERED
   one is refused (409). A subscription whose host is not allowed is refused at delivery too.
7. Inbound: signed JSON, form, malformed JSON and plain text posts all reach the bus (a rule
   sends them to a queue read here); the malformed ones carry their raw body and a flag.
   Unsigned, wrongly signed and tampered posts get 401, a post from an unknown sender 403,
   and none of them reaches the bus.
8. Aggregation: 5 hooks for one resource inside the window cause 1 run with the latest state.
9. A malformed outbound event ends in the outbound DLQ; nothing is lost.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets as secrets_module
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bootstrap.webhooks import Webhooks
from sandbox import items
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, holds_for, unique_name
from sandbox.local_http import LocalServer, Reply, Request, serve
from sandbox.observe import (
    check_dead_lettered,
    check_nothing_lost,
    collect,
    depth,
    find,
    with_body,
    with_field,
)

TOLERANCE = 300  # seconds the receiver accepts a signature's timestamp
EVENT_TYPES = ["order.created", "order.created", "invoice.paid"]
EXPECTED_DELIVERIES = {"/healthy": 3, "/flaky": 2}  # flaky wants order.created only


@dataclass
class Subscriber:
    """The scenario's stand-in subscriber: the secrets registration returned (by path), a
    switch that makes /flaky answer 503, and a verdict per request it got."""

    secrets: dict[str, str] = field(default_factory=dict)
    broken: threading.Event = field(default_factory=threading.Event)
    verdicts: list[tuple[str, str, str]] = field(default_factory=list)  # path, id, verdict

    def respond(self, request: Request) -> Reply:
        """Refuse what is not signed right, then answer (503 at /flaky while broken)."""
        path = request.path.split("?", 1)[0]
        secret = self.secrets.get(path)
        delivery_id = _header(request, "X-Webhook-Id") or ""
        try:
            if secret is None:
                raise ValueError(f"no subscription at {path}")
            receiver_verify(secret, _header(request, "X-Signature"), request.body, time.time())
        except ValueError as error:
            self.verdicts.append((path, delivery_id, str(error)))
            return Reply(401, json.dumps({"error": str(error)}).encode())
        self.verdicts.append((path, delivery_id, "ok"))
        if path == "/flaky" and self.broken.is_set():
            return Reply(503, b'{"error": "down for maintenance"}')
        return Reply(200, b'{"received": true}')


@dataclass(frozen=True)
class Outbound:
    """What the outbound steps share: the tenant, its subscriptions and what was sent."""

    tenant: str
    receiver: LocalServer
    subscriber: Subscriber
    subscription_ids: dict[str, str]  # path -> subscription id
    events: list[dict[str, Any]]
    bad_event: str
    # The deliveries queue's delayed messages, sampled while the deliveries ran.
    delayed_samples: list[int] = field(default_factory=list)


def run(aws: Aws, resources: Webhooks, scenario: Scenario) -> None:
    tenant = unique_name("tenant")
    registration_refuses_urls_off_the_allowlist(aws, resources, scenario, tenant)
    subscriber = Subscriber()
    subscriber.broken.set()
    with serve(subscriber.respond) as receiver:
        subscription_ids = register_two_subscriptions(
            resources, scenario, tenant, receiver, subscriber
        )
        outbound = publish_events(
            aws, resources, scenario, tenant, receiver, subscriber, subscription_ids
        )
        by_path = deliveries_end_delivered_or_failed(aws, resources, scenario, outbound)
        failing_receiver_gets_delayed_retries(aws, resources, scenario, outbound, by_path)
        receiver_refuses_tampered_requests(scenario, outbound)
        redelivered_job_is_not_posted_again(aws, resources, scenario, outbound, by_path)
        replay_delivers_failed_deliveries(aws, resources, scenario, outbound, by_path)
        host_off_the_allowlist_is_refused_at_delivery(aws, resources, scenario, receiver)
    signed_inbound_posts_reach_the_bus(aws, resources, scenario)
    aggregation_collapses_a_burst(aws, resources, scenario)
    malformed_outbound_event_is_dead_lettered(aws, resources, scenario, tenant)


def registration_refuses_urls_off_the_allowlist(
    aws: Aws, resources: Webhooks, scenario: Scenario, tenant: str
) -> None:
    with scenario.step("Registration refuses URLs outside the allowlist (400 with the reason)"):
        refused = {
            "http://169.254.169.254/latest/meta-data/": "not on the allowlist",
            "http://127.0.0.1.evil.example/hook": "not on the allowlist",
            "ftp://127.0.0.1/hook": "scheme 'ftp' is not allowed",
            "http://user:pw@127.0.0.1/hook": "must not carry credentials",
        }
        for url, reason in refused.items():
            status, body = _post(resources.api.url + "/subscriptions", _json(tenant, url, ["*"]))
            scenario.check_that(
                f"{url} -> {status}",
                status == 400 and reason in body.get("error", ""),
                expected=f"400 saying '{reason}'",
                seen=f"{status} {body}",
            )
        status, body = _post(resources.api.url + "/subscriptions", b"{not json")
        scenario.check("a body that is not JSON", expected=400, seen=status)
        stored = items.query(
            aws,
            resources.subscriptions_table,
            KeyConditionExpression="tenant = :t",
            ExpressionAttributeValues={":t": {"S": tenant}},
        )
        scenario.check(
            "subscriptions stored for the refused requests", expected=0, seen=len(stored)
        )


def register_two_subscriptions(
    resources: Webhooks,
    scenario: Scenario,
    tenant: str,
    receiver: LocalServer,
    subscriber: Subscriber,
) -> dict[str, str]:
    """Returns the subscription id of each receiver path."""
    with scenario.step("Two subscriptions point at a receiver on 127.0.0.1 (one failing for now)"):
        subscription_ids = {}
        for path, types in (("/healthy", ["*"]), ("/flaky", ["order.created"])):
            status, body = _post(
                resources.api.url + "/subscriptions", _json(tenant, receiver.url + path, types)
            )
            scenario.check(f"register {path}", expected=201, seen=status)
            subscriber.secrets[path] = body["secret"]
            subscription_ids[path] = body["id"]
        scenario.note(f"receiver at {receiver.url}; tenant {tenant}")
    return subscription_ids


def publish_events(
    aws: Aws,
    resources: Webhooks,
    scenario: Scenario,
    tenant: str,
    receiver: LocalServer,
    subscriber: Subscriber,
    subscription_ids: dict[str, str],
) -> Outbound:
    with scenario.step("Three events and a malformed one are published"):
        events: list[dict[str, Any]] = [
            {"id": unique_name("evt"), "tenant": tenant, "type": event_type, "data": {"n": number}}
            for number, event_type in enumerate(EVENT_TYPES)
        ]
        bad_event = f"not an event {tenant}"
        aws.client("sqs").send_message_batch(
            QueueUrl=resources.outbound_queue.url,
            Entries=[
                *(
                    {"Id": f"e{number}", "MessageBody": json.dumps(event)}
                    for number, event in enumerate(events)
                ),
                {"Id": "bad", "MessageBody": bad_event},
            ],
        )
        scenario.note("published 3 events (2 order.created, 1 invoice.paid) and 1 malformed one")
    return Outbound(tenant, receiver, subscriber, subscription_ids, events, bad_event)


def deliveries_end_delivered_or_failed(
    aws: Aws, resources: Webhooks, scenario: Scenario, outbound: Outbound
) -> dict[str, list[dict[str, Any]]]:
    """Returns the finished deliveries of each receiver path."""
    with scenario.step("Each event is delivered signed; the failing receiver's end FAILED"):

        def deliveries_now() -> list[items.Item]:
            attributes = aws.client("sqs").get_queue_attributes(
                QueueUrl=resources.deliveries_queue.url,
                AttributeNames=["ApproximateNumberOfMessagesDelayed"],
            )["Attributes"]
            outbound.delayed_samples.append(int(attributes["ApproximateNumberOfMessagesDelayed"]))
            return _deliveries_of(aws, resources, outbound.tenant)

        finished = await_value(
            deliveries_now,
            until=lambda found: len(found) == sum(EXPECTED_DELIVERIES.values())
            and all(delivery["status"] in ("DELIVERED", "FAILED") for delivery in found),
            timeout=120,  # 3 attempts with their delays, on a loaded machine
            waiting_for="5 deliveries to finish",
        )
        by_path = {
            path: [
                delivery for delivery in finished if delivery["subscription_id"] == subscription_id
            ]
            for path, subscription_id in outbound.subscription_ids.items()
        }
        for path, count in EXPECTED_DELIVERIES.items():
            scenario.check(f"deliveries for {path}", expected=count, seen=len(by_path[path]))
        scenario.check(
            "healthy deliveries (status, attempts)",
            expected=[("DELIVERED", 1)] * 3,
            seen=[(delivery["status"], delivery["attempts"]) for delivery in by_path["/healthy"]],
        )
        scenario.check(
            "POSTs the healthy receiver got, each verified",
            expected=["ok"] * 3,
            seen=[
                verdict for path, _, verdict in outbound.subscriber.verdicts if path == "/healthy"
            ],
        )
        scenario.check(
            "event ids it received",
            expected=sorted(event["id"] for event in outbound.events),
            seen=sorted(
                json.loads(request.body)["id"] for request in outbound.receiver.to("/healthy")
            ),
        )
        attempts = resources.max_attempts
        scenario.check(
            f"failing deliveries end FAILED after {attempts} attempts",
            expected=[("FAILED", attempts, "HTTP 503")] * 2,
            seen=[
                (delivery["status"], delivery["attempts"], delivery["last_error"])
                for delivery in by_path["/flaky"]
            ],
        )
        statuses = Counter(delivery["status"] for delivery in finished)
        scenario.note(f"deliveries: {dict(statuses)} (FAILED ones are kept for replay)")
    return by_path


def failing_receiver_gets_delayed_retries(
    aws: Aws,
    resources: Webhooks,
    scenario: Scenario,
    outbound: Outbound,
    by_path: dict[str, list[dict[str, Any]]],
) -> None:
    attempts = resources.max_attempts
    with scenario.step(
        "Each retry was its own invocation, re-queued with a delay (no Lambda waits)"
    ):
        scenario.check_that(
            "retries seen waiting as delayed messages on the deliveries queue",
            max(outbound.delayed_samples, default=0) >= 1,
            expected="at least 1 delayed message at some point",
            seen=f"most at once: {max(outbound.delayed_samples, default=0)} "
            f"({len(outbound.delayed_samples)} samples)",
        )
        for delivery in by_path["/flaky"]:
            tried = sorted(
                _attempts(aws, resources, delivery["id"]), key=lambda attempt: attempt["attempt"]
            )
            scenario.check(
                f"attempts recorded for {delivery['id']}",
                expected=[(f"000-{number:02d}", 503) for number in range(1, attempts + 1)],
                seen=[(attempt["attempt"], attempt["status_code"]) for attempt in tried],
            )
            invocations = {attempt["invocation"] for attempt in tried}
            scenario.check_that(
                "each attempt ran in an invocation of its own",
                len(invocations) == attempts and "" not in invocations,
                expected=f"{attempts} distinct request ids",
                seen=sorted(invocations),
            )
            delays = [attempt["delay"] for attempt in tried]
            ceilings = [
                min(resources.backoff_cap, resources.backoff_base * 2**retry)
                for retry in range(attempts - 1)
            ]
            scenario.check_that(
                "delays the handler re-queued with: none first, then backoff",
                delays[0] == 0
                and all(
                    ceiling / 2 <= delay <= ceiling + 1
                    for delay, ceiling in zip(delays[1:], ceilings, strict=True)
                ),
                expected=f"0, then each in [ceiling/2, ceiling] of {ceilings} (whole seconds)",
                seen=delays,
            )
            ran_at = [float(attempt["at"]) for attempt in tried]
            gaps = [
                round(later - earlier, 3)
                for earlier, later in zip(ran_at, ran_at[1:], strict=False)
            ]
            scenario.check_that(
                "attempts at least their delays apart",
                all(gap >= delay for gap, delay in zip(gaps, delays[1:], strict=True)),
                expected=f"gaps >= {delays[1:]} s",
                seen=gaps,
            )
            hits = [
                request.at
                for request in outbound.receiver.to("/flaky")
                if _header(request, "X-Webhook-Id") == delivery["id"]
            ]
            received_gaps = [
                round(later - earlier, 3) for earlier, later in zip(hits, hits[1:], strict=False)
            ]
            scenario.check_that(
                "the receiver saw them at least the delays apart",
                len(hits) == attempts
                and all(
                    gap >= delay for gap, delay in zip(received_gaps, delays[1:], strict=False)
                ),
                expected=f"{attempts} requests, gaps >= {delays[1:]} s",
                seen=f"{len(hits)} requests, gaps {received_gaps}",
            )


def receiver_refuses_tampered_requests(scenario: Scenario, outbound: Outbound) -> None:
    with scenario.step("The receiver refuses a tampered body, a stale timestamp, a forgery"):
        sample = outbound.receiver.to("/healthy")[0]
        signature = _header(sample, "X-Signature") or ""
        secret = outbound.subscriber.secrets["/healthy"]
        scenario.check_that(
            "signature header shape",
            bool(signature) and signature.startswith("t=") and ",v1=" in signature,
            expected="t=<unix>,v1=<hex>",
            seen=signature,
        )
        tampered = sample.body.replace(b'"n":', b'"n":9')
        scenario.check(
            "the body changed",
            expected="signature does not match the body",
            seen=_verdict(secret, signature, tampered),
        )
        later = time.time() + TOLERANCE + 60
        seen = _verdict(secret, signature, sample.body, now=later)
        scenario.check_that(
            f"the same request {TOLERANCE + 60} s later",
            "tolerance" in seen,
            expected="refused: outside the tolerance",
            seen=seen,
        )
        forged_status, _ = _post(
            outbound.receiver.url + "/healthy",
            sample.body,
            headers={"X-Signature": f"t={int(time.time())},v1={'0' * 64}"},
        )
        scenario.check("a forged POST to the receiver", expected=401, seen=forged_status)


def redelivered_job_is_not_posted_again(
    aws: Aws,
    resources: Webhooks,
    scenario: Scenario,
    outbound: Outbound,
    by_path: dict[str, list[dict[str, Any]]],
) -> None:
    with scenario.step("A job handed over again is not POSTed again (idempotency)"):
        again = [by_path["/healthy"][0]["id"], by_path["/flaky"][0]["id"]]
        posts_before = len(outbound.receiver.requests)
        attempts_before = [len(_attempts(aws, resources, delivery_id)) for delivery_id in again]
        for delivery_id in again:
            aws.client("sqs").send_message(
                QueueUrl=resources.deliveries_queue.url,
                MessageBody=json.dumps({"delivery_id": delivery_id, "round": 0, "attempt": 1}),
            )
        await_value(
            lambda: depth(aws, resources.deliveries_queue.url),
            until=lambda count: count == 0,
            timeout=30,
            waiting_for="the deliveries queue to drain",
        )
        scenario.check("new POSTs", expected=0, seen=len(outbound.receiver.requests) - posts_before)
        scenario.check(
            "attempts recorded (delivered one, failed one)",
            expected=attempts_before,
            seen=[len(_attempts(aws, resources, delivery_id)) for delivery_id in again],
        )
        records = items.scan(
            aws,
            resources.idempotency_table,
            FilterExpression="contains(#d, :d)",
            ExpressionAttributeNames={"#d": "data"},
            ExpressionAttributeValues={":d": {"S": again[0]}},
        )
        scenario.check(
            "idempotency record of the delivered job",
            expected=["COMPLETED"],
            seen=[record["status"] for record in records],
        )


def replay_delivers_failed_deliveries(
    aws: Aws,
    resources: Webhooks,
    scenario: Scenario,
    outbound: Outbound,
    by_path: dict[str, list[dict[str, Any]]],
) -> None:
    attempts = resources.max_attempts
    with scenario.step("The receiver is fixed: replaying each FAILED delivery delivers it"):
        outbound.subscriber.broken.clear()
        failed = [delivery["id"] for delivery in by_path["/flaky"]]
        for delivery_id in failed:
            status, body = _post(f"{resources.api.url}/deliveries/{delivery_id}/replay", b"")
            scenario.check(
                f"replay {delivery_id}", expected=(202, 1), seen=(status, body.get("round"))
            )
        replayed = await_value(
            lambda: [_delivery(aws, resources, delivery_id) for delivery_id in failed],
            until=lambda found: all(delivery["status"] == "DELIVERED" for delivery in found),
            timeout=30,
            waiting_for="the replayed deliveries",
        )
        scenario.check(
            "replayed deliveries (round, attempts)",
            expected=[(1, attempts + 1)] * 2,
            seen=[(delivery["round"], delivery["attempts"]) for delivery in replayed],
        )
        last = [
            sorted(_attempts(aws, resources, delivery_id), key=lambda attempt: attempt["attempt"])[
                -1
            ]
            for delivery_id in failed
        ]
        scenario.check(
            "the replay's attempt",
            expected=[("001-01", 200)] * 2,
            seen=[(attempt["attempt"], attempt["status_code"]) for attempt in last],
        )
        verdicts = outbound.subscriber.verdicts
        scenario.check(
            "POSTs the receiver refused: only the forgery",
            expected=[("/healthy", "", "signature does not match the body")],
            seen=[verdict for verdict in verdicts if verdict[2] != "ok"],
        )
        scenario.check(
            "signed POSTs at /flaky",
            expected=2 * attempts + 2,
            seen=len(
                [verdict for verdict in verdicts if verdict[0] == "/flaky" and verdict[2] == "ok"]
            ),
        )
        status, body = _post(f"{resources.api.url}/deliveries/{failed[0]}/replay", b"")
        scenario.check_that(
            "replaying a DELIVERED delivery",
            status == 409 and "only FAILED" in body.get("error", ""),
            expected="409 saying only FAILED deliveries can be replayed",
            seen=f"{status} {body}",
        )
        final = Counter(
            delivery["status"] for delivery in _deliveries_of(aws, resources, outbound.tenant)
        )
        scenario.check("deliveries now", expected={"DELIVERED": 5}, seen=dict(final))


def host_off_the_allowlist_is_refused_at_delivery(
    aws: Aws, resources: Webhooks, scenario: Scenario, receiver: LocalServer
) -> None:
    with scenario.step("A subscription whose host is not allowed is refused at delivery too"):
        # Written straight to the table, as if the allowlist had changed since.
        other = unique_name("tenant")
        aws.client("dynamodb").put_item(
            TableName=resources.subscriptions_table,
            Item=items.wire(
                {
                    "tenant": other,
                    "id": unique_name("sub"),
                    "url": "http://10.1.2.3/hook",
                    "secret": "whsec_x",
                    "events": ["*"],
                    "status": "ACTIVE",
                }
            ),
        )
        posts_before = len(receiver.requests)
        aws.client("sqs").send_message(
            QueueUrl=resources.outbound_queue.url,
            MessageBody=json.dumps(
                {"id": unique_name("evt"), "tenant": other, "type": "order.created"}
            ),
        )
        refused = await_value(
            lambda: _deliveries_of(aws, resources, other),
            until=lambda found: len(found) == 1 and found[0]["status"] != "PENDING",
            timeout=30,
            waiting_for="the delivery to a host off the allowlist",
        )[0]
        scenario.check(
            "delivery (status, attempts)",
            expected=("FAILED", 0),
            seen=(refused["status"], refused["attempts"]),
        )
        scenario.check_that(
            "reason",
            "not on the allowlist" in refused["last_error"],
            expected="refused before sending: host ... is not on the allowlist",
            seen=refused["last_error"],
        )
        scenario.check("POSTs made", expected=0, seen=len(receiver.requests) - posts_before)


def signed_inbound_posts_reach_the_bus(aws: Aws, resources: Webhooks, scenario: Scenario) -> None:
    with scenario.step(
        "Inbound: signed JSON, form, malformed and plain posts reach the bus; "
        "unsigned, wrongly signed and unknown senders are refused"
    ):
        source, stranger = unique_name("shop"), unique_name("stranger")
        secret = f"whsec_{secrets_module.token_hex(16)}"
        aws.client("dynamodb").put_item(  # the sender's secret, as an operator registers it
            TableName=resources.inbound_senders_table,
            Item=items.wire({"source": source, "secret": secret}),
        )
        url = f"{resources.api.url}/hooks/{source}"

        def refused_body(name: str) -> bytes:
            return json.dumps({"refused": f"{name} {source}"}).encode()

        stale = time.time() - 2 * TOLERANCE
        refused: dict[str, tuple[str, bytes, str | None]] = {  # url, body, X-Signature
            "unsigned": (url, refused_body("unsigned"), None),
            "wrong secret": (
                url,
                refused_body("wrong"),
                _sign("whsec_wrong", refused_body("wrong")),
            ),
            "tampered": (url, refused_body("tampered"), _sign(secret, b'{"refused": "original"}')),
            f"signed {2 * TOLERANCE} s ago": (
                url,
                refused_body("stale"),
                _sign(secret, refused_body("stale"), at=stale),
            ),
            "unknown sender": (
                f"{resources.api.url}/hooks/{stranger}",
                b"{}",
                _sign(secret, b"{}"),
            ),
        }
        for name, (target, body, signature) in refused.items():
            headers = {"Content-Type": "application/json"}
            if signature is not None:
                headers["X-Signature"] = signature
            status, answer = _post(target, body, headers=headers)
            scenario.check(
                f"POST {name}",
                expected=403 if name == "unknown sender" else 401,
                seen=status,
            )
            scenario.note(f"{name}: {answer.get('error')}")

        posts = {
            "json": ("application/json", json.dumps({"order": source, "total": 12.5})),
            "form": ("application/x-www-form-urlencoded", f"order={source}&tag=a&tag=b"),
            "broken-json": ("application/json", f'{{"order": "{source}", '),
            "plain": ("text/plain", f"hello {source}"),
        }
        answers = {}
        for name, (content_type, text) in posts.items():
            status, accepted = _post(
                url,
                text.encode(),
                headers={"Content-Type": content_type, "X-Signature": _sign(secret, text.encode())},
            )
            scenario.check(f"POST {name}, signed", expected=202, seen=status)
            answers[accepted.get("eventId")] = name
        taken = collect(
            aws,
            resources.inbound_queue.url,
            with_field("source", f"webhook.{source}"),
            len(posts),
            waiting_for=f"events from webhook.{source} in {resources.inbound_queue.name}",
        )

        def from_this_run(message: dict[str, Any]) -> bool:
            return source in message["Body"] or stranger in message["Body"]

        holds_for(
            lambda: find(aws, resources.inbound_queue.url, from_this_run),
            until=lambda found: found is None,
            duration=2,
        )
        arrived = {
            event["id"]: event for event in (json.loads(message["Body"]) for message in taken)
        }
        scenario.check(
            "posts in = events on the bus (each once; none of the refused ones)",
            expected=sorted(posts),
            seen=sorted(answers.get(event_id, f"unexpected {event_id}") for event_id in arrived)
            + ([] if len(taken) == len(arrived) else ["a duplicate"]),
        )
        scenario.check(
            f"events from webhook.{source} in {resources.inbound_dlq.name}",
            expected=None,
            seen=find(aws, resources.inbound_dlq.url, with_field("source", f"webhook.{source}")),
        )
        details = {answers[event_id]: event["detail"] for event_id, event in arrived.items()}
        scenario.check(
            "event detail-type",
            expected={resources.inbound_detail_type},
            seen={event["detail-type"] for event in arrived.values()},
        )
        scenario.check(
            "json payload",
            expected={"order": source, "total": 12.5},
            seen=details["json"]["payload"],
        )
        scenario.check(
            "form payload",
            expected={"order": source, "tag": ["a", "b"]},
            seen=details["form"]["payload"],
        )
        for name in ("broken-json", "plain"):
            got = details[name]
            scenario.check(
                f"{name}: flagged, raw body kept",
                expected=(True, "raw", posts[name][1]),
                seen=(got["malformed"], got["format"], got["raw"]),
            )
            scenario.note(f"{name} reason: {got['reason']}")
        status, _ = _post(f"{resources.api.url}/hooks/Bad%20Source", b"{}")
        scenario.check("a bad source name", expected=400, seen=status)


def aggregation_collapses_a_burst(aws: Aws, resources: Webhooks, scenario: Scenario) -> None:
    with scenario.step(
        f"Aggregation: 5 hooks for one resource in {resources.aggregation_window} s -> 1 run"
    ):
        burst, single = unique_name("product"), unique_name("product")
        replies, delayed_after_first = [], -1
        for version in range(1, 6):
            status, body = _post(
                f"{resources.api.url}/resources/{burst}/hooks",
                json.dumps({"version": version}).encode(),
            )
            replies.append((status, body))
            if version == 1:  # its window's run is scheduled, held back by the queue's delay
                delayed_after_first = _delayed(aws, resources.delay_queue.url)
        status, _ = _post(f"{resources.api.url}/resources/{single}/hooks", b'{"version": 1}')
        scenario.check("hook for a second resource", expected=202, seen=status)
        scenario.check(
            "hooks noted (status, hooks, scheduled)",
            expected=[(202, 1, True)] + [(202, count, False) for count in range(2, 6)],
            seen=[(code, body["hooks"], body["scheduled"]) for code, body in replies],
        )
        scenario.check(
            "one window", expected=1, seen=len({body["window_id"] for _, body in replies})
        )
        scenario.check_that(
            "the first hook's run waits on the delay queue (messages delayed)",
            delayed_after_first >= 1,
            expected=f">= 1, for the {resources.aggregation_window} s window",
            seen=delayed_after_first,
        )

        def runs(resource: str) -> list[items.Item]:
            return items.query(
                aws,
                resources.runs_table,
                KeyConditionExpression="#r = :r",
                ExpressionAttributeNames={"#r": "resource"},
                ExpressionAttributeValues={":r": {"S": resource}},
                ConsistentRead=True,
            )

        await_value(
            lambda: runs(burst) and runs(single),
            timeout=30,
            waiting_for="a run for each resource after the delay",
        )
        ran = holds_for(lambda: runs(burst), until=lambda found: len(found) == 1, duration=1.5)
        scenario.check(
            "runs for the burst (hooks, latest state)",
            expected=[(5, {"version": 5})],
            seen=[(found["hooks"], json.loads(found["latest"])) for found in ran],
        )
        scenario.check("runs for the single hook", expected=1, seen=len(runs(single)))
        marker = items.get(aws, resources.pending_table, {"resource": burst})
        scenario.check("pending marker after the run", expected=None, seen=marker)
        status, body = _post(f"{resources.api.url}/resources/{burst}/hooks", b"<xml/>")
        scenario.check_that(
            "a hook that is not JSON",
            status == 400 and "not JSON" in body.get("error", ""),
            expected="400 saying the body is not JSON",
            seen=f"{status} {body}",
        )


def malformed_outbound_event_is_dead_lettered(
    aws: Aws, resources: Webhooks, scenario: Scenario, tenant: str
) -> None:
    bad_event = f"not an event {tenant}"
    with scenario.step("The malformed outbound event ended in the DLQ; nothing lost"):
        check_dead_lettered(
            scenario,
            aws,
            resources.outbound_dlq,
            with_body(bad_event),
            max_receive_count=resources.max_receive_count,
            timeout=40,
            keep=True,
        )
        check_nothing_lost(
            scenario,
            aws,
            sent=len(EVENT_TYPES) + 1,  # and the malformed one
            processed=len(
                {delivery["event_id"] for delivery in _deliveries_of(aws, resources, tenant)}
            ),
            dlq=resources.outbound_dlq,
            of_run=lambda message: tenant in message["Body"],
        )


# -- reading the tables ------------------------------------------------------------------------
def _delayed(aws: Aws, queue_url: str) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesDelayed"])


def _delivery(aws: Aws, resources: Webhooks, delivery_id: str) -> items.Item:
    return items.get(aws, resources.deliveries_table, {"id": delivery_id}) or {}


def _attempts(aws: Aws, resources: Webhooks, delivery_id: str) -> list[items.Item]:
    return items.query(
        aws,
        resources.attempts_table,
        KeyConditionExpression="delivery_id = :d",
        ExpressionAttributeValues={":d": {"S": delivery_id}},
        ConsistentRead=True,
    )


def _deliveries_of(aws: Aws, resources: Webhooks, tenant: str) -> list[items.Item]:
    return items.scan(
        aws,
        resources.deliveries_table,
        FilterExpression="tenant = :t",
        ExpressionAttributeValues={":t": {"S": tenant}},
        ConsistentRead=True,
    )


# -- the receiver's check, written from the documented scheme (not the sender's code) -------
def receiver_verify(secret: str, header: str | None, body: bytes, now: float) -> None:
    """Raise ValueError unless `header` is `t=<unix>,v1=<hex>` with a fresh t and a v1 equal
    to HMAC-SHA256(secret, "<t>.<body>")."""
    if not header:
        raise ValueError("missing X-Signature")
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.partition("=")
        fields.setdefault(key.strip(), []).append(value.strip())
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError) as error:
        raise ValueError(f"malformed X-Signature {header!r}") from error
    if abs(now - timestamp) > TOLERANCE:
        raise ValueError(f"timestamp outside the tolerance of {TOLERANCE} s")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    if not any(hmac.compare_digest(expected.hexdigest(), given) for given in fields.get("v1", [])):
        raise ValueError("signature does not match the body")


def _verdict(secret: str, header: str | None, body: bytes, now: float | None = None) -> str:
    try:
        receiver_verify(secret, header, body, time.time() if now is None else now)
    except ValueError as error:
        return str(error)
    return "ok"


# -- helpers ---------------------------------------------------------------------------------
def _sign(secret: str, body: bytes, at: float | None = None) -> str:
    """An X-Signature for an inbound post, made from the documented scheme (signed now, or
    `at`)."""
    timestamp = int(time.time() if at is None else at)
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def _json(tenant: str, url: str, events: list[str]) -> bytes:
    return json.dumps({"tenant": tenant, "url": url, "events": events}).encode()


def _header(request: Request, name: str) -> str | None:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return value
    return None


def _post(
    url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """POST and return (status, JSON body or {})."""
    request = urllib.request.Request(
        url,
        data=body,
        headers=headers or {"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    try:
        parsed = json.loads(text or b"{}")
    except json.JSONDecodeError:
        parsed = {"text": text.decode(errors="replace")}
    return status, parsed if isinstance(parsed, dict) else {"value": parsed}
