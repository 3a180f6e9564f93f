"""Scenario for websockets: clients connect to a WebSocket API, submit jobs, and are told each
status as the worker records it, without polling.

1. A $connect without a token is refused (403) and leaves no connection behind.
2. Two clients each submit a job: each receives QUEUED, RUNNING 1..n, COMPLETE in order, with
   the result the table holds, and nothing about the other's job. A message that is not a
   valid job gets an error saying what to fix.
3. A client that leaves while its $disconnect is lost (the function is throttled, as a
   best-effort $disconnect can be missed on AWS): the notifier's post answers 410, the
   connection is dropped from the connections table, and the job still finishes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from bootstrap.websockets import WebSockets
from sandbox import items, observe, settings
from sandbox.aws import Aws
from sandbox.harness import Scenario, ScenarioFailed, await_value, unique_name

QUIET_SECONDS = 1.5  # how long a client must hear nothing more once its job is done


def run(aws: Aws, resources: WebSockets, scenario: Scenario) -> None:
    run_id = unique_name("run")
    refused_connect_leaves_nothing(aws, resources, scenario)
    each_client_hears_only_its_own_job(aws, resources, scenario, run_id)
    a_bad_message_gets_a_clear_error(resources, scenario, run_id)
    a_gone_client_is_dropped_and_its_job_finishes(aws, resources, scenario, run_id)


def refused_connect_leaves_nothing(aws: Aws, resources: WebSockets, scenario: Scenario) -> None:
    with scenario.step("A $connect without a token is refused and leaves no connection"):
        before = len(items.scan(aws, resources.connections_table))
        try:
            with connect(resources.url, open_timeout=20):
                status = 101
        except InvalidStatus as refused:
            status = refused.response.status_code
        scenario.check("handshake answer without a token", expected=403, seen=status)
        scenario.check(
            "connections in the table",
            expected=before,
            seen=len(items.scan(aws, resources.connections_table)),
        )


def each_client_hears_only_its_own_job(
    aws: Aws, resources: WebSockets, scenario: Scenario, run_id: str
) -> None:
    with scenario.step("Two clients submit; each is told its own job's statuses, in order"):
        jobs = {"alice": (f"job-a-{run_id}", 3), "bob": (f"job-b-{run_id}", 2)}
        with (
            _client(resources, f"alice-{run_id}") as alice,
            _client(resources, f"bob-{run_id}") as bob,
        ):
            clients = {"alice": alice, "bob": bob}
            texts = {name: f"hello from {name} {run_id}" for name in jobs}
            for name, (job_id, steps) in jobs.items():
                clients[name].send(_submit(job_id, texts[name], steps))
            heard = {name: _hear_until_complete(clients[name], jobs[name][0]) for name in jobs}
            for name, client in clients.items():
                heard[name] += _heard_while_quiet(client)
        users = [f"{name}-{run_id}" for name in jobs]
        await_value(
            lambda: [
                row
                for row in items.scan(aws, resources.connections_table)
                if row["userId"] in users
            ],
            until=lambda rows: not rows,
            timeout=20,
            waiting_for="$disconnect to remove alice's and bob's connection rows once they closed",
        )
        for name, (job_id, steps) in jobs.items():
            updates = heard[name]
            scenario.note(f"{name} heard: {[_label(update) for update in updates]}")
            scenario.check(
                f"{name}'s updates about other jobs",
                expected=[],
                seen=[update for update in updates if update.get("jobId") != job_id],
            )
            stored = items.get(aws, resources.jobs_table, {"jobId": job_id})
            scenario.check(
                f"{name}'s statuses, in order",
                expected=[
                    "QUEUED",
                    *(f"RUNNING {i}/{steps}" for i in range(1, steps + 1)),
                    "COMPLETE",
                ],
                seen=[_label(update) for update in updates],
            )
            scenario.check(
                f"{name}'s result as the table holds it",
                expected=(stored or {}).get("result"),
                seen=updates[-1].get("result"),
            )
            scenario.check(
                f"{name}'s result: the words and the upper-cased text it sent",
                expected={"words": len(texts[name].split()), "upper": texts[name].upper()},
                seen=updates[-1].get("result"),
            )


def a_bad_message_gets_a_clear_error(
    resources: WebSockets, scenario: Scenario, run_id: str
) -> None:
    with scenario.step("A message that is not a job gets an error saying what to fix"):
        with _client(resources, f"carol-{run_id}") as client:
            client.send(json.dumps({"action": "submit", "jobId": f"bad-{run_id}"}))
            missing_text = json.loads(client.recv(timeout=20))
            client.send(json.dumps({"action": "dance"}))
            unknown_action = json.loads(client.recv(timeout=20))
        scenario.check(
            "answer to a submit without text",
            expected={
                "type": "error",
                "message": "submit refused: text must be a non-empty string",
            },
            seen=missing_text,
        )
        scenario.check_that(
            "answer to an unknown action (the $default route)",
            unknown_action.get("type") == "error" and "unknown action" in unknown_action["message"],
            expected="an error naming the unknown action",
            seen=unknown_action,
        )


def a_gone_client_is_dropped_and_its_job_finishes(
    aws: Aws, resources: WebSockets, scenario: Scenario, run_id: str
) -> None:
    with scenario.step(
        "A client leaves and its $disconnect is lost: the 410 drops it, its job finishes"
    ):
        lambda_ = aws.client("lambda")
        # Throttled, the $disconnect function is not run: the connection row stays behind, as
        # when AWS misses a $disconnect (it is best effort).
        lambda_.put_function_concurrency(
            FunctionName=resources.disconnect_function, ReservedConcurrentExecutions=0
        )
        try:
            user, job_id, text = f"dave-{run_id}", f"job-d-{run_id}", f"left early {run_id}"
            with _client(resources, user) as client:
                connection_id = _connection_of(aws, resources, user)
                client.send(_submit(job_id, text, 2))
            scenario.note(f"dave ({connection_id}) closed right after submitting {job_id}")
            management = _management(aws, resources)
            scenario.check(
                "the management API's answer for dave's connection",
                expected="GoneException",
                seen=await_value(
                    lambda: _error_of(
                        lambda: management.get_connection(ConnectionId=connection_id)
                    ),
                    timeout=20,
                    waiting_for="the server to see dave's connection closed",
                ),
            )
            finished = await_value(
                lambda: items.get(aws, resources.jobs_table, {"jobId": job_id}) or {},
                until=lambda job: job.get("status") == "COMPLETE",
                timeout=40,
                waiting_for=f"{job_id} to be COMPLETE",
            )
            scenario.check(
                "dave's job result (it finished without him)",
                expected={"words": len(text.split()), "upper": text.upper()},
                seen=finished.get("result"),
            )
            await_value(
                lambda: items.get(
                    aws, resources.connections_table, {"connectionId": connection_id}
                ),
                until=lambda row: row is None,
                timeout=30,
                waiting_for="the notifier to drop dave's connection row after a 410",
            )
            observe.check_logged(
                scenario, aws, resources.notifier, connection_id, says="Connection gone: dropped"
            )
        finally:
            lambda_.delete_function_concurrency(FunctionName=resources.disconnect_function)


@contextmanager
def _client(resources: WebSockets, token: str) -> Iterator[ClientConnection]:
    with connect(f"{resources.url}?token={token}", open_timeout=30) as client:
        yield client


def _submit(job_id: str, text: str, steps: int) -> str:
    return json.dumps({"action": "submit", "jobId": job_id, "text": text, "steps": steps})


def _hear_until_complete(client: ClientConnection, job_id: str, timeout: float = 60) -> list[Any]:
    """Every message the client receives until its job's COMPLETE (pushed, never asked for)."""
    heard: list[Any] = []
    deadline = time.monotonic() + timeout
    while not any(m.get("jobId") == job_id and m.get("status") == "COMPLETE" for m in heard):
        left = deadline - time.monotonic()
        if left <= 0:
            raise ScenarioFailed(f"No COMPLETE for {job_id} within {timeout:g} s; heard {heard}")
        try:
            heard.append(json.loads(client.recv(timeout=left)))
        except TimeoutError:
            continue
    return heard


