"""Scenario for retry-backoff, against a local stand-in downstream that answers by path:
/ok -> 200, /reject -> 400, /throttle -> 429 always, /flakyN -> 429 for the first N calls.

1. The client Lambda: a non-retryable error makes exactly one call; a throttled call is
   retried up to the limit and then gives up; the gaps between calls never exceed the cap
   (nor each attempt's own ceiling); a call throttled twice succeeds on the third.
2. SQS redelivery: a throttled message is redelivered (after a jittered visibility timeout)
   until maxReceiveCount and then lands in the DLQ; one throttled once is processed on its
   second delivery; a rejected one and a malformed one go to the DLQ at once, with a reason.
   Messages in = processed + DLQ.
3. Step Functions: Retry with BackoffRate, MaxDelaySeconds and JitterStrategy FULL retries the
   throttled task up to MaxAttempts with gaps within MaxDelaySeconds, then the failure ends
   in the Catch path (RecordFailure, GaveUp); a rejected call is caught after one call; a
   healthy downstream succeeds without the Catch.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bootstrap.retry_backoff import RetryBackoff
from sandbox import executions, observe
from sandbox.aws import Aws
from sandbox.harness import Scenario, unique_name
from sandbox.local_http import LocalServer, Reply, Request, serve

# What a gap may add to the backoff delay: the HTTP call itself and process scheduling.
CALL_ALLOWANCE = 0.25
# How much earlier than drawn a sleep may seem to end, by the clocks of two processes.
TIMER_SLACK = 0.01
# Step Functions' own scheduling between a failed attempt and the next: LocalStack's retrier
# sleeps its delay, then evaluates the state again in its interpreter. With make test's
# scenarios, poison and lifecycle faults side by side on two cores, a gap ran 0.85 s over
# the cap (2.853 s, MaxDelaySeconds 2), so 0.75 s failed a correct engine.
SFN_ALLOWANCE = 1.25


class Downstream:
    """The stand-in downstream's own account: how many calls it answered 200, by path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.succeeded: Counter[str] = Counter()

    def served(self, paths: list[str]) -> int:
        with self.lock:
            return sum(self.succeeded[path] for path in paths)


def downstream(account: Downstream) -> Any:
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def succeed(path: str) -> Reply:
        with account.lock:
            account.succeeded[path] += 1
        return Reply(200, b'{"ok": true}')

    def respond(request: Request) -> Reply:
        path = request.path.split("?", 1)[0]
        with lock:
            counts[path] = counts.get(path, 0) + 1
            seen = counts[path]
        behaviour = path.strip("/").split("/", 1)[0]
        if behaviour == "ok":
            return succeed(path)
        if behaviour == "reject":
            return Reply(400, b'{"error": "bad request"}')
        flaky = re.fullmatch(r"flaky(\d+)", behaviour)
        if flaky and seen > int(flaky.group(1)):
            return succeed(path)
        return Reply(429, b'{"error": "slow down"}')

    return serve(respond)


def run(aws: Aws, resources: RetryBackoff, scenario: Scenario) -> None:
    account = Downstream()
    with downstream(account) as server:
        stand = Stand(server, account, unique_name("retry"))
        check_client_rejected(aws, resources, scenario, stand)
        check_client_gives_up(aws, resources, scenario, stand)
        check_client_recovers(aws, resources, scenario, stand)
        check_sqs_redelivery(aws, resources, scenario, stand)
        check_workflow_gives_up(aws, resources, scenario, stand)
        check_workflow_rejected_and_healthy(aws, resources, scenario, stand)


@dataclass(frozen=True)
class Stand:
    """The stand-in downstream as this run uses it: its server, its account of successes,
    and paths of its own (`/<behaviour>/<run id>-<name>`)."""

    server: LocalServer
    account: Downstream
    run_id: str

    def path(self, behaviour: str, name: str) -> str:
        return f"/{behaviour}/{self.run_id}-{name}"


def check_client_rejected(
    aws: Aws, resources: RetryBackoff, scenario: Scenario, stand: Stand
) -> None:
    with scenario.step("Client: a non-retryable error makes exactly one call"):
        url_path = stand.path("reject", "client")
        error, answer = observe.call(
            aws, resources.client_function, {"url": stand.server.url + url_path}
        )
        scenario.check("error type", expected="DownstreamRejected", seen=answer.get("errorType"))
        scenario.check("calls the downstream saw", expected=1, seen=len(stand.server.to(url_path)))


