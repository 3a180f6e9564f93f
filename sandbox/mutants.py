"""Mutation testing of the scenarios: `make mutants [P=<slug>]`.

A scenario's ✓ is only worth something if a broken pattern would fail it. Each pattern keeps
plausible bugs beside its scenario, in `scenarios/<module>.mutants.toml`:

    [[mutant]]
    name = "append-without-version-check"
    bug = "The command handler appends without its version condition, so a late write wins."
    file = "handlers/cqrs/command.py"
    find = '''ConditionExpression="attribute_not_exists(version)",'''
    replace = ''''''

For each mutant the runner copies the project to a scratch directory, applies the mutant
there, and runs the pattern's scenario from the copy (its first step provisions the pattern,
so the mutated handlers, bootstrap and state machines are what the sandbox runs). The mutant
is killed when the scenario fails. Afterwards the pattern is provisioned again from the real
project, so the sandbox is left as it was. See docs/mutants.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox import pattern_lock, settings
from sandbox.patterns import Pattern

ROOT = settings.PROJECT_ROOT
JOBS = int(os.environ.get("SANDBOX_MUTANT_JOBS", "2"))
SCENARIO_TIMEOUT = float(os.environ.get("SANDBOX_MUTANT_TIMEOUT", "600"))
MIN_MUTANTS = 2
NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
FIELDS = ("name", "bug", "file", "find", "replace")
KILLED, SURVIVED, STALE = "killed", "survived", "stale"
NOT_COPIED = (".venv", ".sandbox")


class MutantFileError(ValueError):
    """A mutants file that cannot be used as it is; the message says what to fix."""


class StaleMutant(ValueError):
    """The mutant's find text no longer occurs exactly once in its file."""


@dataclass(frozen=True)
class Mutant:
    pattern: str
    name: str
    bug: str
    file: str
    find: str
    replace: str


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    verdict: str
    seconds: float
    detail: str = ""


def mutants_file(pattern: Pattern, root: Path = ROOT) -> Path:
    return root / "scenarios" / f"{pattern.module_name}.mutants.toml"


