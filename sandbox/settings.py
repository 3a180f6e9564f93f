"""Where the sandbox lives and which endpoint it talks to.

Every client the project makes goes through `endpoint()`, which refuses an endpoint that is
not on this machine unless the user opts in with SANDBOX_ALLOW_REMOTE_ENDPOINT=1: a stray
AWS_ENDPOINT_URL (or none, with real credentials) must never send sandbox traffic to AWS.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_ENDPOINT = "http://localhost:4566"
ALLOW_REMOTE_SETTING = "SANDBOX_ALLOW_REMOTE_ENDPOINT"
DEFAULT_REGION = "us-east-1"
LOCAL_HOSTNAMES = ("localhost", "localhost.localstack.cloud")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("SANDBOX_STATE_DIR", PROJECT_ROOT / ".sandbox"))
# Handlers' code and vendored dependencies, built once per content (folders named by hash):
# every sandbox of this checkout uses them, whatever its state folder (the benchmark's, the
# tests'), so a sandbox in a new folder does not build them all again.
BUILD_DIR = PROJECT_ROOT / ".sandbox" / "build"
CACHE_DIR = Path(os.environ.get("SANDBOX_CACHE_DIR", Path.home() / ".cache" / "serverless-sandbox"))


class RemoteEndpointError(RuntimeError):
    """The endpoint points off this machine and the user has not opted in."""


def is_local_host(host: str) -> bool:
    """True for loopback addresses, `localhost` and LocalStack's loopback DNS names."""
    host = host.strip("[]").lower().rstrip(".")
    if host in LOCAL_HOSTNAMES or host.endswith(".localhost.localstack.cloud"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str, environ: Mapping[str, str] | None = None) -> str:
    """Return `url` if it is local, or if the user opted in to a remote one; raise otherwise."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise RemoteEndpointError(
            f"AWS endpoint {url!r} is not a URL like {DEFAULT_ENDPOINT}: fix AWS_ENDPOINT_URL."
        )
    if is_local_host(parsed.hostname) or env.get(ALLOW_REMOTE_SETTING) == "1":
        return url
    raise RemoteEndpointError(
        f"Refusing AWS endpoint {url!r}: it is not on this machine, and the sandbox never talks "
        f"to real AWS by accident. Point AWS_ENDPOINT_URL at the sandbox ({DEFAULT_ENDPOINT}), "
        f"or set {ALLOW_REMOTE_SETTING}=1 if you really mean that endpoint."
    )


def endpoint(environ: Mapping[str, str] | None = None) -> str:
    """The checked endpoint: AWS_ENDPOINT_URL, or the sandbox's default."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    return check_endpoint(env.get("AWS_ENDPOINT_URL") or DEFAULT_ENDPOINT, env)


def client_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """Settings to add so clients work against the sandbox: only those the user has not set."""
    added: dict[str, str] = {}
    has_credentials = any(
        environ.get(key)
        for key in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE")
    )
    if not has_credentials:
        added["AWS_ACCESS_KEY_ID"] = "test"
        added["AWS_SECRET_ACCESS_KEY"] = "test"
    if not (environ.get("AWS_DEFAULT_REGION") or environ.get("AWS_REGION")):
        added["AWS_DEFAULT_REGION"] = DEFAULT_REGION
    return added


def apply_client_defaults() -> None:
    """Fill in `test` credentials and a region in this process, where none are set."""
    os.environ.update(client_defaults(dict(os.environ)))
