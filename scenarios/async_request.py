"""Scenario for async-request: a client posts work, gets an id at once, checks its status
while the work is pending, and hears about the completion exactly once: on a subscriber
queue, and on its own webhook endpoint through an SNS HTTP subscription.

1. The client's endpoint subscribes to the completion topic; SNS sends a
   SubscriptionConfirmation and the endpoint confirms by fetching its SubscribeURL.
2. POST /requests answers 202 with an id before the work is done.
3. While the worker holds the request (its test-only hold, released by the scenario), GET
   /status/{id} says PENDING and GET /result/{id} is 404 saying PENDING.
4. Released, status goes COMPLETE and the result is 200.
5. The completion reaches the subscriber queue once and the client's webhook once.
6. The same request delivered twice more (SQS is at-least-once): the worker consumes both
   copies, the status row keeps its first completion time, and no second message is published.
7. What the worker cannot finish is tried twice, then lands in the DLQ, sent together so
   the retries overlap: a request whose result DynamoDB refuses (its row, padded by the
   scenario, has no room left) reaches it two visibility timeouts after it was sent, stays
   PENDING, and no completion is ever published; a message put on the queue without going
   through the API (it carries no request id) lands there too.
8. A completion the webhook refuses lands in the subscription's DLQ (LocalStack 4.14 does not
   retry HTTP deliveries: not proven here).
9. Bad input: bodies the API's model refuses get 400 and never reach the queue. With
   concurrent valid posts alongside: requests in = completed + rejected + dead-lettered.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import requests

from bootstrap.async_request import WORKER_TIMEOUT, AsyncRequest
from sandbox import observe, settings
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, holds_for, unique_name
from sandbox.local_http import LocalServer, Reply, Request, serve

WORK_MS = 500
ITEM_LIMIT_BYTES = 400 * 1024  # DynamoDB's largest item


@dataclass(frozen=True)
class Posted:
    id: str
    text: str
    answered_at: datetime


def run(aws: Aws, resources: AsyncRequest, scenario: Scenario) -> None:
    run_id = unique_name("run")
    completions = _Completions(aws, resources.subscriber.url)
    webhook = _Webhook(resources.api.url)
    with serve(webhook.respond) as endpoint:
        subscription = the_client_subscribes_its_webhook(aws, resources, scenario, endpoint)
        try:
            posted = post_answers_at_once(aws, resources, scenario, run_id)
            status_is_pending_while_held(resources, scenario, posted)
            completed_at = completes_once_released(aws, resources, scenario, posted)
            completion_is_heard_once(scenario, completions, webhook, endpoint, posted)
            redelivery_publishes_nothing(
                aws, resources, scenario, completions, posted, completed_at
            )
            unfinished_work_is_dead_lettered(aws, resources, scenario, completions, run_id)
            refused_webhook_delivery_is_dead_lettered(aws, resources, scenario, webhook, run_id)
            bad_input_is_refused_and_nothing_lost(aws, resources, scenario, completions, run_id)
        finally:
            aws.client("sns").unsubscribe(SubscriptionArn=subscription)


def the_client_subscribes_its_webhook(
    aws: Aws, resources: AsyncRequest, scenario: Scenario, endpoint: LocalServer
) -> str:
    with scenario.step("The client's webhook subscribes to the topic and confirms it"):
        sns = aws.client("sns")
        subscription = sns.subscribe(
            TopicArn=resources.topic,
            Protocol="http",
            Endpoint=f"{endpoint.url}/completed",
            Attributes={
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": resources.webhook_dlq.arn})
            },
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        confirmations = await_value(
            lambda: _of_type(endpoint, "SubscriptionConfirmation"),
            timeout=20,
            waiting_for="SNS's SubscriptionConfirmation at the webhook",
        )
        scenario.check("confirmation requests at the webhook", expected=1, seen=len(confirmations))
        pending = await_value(
            lambda: sns.get_subscription_attributes(SubscriptionArn=subscription)["Attributes"][
                "PendingConfirmation"
            ],
            until=lambda value: value == "false",
            timeout=20,
            waiting_for="the subscription to be confirmed",
        )
        scenario.check("subscription pending confirmation", expected="false", seen=pending)
        return str(subscription)


def post_answers_at_once(
    aws: Aws, resources: AsyncRequest, scenario: Scenario, run_id: str
) -> Posted:
    with scenario.step("POST answers at once with an id"):
        text = f"hello async world {run_id}"
        _hold(aws, resources, text)  # released by the next steps
        posted = requests.post(
            f"{resources.api.url}/requests", json={"text": text, "work_ms": WORK_MS}, timeout=10
        )
        answered_at = datetime.now(UTC)
        scenario.check("status code", expected=202, seen=posted.status_code)
        request_id = posted.json().get("id")
        scenario.check_that(
            "an id came back", bool(request_id), expected="a request id", seen=request_id
        )
        return Posted(str(request_id), text, answered_at)


def status_is_pending_while_held(
    resources: AsyncRequest, scenario: Scenario, posted: Posted
) -> None:
    with scenario.step("While the worker holds the request, status is PENDING and result 404"):
        seen = await_value(
            lambda: _status(resources, posted.id),
            until=lambda answer: answer.status_code == 200,
            timeout=30,
            waiting_for="the worker to take the request",
        )
        scenario.check("status while held", expected="PENDING", seen=seen.json().get("status"))
        result = _result(resources, posted.id)
        scenario.check(
            "result while held",
            expected=(404, "PENDING"),
            seen=(result.status_code, result.json().get("status")),
        )


def completes_once_released(
    aws: Aws, resources: AsyncRequest, scenario: Scenario, posted: Posted
) -> str:
    with scenario.step("Released, status goes COMPLETE and the result is 200"):
        _release(aws, resources, posted.text)
        await_value(
            lambda: _status(resources, posted.id).json().get("status"),
            until=lambda status: status == "COMPLETE",
            timeout=30,
            waiting_for="status COMPLETE",
        )
        result = _result(resources, posted.id)
        scenario.check("result status code", expected=200, seen=result.status_code)
        text = posted.text
        expected = {"words": len(text.split()), "characters": len(text), "upper": text.upper()}
        scenario.check("result", expected=expected, seen=result.json()["result"])
        completed_at = str(_status(resources, posted.id).json()["completed_at"])
        # Compared with the worker's own clock reading, not a duration: a slow cold start
        # must not fail it, an API that waited for the work must.
        scenario.check_that(
            "the POST was answered before the work was done",
            posted.answered_at < datetime.fromisoformat(completed_at),
            expected=f"an answer before completed_at {completed_at}",
            seen=posted.answered_at.isoformat(timespec="milliseconds"),
        )
        return completed_at


def completion_is_heard_once(
    scenario: Scenario,
    completions: _Completions,
    webhook: _Webhook,
    endpoint: LocalServer,
    posted: Posted,
) -> None:
    with scenario.step("The subscriber queue and the client's webhook each hear it once"):
        await_value(
            lambda: completions.count(posted.id),
            timeout=20,
            waiting_for=f"a completion message for {posted.id}",
        )
        await_value(
            lambda: _delivered(endpoint, posted.id),
            timeout=20,
            waiting_for=f"the webhook delivery for {posted.id}",
        )
        holds_for(lambda: completions.count(posted.id), until=lambda n: n == 1, duration=2)
        scenario.check(
            "completion messages for the id", expected=1, seen=completions.count(posted.id)
        )
        scenario.check(
            "message", expected="COMPLETE", seen=completions.messages[posted.id][0]["status"]
        )
        delivered = _delivered(endpoint, posted.id)
        scenario.check("webhook deliveries for the id", expected=1, seen=len(delivered))
        scenario.check("webhook message", expected="COMPLETE", seen=delivered[0]["status"])
        scenario.check(
            "result when the webhook arrived",
            expected=200,
            seen=webhook.result_codes.get(posted.id),
        )


def redelivery_publishes_nothing(
    aws: Aws,
    resources: AsyncRequest,
    scenario: Scenario,
    completions: _Completions,
    posted: Posted,
    completed_at: str,
) -> None:
    with scenario.step("A redelivered request does not publish a second completion"):
        copy = {
            "MessageBody": json.dumps({"text": posted.text, "work_ms": WORK_MS}),
            "MessageAttributes": {
                resources.id_attribute: {"DataType": "String", "StringValue": posted.id}
            },
        }
        aws.client("sqs").send_message_batch(
            QueueUrl=resources.queue.url,
            Entries=[{"Id": "copy1", **copy}, {"Id": "copy2", **copy}],
        )
        scenario.note("sent the same message twice more, as an at-least-once delivery might")
        left = observe.await_empty(
            aws, resources.queue.url, timeout=30, waiting_for="the worker to consume both copies"
        )
        scenario.check("copies left in the queue", expected=0, seen=left)
        holds_for(lambda: completions.count(posted.id), until=lambda n: n == 1, duration=3)
        scenario.check(
            "completion messages for the id", expected=1, seen=completions.count(posted.id)
        )
        scenario.check(
            "completed_at unchanged",
            expected=completed_at,
            seen=_status(resources, posted.id).json().get("completed_at"),
        )


def unfinished_work_is_dead_lettered(
    aws: Aws,
    resources: AsyncRequest,
    scenario: Scenario,
    completions: _Completions,
    run_id: str,
) -> None:
    """The completion is published only once the result is stored: a result DynamoDB
    refuses must never be announced. The scenario makes the store fail: it writes the
    request's PENDING row itself, padded to just under DynamoDB's 400 KB item limit, so the
    worker's write of a 1,000-character result takes the row over it. A message with no
    request id goes with it, so both wait out their retries at once."""
    with scenario.step(
        "What the worker cannot finish is dead-lettered after two tries, never announced"
    ):
        request_id = unique_name(f"too-big-{run_id}")
        aws.client("dynamodb").put_item(
            TableName=resources.table,
            Item={
                "id": {"S": request_id},
                "status": {"S": "PENDING"},
                "received_at": {"S": datetime.now(UTC).isoformat(timespec="milliseconds")},
                "padding": {"S": "." * (ITEM_LIMIT_BYTES - 600)},
            },
        )
        sent_at = time.monotonic()
        sent = aws.client("sqs").send_message(
            QueueUrl=resources.queue.url,
            MessageBody=json.dumps({"text": "x" * 1000}),
            MessageAttributes={
                resources.id_attribute: {"DataType": "String", "StringValue": request_id}
            },
        )
        stray = f"not sent through the API {run_id}"
        aws.client("sqs").send_message(
            QueueUrl=resources.queue.url, MessageBody=json.dumps({"text": stray})
        )
        scenario.note(f"queued request {request_id}; its row has no room for the result")
        scenario.note("put a message on the queue directly: it carries no request id")
        observe.check_dead_lettered(
            scenario,
            aws,
            resources.dlq,
            observe.with_id(sent["MessageId"]),
            max_receive_count=resources.max_receive_count,
            timeout=60,
            which="the request",
        )
        # A failed try hides the message for one visibility timeout (WORKER_TIMEOUT) before
        # the next: two tries take at least two of them. Read from the clock, because the
        # receive count above is compared with the queue's own maxReceiveCount.
        in_queue = time.monotonic() - sent_at
        scenario.check_that(
            "tried again before the DLQ: time from send to the DLQ",
            in_queue >= 2 * WORKER_TIMEOUT - 1,
            expected=f">= {2 * WORKER_TIMEOUT - 1} s (two tries, {WORKER_TIMEOUT} s apart)",
            seen=f"{in_queue:.1f} s",
        )
        observe.check_dead_lettered(
            scenario,
            aws,
            resources.dlq,
            lambda message: stray in message["Body"],
            max_receive_count=resources.max_receive_count,
            which="the message with no id",
        )
        holds_for(lambda: completions.count(request_id), until=lambda n: n == 0, duration=2)
        scenario.check("completion messages for it", expected=0, seen=completions.count(request_id))
        scenario.check(
            "its status and result code",
            expected=("PENDING", 404),
            seen=(
                _status(resources, request_id).json().get("status"),
                _result(resources, request_id).status_code,
            ),
        )


def refused_webhook_delivery_is_dead_lettered(
    aws: Aws, resources: AsyncRequest, scenario: Scenario, webhook: _Webhook, run_id: str
) -> None:
    with scenario.step("A completion the webhook refuses goes to the subscription's DLQ"):
        text = f"refused once {run_id}"
        _hold(aws, resources, text)
        request_id = requests.post(
            f"{resources.api.url}/requests", json={"text": text}, timeout=10
        ).json()["id"]
        webhook.refuse_once(request_id)
        _release(aws, resources, text)
        dead = await_value(
            lambda: observe.take(aws, resources.webhook_dlq.url, lambda m: request_id in m["Body"]),
            timeout=30,
            waiting_for=f"the refused completion of {request_id} in {resources.webhook_dlq.name}",
        )
        message = json.loads(json.loads(dead["Body"])["Message"])
        scenario.check("dead-lettered completion", expected=request_id, seen=message["id"])
        scenario.not_proven(
            "SNS retries the refused delivery to the webhook (its delivery policy)",
            reason="LocalStack 4.14's SNS makes one HTTP attempt; a refused one goes straight "
            "to the subscription's dead-letter queue",
            limit="sns-http-delivery-is-not-retried",
        )


def bad_input_is_refused_and_nothing_lost(
    aws: Aws,
    resources: AsyncRequest,
    scenario: Scenario,
    completions: _Completions,
    run_id: str,
) -> None:
    with scenario.step("Bad input: 400 at the API; nothing lost"):
        bad_bodies = [
            {"work_ms": 10},  # no text
            {"text": "x", "work_ms": 999_999},  # too much work asked
            {"text": "x", "colour": "red"},  # a field the model does not know
        ]
        # The same text three times: three requests all the same, told apart by their ids.
        good_texts = [f"three requests, one text {run_id}"] * 3
        with ThreadPoolExecutor(max_workers=6) as pool:
            good = list(
                pool.map(
                    lambda t: requests.post(
                        f"{resources.api.url}/requests", json={"text": t}, timeout=10
                    ),
                    good_texts,
                )
            )
            bad = list(
                pool.map(
                    lambda b: requests.post(f"{resources.api.url}/requests", json=b, timeout=10),
                    bad_bodies,
                )
            )
        scenario.check("valid posts", expected=[202] * 3, seen=[r.status_code for r in good])
        scenario.check("invalid posts", expected=[400] * 3, seen=[r.status_code for r in bad])
        scenario.note(f"LocalStack's validator says only: {bad[0].json()}")
        unknown = unique_name("no-such-request")
        scenario.check(
            "an id never posted: status code, result code",
            expected=(404, 404),
            seen=(_status(resources, unknown).status_code, _result(resources, unknown).status_code),
        )
        ids = [r.json()["id"] for r in good]
        done = await_value(
            lambda: [i for i in ids if _status(resources, i).json().get("status") == "COMPLETE"],
            until=lambda found: len(found) == len(ids),
            timeout=30,
            waiting_for="the three valid requests to complete",
        )
        await_value(
            lambda: all(completions.count(i) == 1 for i in ids),
            timeout=20,
            waiting_for="one completion message per valid request",
        )
        observe.check_nothing_lost(
            scenario,
            aws,
            sent=len(good) + len(bad),
            processed=len(done),
            rejected=sum(r.status_code == 400 for r in bad),
            dlq=resources.dlq,
            of_run=lambda message: any(i in message["Body"] for i in ids),
        )


class _Completions:
    """What the topic's subscriber queue has received, by request id (read and deleted)."""

    def __init__(self, aws: Aws, url: str) -> None:
        self.aws, self.url = aws, url
        self.messages: dict[str, list[dict[str, Any]]] = {}

    def count(self, request_id: str) -> int:
        for message in observe.drain(self.aws, self.url):
            body = json.loads(message["Body"])
            self.messages.setdefault(body.get("id", "?"), []).append(body)
        return len(self.messages.get(request_id, []))