def load(pattern: Pattern, root: Path = ROOT) -> list[Mutant]:
    """The pattern's mutants, checked: each has every field, a unique kebab-case name, a file
    that exists, and a replace that differs from its find."""
    path = mutants_file(pattern, root)
    where = path.relative_to(root)
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise MutantFileError(
            f"{where} does not exist: write at least {MIN_MUTANTS} mutants"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise MutantFileError(f"{where} is not valid TOML: {error}") from None
    entries = document.get("mutant")
    if not isinstance(entries, list) or not entries:
        raise MutantFileError(f"{where} has no [[mutant]] entries")
    mutants: list[Mutant] = []
    for number, entry in enumerate(entries, start=1):
        missing = [key for key in FIELDS if not isinstance(entry.get(key), str)]
        if missing:
            raise MutantFileError(f"{where}, mutant {number}: missing or not text: {missing}")
        mutant = Mutant(pattern.slug, **{key: entry[key] for key in FIELDS})
        if not NAME.match(mutant.name):
            raise MutantFileError(f"{where}: name {mutant.name!r} is not kebab-case")
        if any(known.name == mutant.name for known in mutants):
            raise MutantFileError(f"{where}: two mutants are named {mutant.name!r}")
        if not mutant.find or mutant.find == mutant.replace:
            raise MutantFileError(f"{where}, {mutant.name}: find is empty or equals replace")
        if not (root / mutant.file).is_file():
            raise MutantFileError(f"{where}, {mutant.name}: no file {mutant.file}")
        mutants.append(mutant)
    return mutants


def apply(mutant: Mutant, root: Path) -> None:
    """Write the mutant into the copy at `root`; its find text must occur exactly once."""
    path = root / mutant.file
    text = path.read_text()
    count = text.count(mutant.find)
    if count != 1:
        raise StaleMutant(
            f"stale mutant: its find text occurs {count} times in {mutant.file} "
            "(it must occur exactly once; update the mutant to the code as it is now)"
        )
    path.write_text(text.replace(mutant.find, mutant.replace))


def project_files(root: Path = ROOT) -> list[str]:
    """The files a copy needs: tracked ones and untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    names = {name for name in listed.split("\0") if name}
    return sorted(
        name
        for name in names
        if name.split("/", 1)[0] not in NOT_COPIED and (root / name).is_file()
    )


def scratch_copy(destination: Path, root: Path = ROOT) -> None:
    """Copy the project to `destination`, with its own build folder (so functions are built
    from the copy's code) sharing only the vendored handler dependencies, which depend on
    requirements files and constraints.txt alone and take long to install."""
    for name in project_files(root):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    build = destination / ".sandbox" / "build"
    build.mkdir(parents=True)
    for vendored in settings.BUILD_DIR.glob("deps-*"):
        if vendored.is_dir() and not vendored.name.endswith(".partial"):
            (build / vendored.name).symlink_to(vendored.resolve(), target_is_directory=True)


def first_failure(report: Path) -> str:
    """The first failed check of a scenario's record (or the step that raised)."""
    try:
        record = json.loads(report.read_text())
    except (OSError, ValueError):
        return "no report written (the scenario did not start)"
    for step in record.get("steps", []):
        for detail in step.get("check_details", []):
            if detail.get("outcome") == "failed":
                return (
                    f"{detail['what']}: expected {_short(detail.get('expected'))}, "
                    f"saw {_short(detail.get('seen'))}"
                )
        if step.get("error"):
            return f"{step['title']}: {step['error']}"
    return "failed outside a step"


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


class Runner:
    """Runs mutants, a pattern's one after another (they share its resources), patterns
    `jobs` at a time; stops cleanly on Ctrl-C, provisioning every touched pattern again."""

    def __init__(self, python: str = sys.executable, out: Any = sys.stdout) -> None:
        self.python = python
        self.out = out
        self.stopping = threading.Event()
        self._children: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    def run(self, plans: dict[Pattern, list[Mutant]], jobs: int = JOBS) -> list[Outcome]:
        outcomes: list[Outcome] = []
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            futures = [pool.submit(self.run_pattern, p, plan) for p, plan in plans.items()]
            try:
                for future in futures:
                    outcomes.extend(future.result())
            except KeyboardInterrupt:
                self.stop()
                raise
        return outcomes

    def stop(self) -> None:
        """No new mutant starts; running scenarios are ended (their patterns are then
        provisioned again by the threads that ran them)."""
        self.stopping.set()
        with self._lock:
            for child in self._children:
                os.killpg(child.pid, signal.SIGTERM)

    def run_pattern(self, pattern: Pattern, mutants: list[Mutant]) -> list[Outcome]:
        """The pattern's mutants under its lock (pattern_lock): no scenario or provisioning
        of the pattern from elsewhere runs while its code is mutated."""
        outcomes: list[Outcome] = []
        with pattern_lock.exclusive(settings.endpoint(), pattern.slug, "`make mutants`", self.out):
            try:
                for mutant in mutants:
                    if self.stopping.is_set():
                        break
                    outcome = self.run_mutant(pattern, mutant)
                    self._say(outcome)
                    outcomes.append(outcome)
            finally:
                self.restore(pattern)
        return outcomes

    def run_mutant(self, pattern: Pattern, mutant: Mutant) -> Outcome:
        began = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"mutant-{pattern.slug}-") as folder:
            scratch = Path(folder)
            scratch_copy(scratch)
            try:
                apply(mutant, scratch)
            except StaleMutant as stale:
                return Outcome(mutant, STALE, time.monotonic() - began, str(stale))
            env = os.environ | {
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(scratch), os.environ.get("PYTHONPATH")])
                ),
                "SANDBOX_STATE_DIR": str(scratch / ".sandbox"),
                "SANDBOX_MODE": "external",
                pattern_lock.HELD_BY_PARENT: pattern.slug,
            }
            code, output = self._call(
                [self.python, "-m", "sandbox", "scenario", pattern.slug], scratch, env
            )
            seconds = time.monotonic() - began
            if code == 0:
                return Outcome(mutant, SURVIVED, seconds)
            if code is None:
                return Outcome(mutant, KILLED, seconds, f"timed out after {SCENARIO_TIMEOUT:g} s")
            report = scratch / ".sandbox" / "reports" / f"{pattern.slug}.json"
            detail = first_failure(report)
            if not report.is_file():
                detail += ": " + _short(output.strip().splitlines()[-1] if output.strip() else "")
            return Outcome(mutant, KILLED, seconds, detail)

    def restore(self, pattern: Pattern) -> None:
        """Provision the pattern from the real project again (code, definitions, settings)."""
        env = os.environ | {"SANDBOX_MODE": "external", pattern_lock.HELD_BY_PARENT: pattern.slug}
        code, output = self._call(
            [self.python, "-m", "sandbox", "bootstrap", pattern.slug], ROOT, env, restoring=True
        )
        if code != 0:
            print(
                f"warning: could not provision {pattern.slug} again from the project; run "
                f"`make bootstrap P={pattern.slug}`:\n{output}",
                file=self.out,
                flush=True,
            )

    def _call(
        self, command: list[str], cwd: Path, env: dict[str, str], *, restoring: bool = False
    ) -> tuple[int | None, str]:
        """Run a command in its own session (Ctrl-C reaches only this process, which ends
        scenarios itself and still restores); None as the code if it timed out."""
        with self._lock:
            if self.stopping.is_set() and not restoring:
                return 1, "stopped"
            child = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            if not restoring:
                self._children.add(child)
        try:
            output, _ = child.communicate(timeout=SCENARIO_TIMEOUT)
            return child.returncode, output.decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            return None, ""
        finally:
            with self._lock:
                self._children.discard(child)

    def _say(self, outcome: Outcome) -> None:
        mutant = outcome.mutant
        line = (
            f"  {outcome.verdict:<8} {mutant.pattern:<20} {mutant.name:<38}"
            f" {outcome.seconds:6.1f} s"
        )
        if outcome.detail:
            line += f"  {outcome.detail}"
        with self._lock:
            print(line, file=self.out, flush=True)


