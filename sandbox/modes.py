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
COMPOSE_FILE = settings.PROJECT_ROOT / "docker-compose.yml"
COMPOSE = ["docker", "compose", "-f", str(COMPOSE_FILE)]
LOCALSTACK_IMAGE = "localstack/localstack:4.14.0"  # docker-compose.yml's default
# The AWS Lambda base images LocalStack runs functions in, one per runtime the patterns use
# (LocalStack 4.14: docker_runtime_executor.IMAGE_PREFIX + runtimes.IMAGE_MAPPING).
LAMBDA_RUNTIME_IMAGES = {"python3.13": "public.ecr.aws/lambda/python:3.13"}
FUNCTIONS_IN_DOCKER = "SANDBOX_FUNCTIONS_IN_DOCKER"
DOCKER_START_TIMEOUT_S = 300  # a first start on a slow machine, after the image is here
PULL_ADVICE = "Run `make pull` once while online; later runs need no network."
COMPOSE_PLUGIN_ADVICE = (
    "Docker answers, but its compose plugin is missing (`docker compose version` failed). "
    "Install it (Docker Desktop ships it; Debian/Ubuntu: apt-get install docker-compose-plugin; "
    "Homebrew: brew install docker-compose), or run LocalStack on this host instead: "
    "`make up SANDBOX_MODE=embedded`."
)


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
            self._start_compose(already)
        settings.STATE_DIR.mkdir(parents=True, exist_ok=True)
        MODE_FILE.write_text(self.name)
        return "found it already running" if already else f"started ({self.name} mode)"

    def _start_compose(self, already: bool) -> None:
        """Only the LocalStack service: `make up` provisions from this host (a bare
        `docker compose up` also starts the one-shot bootstrap service instead)."""
        require_compose()
        if not already:
            refuse_taken_port(self.port, self.endpoint)
            # Missing images are pulled now, not at the first function's creation (offline,
            # LocalStack would leave the function Failed with a registry error).
            for image in [localstack_image(), *LAMBDA_RUNTIME_IMAGES.values()]:
                require_image(image)
        compose(["up", "-d", "localstack"], self.port)
        wait_healthy(self.endpoint, timeout=DOCKER_START_TIMEOUT_S)

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
            require_compose()
            compose(["down"], self.port)
            message = "stopped the Docker sandbox"
        MODE_FILE.unlink(missing_ok=True)
        return message

    def is_running(self) -> bool:
        """Ours runs: the embedded sandbox recorded here, or this project's compose service
        (another LocalStack on the port is not ours)."""
        if self.name == "embedded":
            return launcher.EmbeddedSandbox(self.port).running() is not None
        if self.name == "docker":
            return compose_service_running(self.port)
        return health(self.endpoint) is not None

    def logs_command(self, follow: bool) -> list[str]:
        if self.name == "docker":
            return [*COMPOSE, "logs", *(["-f"] if follow else []), "localstack"]
        if self.name == "embedded":
            log = launcher.EmbeddedSandbox(self.port).log_file
            return ["tail", "-n", "200", *(["-F"] if follow else []), str(log)]
        raise ModeError("An external LocalStack's logs are wherever it runs; the sandbox has none.")


