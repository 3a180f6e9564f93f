"""Start LocalStack's runtime in this process, with the patches the embedded mode needs.

The launcher runs this module as the sandbox's main process (`python -m sandbox.embedded.entry`).
"""

from __future__ import annotations


def _start_dynamodb_local_without_agent() -> None:
    """LocalStack adds `-javaagent:ddb-local-loader` (a patch jar it downloads) to DynamoDB
    Local's command line; offline there is no such jar and the JVM refuses to start. The patch
    only lifts the GSI limit, so we start DynamoDB Local without it."""
    from localstack.services.dynamodb.server import DynamodbServer

    original = DynamodbServer._create_shell_command

    def without_agent(self: DynamodbServer) -> list[str]:
        return [arg for arg in original(self) if not arg.startswith("-javaagent:")]

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


def main() -> None:
    _start_dynamodb_local_without_agent()
    _bind_gateway_to_its_host()
    from localstack.runtime.main import main as localstack_main

    localstack_main()


if __name__ == "__main__":
    main()
