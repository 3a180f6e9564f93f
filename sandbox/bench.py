"""Performance figures of the embedded sandbox (`make bench`), each with its target.

First, with every pattern provisioned (`bench_provisioned`): `make up` from stopped and again,
idle CPU, warm invoke, pickup latency of an idle SQS mapping, optionally the test suite.
Then, in an empty sandbox: start until healthy; Lambda cold starts (a trivial handler, one
importing boto3); warm synchronous invoke latency; `messages` SQS messages through an event
source mapping into a function writing one DynamoDB item each (three times, the median
counted); the memory of the sandbox's
processes. Context figures say where time goes: LocalStack's request floor (sts
get-caller-identity), put_item, the function's run as the executor reports it, importing
boto3.

It starts its own sandbox on a free port with its own state folder, so the developer's on 4566
is neither disturbed nor measured; it stops it at the end and checks nothing of it is left.
"""

from __future__ import annotations

import base64
import functools
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from sandbox import provision, settings
from sandbox.aws import Aws
from sandbox.embedded import dynamodb_local
from sandbox.embedded.launcher import EmbeddedSandbox, processes_of
from sandbox.harness import await_value, unique_name
from sandbox.health import free_port

if TYPE_CHECKING:
    from sandbox.bench_provisioned import ProvisionedFigures

IDLE_WINDOW_S = 30.0

FUNCTIONS_DIR = Path(__file__).parent / "bench_functions"
COLD_FUNCTIONS = 5
MIN_WARM_CALLS = 50
SAMPLE_CALLS = 50  # of each context figure
POLL_INTERVAL = 0.05
PIPELINE_RUNS = 3  # of each throughput test; the median is the figure
BOTO3_CLIENT_MS = (  # prints how long importing boto3 and making a client took
    "import time; began = time.perf_counter(); import boto3; "
    "boto3.client('dynamodb', region_name='us-east-1'); print((time.perf_counter() - began) * 1e3)"
)
PROCESS_KINDS = (  # (kind, text in its command line); anything else is "other"
    ("LocalStack", "sandbox.embedded.entry"),
    ("DynamoDB Local (java)", "DynamoDBLocal"),
    ("Lambda runtimes", "python_runtime.py"),
    ("Lambda runtimes", "node_runtime.js"),
    ("kinesis-mock (DynamoDB streams)", "kinesis-local"),
)
Row = tuple[str, str, str, str]


@dataclass
class Figures:
    start_s: float = 0.0
    first_dynamodb_ms: float = 0.0
    cold_ms: list[float] = field(default_factory=list)
    cold_boto3_ms: float = 0.0
    boto3_import_ms: float = 0.0
    warm_ms: list[float] = field(default_factory=list)
    floor_p50_ms: float = 0.0
    runtime_p50_ms: float = 0.0
    put_item_p50_ms: float = 0.0
    pipeline_s: float = 0.0
    pipeline_first_s: float = 0.0
    pipeline_batched_s: float = 0.0
    invocations: int = 0
    environments: int = 0
    first_item_s: float = 0.0
    put_in_function_ms: float = 0.0
    memory_mb: dict[str, tuple[int, float]] = field(default_factory=dict)
    proportional_mb: float = 0.0


def main(provisioned: ProvisionedFigures, messages: int = 200, warm_calls: int = 100) -> int:
    """Measure the empty sandbox's figures, then print them all beside `provisioned`."""
    dynamodb_local.cached_emulator(settings.CACHE_DIR)  # a first-ever download is not start-up
    sandbox = EmbeddedSandbox(free_port(), settings.STATE_DIR / "bench")
    sandbox.stop()  # one an interrupted earlier run left behind
    figures = Figures()
    began = time.perf_counter()
    running = sandbox.start()
    figures.start_s = time.perf_counter() - began
    try:
        aws = Aws(f"http://127.0.0.1:{running.port}")
        measure(aws, figures, messages, max(warm_calls, MIN_WARM_CALLS))
        figures.memory_mb = memory_by_kind(running.instance)
        figures.proportional_mb = proportional_memory_mb(running.instance)
    finally:
        sandbox.stop()
        left = processes_of(running.instance)
    print_table(provisioned_rows(provisioned) + table_rows(figures, messages))
    print("\nNotes: " + " ".join(notes(figures, messages)))
    left += provisioned.processes_left
    print(f"\nBench sandboxes stopped; their processes left: {len(left)} {left}")
    return 1 if left or provisioned.suite_passed is False else 0


