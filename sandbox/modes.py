"""The three ways to run the sandbox, behind one contract: an AWS endpoint URL.

- docker:   `docker compose` with the pinned LocalStack image (Lambda in containers);
- embedded: LocalStack from the project's venv on this host (Lambda as local processes);
- external: a LocalStack someone else runs, at AWS_ENDPOINT_URL.

SANDBOX_MODE picks one; by default Docker when an engine answers, else embedded. The mode
`make up` chose is remembered so `make down`, `status` and `logs` act on the same one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from sandbox import settings
from sandbox.embedded import launcher
from sandbox.health import health, port_in_use, wait_healthy

MODES = ("docker", "embedded", "external")
MODE_FILE = settings.STATE_DIR / "mode"
COMPOSE = ["docker", "compose", "-f", str(settings.PROJECT_ROOT / "docker-compose.yml")]


class ModeError(RuntimeError):
    """The chosen mode cannot run here; the message says what to do."""


@dataclass
class Mode:
    name: str
    endpoint: str

    @property
    def port(self) -> int:
        return urlparse(self.endpoint).port or 4566

    def start(self) -> str:
        """Make the sandbox answer at `endpoint`; return what was done."""
        if self.name == "external":
            if health(self.endpoint) is None:
                raise ModeError(
                    f"SANDBOX_MODE=external, but nothing answers at {self.endpoint}. "
                    "Start your LocalStack, or unset SANDBOX_MODE to let `make up` start one."
                )
            return f"using the LocalStack already running at {self.endpoint}"
        already = self.is_running()
        if self.name == "embedded":
            launcher.EmbeddedSandbox(self.port).start(prestart_backends=True)
        else:
            if not already and port_in_use(self.port):
                raise ModeError(
                    f"Port {self.port} is in use by something else; nothing was started."
                )
            subprocess.run([*COMPOSE, "up", "-d"], check=True)
            wait_healthy(self.endpoint, timeout=300)
        settings.STATE_DIR.mkdir(parents=True, exist_ok=True)
        MODE_FILE.write_text(self.name)
        return "found it already running" if already else f"started ({self.name} mode)"

    def stop(self) -> str:
        if self.name == "external":
            return f"the LocalStack at {self.endpoint} is not ours to stop; left running"
        if self.name == "embedded":
            ended = launcher.EmbeddedSandbox(self.port).stop()
            message = (
                f"stopped the embedded sandbox ({ended} processes)"
                if ended
                else "nothing was running"
            )
        else:
            subprocess.run([*COMPOSE, "down"], check=True)
            message = "stopped the Docker sandbox"
        MODE_FILE.unlink(missing_ok=True)
        return message

    def is_running(self) -> bool:
        if self.name == "embedded":
            return launcher.EmbeddedSandbox(self.port).running() is not None
        return health(self.endpoint) is not None

    def logs_command(self, follow: bool) -> list[str]:
        if self.name == "docker":
            return [*COMPOSE, "logs", *(["-f"] if follow else []), "localstack"]
        if self.name == "embedded":
            log = launcher.EmbeddedSandbox(self.port).log_file
            return ["tail", "-n", "200", *(["-F"] if follow else []), str(log)]
        raise ModeError("An external LocalStack's logs are wherever it runs; the sandbox has none.")


def docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=5)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def choose(environ: Mapping[str, str] | None = None) -> Mode:
    """The mode to use: SANDBOX_MODE, else the one `make up` chose, else Docker or embedded."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    endpoint = settings.endpoint(env)
    wanted = env.get("SANDBOX_MODE", "").strip().lower()
    if wanted and wanted not in MODES:
        raise ModeError(f"SANDBOX_MODE={wanted!r} is not one of: {', '.join(MODES)}.")
    if not wanted and MODE_FILE.exists():
        wanted = MODE_FILE.read_text().strip()
    if not wanted:
        wanted = "docker" if docker_engine_answers() else "embedded"
    if wanted == "docker" and not docker_engine_answers():
        raise ModeError("SANDBOX_MODE=docker, but no Docker engine answers (`docker info`).")
    return Mode(wanted, endpoint)