def check_client_gives_up(
    aws: Aws, resources: RetryBackoff, scenario: Scenario, stand: Stand
) -> None:
    with scenario.step(
        f"Client: a throttled call is retried up to {resources.max_attempts} calls, then gives up; "
        f"gaps within the cap ({resources.max_delay} s)"
    ):
        url_path = stand.path("throttle", "client")
        error, answer = observe.call(
            aws, resources.client_function, {"url": stand.server.url + url_path}
        )
        scenario.check("error type", expected="DownstreamThrottled", seen=answer.get("errorType"))
        scenario.note(answer.get("errorMessage", ""))
        calls = stand.server.to(url_path)
        scenario.check("calls the downstream saw", expected=resources.max_attempts, seen=len(calls))
        gaps = _gaps([request.at for request in calls])
        ceilings = [
            min(resources.max_delay, resources.base_delay * 2**attempt)
            for attempt in range(len(gaps))
        ]
        scenario.note(f"gaps between calls (s): {gaps}; ceilings: {ceilings}")
        scenario.check_that(
            "largest gap",
            max(gaps) <= resources.max_delay + CALL_ALLOWANCE,
            expected=f"<= cap {resources.max_delay} + {CALL_ALLOWANCE} for the call",
            seen=max(gaps),
        )
        scenario.check_that(
            "each gap within its attempt's ceiling min(cap, base * 2^n)",
            all(gap <= top + CALL_ALLOWANCE for gap, top in zip(gaps, ceilings, strict=True)),
            expected=[round(top + CALL_ALLOWANCE, 3) for top in ceilings],
            seen=gaps,
        )
        # Lower bounds, so a retry loop that does not wait fails: the handler names the delay
        # it drew before each retry, and the downstream saw at least that much between calls.
        delays = _reported_delays(answer.get("errorMessage", ""))
        scenario.check_that(
            "each gap at least the delay the handler drew for it",
            len(delays) == len(gaps)
            and all(gap >= delay - TIMER_SLACK for gap, delay in zip(gaps, delays, strict=True)),
            expected=f">= {delays}",
            seen=gaps,
        )
        scenario.check_that(
            "the drawn delays wait at all, each within its ceiling (full jitter)",
            sum(delays) > 0
            and all(0 <= delay <= top for delay, top in zip(delays, ceilings, strict=True)),
            expected=f"0 <= delay <= {ceilings}, not all 0",
            seen=delays,
        )
        scenario.check_that(
            "the delays are drawn (jitter), not each attempt's ceiling",
            any(delay < ceiling - 0.001 for delay, ceiling in zip(delays, ceilings, strict=False)),
            expected=f"some delay below its ceiling {ceilings}",
            seen=delays,
        )


def check_client_recovers(
    aws: Aws, resources: RetryBackoff, scenario: Scenario, stand: Stand
) -> None:
    with scenario.step("Client: a call throttled twice succeeds on the third"):
        url_path = stand.path("flaky2", "client")
        error, answer = observe.call(
            aws, resources.client_function, {"url": stand.server.url + url_path}
        )
        scenario.check("error", expected=None, seen=error)
        scenario.check("statuses", expected=[429, 429, 200], seen=answer["statuses"])
        scenario.check("calls the downstream saw", expected=3, seen=len(stand.server.to(url_path)))


def check_sqs_redelivery(
    aws: Aws, resources: RetryBackoff, scenario: Scenario, stand: Stand
) -> None:
    with scenario.step(
        f"SQS redelivery: throttled until maxReceiveCount ({resources.max_receive_count}), then DLQ"
    ):
        paths = {
            "flaky1": stand.path("flaky1", "sqs"),
            "throttle": stand.path("throttle", "sqs"),
            "reject": stand.path("reject", "sqs"),
        }
        bodies = {
            name: json.dumps({"url": stand.server.url + url_path})
            for name, url_path in paths.items()
        }
        bodies["malformed"] = f"not json {stand.run_id}"
        aws.client("sqs").send_message_batch(
            QueueUrl=resources.queue.url,
            Entries=[{"Id": name, "MessageBody": body} for name, body in bodies.items()],
        )
        scenario.note("sent: throttled once, throttled always, rejected, malformed")
        dead_bodies = {bodies["throttle"], bodies["reject"], bodies["malformed"]}
        taken = observe.collect(
            aws,
            resources.dlq.url,
            lambda message: message["Body"] in dead_bodies,
            len(dead_bodies),
            timeout=45,
            waiting_for="messages in the DLQ",
        )
        dead = {message["Body"]: message for message in taken}
        scenario.check("DLQ entries, once each", expected=len(dead_bodies), seen=len(taken))
        # The message throttled once may still be waiting for its second delivery.
        observe.await_empty(
            aws, resources.queue.url, timeout=15, waiting_for="the queue to be empty"
        )
        calls_per_message = {
            name: len(stand.server.to(url_path)) for name, url_path in paths.items()
        }
        scenario.check(
            "calls per message",
            expected={"flaky1": 2, "throttle": resources.max_receive_count, "reject": 1},
            seen=calls_per_message,
        )
        throttled_at = [request.at for request in stand.server.to(paths["throttle"])]
        scenario.note(
            "gaps between the throttled message's deliveries (s): "
            f"{_gaps(throttled_at)} (a jittered visibility "
            f"timeout of 0..{resources.visibility_cap} s, plus the mapping's poll interval)"
        )
        reasons = {
            name: dead[bodies[name]]
            .get("MessageAttributes", {})
            .get("reason", {})
            .get("StringValue")
            for name in ("throttle", "reject", "malformed")
        }
        scenario.check_that(
            "DLQ entries and why",
            reasons["throttle"] is None
            and "status 400" in (reasons["reject"] or "")
            and "body is not" in (reasons["malformed"] or ""),
            expected="throttle by redrive (no reason); reject and malformed with a reason",
            seen=reasons,
        )
        scenario.check(
            "calls carrying the malformed body",
            expected=[],
            seen=[
                request.path
                for request in stand.server.requests
                if bodies["malformed"] in request.body.decode()
            ],
        )
        processed = stand.account.served(list(paths.values()))
        scenario.check_that(
            "nothing lost",
            len(bodies) == processed + len(taken),
            expected=f"{len(bodies)} in = processed + dead-lettered",
            seen=f"{len(bodies)} in; {processed} answered 200 by the downstream + "
            f"{len(taken)} taken from {resources.dlq.name}",
        )