def provisioned_rows(f: ProvisionedFigures) -> list[Row]:
    """The figures of the sandbox with every pattern provisioned."""
    idle = sum(f.idle_cpu_pct.values())
    rows = [
        ("With every pattern provisioned:", "", "", ""),
        row("make up, sandbox stopped (start + provision)", f.up_cold_s, "s", 10, digits=1),
        row("make up again, nothing to change", f.up_again_s, "s", 3, digits=1),
        row(f"idle CPU, {IDLE_WINDOW_S:g} s window, % of one core", idle, "%", 5, digits=1),
    ]
    for kind, pct in sorted(f.idle_cpu_pct.items(), key=lambda kind: -kind[1]):
        rows.append(row(f"  {kind}", pct, "%", digits=1))
    rows += [
        row(f"warm invoke p50 of {len(f.warm_ms)}", percentile(f.warm_ms, 50), "ms", 10, 1),
        row(
            f"SQS pickup: send -> item written, p50 of {len(f.pickup_ms)}",
            percentile(f.pickup_ms, 50),
            "ms",
            100,
        ),
        row("  the same, p95", percentile(f.pickup_ms, 95), "ms"),
    ]
    if f.suite_s is None:
        rows.append(("make test, sandbox up", "not run", "<= 180 s", "(make bench SUITE=1)"))
    else:
        verdict = "passed" if f.suite_passed else "FAILED"
        rows.append(row(f"make test, sandbox up ({verdict})", f.suite_s, "s", 180))
    return rows + [("In an empty sandbox:", "", "", "")]


def elapsed_ms(call: Callable[[], Any]) -> float:
    began = time.perf_counter()
    call()
    return (time.perf_counter() - began) * 1000


def median_ms(call: Callable[[], Any]) -> float:
    return statistics.median(elapsed_ms(call) for _ in range(SAMPLE_CALLS))


def measure(aws: Aws, figures: Figures, messages: int, warm_calls: int) -> None:
    sts, dynamodb, lambda_ = aws.client("sts"), aws.client("dynamodb"), aws.client("lambda")
    sts.get_caller_identity()  # LocalStack loads a service on its first request
    figures.floor_p50_ms = median_ms(sts.get_caller_identity)
    figures.first_dynamodb_ms = elapsed_ms(dynamodb.list_tables)
    trivial = [create_function(aws, "trivial.handler") for _ in range(COLD_FUNCTIONS)]
    figures.cold_ms = [elapsed_ms(functools.partial(invoke, lambda_, name)) for name in trivial]
    with_boto3 = create_function(aws, "with_boto3.handler")
    figures.cold_boto3_ms = elapsed_ms(lambda: invoke(lambda_, with_boto3))
    figures.boto3_import_ms = boto3_import_ms()
    figures.warm_ms = [elapsed_ms(lambda: invoke(lambda_, trivial[0])) for _ in range(warm_calls)]
    figures.runtime_p50_ms = statistics.median(
        runtime_duration_ms(lambda_, trivial[0]) for _ in range(SAMPLE_CALLS)
    )
    measure_pipeline(aws, figures, messages)


def create_function(aws: Aws, handler: str, environment: dict[str, str] | None = None) -> str:
    """A fresh function from bench_functions/, once it is Active; returns its name."""
    lambda_ = aws.client("lambda")
    name = unique_name("bench")
    lambda_.create_function(
        FunctionName=name,
        Role=provision.ensure_role(aws, provision.LAMBDA_ROLE, "lambda.amazonaws.com"),
        Runtime=provision.LAMBDA_RUNTIME,
        Handler=handler,
        Code={"ZipFile": provision.package_handler(FUNCTIONS_DIR)},
        Timeout=30,
        Environment={"Variables": environment or {}},
    )
    await_value(
        lambda: lambda_.get_function_configuration(FunctionName=name)["State"],
        until=lambda state: state == "Active",
        interval=POLL_INTERVAL,
        waiting_for=f"{name} to be Active",
    )
    return name


