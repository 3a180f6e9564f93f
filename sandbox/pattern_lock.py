"""One pattern, one kind of user at a time on a sandbox.

`make mutants` deploys a pattern's mutated handlers into the running sandbox. A scenario or
a provisioning of that pattern meanwhile (another terminal, a test run, a clean clone pointed
at the same endpoint) would test the mutant, or put the real code back under the mutants run.
So `make mutants` holds the pattern's lock exclusively for its whole run, while scenarios and
provisioning hold it shared: either kind waits for the other, saying whom it waits for. A
fault test that puts poison into a pattern's queues holds it exclusively too, so that no
scenario of the pattern counts the poison as its own (`make test` runs them side by side).

The lock is a file named after the sandbox's port, in the machine's temp folder, so every
project folder and clone that talks to the same sandbox finds it.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from sandbox.harness import WaitTimedOut, await_value

LOCK_DIR = Path(tempfile.gettempdir()) / "serverless-sandbox-locks"
# Set by `make mutants` for the scenario and provisioning it runs itself under its lock.
HELD_BY_PARENT = "SANDBOX_PATTERN_LOCK_HELD"
WAIT_S = 3600.0  # a pattern's mutants take minutes; a scenario takes one or two


class PatternBusy(RuntimeError):
    """The pattern stayed locked by the other kind of user for longer than WAIT_S."""


def lock_file(endpoint: str, slug: str) -> Path:
    """The lock of `slug` on the sandbox at `endpoint` (localhost and 127.0.0.1 are one)."""
    address = urlsplit(endpoint)
    host = address.hostname or "localhost"
    if host in ("localhost", "127.0.0.1", "::1"):
        host = "local"
    return LOCK_DIR / f"{host}-{address.port or 4566}" / f"{slug}.lock"


# The patterns this thread holds exclusively: its own provisioning of them passes through.
_held: ContextVar[frozenset[str]] = ContextVar("held_exclusively", default=frozenset())


@contextmanager
def exclusive(endpoint: str, slug: str, holder: str, out: Any = sys.stdout) -> Iterator[None]:
    """Held by `make mutants` while the pattern runs mutated code, or by a fault test while
    its poison is in the pattern's queues. `holder` names it to whoever waits for it."""
    with _locked(endpoint, slug, fcntl.LOCK_EX, out) as lock:
        lock.seek(0)
        lock.truncate()
        lock.write(f"{holder} (pid {os.getpid()})")
        lock.flush()
        held = _held.set(_held.get() | {slug})
        try:
            yield
        finally:
            _held.reset(held)
            lock.truncate(0)


@contextmanager
def using(endpoint: str, slug: str, out: Any = sys.stdout) -> Iterator[None]:
    """Held while a scenario runs on the pattern, or while it is provisioned."""
    if _held_here(slug):
        yield
        return
    with _locked(endpoint, slug, fcntl.LOCK_SH, out):
        yield


def _held_here(slug: str) -> bool:
    """Held exclusively by this thread, or by the `make mutants` run that started us."""
    return os.environ.get(HELD_BY_PARENT) == slug or slug in _held.get()


def free(endpoint: str, slug: str) -> bool:
    """Whether a scenario could take the pattern now without waiting: nobody holds it
    exclusively, or we do."""
    if _held_here(slug):
        return True
    with _opened(endpoint, slug) as lock:
        return _try(lock, fcntl.LOCK_SH)  # released as the file closes


def _opened(endpoint: str, slug: str) -> IO[str]:
    path = lock_file(endpoint, slug)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a+")


@contextmanager
def _locked(endpoint: str, slug: str, kind: int, out: Any) -> Iterator[IO[str]]:
    with _opened(endpoint, slug) as lock:
        if not _try(lock, kind):
            lock.seek(0)
            holder = lock.read().strip()
            if holder:
                whom = f"{holder} to finish with {slug}"
            else:
                whom = f"the scenarios and provisioning of {slug} running on this sandbox"
            print(f"Sandbox: waiting for {whom}...", file=out, flush=True)
            try:
                await_value(
                    lambda: _try(lock, kind), timeout=WAIT_S, interval=0.5, waiting_for=whom
                )
            except WaitTimedOut:
                raise PatternBusy(
                    f"Still waiting for {whom} after {WAIT_S:g} s ({lock.name}). "
                    "Let it finish or stop it, then run this again."
                ) from None
        yield lock


def _try(lock: IO[str], kind: int) -> bool:
    try:
        fcntl.flock(lock, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
