"""The stand-in server scenarios start: reachable where functions run, every request recorded."""

from __future__ import annotations

import urllib.request

import pytest

from sandbox import local_http
from sandbox.local_http import Reply, serve


def test_requests_are_answered_and_recorded() -> None:
    with serve(lambda request: Reply(201, request.body.upper())) as server:
        assert server.url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(f"{server.url}/hook?try=1", data=b"ping", method="POST")
        with urllib.request.urlopen(request) as response:
            assert (response.status, response.read()) == (201, b"PING")
    [seen] = server.to("/hook")
    assert (seen.method, seen.body) == ("POST", b"ping")


def test_functions_on_this_host_reach_it_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_MODE", "embedded")
    assert local_http.addresses() == local_http.Addresses("127.0.0.1", "127.0.0.1")


def test_functions_in_containers_reach_it_as_host_docker_internal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In Docker mode 127.0.0.1 would be the Lambda container itself: the URL names the host
    alias docker-compose.yml maps, and the server listens on the gateway it maps to."""
    monkeypatch.setenv("SANDBOX_MODE", "docker")
    monkeypatch.setattr(local_http, "docker_host_gateway", lambda: "172.17.0.1")
    assert local_http.addresses() == local_http.Addresses("172.17.0.1", "host.docker.internal")
    monkeypatch.setenv("SANDBOX_STAND_IN_BIND", "127.0.0.1")
    monkeypatch.setenv("SANDBOX_STAND_IN_HOST", "gateway.test")
    assert local_http.addresses() == local_http.Addresses("127.0.0.1", "gateway.test")


def test_the_url_names_the_advertised_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        local_http, "addresses", lambda: local_http.Addresses("127.0.0.1", "host.docker.internal")
    )
    with serve(lambda request: Reply()) as server:
        assert server.url.startswith("http://host.docker.internal:")


def test_docker_host_gateway_is_loopback_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker Desktop and Colima forward host.docker.internal to this host's loopback."""
    local_http.docker_host_gateway.cache_clear()
    monkeypatch.setattr(local_http.platform, "system", lambda: "Darwin")
    try:
        assert local_http.docker_host_gateway() == "127.0.0.1"
    finally:
        local_http.docker_host_gateway.cache_clear()


def test_the_webhooks_allowlist_accepts_the_receiver_in_both_modes() -> None:
    from bootstrap.webhooks import ALLOWED_HOSTS

    assert {local_http.LOOPBACK, local_http.DOCKER_HOST_NAME} <= set(ALLOWED_HOSTS)