def invoke(lambda_: Any, name: str, **options: str) -> dict[str, Any]:
    response = lambda_.invoke(FunctionName=name, Payload=b"{}", **options)
    response["Payload"].read()
    if response.get("FunctionError"):
        raise RuntimeError(f"{name} failed: {response['FunctionError']}")
    return response


def runtime_duration_ms(lambda_: Any, name: str) -> float:
    """The Duration of the REPORT log line: the executor's round trip to the runtime."""
    log = invoke(lambda_, name, LogType="Tail")["LogResult"]
    match = re.search(r"\tDuration: ([\d.]+) ms", base64.b64decode(log).decode())
    return float(match.group(1)) if match else float("nan")


def boto3_import_ms() -> float:
    """Importing boto3 and making a client in a fresh Python process (median of 3)."""
    command = [sys.executable, "-c", BOTO3_CLIENT_MS]
    runs = (subprocess.run(command, capture_output=True, text=True, check=True) for _ in range(3))
    return statistics.median(float(run.stdout) for run in runs)


def measure_pipeline(aws: Aws, figures: Figures, messages: int) -> None:
    """SQS -> Lambda -> DynamoDB, with a put_item per record and with a batch writer, each
    PIPELINE_RUNS times on a fresh queue, function and table: the median is the figure. The
    first run in a fresh sandbox also pays one-time costs (DynamoDB Local's JIT compiling its
    write path, the first environments' cold starts), so it is shown on its own. Only each
    handler's last function is kept, so the memory measured after is one function's of each."""
    dynamodb = aws.client("dynamodb")
    runs = pipeline_runs(aws, "sqs_to_table.handler", messages)
    figures.pipeline_first_s = runs[0].seconds
    figures.pipeline_s = statistics.median(run.seconds for run in runs)
    median_run = sorted(runs, key=lambda run: run.seconds)[len(runs) // 2]
    items = dynamodb.scan(
        TableName=median_run.table, ProjectionExpression="invocation, environment, put_at"
    )
    stored = [
        item
        for item in items["Items"]
        if float(item.get("put_at", {"N": 0})["N"]) >= median_run.sent_at
    ]
    break_down_pipeline(figures, stored, median_run.sent_at)
    figures.put_item_p50_ms = median_ms(
        lambda: dynamodb.put_item(TableName=runs[-1].table, Item={"id": {"S": unique_name("p")}})
    )
    batched = pipeline_runs(aws, "sqs_to_table_batched.handler", messages)
    figures.pipeline_batched_s = statistics.median(run.seconds for run in batched)


@dataclass(frozen=True)
class PipelineRun:
    table: str
    function: str
    sent_at: float  # epoch s
    seconds: float  # until every item was stored


def pipeline_runs(aws: Aws, handler: str, messages: int) -> list[PipelineRun]:
    """PIPELINE_RUNS runs; the functions of all but the last are deleted (their environments
    end), the tables kept for reading."""
    lambda_ = aws.client("lambda")
    runs: list[PipelineRun] = []
    for _ in range(PIPELINE_RUNS):
        if runs:
            done = runs[-1].function
            for mapping in lambda_.list_event_source_mappings(FunctionName=done)[
                "EventSourceMappings"
            ]:
                lambda_.delete_event_source_mapping(UUID=mapping["UUID"])
            lambda_.delete_function(FunctionName=done)
        runs.append(run_pipeline(aws, handler, messages))
    return runs


def run_pipeline(aws: Aws, handler: str, messages: int) -> PipelineRun:
    """Send `messages` through a fresh queue, mapping (batch size 10) and function, warmed up
    with one message first as in a running sandbox."""
    sqs, dynamodb = aws.client("sqs"), aws.client("dynamodb")
    table = provision.ensure_table(aws, unique_name("bench"))
    queue, _dlq = provision.ensure_queue_with_dlq(aws, unique_name("bench"))
    function = create_function(aws, handler, {"TABLE_NAME": table})
    provision.ensure_event_source_mapping(
        aws, function, queue.arn, batch_size=10, report_batch_item_failures=False
    )

    def count() -> int:
        return dynamodb.scan(TableName=table, Select="COUNT")["Count"]

    sqs.send_message(QueueUrl=queue.url, MessageBody="warm-up")
    await_stored(count, 1, timeout=60)
    sent_at, began = time.time(), time.perf_counter()
    for first in range(0, messages, 10):
        entries = [{"Id": str(i), "MessageBody": f"m{i}"} for i in range(first, first + 10)]
        sqs.send_message_batch(QueueUrl=queue.url, Entries=entries[: messages - first])
    await_stored(count, 1 + messages, timeout=max(60.0, messages / 5))
    return PipelineRun(table, function, sent_at, time.perf_counter() - began)


def await_stored(count: Callable[[], int], expected: int, timeout: float) -> None:
    await_value(
        count,
        until=lambda n: n >= expected,
        timeout=timeout,
        interval=POLL_INTERVAL,
        waiting_for=f"{expected} items",
    )


def break_down_pipeline(figures: Figures, stored: list[dict[str, Any]], sent_at: float) -> None:
    """From when each put_item started: the first item's delay and a put's time inside the
    function (batches run side by side, so puts wait on each other in LocalStack)."""
    by_invocation: dict[str, list[float]] = {}
    for item in stored:
        by_invocation.setdefault(item["invocation"]["S"], []).append(float(item["put_at"]["N"]))
    batches = sorted((sorted(times) for times in by_invocation.values()), key=lambda b: b[0])
    figures.invocations = len(batches)
    figures.environments = len({item["environment"]["N"] for item in stored})
    figures.first_item_s = batches[0][0] - sent_at
    puts_within = sum(len(batch) - 1 for batch in batches)
    figures.put_in_function_ms = sum(b[-1] - b[0] for b in batches) / max(puts_within, 1) * 1000


def kind_of(pid: int) -> str:
    """The PROCESS_KINDS kind of a process, from its command line (psutil.Error once it ended)."""
    command = " ".join(psutil.Process(pid).cmdline())
    return next((kind for kind, marker in PROCESS_KINDS if marker in command), "other")


def memory_by_kind(instance: str) -> dict[str, tuple[int, float]]:
    """(processes, MB of resident memory) per kind of process of this sandbox."""
    totals: dict[str, tuple[int, float]] = {}
    for pid in processes_of(instance):
        try:
            kind = kind_of(pid)
            rss = psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue  # it ended meanwhile
        count, mb = totals.get(kind, (0, 0.0))
        totals[kind] = (count + 1, mb + rss / 1024 / 1024)
    return totals


def proportional_memory_mb(instance: str) -> float:
    """Total PSS: each shared page counted once, split among the processes sharing it (the
    forked Python environments share most of theirs with their template). Linux reports PSS;
    elsewhere each process's unique memory (USS) stands in, which leaves shared pages out."""
    total = 0
    for pid in processes_of(instance):
        try:
            full = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue
        total += getattr(full, "pss", full.uss)
    return total / 1024 / 1024


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def row(measure: str, value: float, unit: str, limit: float | None = None, digits: int = 0) -> Row:
    """A table row; with `limit`, the target `<= limit` and whether the value meets it."""
    figure = f"{value:.{digits}f} {unit}"
    if limit is None:
        return (measure, figure, "", "")
    return (measure, figure, f"<= {limit:g} {unit}", "yes" if value <= limit else "NO")


def table_rows(f: Figures, messages: int) -> list[Row]:
    cold, warm = len(f.cold_ms), len(f.warm_ms)
    sum_mb = sum(mb for _, mb in f.memory_mb.values())
    rows = [
        row("start to healthy", f.start_s, "s", 5, digits=2),
        row(
            f"Lambda cold start, trivial: median of {cold}", statistics.median(f.cold_ms), "ms", 300
        ),
        row(f"Lambda cold start, trivial: max of {cold}", max(f.cold_ms), "ms", 300),
        row("Lambda cold start, boto3 client at import", f.cold_boto3_ms, "ms"),
        row(f"warm invoke p50 of {warm}", percentile(f.warm_ms, 50), "ms", 10, digits=1),
        row(f"warm invoke p95 of {warm}", percentile(f.warm_ms, 95), "ms", digits=1),
        row(
            f"{messages} msgs SQS -> Lambda -> DynamoDB, median of {PIPELINE_RUNS}",
            f.pipeline_s,
            "s",
            1.5,
            digits=2,
        ),
        row("  the first run in this fresh sandbox", f.pipeline_first_s, "s", digits=2),
        row("  the same, function using a batch writer", f.pipeline_batched_s, "s", 1.5, 2),
        ("  Lambda invocations / environments", f"{f.invocations} / {f.environments}", "", ""),
        row("  first item written after the first send", f.first_item_s * 1000, "ms"),
        row("  put_item inside the function", f.put_in_function_ms, "ms", digits=1),
        row("context: LocalStack request floor, sts p50", f.floor_p50_ms, "ms", digits=1),
        row("context: function run in the executor, p50", f.runtime_p50_ms, "ms", digits=1),
        row("context: put_item from the bench, p50", f.put_item_p50_ms, "ms", digits=1),
        row("context: first DynamoDB request (starts it)", f.first_dynamodb_ms, "ms"),
        row("context: import boto3 + client, bare Python", f.boto3_import_ms, "ms"),
        row("memory (VmRSS) after the throughput test", sum_mb, "MB"),
        row("  the same as PSS (shared pages counted once)", f.proportional_mb, "MB", 600),
    ]
    by_size = sorted(f.memory_mb.items(), key=lambda kind: -kind[1][1])
    for kind, (count, mb) in by_size:
        rows.append(row(f"  {kind}: {count} process{'es' if count > 1 else ''}", mb, "MB"))
    return rows


def print_table(rows: list[Row]) -> None:
    header = ("MEASURE", "FIGURE", "TARGET", "MET")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())


