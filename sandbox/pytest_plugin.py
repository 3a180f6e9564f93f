"""Fixtures for testing your own code against the sandbox (a `pytest11` entry point: installing
this package into a project's venv is enough, nothing to import).

    sandbox_endpoint   the sandbox's URL (AWS_ENDPOINT_URL, default http://localhost:4566);
                       refuses one that is not on this machine, fails if nothing answers
    sandbox_client     sandbox_client("sqs") -> a boto3 client for the sandbox
    sandbox_pattern    sandbox_pattern("webhooks") -> that pattern provisioned (idempotent),
                       as its bootstrap record: its queue URLs, table names, API URL...
    stand_in_server    stand_in_server(respond) -> an HTTP server Lambda functions can reach
                       (sandbox.local_http), recording every request; stopped after the test

Every name starts with `sandbox_` or `stand_in_`, so a project's own fixtures keep theirs
(and the sandbox's own tests, which load this too, are unchanged). Imports wait until a fixture
is used: collecting tests stays as quick as without the plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sandbox.aws import Aws
    from sandbox.local_http import LocalServer, Reply, Request


@pytest.fixture(scope="session")
def sandbox_endpoint() -> str:
    """The sandbox's endpoint, checked to be local and answering."""
    from sandbox import settings
    from sandbox.health import health

    try:
        endpoint = settings.endpoint()
    except settings.RemoteEndpointError as refused:
        pytest.fail(str(refused), pytrace=False)
    if health(endpoint) is None:
        pytest.fail(
            f"No sandbox answers at {endpoint}. Start it with `make up` in the sandbox's clone, "
            "or point AWS_ENDPOINT_URL at the one you run.",
            pytrace=False,
        )
    return endpoint


@pytest.fixture(scope="session")
def sandbox_aws(sandbox_endpoint: str) -> Aws:
    """The sandbox's clients, with test credentials and a region where none are set."""
    from sandbox.aws import Aws

    return Aws(sandbox_endpoint)


@pytest.fixture(scope="session")
def sandbox_client(sandbox_aws: Aws) -> Callable[[str], Any]:
    """sandbox_client("dynamodb") -> a boto3 client talking to the sandbox."""
    return sandbox_aws.client


@pytest.fixture(scope="session")
def sandbox_pattern(sandbox_aws: Aws) -> Callable[[str], Any]:
    """sandbox_pattern(slug) -> the pattern's bootstrap record, provisioned once a session
    (provisioning is idempotent: an already provisioned pattern is only checked)."""
    from sandbox import patterns

    records: dict[str, Any] = {}

    def provisioned(slug: str) -> Any:
        if slug not in records:
            try:
                pattern = patterns.find(slug)
            except patterns.UnknownPattern as unknown:
                pytest.fail(str(unknown), pytrace=False)
            records[slug] = pattern.provision(sandbox_aws)
        return records[slug]

    return provisioned


@pytest.fixture
def stand_in_server() -> Iterator[Callable[..., LocalServer]]:
    """stand_in_server(respond=None) -> a started server; `respond(request) -> Reply` answers
    each request (by default 200 with `{}`). Its `url` is what a Lambda function can reach."""
    from sandbox.local_http import Reply, serve

    def answer_ok(_: Request) -> Reply:
        return Reply(200, b"{}")

    with ExitStack() as servers:

        def start(respond: Callable[[Request], Reply] | None = None) -> LocalServer:
            return servers.enter_context(serve(respond or answer_ok))

        yield start
