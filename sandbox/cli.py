"""The sandbox's command line (the Makefile calls it).

Usage:
  python -m sandbox list                   patterns, one line each
  python -m sandbox up                     start (or find) the sandbox, provision every pattern
  python -m sandbox down                   stop what `up` started
  python -m sandbox status                 mode, health, what is provisioned
  python -m sandbox logs [-f]              the sandbox's log
  python -m sandbox bootstrap [SLUG|all]   provision one pattern or all
  python -m sandbox scenario SLUG|all      run scenarios, then write the report; exit 1 if any fails
  python -m sandbox report                 write .sandbox/reports/index.html from the last runs
  python -m sandbox ui [--host H] [--port P]  the live page, on 127.0.0.1:8566 by default
  python -m sandbox bench                  performance figures (embedded mode)
  python -m sandbox mutants [SLUG...|all]  run the documented mutants; exit 1 if any survives
  python -m sandbox pull                   fetch every Docker image (then Docker mode runs offline)

Environment: SANDBOX_MODE=docker|embedded|external, AWS_ENDPOINT_URL (default
http://localhost:4566), SANDBOX_ALLOW_REMOTE_ENDPOINT=1 to allow a non-local endpoint.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import IO, Any

from jinja2 import TemplateError

from sandbox import modes, report, settings, ui, websocket_api
from sandbox.aws import Aws
from sandbox.embedded.dynamodb_local import SetupError
from sandbox.harness import ENGINE_LIMITS, WaitTimedOut, await_value
from sandbox.health import NotHealthyError, health, info, port_in_use
from sandbox.patterns import (
    SCENARIO_JOBS,
    Pattern,
    UnknownPattern,
    catalogue,
    find,
    run_scenario,
    run_scenarios,
)

PROVISIONED_FILE = settings.STATE_DIR / "provisioned.json"
UP_LOCK_FILE = settings.STATE_DIR / "up.lock"
UP_WAIT_S = 900  # the longest `make up` waits for another one (a first one installs handlers' deps)


def cmd_list(_: argparse.Namespace) -> int:
    patterns = catalogue()
    width = max(len(p.slug) for p in patterns)
    for p in patterns:
        print(f"{p.slug:<{width}}  {p.description}")
    return 0


def cmd_up(_: argparse.Namespace) -> int:
    mode = modes.choose()
    print(f"Sandbox: {mode.name} mode at {mode.endpoint}")
    with only_one_up():
        print(f"Sandbox: {mode.start()}")
        provision_patterns(Aws(mode.endpoint), catalogue(), skip_unchanged=True)
    _print_table(catalogue())
    return 0


class UpInProgress(RuntimeError):
    """Another `make up` held the sandbox for longer than UP_WAIT_S."""


@contextmanager
def only_one_up() -> Iterator[None]:
    """Two `make up` at once would each start a LocalStack on the same port (one of them
    orphaned) and provision every pattern twice: the second waits for the first, then finds
    its sandbox running and its patterns provisioned."""
    settings.STATE_DIR.mkdir(parents=True, exist_ok=True)
    with UP_LOCK_FILE.open("a+") as lock:
        if not _try_lock(lock):
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            print(
                f"Sandbox: another `make up` (pid {holder}) is starting this sandbox; "
                "waiting for it to finish...",
                flush=True,
            )
            try:
                await_value(
                    lambda: _try_lock(lock),
                    timeout=UP_WAIT_S,
                    interval=0.5,
                    waiting_for="the other `make up` to finish",
                )
            except WaitTimedOut:
                raise UpInProgress(
                    f"Another `make up` (pid {holder}) still holds {UP_LOCK_FILE} after "
                    f"{UP_WAIT_S} s. Wait for it, or stop it (kill {holder}), then run "
                    "`make up` again."
                ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield  # the lock ends with the file's closing, or with this process


def _try_lock(lock: IO[str]) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def cmd_down(_: argparse.Namespace) -> int:
    print(modes.choose().stop())
    PROVISIONED_FILE.unlink(missing_ok=True)
    return 0


def cmd_pull(_: argparse.Namespace) -> int:
    fetched = modes.pull()
    print("Fetched: " + ", ".join(fetched) + ". Docker mode now starts without a network.")
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    mode = modes.choose()
    doc = health(mode.endpoint)
    print(f"mode:      {mode.name}")
    print(f"endpoint:  {mode.endpoint}")
    if doc is None:
        print("health:    not running (start it with `make up`)")
        return 1
    about = info(mode.endpoint) or {}
    running = sorted(name for name, state in doc.get("services", {}).items() if state == "running")
    print(
        f"health:    up, LocalStack {doc.get('version', '?')}, uptime {about.get('uptime', '?')} s"
    )
    print(f"services:  running: {', '.join(running) or 'none yet (they start on first use)'}")
    provisioned = _provisioned_in(about.get("session_id"))
    for p in catalogue():
        state = "provisioned" if p.slug in provisioned else "not provisioned"
        print(f"pattern:   {p.slug:<22} {state}")
    _print_websocket_apis(mode.endpoint, mode.port)
    return 0


def _print_websocket_apis(endpoint: str, port: int) -> None:
    """The WebSocket API stand-in: whether it listens, and the APIs declared to it."""
    listening = port_in_use(websocket_api.websocket_port(port))
    print(
        f"websocket: {'listening' if listening else 'not listening'} on 127.0.0.1:"
        f"{websocket_api.websocket_port(port)} (management API on "
        f"{websocket_api.management_port(port)})"
    )
    for api in websocket_api.declared():
        print(
            f"websocket: {api.name:<22} {websocket_api.websocket_url(api, endpoint)}  "
            f"routes: {', '.join(sorted(api.routes))}"
        )


def cmd_logs(args: argparse.Namespace) -> int:
    return subprocess.call(modes.choose().logs_command(args.follow))


def cmd_bootstrap(args: argparse.Namespace) -> int:
    patterns = catalogue() if args.slug == "all" else [find(args.slug)]
    provision_patterns(_aws_for_running_sandbox(), patterns)
    return 0


def cmd_scenario(args: argparse.Namespace) -> int:
    aws = _aws_for_running_sandbox()
    if args.slug != "all":
        passed = run_scenario(find(args.slug), aws).ok
        _write_report()
        return 0 if passed else 1
    runs = []
    for run in run_scenarios(catalogue(), aws, args.jobs):
        print(run.output, flush=True)
        runs.append(run)
    print(f"\nSummary ({args.jobs} at a time):")
    for run in sorted(runs, key=lambda r: r.pattern.slug):
        verdict = "PASS" if run.scenario.ok else "FAIL"
        count = run.scenario.not_proven_count
        aside = f"  ({count} not proven here)" if count else ""
        print(
            f"  {verdict}  {run.pattern.slug:<22} {run.scenario.report()['seconds']:6.1f} s{aside}"
        )
    passing = sum(1 for run in runs if run.scenario.ok)
    unproven = sum(run.scenario.not_proven_count for run in runs)
    print(
        f"{passing} passed, {len(runs) - passing} failed; {unproven} checks not proven here "
        f"(LocalStack 4.14 cannot show them: {ENGINE_LIMITS})"
    )
    _write_report()
    return 0 if all(run.scenario.ok for run in runs) else 1


def cmd_report(_: argparse.Namespace) -> int:
    return 0 if _write_report() else 1


def _write_report() -> bool:
    """Write the HTML report and say where; a report that cannot be written is said, not
    raised (it must not change a scenario run's outcome)."""
    try:
        path = report.write()
    except (OSError, TemplateError) as error:
        print(f"warning: could not write the report: {error}", file=sys.stderr)
        return False
    print(f"\nReport: {path}")
    return True


def cmd_ui(args: argparse.Namespace) -> int:
    ui.serve(args.host, args.port)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from sandbox import bench, bench_provisioned  # imported here: only `bench` needs them

    provisioned = bench_provisioned.measure(args.suite, args.warm_calls)
    return bench.main(provisioned, args.messages, args.warm_calls)


def cmd_mutants(args: argparse.Namespace) -> int:
    from sandbox import mutants  # imported here: only `mutants` needs it

    _aws_for_running_sandbox()
    patterns = catalogue() if args.slugs in ([], ["all"]) else [find(slug) for slug in args.slugs]
    return mutants.main(patterns, args.jobs or mutants.JOBS)


def _aws_for_running_sandbox() -> Aws:
    mode = modes.choose()
    if health(mode.endpoint) is None:
        raise NotHealthyError(f"No sandbox answers at {mode.endpoint}. Start it with `make up`.")
    return Aws(mode.endpoint)


PROVISION_WORKERS = 8  # patterns provisioned at once: most of the time is waiting on LocalStack


class ProvisioningFailed(RuntimeError):
    """One or more patterns could not be provisioned; the message names each and why."""


def provision_patterns(aws: Aws, patterns: list[Pattern], *, skip_unchanged: bool = False) -> None:
    """Provision the patterns side by side, a line each as it finishes, then the total. With
    `skip_unchanged`, a pattern already provisioned from the same sources in this LocalStack
    session is left as it is (`make bootstrap` checks every resource again)."""
    session = (info(aws.endpoint_url) or {}).get("session_id")
    done = _provisioned_in(session)
    failed: dict[str, str] = {}
    printing = threading.Lock()
    began = time.perf_counter()

    def say(slug: str, outcome: str) -> None:
        with printing:
            print(f"  {slug:<22} {outcome}", flush=True)

    def provision_one(pattern: Pattern) -> None:
        started, fingerprint = time.perf_counter(), pattern.fingerprint()
        if skip_unchanged and done.get(pattern.slug) == fingerprint:
            say(pattern.slug, "unchanged")
            return
        try:
            pattern.provision(aws)
        except Exception as error:
            failed[pattern.slug] = f"{type(error).__name__}: {error}"
            done.pop(pattern.slug, None)
            say(pattern.slug, f"FAILED: {failed[pattern.slug]}")
            return
        done[pattern.slug] = fingerprint
        say(pattern.slug, f"{time.perf_counter() - started:5.1f} s")

    print(f"Provisioning {len(patterns)} pattern{'s' if len(patterns) > 1 else ''}:", flush=True)
    # LocalStack fills some caches on its first AWS request (the regions it accepts, each
    # with a walk of botocore's data): one request first, or eight threads would each do it.
    aws.account_id  # noqa: B018
    with ThreadPoolExecutor(PROVISION_WORKERS) as pool:
        list(pool.map(provision_one, patterns))
    seconds = time.perf_counter() - began
    print(f"Provisioned {len(patterns) - len(failed)} of {len(patterns)} in {seconds:.1f} s")
    settings.STATE_DIR.mkdir(parents=True, exist_ok=True)
    PROVISIONED_FILE.write_text(json.dumps({"session": session, "patterns": done}, indent=1))
    if failed:
        raise ProvisioningFailed(
            "Could not provision: "
            + "; ".join(f"{slug} ({why})" for slug, why in sorted(failed.items()))
            + ". `make logs` shows LocalStack's side; `make bootstrap P=<slug>` retries one."
        )


def _provisioned_in(session: Any) -> dict[str, str]:
    """Patterns provisioned in this LocalStack session (a restart forgets everything), each
    with the fingerprint of the sources it was provisioned from."""
    try:
        record = json.loads(PROVISIONED_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    patterns = record.get("patterns")
    if record.get("session") != session or not isinstance(patterns, dict):
        return {}
    return dict(patterns)


def _print_table(patterns: list[Pattern]) -> None:
    rows = [(p.slug, p.title, p.command) for p in patterns]
    widths = [max(len(r[i]) for r in rows + [("PATTERN", "WHAT", "RUN")]) for i in range(3)]
    print()
    for row in [("PATTERN", "WHAT", "RUN"), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print("\nRun them all: make scenarios    Stop: make down")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="sandbox", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("list").set_defaults(run=cmd_list)
    sub.add_parser("up").set_defaults(run=cmd_up)
    sub.add_parser("down").set_defaults(run=cmd_down)
    sub.add_parser("status").set_defaults(run=cmd_status)
    sub.add_parser("pull").set_defaults(run=cmd_pull)
    logs = sub.add_parser("logs")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.set_defaults(run=cmd_logs)
    boot = sub.add_parser("bootstrap")
    boot.add_argument("slug", nargs="?", default="all")
    boot.set_defaults(run=cmd_bootstrap)
    scen = sub.add_parser("scenario")
    scen.add_argument("slug")
    scen.add_argument(
        "--jobs", type=int, default=SCENARIO_JOBS, help="scenarios run at once (for `all`)"
    )
    scen.set_defaults(run=cmd_scenario)
    sub.add_parser("report").set_defaults(run=cmd_report)
    ui = sub.add_parser("ui")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=8566)
    ui.set_defaults(run=cmd_ui)
    bench = sub.add_parser("bench")
    bench.add_argument("--messages", type=int, default=200)
    bench.add_argument("--warm-calls", type=int, default=100)
    bench.add_argument("--suite", action="store_true", help="also time the test suite")
    bench.set_defaults(run=cmd_bench)
    mutate = sub.add_parser("mutants")
    mutate.add_argument("slugs", nargs="*", metavar="SLUG", help="patterns (default: all)")
    mutate.add_argument(
        "--jobs", type=int, default=None, help="patterns at once (SANDBOX_MUTANT_JOBS, 2)"
    )
    mutate.set_defaults(run=cmd_mutants)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (
        UnknownPattern,
        SetupError,
        modes.ModeError,
        NotHealthyError,
        ProvisioningFailed,
        settings.RemoteEndpointError,
        ui.UiError,
        UpInProgress,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
