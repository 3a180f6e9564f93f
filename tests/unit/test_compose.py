"""docker-compose.yml: parses, pins the last free LocalStack image, stays on this machine, and
carries what a real Docker user needs (read against LocalStack 4.14's source: see each test)."""

from __future__ import annotations

import json
import re

import jsonschema
import yaml

from sandbox import modes
from sandbox.embedded import entry, launcher
from sandbox.patterns import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
LOCALSTACK = COMPOSE["services"]["localstack"]
ENVIRONMENT = dict(item.split("=", 1) for item in LOCALSTACK["environment"])


def test_the_file_follows_the_compose_specification() -> None:
    """tests/unit/data/compose-spec.json: the Compose specification's schema, from
    compose-spec/compose-spec at a08f8d51631b7127ddac3d2c65537db429d0f1d0 (Apache-2.0)."""
    schema = json.loads((ROOT / "tests" / "unit" / "data" / "compose-spec.json").read_text())
    errors = [error.message for error in jsonschema.Draft7Validator(schema).iter_errors(COMPOSE)]
    assert errors == []


def test_image_is_pinned_to_the_last_free_localstack() -> None:
    assert LOCALSTACK["image"] == "${LOCALSTACK_IMAGE:-localstack/localstack:4.14.0}"
    assert LOCALSTACK["image"] == f"${{LOCALSTACK_IMAGE:-{modes.LOCALSTACK_IMAGE}}}"


def test_port_is_bound_to_loopback_only() -> None:
    """On this machine only; `make up` publishes it on AWS_ENDPOINT_URL's port."""
    assert LOCALSTACK["ports"] == ["127.0.0.1:${LOCALSTACK_PORT:-4566}:4566"]


def test_docker_socket_is_mounted_so_lambda_runs_in_containers() -> None:
    """DOCKER_SOCK for rootless Docker and Colima, whose sockets live elsewhere."""
    assert "${DOCKER_SOCK:-/var/run/docker.sock}:/var/run/docker.sock" in LOCALSTACK["volumes"]


def test_functions_run_on_the_engines_own_architecture() -> None:
    """docker_runtime_executor.docker_platform() returns None (no --platform) with this set."""
    assert ENVIRONMENT["LAMBDA_IGNORE_ARCHITECTURE"] == "1"


def test_lambda_containers_can_reach_this_host_as_host_docker_internal() -> None:
    """LocalStack parses LAMBDA_DOCKER_FLAGS' --add-host into the Lambda container's
    extra_hosts (container_client.Util.parse_additional_flags); the engine resolves
    `host-gateway` to this host."""
    assert ENVIRONMENT["LAMBDA_DOCKER_FLAGS"] == "--add-host=host.docker.internal:host-gateway"
    assert LOCALSTACK["extra_hosts"] == ["host.docker.internal:host-gateway"]


def test_debug_is_passed_through() -> None:
    assert ENVIRONMENT["DEBUG"] == "${DEBUG:-0}"


def test_stop_waits_for_localstack_to_remove_lambda_containers() -> None:
    seconds = int(LOCALSTACK["stop_grace_period"].removesuffix("s"))
    assert seconds >= 30  # compose's default is 10 s


def test_the_start_hook_for_local_runtime_images_is_mounted() -> None:
    hook = "./docker/localstack/start.d:/etc/localstack/init/start.d:ro"
    assert hook in LOCALSTACK["volumes"]
    assert (ROOT / "docker" / "localstack" / "start.d" / "use_local_runtime_images.py").is_file()


def test_compose_up_alone_provisions_through_the_bootstrap_service() -> None:
    bootstrap = COMPOSE["services"]["bootstrap"]
    assert bootstrap["depends_on"] == {"localstack": {"condition": "service_healthy"}}
    assert bootstrap["restart"] == "no"
    settings = dict(item.split("=", 1) for item in bootstrap["environment"])
    assert settings["AWS_ENDPOINT_URL"] == "http://localstack:4566"
    assert settings["SANDBOX_FUNCTIONS_IN_DOCKER"] == "1"
    dockerfile = (ROOT / bootstrap["build"]["dockerfile"]).read_text()
    assert 'CMD ["python", "-m", "sandbox", "bootstrap", "all"]' in dockerfile
    assert "vendor_all_dependencies" in dockerfile  # provisioning needs no network


def test_env_example_names_every_setting_compose_reads() -> None:
    compose_text = (ROOT / "docker-compose.yml").read_text()
    read = set(re.findall(r"\$\{([A-Z_]+)", compose_text))
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))
    assert read and read <= listed, read - listed


def test_env_example_names_every_sandbox_setting() -> None:
    internal = {
        "SANDBOX_INSTANCE",
        "SANDBOX_RUNTIME_FD",
        "SANDBOX_PRESTART_BACKENDS",
        # set by bootstrap on a function's test-only `-held` variant (sandbox/race.py)
        "SANDBOX_TEST_HOLD_TABLE",
        "SANDBOX_TEST_HOLD_SECONDS",
        # set by `make mutants` for the scenarios it runs under a pattern's lock
        "SANDBOX_PATTERN_LOCK_HELD",
    }
    source = " ".join(path.read_text() for path in (ROOT / "sandbox").rglob("*.py"))
    read = set(re.findall(r'"(SANDBOX_[A-Z_]+)"', source)) - internal
    listed = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert read <= listed, read - listed


def test_env_is_ignored_by_git() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_health_check_uses_the_health_endpoint() -> None:
    assert "/_localstack/health" in " ".join(LOCALSTACK["healthcheck"]["test"])


def test_auth_token_is_passed_through_when_set() -> None:
    assert ENVIRONMENT["LOCALSTACK_AUTH_TOKEN"] == "${LOCALSTACK_AUTH_TOKEN:-}"


def test_speed_settings_match_embedded_mode() -> None:
    for key, value in launcher.speed_settings().items():
        assert ENVIRONMENT[key] == value


def test_dynamodb_local_jvm_options_match_embedded_mode() -> None:
    assert ENVIRONMENT["JAVA_TOOL_OPTIONS"] == " ".join(entry.LIGHT_JVM)


def test_step_functions_mock_config_is_the_same_file_in_both_modes() -> None:
    mounted = {volume.split(":")[1]: volume.split(":")[0] for volume in LOCALSTACK["volumes"][1:]}
    folder, _, name = ENVIRONMENT["SFN_MOCK_CONFIG"].rpartition("/")
    assert mounted[folder] == "./" + launcher.SFN_MOCK_CONFIG.rpartition("/")[0]
    assert name == launcher.SFN_MOCK_CONFIG.rpartition("/")[2]
