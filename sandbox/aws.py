"""Boto3 clients for the sandbox, always through the endpoint guard."""

from __future__ import annotations

import functools
import threading
from typing import Any

from sandbox import settings


class Aws:
    """One checked endpoint, one session, clients made once each."""

    def __init__(self, endpoint_url: str | None = None) -> None:
        # Imported here, not with the module (~0.25 s of one core): `make up` has LocalStack
        # starting before it makes its first client.
        import boto3
        from botocore.config import Config

        settings.apply_client_defaults()
        self.endpoint_url = settings.check_endpoint(endpoint_url or settings.endpoint())
        self.session = boto3.session.Session()
        self.region = self.session.region_name or settings.DEFAULT_REGION
        self._config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()  # a boto3 session must not make clients concurrently
        self.role_arns: dict[str, str] = {}  # provisioning's roles, by name, once looked up
        self.functions_found: set[str] | None = None  # the functions provisioning found at first
        self.functions_run_here: bool | None = None  # the endpoint is this host's embedded sandbox

    def client(self, service: str) -> Any:
        """The service's client, shared: boto3 clients are thread-safe, sessions are not."""
        with self._lock:
            return self._client(service)

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(
                service,
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                config=self._config,
            )
        return self._clients[service]

    @functools.cached_property
    def account_id(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]