def check_workflow_gives_up(
    aws: Aws, resources: RetryBackoff, scenario: Scenario, stand: Stand
) -> None:
    with scenario.step(
        f"Step Functions: Retry (BackoffRate, MaxDelaySeconds {resources.sfn_max_delay}, "
        "JitterStrategy FULL) then the Catch"
    ):
        url_path = stand.path("throttle", "sfn")
        per_task = 2
        done = executions.run(
            aws,
            resources.state_machine_arn,
            {"url": stand.server.url + url_path, "max_attempts": per_task},
            timeout=60,
        )
        scenario.check("execution", expected="FAILED", seen=done.status)
        scenario.check("error", expected="DownstreamUnavailable", seen=done.error)
        tries = 1 + resources.sfn_max_attempts
        scenario.check(
            "task attempts in the history", expected=tries, seen=done.count("TaskScheduled")
        )
        scenario.check(
            "calls the downstream saw",
            expected=tries * per_task,
            seen=len(stand.server.to(url_path)),
        )
        failed_at = [event["timestamp"] for event in done.events if event["type"] == "TaskFailed"]
        scheduled_at = [
            event["timestamp"] for event in done.events if event["type"] == "TaskScheduled"
        ]
        gaps = [
            round((nxt - fail).total_seconds(), 3)
            for fail, nxt in zip(failed_at, scheduled_at[1:], strict=False)
        ]
        scenario.note(f"gaps between a failed attempt and the next (s): {gaps}")
        scenario.check_that(
            "largest gap",
            len(gaps) == resources.sfn_max_attempts
            and max(gaps) <= resources.sfn_max_delay + SFN_ALLOWANCE,
            expected=f"{resources.sfn_max_attempts} gaps, each <= MaxDelaySeconds"
            f" {resources.sfn_max_delay} + {SFN_ALLOWANCE}",
            seen=gaps,
        )
        ceilings = [min(resources.sfn_max_delay, 1 * 2**attempt) for attempt in range(len(gaps))]
        scenario.check_that(
            "each gap within min(MaxDelaySeconds, IntervalSeconds * BackoffRate^n)",
            all(gap <= top + SFN_ALLOWANCE for gap, top in zip(gaps, ceilings, strict=True)),
            expected=[top + SFN_ALLOWANCE for top in ceilings],
            seen=gaps,
        )
        scenario.check_that(
            "the failure ended in the Catch path",
            done.entered[-2:] == ["RecordFailure", "GaveUp"],
            expected="... RecordFailure, GaveUp",
            seen=done.entered,
        )
        scenario.check_that(
            "the cause says the downstream gave up",
            "DownstreamThrottled" in (done.cause or "") or "gave up" in (done.cause or ""),
            expected="DownstreamThrottled / gave up",
            seen=(done.cause or "")[:160],
        )


def check_workflow_rejected_and_healthy(
    aws: Aws, resources: RetryBackoff, scenario: Scenario, stand: Stand
) -> None:
    with scenario.step(
        "Step Functions: a rejected call is caught after one call; a healthy one succeeds"
    ):
        url_path = stand.path("reject", "sfn")
        done = executions.run(
            aws, resources.state_machine_arn, {"url": stand.server.url + url_path}, timeout=60
        )
        scenario.check("execution", expected="FAILED", seen=done.status)
        scenario.check("task attempts", expected=1, seen=done.count("TaskScheduled"))
        scenario.check("calls the downstream saw", expected=1, seen=len(stand.server.to(url_path)))
        scenario.check(
            "states entered",
            expected=["CallDownstream", "RecordFailure", "GaveUp"],
            seen=done.entered,
        )
        url_path = stand.path("ok", "sfn")
        done = executions.run(
            aws, resources.state_machine_arn, {"url": stand.server.url + url_path}, timeout=60
        )
        scenario.check("execution", expected="SUCCEEDED", seen=done.status)
        scenario.check("states entered", expected=["CallDownstream", "Done"], seen=done.entered)
        scenario.check("calls the downstream saw", expected=1, seen=len(stand.server.to(url_path)))


def _reported_delays(message: str) -> list[float]:
    """The delays in the client's give-up message: "... delays [0.12, 0.3, ...])"."""
    found = re.search(r"delays \[([^\]]*)\]", message)
    return [float(delay) for delay in found.group(1).split(",") if delay.strip()] if found else []


def _gaps(times: list[float]) -> list[float]:
    return [round(later - earlier, 3) for earlier, later in zip(times, times[1:], strict=False)]
