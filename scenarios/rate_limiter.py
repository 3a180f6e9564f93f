"""Scenario for rate-limiter: limits hold call by call and under concurrent callers, and a
buffer keeps a downstream within its cap.

1. Bad input: no or a malformed X-Client-Id gets 400 saying why.
2. Token bucket, burst 3: three calls in a row pass, the 4th gets 429 with Retry-After.
3. After the refill a call passes again (with nothing left over); a bucket idle for a
   minute holds its burst, no more.
4. 20 concurrent calls on a bucket holding 5 tokens (no refill): exactly 5 pass, the bucket
   ends at 0, written exactly 5 times.
5. Fixed window: 20 concurrent calls; in every window, passes = min(limit, calls); a caller
   refused in one window passes in the next. Every API call got 200, 429 or 400.
6. SQS buffer: jobs posted through the API reach a stand-in downstream, exactly its cap at
   once (the mapping's MaximumConcurrency runs that many batches side by side); a job the
   downstream refuses is retried and dead-lettered. Jobs in = delivered + in the DLQ.
7. The cap under real parallel demand: concurrent invocations of the consumer beyond its
   reserved concurrency are throttled; the downstream sees exactly the cap at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import requests
from botocore.config import Config

from bootstrap.rate_limiter import RateLimiter
from sandbox import items, observe, provision
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, unique_name
from sandbox.local_http import Reply, Request, serve

SLOW_REFILL = 0.01  # tokens a second: one token in 100 s
HOLD_SECONDS = 0.5  # how long the downstream takes per call: long enough for calls to overlap


def run(aws: Aws, resources: RateLimiter, scenario: Scenario) -> None:
    limiter = Limiter(aws, resources, unique_name("run"))
    check_bad_input(scenario, resources, limiter)
    check_burst(scenario, resources, limiter)
    check_refill(scenario, resources, limiter)
    check_idle_bucket(scenario, resources, limiter)
    check_concurrent_bucket(scenario, resources, limiter)
    check_fixed_window(scenario, resources, limiter)
    downstream = _Downstream()
    with serve(downstream.respond) as server:
        _configure_downstream(aws, resources.worker, f"{server.url}/jobs")
        scenario.note(f"stand-in downstream at {server.url}, holding each call {HOLD_SECONDS} s")
        check_buffer(aws, resources, scenario, downstream, limiter.run_id)
        check_reserved_concurrency(aws, resources, scenario, downstream, limiter.run_id)


class Limiter:
    """The limiter's API as a caller sees it, and its bucket rows; counts every answer."""

    def __init__(self, aws: Aws, resources: RateLimiter, run_id: str) -> None:
        self.aws = aws
        self.resources = resources
        self.run_id = run_id
        self.dynamodb = aws.client("dynamodb")
        self.answered: Counter[int] = Counter()

    def call(self, path: str, client: str | None) -> requests.Response:
        headers = {"X-Client-Id": client} if client is not None else {}
        answer = requests.get(f"{self.resources.api.url}{path}", headers=headers, timeout=30)
        self.answered[answer.status_code] += 1
        return answer

    def burst(self, path: str, client: str, count: int) -> list[requests.Response]:
        """`count` calls at once."""
        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(lambda _: self.call(path, client), range(count)))

    def put_bucket(
        self,
        client: str,
        *,
        tokens: int,
        idle_seconds: float = 0,
        refill_per_s: float | None = None,
    ) -> None:
        """A bucket row as the limiter keeps it; without `refill_per_s` the limiter's own
        rate applies, and its capacity always does (the burst)."""
        row: dict[str, Any] = {
            "id": client,
            "tokens": tokens,
            "updated_ms": int((time.time() - idle_seconds) * 1000),
            "version": 0,
        }
        if refill_per_s is not None:
            row["refill_per_s"] = Decimal(str(refill_per_s))  # DynamoDB numbers are decimal
        self.dynamodb.put_item(TableName=self.resources.buckets_table, Item=items.wire(row))

    def bucket(self, client: str) -> items.Item:
        return items.get(self.aws, self.resources.buckets_table, {"id": client}) or {}