class _Webhook:
    """The client's own endpoint: confirms its subscription the way AWS asks (fetching the
    SubscribeURL), looks up the result as soon as a completion arrives, and refuses (500)
    the first delivery for an id it was told to refuse."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.result_codes: dict[str, int] = {}
        self._refuse: set[str] = set()
        self._lock = threading.Lock()

    def refuse_once(self, request_id: str) -> None:
        with self._lock:
            self._refuse.add(request_id)

    def respond(self, request: Request) -> Reply:
        kind = _header(request, "x-amz-sns-message-type")
        envelope = json.loads(request.body or b"{}")
        if kind == "SubscriptionConfirmation":
            requests.get(_on_this_machine(envelope["SubscribeURL"]), timeout=10).raise_for_status()
        elif kind == "Notification":
            request_id = json.loads(envelope["Message"]).get("id", "")
            with self._lock:
                if request_id in self._refuse:
                    self._refuse.discard(request_id)
                    return Reply(500, b'{"message": "not now"}')
            answer = requests.get(f"{self.api_url}/result/{request_id}", timeout=10)
            self.result_codes[request_id] = answer.status_code
        return Reply(200)


def _status(resources: AsyncRequest, request_id: str) -> requests.Response:
    return requests.get(f"{resources.api.url}/status/{request_id}", timeout=10)


def _result(resources: AsyncRequest, request_id: str) -> requests.Response:
    return requests.get(f"{resources.api.url}/result/{request_id}", timeout=10)


def _hold(aws: Aws, resources: AsyncRequest, text: str) -> None:
    """Ask the worker to hold the request with this text (its test-only hook)."""
    aws.client("dynamodb").put_item(TableName=resources.holds_table, Item={"text": {"S": text}})


def _release(aws: Aws, resources: AsyncRequest, text: str) -> None:
    aws.client("dynamodb").delete_item(TableName=resources.holds_table, Key={"text": {"S": text}})


def _header(request: Request, name: str) -> str:
    return next((v for k, v in request.headers.items() if k.lower() == name), "")


def _of_type(endpoint: LocalServer, kind: str) -> list[Request]:
    return [r for r in endpoint.to("/completed") if _header(r, "x-amz-sns-message-type") == kind]


def _delivered(endpoint: LocalServer, request_id: str) -> list[dict[str, Any]]:
    """The completions for this id the webhook accepted."""
    messages = [
        json.loads(json.loads(r.body)["Message"]) for r in _of_type(endpoint, "Notification")
    ]
    return [m for m in messages if m.get("id") == request_id]


def _on_this_machine(url: str) -> str:
    """LocalStack names itself localhost.localstack.cloud in a SubscribeURL, a public DNS
    name for 127.0.0.1 that an offline machine cannot resolve: ask 127.0.0.1 directly."""
    parsed = urlparse(url)
    if parsed.hostname == "localhost.localstack.cloud":
        parsed = parsed._replace(netloc=f"127.0.0.1:{parsed.port or 4566}")
    return settings.check_endpoint(parsed.geturl())