def summary(outcomes: list[Outcome], problems: list[str]) -> tuple[str, bool]:
    """The score and the survivors (and stale or missing mutants); whether all is well."""
    killed = sum(outcome.verdict == KILLED for outcome in outcomes)
    lines = [f"\nScore: {killed} / {len(outcomes)} mutants killed"]
    for verdict in (SURVIVED, STALE):
        names = [f"{o.mutant.pattern}/{o.mutant.name}" for o in outcomes if o.verdict == verdict]
        if names:
            lines.append(f"{verdict.capitalize()}: {', '.join(names)}")
    lines += [f"Not run: {problem}" for problem in problems]
    return "\n".join(lines), killed == len(outcomes) and not problems


def plan(patterns: list[Pattern]) -> tuple[dict[Pattern, list[Mutant]], list[str]]:
    """Each pattern's mutants, and what is wrong with the files that cannot be used."""
    plans: dict[Pattern, list[Mutant]] = {}
    problems: list[str] = []
    for pattern in patterns:
        try:
            mutants = load(pattern)
        except MutantFileError as error:
            problems.append(str(error))
            continue
        if len(mutants) < MIN_MUTANTS:
            problems.append(f"{pattern.slug}: only {len(mutants)} mutant (at least {MIN_MUTANTS})")
        plans[pattern] = mutants
    return plans, problems


@contextmanager
def _no_traceback_on_interrupt() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        print("\nStopped: the patterns touched were provisioned again.", flush=True)
        raise


def main(patterns: list[Pattern], jobs: int = JOBS) -> int:
    """Run the patterns' mutants, print a line each and the score; 0 only if every mutant
    of every pattern was killed."""
    plans, problems = plan(patterns)
    count = sum(len(mutants) for mutants in plans.values())
    print(
        f"Running {count} mutants of {len(plans)} patterns ({max(1, jobs)} patterns at a time; "
        "each provisions its pattern from a scratch copy, runs its scenario, then the pattern "
        "is provisioned again from the project):",
        flush=True,
    )
    with _no_traceback_on_interrupt():
        outcomes = Runner().run(plans, jobs)
    text, all_killed = summary(outcomes, problems)
    print(text)
    return 0 if all_killed else 1