def check_bad_input(scenario: Scenario, resources: RateLimiter, limiter: Limiter) -> None:
    with scenario.step("Bad input gets 400 with the reason"):
        missing = limiter.call("/bucket", None)
        scenario.check("no X-Client-Id", expected=400, seen=missing.status_code)
        scenario.check(
            "reason", expected="the X-Client-Id header is required", seen=missing.json()["message"]
        )
        malformed = limiter.call("/window", "not a valid id!")
        scenario.check("malformed X-Client-Id", expected=400, seen=malformed.status_code)
        scenario.note(f"reason: {malformed.json()['message']}")


def check_burst(scenario: Scenario, resources: RateLimiter, limiter: Limiter) -> None:
    with scenario.step(
        f"Token bucket, burst {resources.bucket_capacity}: the 4th call in a row gets 429"
    ):
        client = f"{limiter.run_id}-a"
        # A full bucket that refills too slowly to matter here: calls slowed by a busy
        # machine must not earn a token between them.
        limiter.put_bucket(client, tokens=resources.bucket_capacity, refill_per_s=SLOW_REFILL)
        answers = [limiter.call("/bucket", client) for _ in range(resources.bucket_capacity + 1)]
        scenario.check(
            "status codes",
            expected=[200, 200, 200, 429],
            seen=[answer.status_code for answer in answers],
        )
        scenario.check(
            "remaining",
            expected=[2, 1, 0],
            seen=[answer.json()["remaining"] for answer in answers[:3]],
        )
        refused = answers[-1]
        scenario.check_that(
            "429 says when to come back",
            int(refused.headers.get("Retry-After", "0")) >= 1,
            expected="Retry-After >= 1",
            seen=f"Retry-After {refused.headers.get('Retry-After')}, body {refused.json()}",
        )


def check_refill(scenario: Scenario, resources: RateLimiter, limiter: Limiter) -> None:
    with scenario.step(
        f"After the refill ({resources.refill_per_second} tokens/s) a call passes again"
    ):
        client = f"{limiter.run_id}-refill"
        limiter.put_bucket(client, tokens=0)
        emptied_at = time.monotonic()
        passed = await_value(
            lambda: limiter.call("/bucket", client),
            until=lambda answer: answer.status_code == 200,
            interval=0.25,
            timeout=15,
            waiting_for="a call to pass after the refill",
        )
        scenario.note(f"passed {time.monotonic() - emptied_at:.1f} s after the bucket was empty")
        scenario.check(
            "remaining after the refilled call", expected=0, seen=passed.json()["remaining"]
        )
        tokens = limiter.bucket(client)["tokens"]
        scenario.check_that(
            "stored tokens", 0 <= tokens < 1, expected="0 <= tokens < 1", seen=tokens
        )


def check_idle_bucket(scenario: Scenario, resources: RateLimiter, limiter: Limiter) -> None:
    with scenario.step("A bucket idle for an hour holds its burst, no more"):
        client = f"{limiter.run_id}-idle"
        # Idle for an hour at a slow refill: 36 tokens uncapped, the burst when capped.
        limiter.put_bucket(client, tokens=0, idle_seconds=3600, refill_per_s=SLOW_REFILL)
        answers = [limiter.call("/bucket", client) for _ in range(resources.bucket_capacity + 2)]
        scenario.check(
            f"status codes of {resources.bucket_capacity + 2} calls in a row",
            expected=[200] * resources.bucket_capacity + [429, 429],
            seen=[answer.status_code for answer in answers],
        )


def check_concurrent_bucket(scenario: Scenario, resources: RateLimiter, limiter: Limiter) -> None:
    with scenario.step(
        "20 concurrent calls on a bucket of 5 tokens: exactly 5 pass, none below zero"
    ):
        client = f"{limiter.run_id}-b"
        limiter.dynamodb.put_item(
            TableName=resources.buckets_table,
            Item=items.wire(
                {
                    "id": client,
                    "tokens": 5,
                    "capacity": 5,
                    "refill_per_s": 0,  # no refill: only the 5 tokens exist
                    "updated_ms": int(time.time() * 1000),
                    "version": 0,
                }
            ),
        )
        codes = Counter(answer.status_code for answer in limiter.burst("/bucket", client, 20))
        scenario.check("answers", expected={200: 5, 429: 15}, seen=dict(codes))
        row = limiter.bucket(client)
        scenario.check("tokens left", expected=0.0, seen=row["tokens"])
        scenario.check("conditional writes that succeeded", expected=5, seen=row["version"])


