"""The live page (`make ui`): each pattern's resources as they are now, a button that runs
its scenario and streams the account, and the report rendered from the latest records.

Read-only but for running scenarios, which go through the CLI in a subprocess exactly as
`make scenario` does, one at a time (two at once would compete for a small machine and
could meet in shared resources). It serves on loopback only: it can start scenarios.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from sandbox import activity, observe, report, settings
from sandbox.aws import Aws
from sandbox.health import health, port_in_use
from sandbox.patterns import REPORTS_DIR, Pattern, catalogue

RECENT_SECONDS = 600  # how far back "recent invocations" look
MAX_COUNT_PAGES = 10  # a table's item count reads at most this many scan pages
EXECUTIONS_SHOWN = 5


class UiError(RuntimeError):
    """The live page cannot start as asked; the message says what to do."""


def check_bind(host: str, port: int) -> None:
    """Loopback only (the page can run scenarios), and a port that is free."""
    if not settings.is_local_host(host):
        raise UiError(
            f"Refusing to serve the live page on {host!r}: it can run scenarios, so it listens "
            "on this machine only. Use 127.0.0.1 (the default) or localhost."
        )
    if port_in_use(port, "127.0.0.1" if host == "localhost" else host):
        raise UiError(f"Port {port} is in use; choose another: make ui PORT=<port>.")


# -- what a pattern has now -----------------------------------------------------------
def pattern_state(aws: Aws, slug: str) -> dict[str, Any]:
    """The pattern's resources as they are now; a part that cannot be read says why."""
    parts: dict[str, Callable[[], Any]] = {
        "queues": lambda: queues(aws, slug),
        "tables": lambda: tables(aws, slug),
        "functions": lambda: functions(aws, slug),
        "state_machines": lambda: state_machines(aws, slug),
    }
    state: dict[str, Any] = {"slug": slug, "errors": {}}
    for name, read in parts.items():
        try:
            state[name] = read()
        except Exception as error:  # shown on the page; the other parts still come through
            state[name] = []
            state["errors"][name] = f"{type(error).__name__}: {error}"
    return state


def queues(aws: Aws, slug: str) -> list[dict[str, Any]]:
    """Each queue with its depth, and the depth of its DLQ (`<name>-dlq`) if it has one."""
    urls = aws.client("sqs").list_queues(QueueNamePrefix=slug).get("QueueUrls", [])
    by_name = {url.rsplit("/", 1)[-1]: url for url in urls}
    by_name = {name: url for name, url in sorted(by_name.items()) if activity.belongs(name, slug)}
    dlq_of = {name: _dlq_name(name) for name in by_name if not activity.is_dlq(name)}
    paired = set(dlq_of.values())
    rows = []
    for name, url in by_name.items():
        if name in paired:
            continue  # shown beside its queue
        dlq = dlq_of.get(name)
        rows.append(
            {
                "name": name,
                "depth": observe.depth(aws, url),
                "dlq": dlq if dlq in by_name else None,
                "dlq_depth": observe.depth(aws, by_name[dlq]) if dlq in by_name else None,
            }
        )
    return rows


def _dlq_name(queue: str) -> str:
    base, fifo, _ = queue.partition(".fifo")
    return f"{base}-dlq{fifo}"


def tables(aws: Aws, slug: str) -> list[dict[str, Any]]:
    """Each table with its item count (a count past MAX_COUNT_PAGES scan pages is a floor)."""
    dynamodb = aws.client("dynamodb")
    names = [
        name
        for page in dynamodb.get_paginator("list_tables").paginate()
        for name in page["TableNames"]
        if activity.belongs(name, slug)
    ]
    rows = []
    for name in names:
        count, pages, more = 0, 0, True
        scan: dict[str, Any] = {"TableName": name, "Select": "COUNT"}
        while more and pages < MAX_COUNT_PAGES:
            answer = dynamodb.scan(**scan)
            count, pages = count + answer["Count"], pages + 1
            more = "LastEvaluatedKey" in answer
            scan["ExclusiveStartKey"] = answer.get("LastEvaluatedKey")
        rows.append({"name": name, "items": count, "at_least": more})
    return rows


def functions(aws: Aws, slug: str) -> list[dict[str, Any]]:
    """Each function with its invocations and errors in the last RECENT_SECONDS."""
    names = [
        f["FunctionName"]
        for page in aws.client("lambda").get_paginator("list_functions").paginate()
        for f in page["Functions"]
        if activity.belongs(f["FunctionName"], slug)
    ]
    now = time.time()
    calls = activity.invocations(aws, slug, now - RECENT_SECONDS, now)
    rows = []
    for name in sorted(names):
        mine = [call for call in calls if call["function"] == name]
        errors = [call for call in mine if call["error"]]
        rows.append(
            {
                "name": name,
                "invocations": len(mine),
                "cold": sum(call["cold"] for call in mine),
                "errors": len(errors),
                "last_error": errors[-1]["error"] if errors else None,
                "last_seconds_ago": round(now - mine[-1]["start"]) if mine else None,
            }
        )
    return rows


