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

Environment: SANDBOX_MODE=docker|embedded|external, AWS_ENDPOINT_URL (default
http://localhost:4566), SANDBOX_ALLOW_REMOTE_ENDPOINT=1 to allow a non-local endpoint.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

from jinja2 import TemplateError

from sandbox import modes, report, settings, ui
from sandbox.aws import Aws
from sandbox.embedded.dynamodb_local import SetupError
from sandbox.health import NotHealthyError, health, info
from sandbox.patterns import Pattern, UnknownPattern, catalogue, find, run_scenario

PROVISIONED_FILE = settings.STATE_DIR / "provisioned.json"


def cmd_list(_: argparse.Namespace) -> int:
    patterns = catalogue()
    width = max(len(p.slug) for p in patterns)
    for p in patterns:
        print(f"{p.slug:<{width}}  {p.description}")
    return 0


def cmd_up(_: argparse.Namespace) -> int:
    mode = modes.choose()
    print(f"Sandbox: {mode.name} mode at {mode.endpoint}")
    print(f"Sandbox: {mode.start()}")
    _provision(Aws(mode.endpoint), catalogue())
    _print_table(catalogue())
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    print(modes.choose().stop())
    PROVISIONED_FILE.unlink(missing_ok=True)
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
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    return subprocess.call(modes.choose().logs_command(args.follow))


def cmd_bootstrap(args: argparse.Namespace) -> int:
    patterns = catalogue() if args.slug == "all" else [find(args.slug)]
    _provision(_aws_for_running_sandbox(), patterns)
    return 0


def cmd_scenario(args: argparse.Namespace) -> int:
    patterns = catalogue() if args.slug == "all" else [find(args.slug)]
    aws = _aws_for_running_sandbox()
    results = {p.slug: run_scenario(p, aws) for p in patterns}
    if len(results) > 1:
        print("\nSummary:")
        for slug, scenario in results.items():
            record = scenario.report()
            verdict = "PASS" if scenario.ok else "FAIL"
            print(f"  {verdict}  {slug:<22} {record['seconds']:6.1f} s")
    _write_report()
    return 0 if all(s.ok for s in results.values()) else 1


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
    from sandbox.bench import main as bench_main  # imported here: only `bench` needs it

    return bench_main(args.messages, args.warm_calls)


def _aws_for_running_sandbox() -> Aws:
    mode = modes.choose()
    if health(mode.endpoint) is None:
        raise NotHealthyError(f"No sandbox answers at {mode.endpoint}. Start it with `make up`.")
    return Aws(mode.endpoint)


def _provision(aws: Aws, patterns: list[Pattern]) -> None:
    session = (info(aws.endpoint_url) or {}).get("session_id")
    done = _provisioned_in(session)
    for pattern in patterns:
        print(f"Provisioning {pattern.slug}...", flush=True)
        pattern.provision(aws)
        done.add(pattern.slug)
    settings.STATE_DIR.mkdir(parents=True, exist_ok=True)
    PROVISIONED_FILE.write_text(json.dumps({"session": session, "patterns": sorted(done)}))


def _provisioned_in(session: Any) -> set[str]:
    """Patterns provisioned in this LocalStack session (a restart forgets everything)."""
    try:
        record = json.loads(PROVISIONED_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return set()
    return set(record["patterns"]) if record.get("session") == session else set()


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
    logs = sub.add_parser("logs")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.set_defaults(run=cmd_logs)
    boot = sub.add_parser("bootstrap")
    boot.add_argument("slug", nargs="?", default="all")
    boot.set_defaults(run=cmd_bootstrap)
    scen = sub.add_parser("scenario")
    scen.add_argument("slug")
    scen.set_defaults(run=cmd_scenario)
    sub.add_parser("report").set_defaults(run=cmd_report)
    ui = sub.add_parser("ui")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=8566)
    ui.set_defaults(run=cmd_ui)
    bench = sub.add_parser("bench")
    bench.add_argument("--messages", type=int, default=200)
    bench.add_argument("--warm-calls", type=int, default=100)
    bench.set_defaults(run=cmd_bench)
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
        settings.RemoteEndpointError,
        ui.UiError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
