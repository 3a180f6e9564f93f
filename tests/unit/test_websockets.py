"""websockets: the WebSocket API stand-in's pure logic (route selection, AWS's event shape,
declaring an API), the server itself with its Lambda calls stubbed (botocore's Stubber), and
the pattern's handlers' pure logic."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from sandbox import websocket_api
from sandbox.harness import await_value
from sandbox.health import free_port
from sandbox.websocket_api import ApiDefinition, Connection, WebSocketApiServer
from tests.conftest import load_handler

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
connections = load_handler("websockets", "connections")
submit = load_handler("websockets", "submit")
notifier = load_handler("websockets", "notifier")

API = ApiDefinition(
    name="chat",
    stage="dev",
    routes={
        "$connect": "on-connect",
        "$disconnect": "on-disconnect",
        "$default": "on-default",
        "submit": "on-submit",
    },
)


@pytest.mark.parametrize(
    ("body", "route"),
    [
        ('{"action": "submit"}', "submit"),
        ('{"action": "dance"}', "$default"),
        ('{"action": "$connect"}', "$default"),  # a client cannot pick a special route
        ('{"action": 3}', "$default"),
        ("not json", "$default"),
        ("[1, 2]", "$default"),
    ],
)
def test_route_is_picked_by_the_body_field(body: str, route: str) -> None:
    assert websocket_api.select_route(API, body) == route


def test_without_a_default_route_an_unknown_action_has_none() -> None:
    api = ApiDefinition("chat", "dev", {"submit": "on-submit"})
    assert websocket_api.select_route(api, '{"action": "dance"}') is None


def test_a_nested_selection_expression_follows_the_path() -> None:
    api = ApiDefinition("chat", "dev", {"go": "f"}, "$request.body.meta.kind")
    assert websocket_api.select_route(api, '{"meta": {"kind": "go"}}') == "go"


def _connection() -> Connection:
    return Connection("abc=", API, "127.0.0.1:4666", "127.0.0.1", "test-agent", 1_700_000_000.0)


def test_connect_event_has_aws_shape_with_query_and_headers() -> None:
    event = websocket_api.event(
        _connection(), "$connect", headers={"Host": "h"}, query={"token": "t"}
    )
    context = event["requestContext"]
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert context["connectionId"] == "abc="
    assert context["connectedAt"] == 1_700_000_000_000
    assert context["stage"] == "dev"
    assert context["domainName"] == "127.0.0.1:4666"
    assert context["apiId"] == API.api_id
    assert context["requestId"]
    assert event["queryStringParameters"] == {"token": "t"}
    assert event["multiValueQueryStringParameters"] == {"token": ["t"]}
    assert event["headers"] == {"Host": "h"}
    assert "body" not in event


def test_message_event_carries_the_body_and_a_message_id() -> None:
    event = websocket_api.event(_connection(), "submit", body='{"action": "submit"}')
    assert event["body"] == '{"action": "submit"}'
    assert event["requestContext"]["eventType"] == "MESSAGE"
    assert event["requestContext"]["messageId"]
    assert "queryStringParameters" not in event


def test_disconnect_event_says_how_the_connection_closed() -> None:
    event = websocket_api.event(_connection(), "$disconnect", close=(1001, "going away"))
    assert event["requestContext"]["eventType"] == "DISCONNECT"
    assert event["requestContext"]["disconnectStatusCode"] == 1001


@pytest.mark.parametrize(
    ("status", "accepted"), [(None, True), (200, True), (204, True), (401, False), ("200", False)]
)
def test_connect_answers_that_let_a_client_in(status: object, accepted: bool) -> None:
    assert websocket_api.accepted(status) is accepted


def test_register_is_idempotent_and_declared_reads_it_back(tmp_path: Path) -> None:
    path = websocket_api.register(API, tmp_path)
    written = path.stat().st_mtime_ns
    websocket_api.register(API, tmp_path)
    assert path.stat().st_mtime_ns == written
    assert websocket_api.declared(tmp_path) == [API]


def test_register_refuses_an_unsupported_expression(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not supported"):
        websocket_api.register(ApiDefinition("x", "dev", {"a": "f"}, "$request.header.x"), tmp_path)


def test_urls_follow_the_endpoint_port() -> None:
    assert websocket_api.websocket_url(API, "http://localhost:4612").startswith(
        "ws://127.0.0.1:4712/"
    )
    assert websocket_api.callback_url(API, "http://localhost:4566") == (
        f"http://127.0.0.1:4766/{API.api_id}/dev"
    )


# The server, with its Lambda calls stubbed.


def _answer(payload: object, error: bool = False) -> dict[str, object]:
    data = json.dumps(payload).encode()
    answer: dict[str, object] = {
        "StatusCode": 200,
        "Payload": StreamingBody(io.BytesIO(data), len(data)),
    }
    if error:
        answer["FunctionError"] = "Unhandled"
    return answer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[WebSocketApiServer, Stubber]]:
    websocket_api.register(API, tmp_path)
    running = WebSocketApiServer(
        "http://127.0.0.1:4566",
        websocket_port=free_port(),
        management_port=free_port(),
        definitions=tmp_path,
    )
    stubber = Stubber(running.lambda_)
    stubber.activate()
    running.start()
    yield running, stubber
    running.shutdown()


def _urls(running: WebSocketApiServer) -> tuple[str, str]:
    ws_port = running.websockets.socket.getsockname()[1]
    management_port = running.management.server_address[1]
    return (
        f"ws://127.0.0.1:{ws_port}/{API.api_id}/dev",
        f"http://127.0.0.1:{management_port}/{API.api_id}/dev",
    )


def test_a_refused_connect_gets_403(server: tuple[WebSocketApiServer, Stubber]) -> None:
    running, stubber = server
    stubber.add_response(
        "invoke", _answer({"statusCode": 401}), {"FunctionName": "on-connect", "Payload": ANY}
    )
    url, _ = _urls(running)
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=5)
    assert refused.value.response.status_code == 403
    assert running.live == {}


def test_a_failing_connect_function_gets_403(server: tuple[WebSocketApiServer, Stubber]) -> None:
    running, stubber = server
    stubber.add_response(
        "invoke", _answer("boom", error=True), {"FunctionName": "on-connect", "Payload": ANY}
    )
    url, _ = _urls(running)
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=5)
    assert refused.value.response.status_code == 403


def test_an_unknown_api_gets_404(server: tuple[WebSocketApiServer, Stubber]) -> None:
    running, _ = server
    url, _ = _urls(running)
    with pytest.raises(InvalidStatus) as refused:
        connect(url.replace(API.api_id, "nosuchapi0"), open_timeout=5)
    assert refused.value.response.status_code == 404


def test_messages_route_and_the_management_api_posts_gets_and_goes(
    server: tuple[WebSocketApiServer, Stubber],
) -> None:
    running, stubber = server
    url, callback = _urls(running)
    management = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=callback,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    stubber.add_response(
        "invoke", _answer({"statusCode": 200}), {"FunctionName": "on-connect", "Payload": ANY}
    )
    stubber.add_response(
        "invoke", _answer("boom", error=True), {"FunctionName": "on-submit", "Payload": ANY}
    )
    stubber.add_response("invoke", _answer(None), {"FunctionName": "on-disconnect", "Payload": ANY})
    with connect(url, open_timeout=5) as client:
        (connection_id,) = await_value(lambda: list(running.live), waiting_for="the connection")
        client.send('{"action": "submit"}')
        failed = json.loads(client.recv(timeout=5))
        assert failed["message"] == "Internal server error"
        assert failed["connectionId"] == connection_id
        management.post_to_connection(ConnectionId=connection_id, Data=b'{"hello": 1}')
        assert json.loads(client.recv(timeout=5)) == {"hello": 1}
        described = management.get_connection(ConnectionId=connection_id)
        assert described["Identity"]["SourceIp"] == "127.0.0.1"
    with pytest.raises(ClientError) as gone:
        management.post_to_connection(ConnectionId=connection_id, Data=b"late")
    assert gone.value.response["Error"]["Code"] == "GoneException"
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410


# The pattern's handlers.


@pytest.mark.parametrize(
    ("query", "user"),
    [
        ({"token": "alice-1"}, "alice-1"),
        (None, None),
        ({"token": ""}, None),
        ({"token": "a b"}, None),
    ],
)
def test_a_connection_needs_a_well_formed_token(
    query: dict[str, str] | None, user: str | None
) -> None:
    assert connections.user_of(query) == user


def test_a_job_is_parsed_with_default_steps() -> None:
    job = submit.parse_job('{"action": "submit", "jobId": "j1", "text": "hi"}')
    assert job == {"jobId": "j1", "text": "hi", "steps": 3}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("nope", "not JSON"),
        ("[]", "JSON object"),
        ('{"text": "hi"}', "jobId"),
        ('{"jobId": "j", "text": ""}', "text"),
        ('{"jobId": "j", "text": "a", "steps": 9}', "steps"),
        ('{"jobId": "j", "text": "a", "steps": true}', "steps"),
    ],
)
def test_a_bad_job_says_what_to_fix(body: str, reason: str) -> None:
    with pytest.raises(submit.InvalidJob, match=reason):
        submit.parse_job(body)


def test_the_client_is_told_status_progress_and_result() -> None:
    image = {
        "jobId": "j",
        "status": "COMPLETE",
        "progress": 2,
        "steps": 2,
        "connectionId": "c",
        "result": {"words": 1},
    }
    assert notifier.update_for(image) == {
        "type": "status",
        "jobId": "j",
        "status": "COMPLETE",
        "progress": 2,
        "steps": 2,
        "result": {"words": 1},
    }
    assert notifier.recipients(image) == ["c"]
