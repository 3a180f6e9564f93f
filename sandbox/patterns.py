"""The catalogue of patterns, and running their bootstraps and scenarios.

A pattern with slug `scheduled-ingest` has, under the module name `scheduled_ingest`:
  docs/patterns/scheduled_ingest.json   metadata (title, description, services, source)
  docs/patterns/scheduled_ingest.md     its page: How it works, Run, Expected, Cleanup
  bootstrap/scheduled_ingest.py         provision(aws) -> a record of what it made
  handlers/scheduled_ingest/            Lambda code
  state_machines/scheduled_ingest*.json ASL, where it uses Step Functions
  scenarios/scheduled_ingest.py         run(aws, resources, scenario): drives and checks it
  tests/unit/test_scheduled_ingest.py   its pure logic
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, as_completed
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

from sandbox import activity, pattern_lock, provision, settings
from sandbox.aws import Aws
from sandbox.harness import Scenario, WaitTimedOut, await_value
from sandbox.health import health

ROOT = settings.PROJECT_ROOT
REPORTS_DIR = settings.STATE_DIR / "reports"
SHARED_PROVISIONING = ("provision.py", "restapi.py", "aws.py", "../constraints.txt")


class UnknownPattern(LookupError):
    pass


@dataclass(frozen=True)
class Pattern:
    slug: str
    title: str
    description: str
    services: tuple[str, ...]
    source: str

    @property
    def module_name(self) -> str:
        return self.slug.replace("-", "_")

    @property
    def page(self) -> Path:
        return ROOT / "docs" / "patterns" / f"{self.module_name}.md"

    @cached_property
    def bootstrap(self) -> ModuleType:
        return _load(ROOT / "bootstrap" / f"{self.module_name}.py")

    @cached_property
    def scenario(self) -> ModuleType:
        return _load(ROOT / "scenarios" / f"{self.module_name}.py")

    def provision(self, aws: Aws) -> Any:
        with pattern_lock.using(aws.endpoint_url, self.slug):
            with provision.functions_awaited_together(aws):
                return self.bootstrap.provision(aws)

    def fingerprint(self) -> str:
        """A hash of everything its provisioning reads: bootstrap, handlers, state machines,
        the shared provisioning code and the pinned dependencies. `make up` skips a pattern
        whose fingerprint is the one it provisioned in this LocalStack session."""
        sources = [
            ROOT / "bootstrap" / f"{self.module_name}.py",
            *(ROOT / "handlers" / self.module_name).rglob("*"),
            *(ROOT / "state_machines").glob(f"{self.module_name}*.json"),
            *(ROOT / "sandbox" / name for name in SHARED_PROVISIONING),
        ]
        digest = hashlib.sha256()
        for path in sorted(p for p in sources if p.is_file() and "__pycache__" not in p.parts):
            digest.update(f"{path.relative_to(ROOT)}\0".encode() + path.read_bytes())
        return digest.hexdigest()[:16]

    @property
    def command(self) -> str:
        return f"make scenario P={self.slug}"


def _load(path: Path) -> ModuleType:
    """Import a bootstrap or scenario file by path (they are scripts, not a package)."""
    name = f"{path.parent.name}.{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def catalogue() -> list[Pattern]:
    """Every pattern that has metadata, sorted by slug."""
    patterns = []
    for path in sorted((ROOT / "docs" / "patterns").glob("*.json")):
        meta = json.loads(path.read_text())
        patterns.append(
            Pattern(
                slug=meta["slug"],
                title=meta["title"],
                description=meta["description"],
                services=tuple(meta["services"]),
                source=meta["source"],
            )
        )
    return patterns


def find(slug: str) -> Pattern:
    """The pattern with this slug (or module name); the error lists the known ones."""
    known = catalogue()
    for pattern in known:
        if slug in (pattern.slug, pattern.module_name):
            return pattern
    names = ", ".join(p.slug for p in known)
    raise UnknownPattern(f"Unknown pattern {slug!r}. Known patterns: {names}")


SCENARIO_JOBS = int(os.environ.get("SANDBOX_SCENARIO_JOBS", "4"))


@dataclass(frozen=True)
class ScenarioRun:
    pattern: Pattern
    scenario: Scenario
    output: str


def run_scenarios(
    patterns: list[Pattern], aws: Aws, jobs: int = SCENARIO_JOBS
) -> Iterator[ScenarioRun]:
    """Run the scenarios side by side (see `start_scenarios`); yield each with its account as
    it finishes."""
    for done in as_completed(start_scenarios(patterns, aws, jobs).values()):
        yield done.result()


def start_scenarios(
    patterns: list[Pattern], aws: Aws, jobs: int = SCENARIO_JOBS
) -> dict[str, Future[ScenarioRun]]:
    """Start the scenarios `jobs` at a time (each pattern has its own resources, and most of a
    scenario is waiting on queues and timers); a future per slug."""
    return side_by_side(
        longest_first(patterns),
        lambda pattern: run_buffered(pattern, aws),
        jobs,
        free=lambda pattern: pattern_lock.free(aws.endpoint_url, pattern.slug),
    )


def side_by_side[T](
    patterns: list[Pattern],
    run: Callable[[Pattern], T],
    jobs: int,
    free: Callable[[Pattern], bool],
) -> dict[str, Future[T]]:
    """`run` each pattern on `jobs` threads, in the given order, except that a thread that
    is free takes the first pattern nobody else holds now (`make mutants`, the poison fault
    test): waiting for a held pattern while others could run would idle a lane. Only when
    every pattern left is held does it wait for the first."""
    waiting = list(patterns)
    futures: dict[str, Future[T]] = {pattern.slug: Future() for pattern in waiting}
    choosing = threading.Lock()

    def next_pattern() -> Pattern | None:
        with choosing:
            if not waiting:
                return None
            chosen = next((p for p in waiting if free(p)), waiting[0])
            waiting.remove(chosen)
            return chosen

    def lane() -> None:
        while (pattern := next_pattern()) is not None:
            future = futures[pattern.slug]
            future.set_running_or_notify_cancel()
            try:
                future.set_result(run(pattern))
            except BaseException as error:  # the caller's to see, through the future
                future.set_exception(error)

    for number in range(max(1, min(jobs, len(waiting)))):
        threading.Thread(target=lane, name=f"lane-{number}", daemon=True).start()
    return futures


def longest_first(patterns: list[Pattern]) -> list[Pattern]:
    """By the length of their last run (recorded in .sandbox/reports), longest first, so
    running side by side the long ones do not start last; never-run ones go first."""

    def last_seconds(pattern: Pattern) -> float:
        try:
            record = json.loads((REPORTS_DIR / f"{pattern.slug}.json").read_text())
            return float(record["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            return float("inf")

    return sorted(patterns, key=last_seconds, reverse=True)


GOING_AWAY_S = 20  # how long a sandbox answering 503 is given to finish stopping


def sandbox_went_away(aws: Aws, error: Exception) -> bool:
    """True when the sandbox no longer answers (`make down` meanwhile, a crash). LocalStack
    answers 503 while it shuts down, and its health a little longer: after a refused
    connection or a 503, give it GOING_AWAY_S to be gone."""
    if health(aws.endpoint_url, timeout=2) is None:
        return True
    status = getattr(error, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    if not isinstance(error, EndpointConnectionError | ConnectionClosedError) and status != 503:
        return False
    try:
        await_value(
            lambda: health(aws.endpoint_url, timeout=2) is None,
            timeout=GOING_AWAY_S,
            interval=0.5,
            waiting_for="the sandbox to finish stopping",
        )
    except WaitTimedOut:
        return False
    return True


def run_buffered(pattern: Pattern, aws: Aws) -> ScenarioRun:
    """One scenario, its account kept to be printed whole (runs side by side would mix)."""
    out = io.StringIO()
    scenario = run_scenario(pattern, aws, out=out)
    return ScenarioRun(pattern, scenario, out.getvalue())


def run_scenario(pattern: Pattern, aws: Aws, out: Any = sys.stdout) -> Scenario:
    """Provision the pattern (idempotently), run its scenario, save the record with what the
    system did meanwhile (see `activity`). Never raises for a failed check: the returned
    Scenario says whether it passed."""
    with pattern_lock.using(aws.endpoint_url, pattern.slug, out):
        return _run_scenario(pattern, aws, out)


def _run_scenario(pattern: Pattern, aws: Aws, out: Any) -> Scenario:
    scenario = Scenario(pattern.slug, out=out)
    print(f"━━ {pattern.slug}: {pattern.title}", file=out)
    dlqs = activity.DlqWatch(aws, pattern.slug)
    gone = False
    try:
        with dlqs:
            with scenario.step("Provision (idempotent)"):
                resources = pattern.provision(aws)
            pattern.scenario.run(aws, resources, scenario)
            scenario.finish()
    except AssertionError as failed:
        print(f"\nFAILED {pattern.slug}: {failed}", file=out)
    except Exception as error:
        gone = sandbox_went_away(aws, error)
        if gone:
            print(
                f"\nFAILED {pattern.slug}: the sandbox at {aws.endpoint_url} stopped answering "
                f"during the scenario ({type(error).__name__}: {error}). Was it stopped "
                "(`make down`)? Start it with `make up`, then run the scenario again.",
                file=out,
            )
        else:
            print(f"\nERROR in {pattern.slug}:\n{traceback.format_exc()}", file=out)
    finally:
        if gone:  # each read would only retry against nothing, seconds each
            happened = activity.unread(scenario.started_at, time.time(), "the sandbox was gone")
        else:
            happened = activity.collect(aws, pattern.slug, scenario.started_at, time.time(), dlqs)
        scenario.save(REPORTS_DIR, activity=happened)
    if scenario.ok:
        seconds = scenario.report()["seconds"]
        print(f"\nPASSED {pattern.slug} in {seconds:.1f} s ({len(scenario.steps)} steps)", file=out)
    return scenario