def _heard_while_quiet(client: ClientConnection) -> list[Any]:
    """What else arrives within QUIET_SECONDS (should be nothing)."""
    heard: list[Any] = []
    deadline = time.monotonic() + QUIET_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        try:
            heard.append(json.loads(client.recv(timeout=left)))
        except TimeoutError:
            break
    return heard


def _label(update: dict[str, Any]) -> str:
    if update.get("status") == "RUNNING":
        return f"RUNNING {update['progress']}/{update['steps']}"
    return str(update.get("status", update))


def _connection_of(aws: Aws, resources: WebSockets, user: str) -> str:
    rows = await_value(
        lambda: [
            row for row in items.scan(aws, resources.connections_table) if row["userId"] == user
        ],
        timeout=10,
        waiting_for=f"{user}'s connection row",
    )
    return str(rows[0]["connectionId"])


def _management(aws: Aws, resources: WebSockets) -> Any:
    """boto3's apigatewaymanagementapi client, as a handler makes it."""
    return boto3.session.Session().client(
        "apigatewaymanagementapi",
        endpoint_url=settings.check_endpoint(resources.callback_url),
        region_name=aws.region,
    )


def _error_of(call: Callable[[], Any]) -> str | None:
    try:
        call()
    except Exception as error:
        return str(
            getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
        )
    return None