def notes(f: Figures, messages: int) -> list[str]:
    """One line per missed target that the figures above explain, and boto3's share."""
    floor, warm, run = f.floor_p50_ms, percentile(f.warm_ms, 50), f.runtime_p50_ms
    extra = f.cold_boto3_ms - statistics.median(f.cold_ms)
    lines = [
        f"A boto3 handler's cold start is {extra:.0f} ms above a trivial one's; importing boto3 "
        f"and making a client takes {f.boto3_import_ms:.0f} ms in a bare Python process."
    ]
    if warm > 15:
        lines.append(
            f"Warm invoke: LocalStack's request floor is {floor:.1f} ms and the function runs "
            f"{run:.1f} ms, so ~{warm - floor - run:.0f} ms is LocalStack's invoke path, which "
            "on every invoke also sends the logs to CloudWatch Logs and an Invocations metric "
            "to CloudWatch through its own request pipeline (background threads, one GIL)."
        )
    if f.pipeline_s > 1.5:
        lines.append(
            f"Throughput: {f.invocations} batches ran in {f.environments} environments; "
            f"{messages} puts at {f.put_in_function_ms:.0f} ms each take "
            f"{messages * f.put_in_function_ms / 1000:.1f} s of function time across the "
            f"batches running side by side; the first item took {f.first_item_s:.2f} s. Every "
            "put_item crosses LocalStack's gateway (one process, one GIL), which hands it to "
            "DynamoDB Local unparsed (a put_item from outside takes "
            f"{f.put_item_p50_ms:.1f} ms, LocalStack's request floor {f.floor_p50_ms:.1f} ms); "
            "on two cores the functions' boto3, the gateway and DynamoDB Local share the CPU. "
            "A batch writer sends one request per batch."
        )
    return lines