def check_fixed_window(scenario: Scenario, resources: RateLimiter, limiter: Limiter) -> None:
    with scenario.step(
        f"Fixed window ({resources.window_limit} per {resources.window_seconds} s)"
        " under 20 concurrent calls"
    ):
        client = f"{limiter.run_id}-c"
        answers = limiter.burst("/window", client, 20)
        by_window: dict[int, Counter[int]] = {}
        for answer in answers:
            body = answer.json()
            by_window.setdefault(body["window_start_ms"], Counter())[answer.status_code] += 1
        seen = {start: dict(codes) for start, codes in sorted(by_window.items())}
        scenario.check_that(
            "in every window, passes = min(limit, calls)",
            all(
                codes[200] == min(resources.window_limit, codes[200] + codes[429])
                for codes in by_window.values()
            ),
            expected=f"min({resources.window_limit}, calls) passes per window",
            seen=seen,
        )
        last_refused = max(
            (start for start, codes in by_window.items() if codes[429]), default=None
        )
        scenario.check_that(
            "some calls were refused", last_refused is not None, expected="a 429", seen=seen
        )
        assert last_refused is not None  # the check above stops the scenario otherwise
        later = await_value(
            lambda: limiter.call("/window", client),
            until=lambda answer: answer.status_code == 200
            and answer.json()["window_start_ms"] > last_refused,
            interval=0.25,
            timeout=15,
            waiting_for="a call to pass in the next window",
        )
        scenario.check_that(
            "a refused caller passes in the next window",
            later.json()["window_start_ms"] >= last_refused + resources.window_seconds * 1000,
            expected=f"a window after {last_refused}",
            seen=later.json(),
        )
        scenario.check_that(
            "every API call got 200, 429 or 400",
            set(limiter.answered) <= {200, 429, 400},
            expected="{200, 429, 400}",
            seen=dict(limiter.answered),
        )
        scenario.note(f"calls so far: {sum(limiter.answered.values())} = {dict(limiter.answered)}")


def check_buffer(
    aws: Aws, resources: RateLimiter, scenario: Scenario, downstream: _Downstream, run_id: str
) -> None:
    with scenario.step(
        f"SQS buffer: the downstream never sees more than {resources.downstream_cap} at once"
    ):
        mapping = aws.client("lambda").get_event_source_mapping(UUID=resources.worker_mapping)
        scenario.check(
            "mapping's ScalingConfig",
            expected={"MaximumConcurrency": resources.downstream_cap},
            seen=mapping.get("ScalingConfig"),
        )
        jobs = [{"job": f"{run_id}-job-{number}"} for number in range(10)]
        poison: dict[str, Any] = {"job": f"{run_id}-poison", "poison": True}
        with ThreadPoolExecutor(max_workers=11) as pool:
            posted = list(
                pool.map(
                    lambda job: requests.post(f"{resources.api.url}/jobs", json=job, timeout=10),
                    [*jobs, poison],
                )
            )
        scenario.check(
            "jobs buffered", expected=[202] * 11, seen=[answer.status_code for answer in posted]
        )
        await_value(
            lambda: downstream.accepted(run_id),
            until=lambda got: len(got) >= len(jobs),
            timeout=40,
            waiting_for="the downstream to accept all 10 jobs",
        )
        observe.check_dead_lettered(
            scenario,
            aws,
            resources.dlq,
            observe.with_field("job", poison["job"]),
            max_receive_count=2,
            keep=True,
        )
        accepted = downstream.accepted(run_id)
        scenario.check(
            "each job delivered once", expected={job["job"]: 1 for job in jobs}, seen=accepted
        )
        scenario.check_that(
            "the refused job was tried more than once",
            downstream.tries(poison["job"]) >= 2,
            expected=">= 2 tries",
            seen=downstream.tries(poison["job"]),
        )
        observe.check_nothing_lost(
            scenario,
            aws,
            sent=len(posted),
            processed=sum(accepted.values()),
            dlq=resources.dlq,
            of_run=lambda message: run_id in message["Body"],
        )
        # Exactly the cap: more would break the downstream, fewer would mean the mapping
        # is not running batches in parallel at all.
        scenario.check(
            "most calls the downstream had at once",
            expected=resources.downstream_cap,
            seen=downstream.max_in_flight,
        )


