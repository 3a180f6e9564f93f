"""docker-compose.yml: parses, pins the last free LocalStack image, stays on this machine."""

from __future__ import annotations

import yaml

from sandbox.embedded import launcher
from sandbox.patterns import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
LOCALSTACK = COMPOSE["services"]["localstack"]
ENVIRONMENT = dict(item.split("=", 1) for item in LOCALSTACK["environment"])


def test_image_is_pinned_to_the_last_free_localstack() -> None:
    assert LOCALSTACK["image"] == "${LOCALSTACK_IMAGE:-localstack/localstack:4.14.0}"


def test_port_is_bound_to_loopback_only() -> None:
    assert LOCALSTACK["ports"] == ["127.0.0.1:4566:4566"]


def test_docker_socket_is_mounted_so_lambda_runs_in_containers() -> None:
    assert "/var/run/docker.sock:/var/run/docker.sock" in LOCALSTACK["volumes"]


def test_health_check_uses_the_health_endpoint() -> None:
    assert "/_localstack/health" in " ".join(LOCALSTACK["healthcheck"]["test"])


def test_auth_token_is_passed_through_when_set() -> None:
    assert ENVIRONMENT["LOCALSTACK_AUTH_TOKEN"] == "${LOCALSTACK_AUTH_TOKEN:-}"


def test_speed_settings_match_embedded_mode() -> None:
    for key, value in launcher.speed_settings().items():
        assert ENVIRONMENT[key] == value


def test_step_functions_mock_config_is_the_same_file_in_both_modes() -> None:
    mounted = {volume.split(":")[1]: volume.split(":")[0] for volume in LOCALSTACK["volumes"][1:]}
    folder, _, name = ENVIRONMENT["SFN_MOCK_CONFIG"].rpartition("/")
    assert mounted[folder] == "./" + launcher.SFN_MOCK_CONFIG.rpartition("/")[0]
    assert name == launcher.SFN_MOCK_CONFIG.rpartition("/")[2]
