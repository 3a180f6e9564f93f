"""A WebSocket API shaped like API Gateway's, which LocalStack 4.14 community does not have.

Clients connect to ws://127.0.0.1:<endpoint port + 100>/<api id>/<stage>. Each API is a
definition (routes, the Lambda function of each, stage, route selection expression) that
bootstrap registers as a file under the sandbox's state dir; the server rereads them at each
connection, so a definition survives restarts of `make up`. Routes `$connect`, `$disconnect`,
`$default` and custom ones picked by the route selection expression (`$request.body.action`)
invoke their function through LocalStack's Lambda API with AWS's event shape; a `$connect`
that fails or answers non-2xx refuses the connection (403).

The management API (`@connections/{id}`: POST sends, GET describes, DELETE closes) answers on
http://127.0.0.1:<endpoint port + 200>/<api id>/<stage>, the local stand-in for
https://{api-id}.execute-api.{region}.amazonaws.com/{stage}: boto3's
`apigatewaymanagementapi` client works with it as `endpoint_url`. A closed or unknown
connection answers 410 GoneException, as on AWS. (Two ports because the `websockets` library
serves only the GET of a handshake.)

Not emulated: authorizers (IAM, Lambda), route responses (a route's return value is not sent
back), API keys and usage plans, idle (10 min) and 2-hour connection limits, custom domains;
docs/engine-limits.md#websocket-api.

Run alone (docker-compose service): python -m sandbox.websocket_api --endpoint URL.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from sandbox import settings

log = logging.getLogger("sandbox.websocket_api")

WEBSOCKET_PORT_OFFSET = 100  # the WebSocket API listens on the endpoint's port + 100
MANAGEMENT_PORT_OFFSET = 200  # its @connections API on the endpoint's port + 200
DEFINITIONS_DIR = settings.STATE_DIR / "websocket-apis"
CONNECT, DISCONNECT, DEFAULT = "$connect", "$disconnect", "$default"
MAX_POST_BYTES = 128 * 1024  # API Gateway's limit on a message, to or from a connection
INTEGRATION_TIMEOUT = 29  # seconds: API Gateway's limit on a route's integration
EVENT_TYPES = {CONNECT: "CONNECT", DISCONNECT: "DISCONNECT"}


@dataclass(frozen=True)
class ApiDefinition:
    """One WebSocket API: `routes` maps a route key to the function it invokes."""

    name: str
    stage: str
    routes: dict[str, str]
    route_selection_expression: str = "$request.body.action"

    @property
    def api_id(self) -> str:
        """A stable id from the name (10 lowercase characters, like API Gateway's)."""
        return hashlib.sha256(self.name.encode()).hexdigest()[:10]


def websocket_port(endpoint_port: int) -> int:
    return endpoint_port + WEBSOCKET_PORT_OFFSET


def management_port(endpoint_port: int) -> int:
    return endpoint_port + MANAGEMENT_PORT_OFFSET


def websocket_url(api: ApiDefinition, endpoint: str) -> str:
    """Where clients connect (AWS: wss://{api-id}.execute-api.{region}.amazonaws.com/{stage})."""
    port = websocket_port(urlparse(endpoint).port or 4566)
    return f"ws://127.0.0.1:{port}/{api.api_id}/{api.stage}"


def callback_url(api: ApiDefinition, endpoint: str) -> str:
    """The management API's endpoint_url for this API and stage (AWS:
    https://{api-id}.execute-api.{region}.amazonaws.com/{stage})."""
    port = management_port(urlparse(endpoint).port or 4566)
    return f"http://127.0.0.1:{port}/{api.api_id}/{api.stage}"


def register(api: ApiDefinition, folder: Path = DEFINITIONS_DIR) -> Path:
    """Declare the API to the server (idempotent: the file is rewritten only if it changed)."""
    if not api.routes:
        raise ValueError(f"WebSocket API {api.name!r} has no routes: give at least $default.")
    if not api.route_selection_expression.startswith("$request.body."):
        raise ValueError(
            f"WebSocket API {api.name!r}: route selection expression "
            f"{api.route_selection_expression!r} is not supported; use $request.body.<field>."
        )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{api.name}.json"
    text = json.dumps(asdict(api), indent=1, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def declared(folder: Path = DEFINITIONS_DIR) -> list[ApiDefinition]:
    """Every registered API, by name; a file that is not a definition is skipped."""
    apis = []
    for path in sorted(folder.glob("*.json")):
        try:
            apis.append(ApiDefinition(**json.loads(path.read_text())))
        except (ValueError, TypeError) as error:
            log.warning("Skipping %s: not a WebSocket API definition (%s)", path, error)
    return apis


def select_route(api: ApiDefinition, body: str) -> str | None:
    """The route a message takes: the route whose key is the body's field named by the route
    selection expression, else $default; None when neither exists (pure)."""
    path = api.route_selection_expression.removeprefix("$request.body.").split(".")
    try:
        value: Any = json.loads(body)
    except ValueError:
        value = None
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    if isinstance(value, str) and value in api.routes and not value.startswith("$"):
        return value
    return DEFAULT if DEFAULT in api.routes else None


def new_connection_id() -> str:
    """12 characters like API Gateway's (`Vn2hwdR5IAMCJ4A=`), safe in a URL path."""
    return base64.urlsafe_b64encode(os.urandom(8)).decode()


@dataclass
class Connection:
    """What the server knows of one client connection."""

    connection_id: str
    api: ApiDefinition
    domain_name: str
    source_ip: str
    user_agent: str
    connected_at: float = field(default_factory=time.time)
    last_active_at: float = field(default_factory=time.time)


def event(
    connection: Connection,
    route_key: str,
    *,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    close: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """The event a route's function gets, in API Gateway's shape (pure)."""
    now = time.time()
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": EVENT_TYPES.get(route_key, "MESSAGE"),
        "messageDirection": "IN",
        "connectionId": connection.connection_id,
        "connectedAt": int(connection.connected_at * 1000),
        "requestId": uuid.uuid4().hex,
        "extendedRequestId": uuid.uuid4().hex,
        "requestTime": datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "requestTimeEpoch": int(now * 1000),
        "domainName": connection.domain_name,
        "stage": connection.api.stage,
        "apiId": connection.api.api_id,
        "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
    }
    shaped: dict[str, Any] = {"requestContext": context, "isBase64Encoded": False}
    if route_key == CONNECT:
        shaped["headers"] = headers or {}
        shaped["multiValueHeaders"] = {key: [value] for key, value in (headers or {}).items()}
        shaped["queryStringParameters"] = query or None
        shaped["multiValueQueryStringParameters"] = (
            {key: [value] for key, value in query.items()} if query else None
        )
    elif route_key == DISCONNECT:
        code, reason = close or (1005, "")
        context.update(disconnectStatusCode=code, disconnectReason=reason)
    else:
        context["messageId"] = uuid.uuid4().hex[:16]
        shaped["body"] = body
    return shaped


def accepted(status_code: Any) -> bool:
    """A $connect answer that lets the client in: no status code, or a 2xx one (pure)."""
    return status_code is None or (isinstance(status_code, int) and 200 <= status_code < 300)


class WebSocketApiServer:
    """The WebSocket API and its management API, each on its own thread."""

    def __init__(
        self,
        endpoint: str,
        *,
        host: str = "127.0.0.1",
        websocket_port: int,
        management_port: int,
        definitions: Path = DEFINITIONS_DIR,
    ) -> None:
        self.definitions = definitions
        self.host = host
        import boto3  # here, not with the module: the CLI imports it for its ports and names
        from botocore.config import Config

        # Test credentials and region where none are set, passed to the client rather than
        # put in the environment: in embedded mode this runs inside LocalStack's process.
        defaults = settings.client_defaults(dict(os.environ))
        self.lambda_ = boto3.client(
            "lambda",
            endpoint_url=settings.check_endpoint(endpoint),
            region_name=defaults.get("AWS_DEFAULT_REGION"),
            aws_access_key_id=defaults.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=defaults.get("AWS_SECRET_ACCESS_KEY"),
            config=Config(retries={"max_attempts": 1}, read_timeout=900),
        )
        self.live: dict[str, tuple[Connection, ServerConnection]] = {}
        self.handshaking: dict[uuid.UUID, Connection] = {}
        self.lock = threading.Lock()
        self.websockets: Server = serve(
            self._serve_connection,
            host,
            websocket_port,
            process_request=self._connect,
            server_header="sandbox-websocket-api",
            open_timeout=INTEGRATION_TIMEOUT,  # the handshake includes the $connect function
            max_size=MAX_POST_BYTES,  # API Gateway's message limit, both ways
        )
        self.management = ThreadingHTTPServer((host, management_port), self._management_handler())

    def start(self) -> None:
        for target in (self.websockets.serve_forever, self.management.serve_forever):
            threading.Thread(target=target, daemon=True).start()

    def shutdown(self) -> None:
        self.websockets.shutdown()
        self.management.shutdown()
        self.management.server_close()

    # The WebSocket side: $connect during the handshake, then one thread per connection.

    def _connect(self, socket: ServerConnection, request: Request) -> Response | None:
        parsed = urlparse(request.path)
        api = self._api(parsed.path)
        if api is None:
            return socket.respond(404, f"No WebSocket API at {parsed.path}\n")
        address = socket.remote_address
        connection = Connection(
            new_connection_id(),
            api,
            domain_name=request.headers.get("Host", self.host),
            source_ip=str(address[0]) if address else "",
            user_agent=request.headers.get("User-Agent", ""),
        )
        if CONNECT in api.routes:
            headers = {key: value for key, value in request.headers.raw_items()}
            query = dict(parse_qsl(parsed.query))
            shaped = event(connection, CONNECT, headers=headers, query=query)
            answer = self._invoke(api.routes[CONNECT], shaped)
            if answer is None or not accepted(answer.get("statusCode")):
                log.info("$connect refused %s: %s", connection.connection_id, answer)
                return socket.respond(403, "Forbidden\n")
        with self.lock:
            self.handshaking[socket.id] = connection
        return None

    def _serve_connection(self, socket: ServerConnection) -> None:
        with self.lock:
            connection = self.handshaking.pop(socket.id)
            self.live[connection.connection_id] = (connection, socket)
        try:
            for message in socket:
                connection.last_active_at = time.time()
                text = message if isinstance(message, str) else message.decode(errors="replace")
                self._on_message(connection, socket, text)
        except ConnectionClosed:
            pass
        finally:
            with self.lock:
                self.live.pop(connection.connection_id, None)
            api = connection.api
            if DISCONNECT in api.routes:
                close = (socket.close_code or 1006, socket.close_reason or "")
                self._invoke(api.routes[DISCONNECT], event(connection, DISCONNECT, close=close))

    def _on_message(self, connection: Connection, socket: ServerConnection, body: str) -> None:
        route = select_route(connection.api, body)
        shaped = event(connection, route or DEFAULT, body=body)
        request_id = shaped["requestContext"]["requestId"]
        if route is None:
            self._tell(socket, "Forbidden", connection, request_id)
            return
        shaped["requestContext"]["routeKey"] = route
        if self._invoke(connection.api.routes[route], shaped) is None:
            self._tell(socket, "Internal server error", connection, request_id)

    def _tell(
        self, socket: ServerConnection, message: str, connection: Connection, request_id: str
    ) -> None:
        """What API Gateway sends a client whose message found no route or whose function
        failed."""
        answer = {
            "message": message,
            "connectionId": connection.connection_id,
            "requestId": request_id,
        }
        try:
            socket.send(json.dumps(answer))
        except ConnectionClosed:
            pass

    def _invoke(self, function: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The function's answer ({} when it returned no object), or None when it failed."""
        try:
            answer = self.lambda_.invoke(FunctionName=function, Payload=json.dumps(payload))
            returned = json.loads(answer["Payload"].read() or b"null")
        except Exception as error:  # throttled, missing, unreachable: the route failed
            log.warning("Invoking %s failed: %s", function, error)
            return None
        if "FunctionError" in answer:
            log.info("%s failed: %s", function, returned)
            return None
        return returned if isinstance(returned, dict) else {}

    def _api(self, path: str) -> ApiDefinition | None:
        parts = path.strip("/").split("/")
        if len(parts) != 2:
            return None
        api_id, stage = parts
        return next(
            (a for a in declared(self.definitions) if a.api_id == api_id and a.stage == stage),
            None,
        )

    # The management API: @connections/{id}.

    def _management_handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(
                self, status: int, body: dict[str, Any] | None = None, error: str = ""
            ) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if error:
                    self.send_header("x-amzn-ErrorType", error)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _connection(self) -> tuple[Connection, ServerConnection] | None:
                parts = urlparse(self.path).path.strip("/").split("/")
                if len(parts) != 4 or parts[2] != "@connections":
                    self._answer(
                        404, {"message": f"No such path: {self.path}"}, "NotFoundException"
                    )
                    return None
                api_id, stage, _, connection_id = parts
                with server.lock:
                    found = server.live.get(unquote(connection_id))
                if found is None or (found[0].api.api_id, found[0].api.stage) != (api_id, stage):
                    self._answer(410, {"message": None}, "GoneException")
                    return None
                return found

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                found = self._connection()
                if found is None:
                    return
                if len(data) > MAX_POST_BYTES:
                    self._answer(413, {"message": "Message too long"}, "PayloadTooLargeException")
                    return
                try:
                    found[1].send(_text_or_bytes(data))
                except ConnectionClosed:
                    self._answer(410, {"message": None}, "GoneException")
                    return
                self._answer(200)

            def do_GET(self) -> None:
                found = self._connection()
                if found is not None:
                    connection = found[0]
                    self._answer(
                        200,
                        {
                            "connectedAt": _iso(connection.connected_at),
                            "lastActiveAt": _iso(connection.last_active_at),
                            "identity": {
                                "sourceIp": connection.source_ip,
                                "userAgent": connection.user_agent,
                            },
                        },
                    )

            def do_DELETE(self) -> None:
                found = self._connection()
                if found is not None:
                    found[1].close(1000, "closed by the management API")
                    self._answer(204)

            def log_message(self, format: str, *args: object) -> None:
                log.debug(format, *args)

        return Handler


def _text_or_bytes(data: bytes) -> str | bytes:
    """A text frame when the data is UTF-8 (what API Gateway sends a browser), else binary."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def start_for_sandbox(endpoint_port: int) -> WebSocketApiServer | None:
    """Start the server beside an embedded sandbox on `endpoint_port` (in its process); a port
    already taken is logged, not raised: LocalStack must still start."""
    try:
        server = WebSocketApiServer(
            f"http://127.0.0.1:{endpoint_port}",
            websocket_port=websocket_port(endpoint_port),
            management_port=management_port(endpoint_port),
        )
    except OSError as error:
        print(f"The WebSocket API could not start: {error}", flush=True)
        return None
    logging.getLogger("websockets").setLevel(logging.WARNING)  # not a line per connection
    server.start()
    print(
        f"WebSocket API on ws://127.0.0.1:{websocket_port(endpoint_port)}, its management API "
        f"on http://127.0.0.1:{management_port(endpoint_port)}",
        flush=True,
    )
    return server


def main() -> None:
    top = argparse.ArgumentParser(description="The sandbox's WebSocket API, on its own.")
    top.add_argument("--endpoint", default=settings.endpoint(), help="the LocalStack endpoint")
    top.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    args = top.parse_args()
    logging.basicConfig(level=logging.INFO)
    port = urlparse(args.endpoint).port or 4566
    server = WebSocketApiServer(
        args.endpoint,
        host=args.host,
        websocket_port=websocket_port(port),
        management_port=management_port(port),
    )
    server.start()
    print(
        f"WebSocket API on {args.host}:{websocket_port(port)}, management {management_port(port)}"
    )
    threading.Event().wait()  # serve until stopped


if __name__ == "__main__":
    main()
