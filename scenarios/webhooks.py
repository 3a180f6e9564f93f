"""Scenario for webhooks: outbound deliveries, the inbound endpoint, and aggregation.

1. Registration refuses subscriber URLs outside the allowlist with 400 and the reason.
2. Two subscriptions for a fresh tenant, pointing at a receiver this scenario runs on
   127.0.0.1: one healthy, one failing (503) for now. The receiver checks every request's
   signature and timestamp the way a subscriber would, from the documented scheme.
3. Three events: the healthy receiver gets each once, signed; the failing one gets
   MAX_ATTEMPTS attempts per event, full-jitter waits apart, then the delivery is FAILED.
   Every attempt is in the attempts table. Events in = delivered + failed-kept-for-replay.
4. A tampered body, a stale timestamp, a forged request are refused by the receiver.
5. A job SQS hands over again is not POSTed again (Powertools idempotency).
6. The receiver is fixed; replaying each FAILED delivery delivers it; replaying a DELIVERED
   one is refused (409). A subscription whose host is not allowed is refused at delivery too.
7. Inbound: JSON, form, malformed JSON and plain text posts all reach the bus (a rule sends
   them to a queue read here); the malformed ones carry their raw body and a flag.
8. Aggregation: 5 hooks for one resource inside the window cause 1 run with the latest state.
9. A malformed outbound event ends in the outbound DLQ; nothing is lost.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from bootstrap.webhooks import Webhooks
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, holds_for, unique_name
from sandbox.local_http import Reply, Request, serve
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


def run(aws: Aws, resources: Webhooks, scenario: Scenario) -> None:
    sqs, dynamodb = aws.client("sqs"), aws.client("dynamodb")
    tenant = unique_name("tenant")
    secrets: dict[str, str] = {}  # receiver path -> the secret registration returned
    broken = threading.Event()
    broken.set()
    verdicts: list[tuple[str, str, str]] = []  # (path, delivery id, "ok" or the reason)

    def respond(request: Request) -> Reply:
        """The subscriber: refuse what is not signed right, then answer (503 while broken)."""
        path = request.path.split("?", 1)[0]
        secret = secrets.get(path)
        try:
            if secret is None:
                raise ValueError(f"no subscription at {path}")
            receiver_verify(secret, _header(request, "X-Signature"), request.body, time.time())
        except ValueError as error:
            verdicts.append((path, _header(request, "X-Webhook-Id") or "", str(error)))
            return Reply(401, json.dumps({"error": str(error)}).encode())
        verdicts.append((path, _header(request, "X-Webhook-Id") or "", "ok"))
        if path == "/flaky" and broken.is_set():
            return Reply(503, b'{"error": "down for maintenance"}')
        return Reply(200, b'{"received": true}')

    def delivery(delivery_id: str) -> dict[str, Any]:
        item = dynamodb.get_item(
            TableName=resources.deliveries_table,
            Key={"id": {"S": delivery_id}},
            ConsistentRead=True,
        )["Item"]
        return {k: next(iter(v.values())) for k, v in item.items()}

    def attempts(delivery_id: str) -> list[dict[str, Any]]:
        items = dynamodb.query(
            TableName=resources.attempts_table,
            KeyConditionExpression="delivery_id = :d",
            ExpressionAttributeValues={":d": {"S": delivery_id}},
            ConsistentRead=True,
        )["Items"]
        return [{k: next(iter(v.values())) for k, v in item.items()} for item in items]

    def deliveries_of(tenant_: str) -> list[dict[str, Any]]:
        found = dynamodb.scan(
            TableName=resources.deliveries_table,
            FilterExpression="tenant = :t",
            ExpressionAttributeValues={":t": {"S": tenant_}},
            ConsistentRead=True,
        )["Items"]
        return [delivery(item["id"]["S"]) for item in found]

    def publish(event: dict[str, Any]) -> None:
        sqs.send_message(QueueUrl=resources.outbound_queue.url, MessageBody=json.dumps(event))

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
        stored = dynamodb.query(
            TableName=resources.subscriptions_table,
            KeyConditionExpression="tenant = :t",
            ExpressionAttributeValues={":t": {"S": tenant}},
        )["Count"]
        scenario.check("subscriptions stored for the refused requests", expected=0, seen=stored)

    with serve(respond) as receiver:
        with scenario.step(
            "Two subscriptions point at a receiver on 127.0.0.1 (one failing for now)"
        ):
            subscription_ids = {}
            for path, types in (("/healthy", ["*"]), ("/flaky", ["order.created"])):
                status, body = _post(
                    resources.api.url + "/subscriptions", _json(tenant, receiver.url + path, types)
                )
                scenario.check(f"register {path}", expected=201, seen=status)
                secrets[path] = body["secret"]
                subscription_ids[path] = body["id"]
            scenario.note(f"receiver at {receiver.url}; tenant {tenant}")

        with scenario.step(
            "Each event is delivered signed; a failing receiver gets N attempts, FAILED"
        ):
            events: list[dict[str, Any]] = [
                {"id": unique_name("evt"), "tenant": tenant, "type": t, "data": {"n": n}}
                for n, t in enumerate(["order.created", "order.created", "invoice.paid"])
            ]
            bad_event = f"not an event {tenant}"
            sqs.send_message_batch(
                QueueUrl=resources.outbound_queue.url,
                Entries=[
                    *({"Id": f"e{n}", "MessageBody": json.dumps(e)} for n, e in enumerate(events)),
                    {"Id": "bad", "MessageBody": bad_event},
                ],
            )
            scenario.note(
                "published 3 events (2 order.created, 1 invoice.paid) and 1 malformed one"
            )
            expected = {"/healthy": 3, "/flaky": 2}  # flaky wants order.created only
            finished = await_value(
                lambda: deliveries_of(tenant),
                until=lambda ds: len(ds) == 5 and all(d["status"] != "PENDING" for d in ds),
                timeout=45,
                waiting_for="5 deliveries to finish",
            )
            by_path = {
                path: [d for d in finished if d["subscription_id"] == sub]
                for path, sub in subscription_ids.items()
            }
            for path, count in expected.items():
                scenario.check(f"deliveries for {path}", expected=count, seen=len(by_path[path]))
            scenario.check(
                "healthy deliveries",
                expected=[("DELIVERED", 1)] * 3,
                seen=[(d["status"], int(d["attempts"])) for d in by_path["/healthy"]],
            )
            healthy_hits = receiver.to("/healthy")
            scenario.check(
                "POSTs the healthy receiver got, each verified",
                expected=["ok"] * 3,
                seen=[v for p, _, v in verdicts if p == "/healthy"],
            )
            payloads = sorted(json.loads(r.body)["id"] for r in healthy_hits)
            scenario.check(
                "event ids it received", expected=sorted(e["id"] for e in events), seen=payloads
            )

            n = resources.max_attempts
            scenario.check(
                f"failing deliveries end FAILED after {n} attempts",
                expected=[("FAILED", n, "HTTP 503")] * 2,
                seen=[
                    (d["status"], int(d["attempts"]), d["last_error"]) for d in by_path["/flaky"]
                ],
            )
            ceilings = [0.0] + [
                min(resources.backoff_cap, resources.backoff_base * 2**k) for k in range(n - 1)
            ]
            for d in by_path["/flaky"]:
                tried = sorted(attempts(d["id"]), key=lambda a: a["attempt"])
                scenario.check(
                    f"attempts recorded for {d['id']}",
                    expected=[(f"000-{i:02d}", "503") for i in range(1, n + 1)],
                    seen=[(a["attempt"], a["status_code"]) for a in tried],
                )
                waits = [float(a["waited"]) for a in tried]
                scenario.check_that(
                    "full-jitter waits within [0, min(cap, base*2^n)]",
                    all(0 <= w <= c + 1e-9 for w, c in zip(waits, ceilings, strict=True)),
                    expected=f"each <= {ceilings}",
                    seen=waits,
                )
                hits = [
                    r.at for r in receiver.to("/flaky") if _header(r, "X-Webhook-Id") == d["id"]
                ]
                gaps = [b - a for a, b in zip(hits, hits[1:], strict=False)]
                scenario.check_that(
                    "receiver saw the attempts at least the waits apart",
                    len(hits) == n
                    and all(g >= w - 0.01 for g, w in zip(gaps, waits[1:], strict=True)),
                    expected=f"{n} requests, gaps >= {waits[1:]}",
                    seen=f"{len(hits)} requests, gaps {[round(g, 3) for g in gaps]}",
                )
            statuses = Counter(d["status"] for d in finished)
            scenario.check(
                "event deliveries in = delivered + failed-kept-for-replay",
                expected=5,
                seen=statuses["DELIVERED"] + statuses["FAILED"],
            )

        with scenario.step("The receiver refuses a tampered body, a stale timestamp, a forgery"):
            sample = healthy_hits[0]
            signature = _header(sample, "X-Signature") or ""
            secret = secrets["/healthy"]
            scenario.check_that(
                "signature header shape",
                bool(signature) and signature.startswith("t=") and ",v1=" in signature,
                expected="t=<unix>,v1=<hex>",
                seen=signature,
            )
            scenario.check(
                "the genuine request", expected="ok", seen=_verdict(secret, signature, sample.body)
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
                receiver.url + "/healthy",
                sample.body,
                headers={"X-Signature": f"t={int(time.time())},v1={'0' * 64}"},
            )
            scenario.check("a forged POST to the receiver", expected=401, seen=forged_status)

        with scenario.step("A job handed over again is not POSTed again (idempotency)"):
            again = [by_path["/healthy"][0]["id"], by_path["/flaky"][0]["id"]]
            posts_before = len(receiver.requests)
            attempts_before = [len(attempts(d)) for d in again]
            for delivery_id in again:
                sqs.send_message(
                    QueueUrl=resources.deliveries_queue.url,
                    MessageBody=json.dumps({"delivery_id": delivery_id, "round": 0}),
                )
            await_value(
                lambda: depth(aws, resources.deliveries_queue.url),
                until=lambda count: count == 0,
                timeout=30,
                waiting_for="the deliveries queue to drain",
            )
            scenario.check("new POSTs", expected=0, seen=len(receiver.requests) - posts_before)
            scenario.check(
                "attempts recorded (delivered one, failed one)",
                expected=attempts_before,
                seen=[len(attempts(d)) for d in again],
            )
            keys = dynamodb.scan(
                TableName=resources.idempotency_table,
                FilterExpression="contains(#d, :d)",
                ExpressionAttributeNames={"#d": "data"},
                ExpressionAttributeValues={":d": {"S": again[0]}},
            )["Items"]
            scenario.check(
                "idempotency record of the delivered job",
                expected=["COMPLETED"],
                seen=[k["status"]["S"] for k in keys],
            )

        with scenario.step("The receiver is fixed: replaying each FAILED delivery delivers it"):
            broken.clear()
            failed = [d["id"] for d in by_path["/flaky"]]
            for delivery_id in failed:
                status, body = _post(f"{resources.api.url}/deliveries/{delivery_id}/replay", b"")
                scenario.check(
                    f"replay {delivery_id}", expected=(202, 1), seen=(status, body.get("round"))
                )
            replayed = await_value(
                lambda: [delivery(d) for d in failed],
                until=lambda ds: all(d["status"] == "DELIVERED" for d in ds),
                timeout=30,
                waiting_for="the replayed deliveries",
            )
            scenario.check(
                "replayed deliveries",
                expected=[("DELIVERED", 1, n + 1)] * 2,
                seen=[(d["status"], int(d["round"]), int(d["attempts"])) for d in replayed],
            )
            last = [sorted(attempts(d), key=lambda a: a["attempt"])[-1] for d in failed]
            scenario.check(
                "the replay's attempt",
                expected=[("001-01", "200")] * 2,
                seen=[(a["attempt"], a["status_code"]) for a in last],
            )
            flaky_ok = [p for p, _, v in verdicts if p == "/flaky" and v == "ok"]
            scenario.check(
                "POSTs the receiver refused: only the forgery",
                expected=[("/healthy", "", "signature does not match the body")],
                seen=[v for v in verdicts if v[2] != "ok"],
            )
            scenario.check("signed POSTs at /flaky", expected=2 * n + 2, seen=len(flaky_ok))
            status, body = _post(f"{resources.api.url}/deliveries/{failed[0]}/replay", b"")
            scenario.check_that(
                "replaying a DELIVERED delivery",
                status == 409 and "only FAILED" in body.get("error", ""),
                expected="409 saying only FAILED deliveries can be replayed",
                seen=f"{status} {body}",
            )
            final = Counter(d["status"] for d in deliveries_of(tenant))
            scenario.check("deliveries now", expected={"DELIVERED": 5}, seen=dict(final))

        with scenario.step("A subscription whose host is not allowed is refused at delivery too"):
            # Written straight to the table, as if the allowlist had changed since.
            other = unique_name("tenant")
            dynamodb.put_item(
                TableName=resources.subscriptions_table,
                Item={
                    "tenant": {"S": other},
                    "id": {"S": unique_name("sub")},
                    "url": {"S": "http://10.1.2.3/hook"},
                    "secret": {"S": "whsec_x"},
                    "events": {"L": [{"S": "*"}]},
                    "status": {"S": "ACTIVE"},
                },
            )
            posts_before = len(receiver.requests)
            publish({"id": unique_name("evt"), "tenant": other, "type": "order.created"})
            refused_delivery = await_value(
                lambda: deliveries_of(other),
                until=lambda ds: len(ds) == 1 and ds[0]["status"] != "PENDING",
                timeout=30,
                waiting_for="the delivery to a host off the allowlist",
            )[0]
            scenario.check(
                "delivery",
                expected=("FAILED", 0),
                seen=(refused_delivery["status"], int(refused_delivery["attempts"])),
            )
            scenario.check_that(
                "reason",
                "not on the allowlist" in refused_delivery["last_error"],
                expected="refused before sending: host ... is not on the allowlist",
                seen=refused_delivery["last_error"],
            )
            scenario.check("POSTs made", expected=0, seen=len(receiver.requests) - posts_before)

    with scenario.step("Inbound: JSON, form, malformed and plain posts all arrive on the bus"):
        source = unique_name("shop")
        posts = {
            "json": ("application/json", json.dumps({"order": source, "total": 12.5})),
            "form": ("application/x-www-form-urlencoded", f"order={source}&tag=a&tag=b"),
            "broken-json": ("application/json", f'{{"order": "{source}", '),
            "plain": ("text/plain", f"hello {source}"),
        }
        answers = {}
        for name, (content_type, text) in posts.items():
            status, body = _post(
                f"{resources.api.url}/hooks/{source}",
                text.encode(),
                headers={"Content-Type": content_type},
            )
            scenario.check(f"POST {name}", expected=202, seen=status)
            answers[body["eventId"]] = name
        taken = collect(
            aws,
            resources.inbound_queue.url,
            with_field("source", f"webhook.{source}"),
            len(posts),
            waiting_for=f"events from webhook.{source} in {resources.inbound_queue.name}",
        )
        arrived = {e["id"]: e for e in (json.loads(m["Body"]) for m in taken)}
        scenario.check(
            f"events from webhook.{source} in {resources.inbound_dlq.name}",
            expected=None,
            seen=find(aws, resources.inbound_dlq.url, with_field("source", f"webhook.{source}")),
        )
        details = {answers[event_id]: event["detail"] for event_id, event in arrived.items()}
        scenario.check(
            "event detail-type",
            expected={resources.inbound_detail_type},
            seen={e["detail-type"] for e in arrived.values()},
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
        scenario.check(
            "posts in = events on the bus (each once)",
            expected=(len(posts), len(posts)),
            seen=(len(arrived), len(taken)),
        )
        status, body = _post(f"{resources.api.url}/hooks/Bad%20Source", b"{}")
        scenario.check("a bad source name", expected=400, seen=status)

    with scenario.step(
        f"Aggregation: 5 hooks for one resource in {resources.aggregation_window} s -> 1 run"
    ):
        burst, single = unique_name("product"), unique_name("product")
        replies = []
        for version in range(1, 6):
            status, body = _post(
                f"{resources.api.url}/resources/{burst}/hooks",
                json.dumps({"version": version}).encode(),
            )
            replies.append((status, body))
        status, _ = _post(f"{resources.api.url}/resources/{single}/hooks", b'{"version": 1}')
        scenario.check("hook for a second resource", expected=202, seen=status)
        scenario.check(
            "hooks noted (status, hooks, scheduled)",
            expected=[(202, 1, True)] + [(202, n, False) for n in range(2, 6)],
            seen=[(st, b["hooks"], b["scheduled"]) for st, b in replies],
        )
        scenario.check("one window", expected=1, seen=len({b["window_id"] for _, b in replies}))

        def runs(resource: str) -> list[dict[str, Any]]:
            return dynamodb.query(
                TableName=resources.runs_table,
                KeyConditionExpression="#r = :r",
                ExpressionAttributeNames={"#r": "resource"},
                ExpressionAttributeValues={":r": {"S": resource}},
                ConsistentRead=True,
            )["Items"]

        await_value(
            lambda: runs(burst) and runs(single),
            timeout=30,
            waiting_for="a run for each resource after the delay",
        )
        ran = holds_for(lambda: runs(burst), until=lambda r: len(r) == 1, duration=1.5)
        scenario.check(
            "runs for the burst (hooks, latest state)",
            expected=[("5", {"version": 5})],
            seen=[(r["hooks"]["N"], json.loads(r["latest"]["S"])) for r in ran],
        )
        scenario.check("runs for the single hook", expected=1, seen=len(runs(single)))
        marker = dynamodb.get_item(
            TableName=resources.pending_table, Key={"resource": {"S": burst}}, ConsistentRead=True
        ).get("Item")
        scenario.check("pending marker after the run", expected=None, seen=marker)
        status, body = _post(f"{resources.api.url}/resources/{burst}/hooks", b"<xml/>")
        scenario.check_that(
            "a hook that is not JSON",
            status == 400 and "not JSON" in body.get("error", ""),
            expected="400 saying the body is not JSON",
            seen=f"{status} {body}",
        )

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
            sent=len(events) + 1,  # and the malformed one
            processed=len({d["event_id"] for d in deliveries_of(tenant)}),
            dlq=resources.outbound_dlq,
            of_run=lambda message: tenant in message["Body"],
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
    if not any(hmac.compare_digest(expected.hexdigest(), v) for v in fields.get("v1", [])):
        raise ValueError("signature does not match the body")


def _verdict(secret: str, header: str | None, body: bytes, now: float | None = None) -> str:
    try:
        receiver_verify(secret, header, body, time.time() if now is None else now)
    except ValueError as error:
        return str(error)
    return "ok"


# -- helpers ---------------------------------------------------------------------------------
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
