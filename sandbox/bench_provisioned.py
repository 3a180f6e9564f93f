"""The benchmark's figures of a sandbox with every pattern provisioned, as a user has it after
`make up`: how long `make up` takes (from stopped, and again while it runs), what it costs
while idle, warm invoke latency, how soon an idle SQS mapping picks up a message, and
optionally how long the whole test suite takes against it.

It drives its own sandbox through the CLI (`python -m sandbox up`) on a free port with its own
state folder, so the developer's sandbox on 4566 is neither disturbed nor measured.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil

from sandbox import provision, settings
from sandbox.aws import Aws
from sandbox.bench import IDLE_WINDOW_S, create_function, elapsed_ms, invoke, kind_of
from sandbox.embedded.launcher import EmbeddedSandbox, processes_of
from sandbox.harness import await_value, unique_name
from sandbox.health import free_port

SETTLE_S = 5.0  # after provisioning: mappings start, DynamoDB Local finishes its JIT
PICKUP_SAMPLES = 20
PICKUP_GAP_S = 0.3  # between samples, so each message finds its mapping asleep
STATE_DIR = settings.STATE_DIR / "bench-provisioned"


@dataclass
class ProvisionedFigures:
    up_cold_s: float = 0.0
    up_again_s: float = 0.0
    idle_cpu_pct: dict[str, float] = field(default_factory=dict)
    warm_ms: list[float] = field(default_factory=list)
    pickup_ms: list[float] = field(default_factory=list)
    suite_s: float | None = None
    suite_passed: bool | None = None
    processes_left: list[int] = field(default_factory=list)


def measure(run_suite: bool, warm_calls: int) -> ProvisionedFigures:
    """Start a sandbox with `make up`'s command, take the figures, stop it."""
    figures = ProvisionedFigures()
    port = free_port()
    env = {
        **os.environ,
        "SANDBOX_MODE": "embedded",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "SANDBOX_STATE_DIR": str(STATE_DIR),
    }
    sandbox = EmbeddedSandbox(port, STATE_DIR)
    sandbox.stop()  # one an interrupted earlier run left behind
    try:
        figures.up_cold_s = _timed_up(env)
        figures.up_again_s = _timed_up(env)
        running = sandbox.running()
        assert running is not None, "the sandbox `up` started is not running"
        time.sleep(SETTLE_S)
        figures.idle_cpu_pct = idle_cpu(running.instance, IDLE_WINDOW_S)
        aws = Aws(env["AWS_ENDPOINT_URL"])
        figures.warm_ms = warm_invokes(aws, warm_calls)
        figures.pickup_ms = pickup_latencies(aws)
        if run_suite:
            began = time.perf_counter()
            suite = subprocess.run(["make", "test"], env=env, cwd=settings.PROJECT_ROOT)
            figures.suite_s = time.perf_counter() - began
            figures.suite_passed = suite.returncode == 0
    finally:
        recorded = sandbox.running()
        sandbox.stop()
        if recorded:
            figures.processes_left = processes_of(recorded.instance)
    return figures


def _timed_up(env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "up"], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"`sandbox up` failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - began


def idle_cpu(instance: str, window_s: float) -> dict[str, float]:
    """CPU of the sandbox's processes over `window_s` with nothing sent to it, in percent of
    one core, by kind of process."""
    before = _cpu_seconds(instance)
    time.sleep(window_s)
    after = _cpu_seconds(instance)
    by_kind: dict[str, float] = {}
    for pid, (kind, used) in after.items():
        spent = used - before.get(pid, (kind, 0.0))[1]
        by_kind[kind] = by_kind.get(kind, 0.0) + spent / window_s * 100
    return by_kind


def _cpu_seconds(instance: str) -> dict[int, tuple[str, float]]:
    """Per process: its kind and the user + system CPU seconds it has used."""
    found = {}
    for pid in processes_of(instance):
        try:
            times = psutil.Process(pid).cpu_times()
            found[pid] = (kind_of(pid), times.user + times.system)
        except psutil.Error:
            continue  # it ended meanwhile
    return found


def warm_invokes(aws: Aws, calls: int) -> list[float]:
    """Synchronous invokes of a trivial function, warmed once first, in ms."""
    lambda_ = aws.client("lambda")
    name = create_function(aws, "trivial.handler")
    invoke(lambda_, name)
    return [elapsed_ms(lambda: invoke(lambda_, name)) for _ in range(calls)]


def pickup_latencies(aws: Aws) -> list[float]:
    """From SendMessage to the function's put_item, each message sent to an idle mapping."""
    sqs, dynamodb = aws.client("sqs"), aws.client("dynamodb")
    table = provision.ensure_table(aws, unique_name("pickup"))
    queue, _dlq = provision.ensure_queue_with_dlq(aws, unique_name("pickup"))
    function = create_function(aws, "sqs_to_table.handler", {"TABLE_NAME": table})
    provision.ensure_event_source_mapping(aws, function, queue.arn, batch_size=10)
    latencies = []
    for _ in range(PICKUP_SAMPLES + 1):  # the first one starts the environment: not counted
        time.sleep(PICKUP_GAP_S)
        sent = time.time()
        message_id = sqs.send_message(QueueUrl=queue.url, MessageBody="pickup")["MessageId"]
        key = {"id": {"S": message_id}}
        item = await_value(
            lambda: dynamodb.get_item(TableName=table, Key=key).get("Item"),  # noqa: B023
            timeout=30,
            interval=0.02,
            waiting_for="the message's item",
        )
        latencies.append((float(item["put_at"]["N"]) - sent) * 1000)
    return latencies[1:]