def run_docker(args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """A docker command, its output captured (callers turn a failure into advice)."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def docker_engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return run_docker(["docker", "info"], timeout=5).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def compose_plugin_present() -> bool:
    return run_docker(["docker", "compose", "version"], timeout=10).returncode == 0


def require_compose() -> None:
    if not compose_plugin_present():
        raise ModeError(COMPOSE_PLUGIN_ADVICE)


def compose_environment(port: int) -> dict[str, str]:
    """docker-compose.yml publishes LocalStack on LOCALSTACK_PORT: the endpoint's port."""
    return {**os.environ, "LOCALSTACK_PORT": str(port)}


def compose(args: list[str], port: int) -> None:
    """`docker compose <args>` on the project's file; a failure says what compose said."""
    done = subprocess.run(
        [*COMPOSE, *args], env=compose_environment(port), capture_output=True, text=True
    )
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise ModeError(
            f"`docker compose {' '.join(args)}` failed:\n  "
            + "\n  ".join(said)
            + "\n`make logs` shows LocalStack's side; `docker compose ps` what runs."
        )


def compose_service_running(port: int) -> bool:
    if not compose_plugin_present():
        return False
    done = subprocess.run(
        [*COMPOSE, "ps", "--status", "running", "-q", "localstack"],
        env=compose_environment(port),
        capture_output=True,
        text=True,
    )
    return done.returncode == 0 and bool(done.stdout.strip())


def refuse_taken_port(port: int, endpoint: str) -> None:
    """Something that is not this project's container holds the port: say what, and how to
    go on, before compose fails to publish it."""
    if not port_in_use(port):
        return
    other = health(endpoint, timeout=2)
    if other is not None:
        raise ModeError(
            f"Another LocalStack ({other.get('version', 'unknown version')}) already answers on "
            f"port {port}, and it is not this project's container; nothing was started. Use it "
            f"as it is (SANDBOX_MODE=external make up), stop it (`docker ps`, then `docker stop "
            f"<id>`), or start this sandbox on another port: "
            f"AWS_ENDPOINT_URL=http://localhost:{port + 1} make up."
        )
    raise ModeError(
        f"Port {port} is in use by another program (not LocalStack); nothing was started. "
        f"Stop it, or start the sandbox on another port: "
        f"AWS_ENDPOINT_URL=http://localhost:{port + 1} make up."
    )


def image_present(image: str) -> bool:
    return run_docker(["docker", "image", "inspect", image], timeout=30).returncode == 0


def require_image(image: str) -> None:
    """An image missing here is pulled now; offline, that fails with advice, not a trace."""
    if image_present(image):
        return
    print(f"Pulling {image} (once)...", flush=True)
    done = run_docker(["docker", "pull", image])
    if done.returncode != 0:
        raise ModeError(
            f"The image {image} is not on this machine, and pulling it failed "
            f"({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'no output'}). "
            + PULL_ADVICE
        )


def localstack_image(environ: Mapping[str, str] | None = None) -> str:
    env: Mapping[str, str] = os.environ if environ is None else environ
    return env.get("LOCALSTACK_IMAGE") or LOCALSTACK_IMAGE


def pull() -> list[str]:
    """Fetch every image the Docker sandbox needs (LocalStack, the bootstrap service, the
    Lambda runtime images); return their names. LocalStack itself still asks the registry
    on each function's creation; docker/localstack/start.d makes it use a local image."""
    if not docker_engine_answers():
        raise ModeError(
            "`make pull` fetches Docker images, but no Docker engine answers (`docker info`). "
            "Start Docker (or Colima), or use embedded mode, which needs no images."
        )
    require_compose()
    images = [localstack_image(), *LAMBDA_RUNTIME_IMAGES.values()]
    for image in images:
        print(f"Pulling {image}...", flush=True)
        done = run_docker(["docker", "pull", image])
        if done.returncode != 0:
            raise ModeError(f"Pulling {image} failed: {done.stderr.strip()}. Are you online?")
    print("Building the bootstrap service's image...", flush=True)
    compose(["build", "bootstrap"], Mode("docker", settings.endpoint()).port)
    return [*images, "bootstrap (built from docker/bootstrap/Dockerfile)"]


def requested(environ: Mapping[str, str] | None = None) -> str:
    """The mode asked for (SANDBOX_MODE) or the one `make up` chose; "" when neither."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    wanted = env.get("SANDBOX_MODE", "").strip().lower()
    if not wanted and MODE_FILE.exists():
        wanted = MODE_FILE.read_text().strip()
    return wanted


def functions_in_docker(environ: Mapping[str, str] | None = None) -> bool:
    """Lambda functions run in LocalStack's containers (Docker mode, or the bootstrap service,
    which sets SANDBOX_FUNCTIONS_IN_DOCKER=1), not as processes on this host."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    return env.get(FUNCTIONS_IN_DOCKER) == "1" or requested(env) == "docker"


def choose(environ: Mapping[str, str] | None = None) -> Mode:
    """The mode to use: SANDBOX_MODE, else the one `make up` chose, else Docker or embedded."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    endpoint = settings.endpoint(env)
    wanted = requested(env)
    if wanted and wanted not in MODES:
        raise ModeError(f"SANDBOX_MODE={wanted!r} is not one of: {', '.join(MODES)}.")
    if not wanted:
        wanted = "docker" if docker_engine_answers() else "embedded"
    if wanted == "docker" and not docker_engine_answers():
        raise ModeError(
            "SANDBOX_MODE=docker, but no Docker engine answers (`docker info`). Start Docker "
            "(with rootless Docker or Colima, set DOCKER_HOST), or use SANDBOX_MODE=embedded."
        )
    return Mode(wanted, endpoint)
