"""Scenario for async-request: a client posts work, gets an id at once, polls for it, and a
subscriber hears about the completion exactly once.

1. POST /requests answers 202 with an id before the work (2 s) could have been done.
2. GET /status/{id} goes PENDING -> COMPLETE; GET /result/{id} is 404 until then, then 200
   with the result.
3. The completion topic's subscriber gets exactly one message, carrying the id.
4. The same request delivered twice more (SQS is at-least-once): the worker consumes both
   copies, the status row keeps its first completion time, and no second message is published.
5. Bad input: bodies the API's model refuses get 400 and never reach the queue; a message
   put on the queue without going through the API is retried and lands in the DLQ. With
   concurrent valid posts alongside: requests in = completed + rejected + dead-lettered.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import requests

from bootstrap.async_request import AsyncRequest
from sandbox import observe
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, holds_for, unique_name

WORK_MS = 2000


def run(aws: Aws, resources: AsyncRequest, scenario: Scenario) -> None:
    sqs = aws.client("sqs")
    run_id = unique_name("run")
    completions = _Completions(aws, resources.subscriber.url)

    def status(request_id: str) -> requests.Response:
        return requests.get(f"{resources.api.url}/status/{request_id}", timeout=10)

    def result(request_id: str) -> requests.Response:
        return requests.get(f"{resources.api.url}/result/{request_id}", timeout=10)

    with scenario.step("POST answers at once with an id"):
        text = f"hello async world {run_id}"
        began = time.monotonic()
        posted = requests.post(
            f"{resources.api.url}/requests", json={"text": text, "work_ms": WORK_MS}, timeout=10
        )
        answered_at = datetime.now(UTC)
        scenario.check("status code", expected=202, seen=posted.status_code)
        request_id = posted.json().get("id")
        scenario.check_that(
            "an id came back", bool(request_id), expected="a request id", seen=request_id
        )
        scenario.note(f"answered in {time.monotonic() - began:.2f} s (the work takes {WORK_MS} ms)")

    with scenario.step("Status goes PENDING -> COMPLETE; result is 404 until done, then 200"):
        statuses: list[str] = []
        results: list[tuple[int, str | None]] = []

        def poll() -> bool:
            seen = status(request_id)
            state = seen.json().get("status", "unknown") if seen.status_code == 200 else "404"
            if not statuses or statuses[-1] != state:
                statuses.append(state)
            got = result(request_id)
            results.append((got.status_code, got.json().get("status")))
            return state == "COMPLETE" and got.status_code == 200

        await_value(poll, timeout=30, interval=0.1, waiting_for="status COMPLETE and result 200")
        scenario.note(f"statuses seen in order: {statuses}")
        scenario.check(
            "status transitions", expected=["PENDING", "COMPLETE"], seen=_without(statuses, "404")
        )
        codes = [code for code, _ in results]
        first_ok = codes.index(200)
        scenario.check_that(
            "result was 404 until it turned 200 (and stayed 200)",
            first_ok > 0 and set(codes[:first_ok]) == {404} and set(codes[first_ok:]) == {200},
            expected="404 ... 404, 200 ...",
            seen=_runs(codes),
        )
        scenario.check_that(
            "a 404 result said the request was PENDING",
            (404, "PENDING") in results,
            expected="(404, 'PENDING') among the result answers",
            seen=sorted(set(results), key=str),
        )
        body = result(request_id).json()
        expected = {"words": len(text.split()), "characters": len(text), "upper": text.upper()}
        scenario.check("result", expected=expected, seen=body["result"])
        completed_at = status(request_id).json()["completed_at"]
        # Compared with the worker's own clock reading, not a duration: a slow cold start
        # must not fail it, an API that waited for the work must.
        scenario.check_that(
            "the POST was answered before the work was done",
            answered_at < datetime.fromisoformat(completed_at),
            expected=f"an answer before completed_at {completed_at}",
            seen=answered_at.isoformat(timespec="milliseconds"),
        )

    with scenario.step(
        "The topic's subscriber gets exactly one completion message carrying the id"
    ):
        await_value(
            lambda: completions.count(request_id),
            timeout=20,
            waiting_for=f"a completion message for {request_id}",
        )
        holds_for(lambda: completions.count(request_id), until=lambda n: n == 1, duration=2)
        scenario.check(
            "completion messages for the id", expected=1, seen=completions.count(request_id)
        )
        scenario.check(
            "message", expected="COMPLETE", seen=completions.messages[request_id][0]["status"]
        )

    with scenario.step("A redelivered request does not publish a second completion"):
        copy = {
            "MessageBody": json.dumps({"text": text, "work_ms": WORK_MS}),
            "MessageAttributes": {
                resources.id_attribute: {"DataType": "String", "StringValue": request_id}
            },
        }
        sqs.send_message_batch(
            QueueUrl=resources.queue.url,
            Entries=[{"Id": "copy1", **copy}, {"Id": "copy2", **copy}],
        )
        scenario.note("sent the same message twice more, as an at-least-once delivery might")
        await_value(
            lambda: observe.depth(aws, resources.queue.url),
            until=lambda n: n == 0,
            timeout=30,
            waiting_for="the worker to consume both copies",
        )
        scenario.check(
            "copies left in the queue", expected=0, seen=observe.depth(aws, resources.queue.url)
        )
        holds_for(lambda: completions.count(request_id), until=lambda n: n == 1, duration=3)
        scenario.check(
            "completion messages for the id", expected=1, seen=completions.count(request_id)
        )
        scenario.check(
            "completed_at unchanged",
            expected=completed_at,
            seen=status(request_id).json()["completed_at"],
        )

    with scenario.step("Bad input: 400 at the API, a DLQ entry for a bad message; nothing lost"):
        bad_bodies = [
            {"work_ms": 10},  # no text
            {"text": "x", "work_ms": 999_999},  # too much work asked
            {"text": "x", "colour": "red"},  # a field the model does not know
        ]
        good_texts = [f"batch {i} {run_id}" for i in range(3)]
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
        stray = f"not sent through the API {run_id}"
        sqs.send_message(QueueUrl=resources.queue.url, MessageBody=json.dumps({"text": stray}))
        scenario.note("put a message on the queue directly: it carries no request id")

        ids = [r.json()["id"] for r in good]
        done = await_value(
            lambda: [i for i in ids if status(i).json().get("status") == "COMPLETE"],
            until=lambda found: len(found) == len(ids),
            timeout=30,
            waiting_for="the three valid requests to complete",
        )
        observe.check_dead_lettered(
            scenario,
            aws,
            resources.dlq,
            lambda message: stray in message["Body"],
            max_receive_count=resources.max_receive_count,
            keep=True,
        )
        await_value(
            lambda: all(completions.count(i) == 1 for i in ids),
            timeout=20,
            waiting_for="one completion message per valid request",
        )
        observe.check_nothing_lost(
            scenario,
            aws,
            sent=len(good) + len(bad) + 1,  # the stray message went straight onto the queue
            processed=len(done),
            rejected=sum(r.status_code == 400 for r in bad),
            dlq=resources.dlq,
            of_run=lambda message: stray in message["Body"]
            or any(i in message["Body"] for i in ids),
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


def _without(items: list[str], unwanted: str) -> list[str]:
    return [item for item in items if item != unwanted]


def _runs(codes: list[int]) -> str:
    """[404, 404, 200] -> '404 x2, 200 x1'."""
    runs: list[list[int]] = []
    for code in codes:
        if runs and runs[-1][0] == code:
            runs[-1][1] += 1
        else:
            runs.append([code, 1])
    return ", ".join(f"{code} x{n}" for code, n in runs)