def check_reserved_concurrency(
    aws: Aws, resources: RateLimiter, scenario: Scenario, downstream: _Downstream, run_id: str
) -> None:
    with scenario.step(
        f"Reserved concurrency {resources.downstream_cap}: parallel demand is throttled, "
        f"the downstream sees at most {resources.downstream_cap}"
    ):
        downstream.max_in_flight = 0
        no_retries = aws.session.client(
            "lambda",
            endpoint_url=aws.endpoint_url,
            region_name=aws.region,
            config=Config(retries={"total_max_attempts": 1}, read_timeout=30),
        )
        direct = [f"{run_id}-direct-{number}" for number in range(8)]
        throttles = Counter[str]()

        def invoke(job: str) -> None:
            event = _sqs_event(aws, resources.buffer.arn, json.dumps({"job": job}))
            while True:
                try:
                    no_retries.invoke(FunctionName=resources.worker, Payload=json.dumps(event))
                    return
                except no_retries.exceptions.TooManyRequestsException:
                    throttles[job] += 1
                    threading.Event().wait(0.2)  # as a poller backs off, then tries again

        with ThreadPoolExecutor(max_workers=len(direct)) as pool:
            list(pool.map(invoke, direct))
        throttled = sum(throttles.values())
        scenario.check_that(
            "invocations throttled (TooManyRequestsException)",
            throttled > 0,
            expected="> 0",
            seen=f"{throttled} over {len(direct)} concurrent jobs",
        )
        accepted = downstream.accepted(f"{run_id}-direct")
        scenario.check("each job delivered once", expected=dict.fromkeys(direct, 1), seen=accepted)
        scenario.check(
            "most calls the downstream had at once",
            expected=resources.downstream_cap,
            seen=downstream.max_in_flight,
        )


class _Downstream:
    """A stand-in for the rate-sensitive service: holds each call a while, counts how many it
    has at once, and refuses (422) jobs marked poison."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls: Counter[str] = Counter()
        self.ok: Counter[str] = Counter()

    def respond(self, request: Request) -> Reply:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            threading.Event().wait(HOLD_SECONDS)
            job = json.loads(request.body)
            with self.lock:
                self.calls[job["job"]] += 1
                if not job.get("poison"):
                    self.ok[job["job"]] += 1
            if job.get("poison"):
                return Reply(422, b'{"message": "cannot process this job"}')
            return Reply(200, b'{"ok": true}')
        finally:
            with self.lock:
                self.in_flight -= 1

    def accepted(self, prefix: str) -> dict[str, int]:
        with self.lock:
            return {job: n for job, n in self.ok.items() if job.startswith(prefix)}

    def tries(self, job: str) -> int:
        with self.lock:
            return self.calls[job]


def _configure_downstream(aws: Aws, function: str, url: str) -> None:
    lambda_ = aws.client("lambda")
    lambda_.update_function_configuration(
        FunctionName=function, Environment={"Variables": {"DOWNSTREAM_URL": url}}
    )
    provision.wait_for_function(lambda_, function)


def _sqs_event(aws: Aws, queue_arn: str, body: str) -> dict[str, Any]:
    """An SQS event of one record, as the event source mapping would send it."""
    return {
        "Records": [
            {
                "messageId": unique_name("direct"),
                "receiptHandle": "direct",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": aws.region,
            }
        ]
    }
