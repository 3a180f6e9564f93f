"""Start LocalStack's runtime in this process, with the patches the embedded mode needs.

The launcher runs this module as the sandbox's main process (`python -m sandbox.embedded.entry`).
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from typing import Any

from sandbox.embedded import pollers
from sandbox.embedded.launcher import PRESTART_BACKENDS

# DynamoDB Local serves one developer: the client compiler alone and the serial collector
# start it sooner and leave it smaller and quieter when idle than the server defaults.
LIGHT_JVM = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xss512k")


def _start_dynamodb_local_without_agent() -> None:
    """LocalStack adds `-javaagent:ddb-local-loader` (a patch jar it downloads) to DynamoDB
    Local's command line; offline there is no such jar and the JVM refuses to start. The patch
    only lifts the GSI limit, so we start DynamoDB Local without it (and with LIGHT_JVM)."""
    from localstack.services.dynamodb.server import DynamodbServer

    original = DynamodbServer._create_shell_command

    def without_agent(self: DynamodbServer) -> list[str]:
        command = [arg for arg in original(self) if not arg.startswith("-javaagent:")]
        return [command[0], *LIGHT_JVM, *command[1:]]

    DynamodbServer._create_shell_command = without_agent  # type: ignore[method-assign]


def _bind_gateway_to_its_host() -> None:
    """LocalStack's Twisted gateway listens on every interface whatever GATEWAY_LISTEN's host
    says; the sandbox must only be reachable from this machine."""
    from localstack import config
    from twisted.internet import endpoints

    hosts = {listen.port: listen.host for listen in config.GATEWAY_LISTEN}
    original = endpoints.TCP4ServerEndpoint

    def bound(reactor, port, backlog=50, interface=""):  # type: ignore[no-untyped-def]
        return original(reactor, port, backlog, interface or hosts.get(port, ""))

    endpoints.TCP4ServerEndpoint = bound  # type: ignore[misc,assignment]


def _first_idle_poll_wait_within_the_maximum() -> None:
    """An event source mapping's first empty poll waits 0.5-1.5 s whatever
    LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC says (only later waits are
    capped by it); start the backoff at that maximum so a new message waits no longer."""
    from localstack.services.lambda_.event_source_mapping import esm_worker
    from localstack.utils.backoff import ExponentialBackoff

    def capped(initial_interval: float = 0.5, max_interval: float = 60, **kwargs: Any) -> Any:
        return ExponentialBackoff(
            initial_interval=min(initial_interval, max_interval),
            max_interval=max_interval,
            **kwargs,
        )

    esm_worker.ExponentialBackoff = capped  # type: ignore[misc,assignment]


def _start_backends_early() -> None:
    """DynamoDB Local (a JVM, ~4 s) and kinesis-mock (Node.js, for DynamoDB streams, ~3 s)
    start on their service's first use, and `make up` met them one after the other, with every
    provisioning thread waiting. Start both, side by side, as soon as LocalStack is ready."""
    from localstack.aws.connect import connect_to
    from localstack.runtime import events

    def start(name: str, first_call: Any) -> None:
        events.infra_ready.wait()
        try:
            first_call()
        except Exception as error:  # the service's first real use will say what is wrong
            print(f"Starting {name} early failed: {error}", file=sys.stderr)

    for name, first_call in (
        ("DynamoDB Local", lambda: connect_to().dynamodb.list_tables()),
        ("kinesis-mock", lambda: connect_to().kinesis.list_streams()),
    ):
        threading.Thread(target=start, args=(name, first_call), daemon=True).start()


def main() -> None:
    if os.environ.get(PRESTART_BACKENDS) == "1":
        _start_backends_early()
    _start_dynamodb_local_without_agent()
    _bind_gateway_to_its_host()
    _first_idle_poll_wait_within_the_maximum()
    pollers.apply()
    from localstack.runtime.main import main as localstack_main

    try:
        localstack_main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    # After its orderly shutdown, LocalStack's CloudWatch log thread may still retry against
    # the stopped gateway, and Python would wait for it: exit without waiting.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