def state_machines(aws: Aws, slug: str) -> list[dict[str, Any]]:
    """Each state machine with its latest executions."""
    sfn = aws.client("stepfunctions")
    rows = []
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if not activity.belongs(machine["name"], slug):
                continue
            latest = sfn.list_executions(
                stateMachineArn=machine["stateMachineArn"], maxResults=EXECUTIONS_SHOWN
            )["executions"]
            rows.append(
                {
                    "name": machine["name"],
                    "executions": [
                        {
                            "name": e["name"],
                            "status": e["status"],
                            "seconds_ago": round(time.time() - e["startDate"].timestamp()),
                        }
                        for e in latest
                    ],
                }
            )
    return rows


# -- the app --------------------------------------------------------------------------
def create_app(endpoint: str | None = None) -> Starlette:
    """The live page's app, reading the sandbox at `endpoint` (the configured one)."""
    aws = Aws(endpoint)
    for service in ("sqs", "dynamodb", "lambda", "logs", "stepfunctions"):
        aws.client(service)  # made now: boto3 sessions must not make clients in two threads
    patterns = {pattern.slug: pattern for pattern in catalogue()}
    templates = Environment(
        loader=FileSystemLoader(report.TEMPLATES), autoescape=select_autoescape(["html"])
    )
    running: dict[str, Any] = {}  # the scenario run last started: slug, process
    starting = asyncio.Lock()  # so two clicks cannot both start a run

    async def page(_: Request) -> HTMLResponse:
        html = templates.get_template("ui.html").render(
            patterns=patterns.values(), endpoint=aws.endpoint_url
        )
        return HTMLResponse(html)

    async def sandbox_health(_: Request) -> JSONResponse:
        doc = await asyncio.to_thread(health, aws.endpoint_url, 2)
        busy = running.get("slug") if _is_running(running) else None
        return JSONResponse({"endpoint": aws.endpoint_url, "up": doc is not None, "running": busy})

    async def state(request: Request) -> Response:
        pattern = _pattern(patterns, request)
        if pattern is None:
            return _unknown(request)
        return JSONResponse(await asyncio.to_thread(pattern_state, aws, pattern.slug))

    async def run(request: Request) -> Response:
        pattern = _pattern(patterns, request)
        if pattern is None:
            return _unknown(request)
        async with starting:
            if _is_running(running):
                return PlainTextResponse(
                    f"{running['slug']} is running; one scenario at a time.", status_code=409
                )
            process = await _start_scenario(pattern, aws.endpoint_url)
            running.update(slug=pattern.slug, process=process)
        return StreamingResponse(_account(process), media_type="text/plain")

    async def report_page(_: Request) -> HTMLResponse:
        html = await asyncio.to_thread(
            lambda: report.render(report.runs(REPORTS_DIR), pages_base="/pages")
        )
        return HTMLResponse(html)

    async def pattern_page(request: Request) -> PlainTextResponse:
        pattern = _pattern(patterns, request)
        if pattern is None:
            return _unknown(request)
        return PlainTextResponse(pattern.page.read_text(), media_type="text/markdown")

    return Starlette(
        routes=[
            Route("/", page),
            Route("/api/health", sandbox_health),
            Route("/api/patterns/{slug}", state),
            Route("/api/patterns/{slug}/run", run, methods=["POST"]),
            Route("/report", report_page),
            Route("/pages/{slug}.md", pattern_page),
        ]
    )


def _pattern(patterns: dict[str, Pattern], request: Request) -> Pattern | None:
    slug = request.path_params["slug"]
    return patterns.get(slug) or next((p for p in patterns.values() if p.module_name == slug), None)


def _unknown(request: Request) -> PlainTextResponse:
    slug = request.path_params["slug"]
    return PlainTextResponse(f"Unknown pattern {slug!r}.", status_code=404)


def _is_running(running: dict[str, Any]) -> bool:
    return "process" in running and running["process"].returncode is None


async def _start_scenario(pattern: Pattern, endpoint: str) -> asyncio.subprocess.Process:
    """`python -m sandbox scenario <slug>`, as `make scenario` runs it."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox",
        "scenario",
        pattern.slug,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=os.environ | {"AWS_ENDPOINT_URL": endpoint, "PYTHONUNBUFFERED": "1"},
        cwd=settings.PROJECT_ROOT,
    )


async def _account(process: asyncio.subprocess.Process) -> AsyncIterator[bytes]:
    """The scenario's account line by line as it prints it, then a `RESULT:` line. A page
    that goes away ends the run with it."""
    assert process.stdout is not None
    try:
        while line := await process.stdout.readline():
            yield line
        code = await process.wait()
        verdict = "passed" if code == 0 else f"failed (exit {code})"
        yield f"\nRESULT: {verdict}\n".encode()
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


def serve(host: str, port: int) -> None:
    """Serve the live page until Ctrl-C."""
    import uvicorn  # here: only `ui` needs the server

    check_bind(host, port)
    print(f"Live page: http://{host}:{port}/  (reads {settings.endpoint()}; Ctrl-C to stop)")
    uvicorn.run(create_app(), host=host, port=port, log_level="warning")
