"""DynamoDB item requests on tables without a stream go to DynamoDB Local as they came.

LocalStack 4.14 serves every DynamoDB request the same way: it parses the JSON body into
Python objects against the service model, hands them to its provider, which forwards the
original request to DynamoDB Local with `requests`, parses DynamoDB Local's answer the same
way, and serializes it again. For an item request on a table without a stream the provider
adds nothing to that round trip but the credential it rewrites (DynamoDB Local keeps each
account and region apart by the access key). Parsing, `requests` and serializing cost ~5 ms
of LocalStack's one interpreter per request: 200 `put_item` calls from a function kept the
gateway busier than DynamoDB Local.

So, in embedded mode, a GetItem, PutItem, UpdateItem, DeleteItem, Query or Scan on one table
goes straight to DynamoDB Local over a kept-alive connection, with the credential rewritten
as the provider does; its answer (body, status, request id, CRC32) goes back untouched.
Everything else takes LocalStack's own path: tables with a DynamoDB or Kinesis stream (the
provider must see the change to publish its record), global tables, requests that ask for
consumed capacity (the provider fills it in), a Query on an index (the provider checks its
projection), table names given as ARNs, browser requests (CORS), and every request while
LocalStack's error-injection settings are on or DynamoDB Local is not running. `entry.py`
applies the patch when LocalStack loads its DynamoDB service.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import select
import threading
from typing import Any
from urllib.parse import urlsplit

from localstack import config
from localstack.aws.handlers.service import ServiceRequestParser
from localstack.constants import AUTH_CREDENTIAL_REGEX
from localstack.http import Response
from localstack.services.dynamodb import provider as dynamodb_provider
from localstack.services.dynamodb.server import DynamodbServer
from localstack.services.dynamodb.utils import get_ddb_access_key
from localstack.utils.patch import Patch
from rolo.gateway import HandlerChain

from sandbox.executor.executor import ready

LOG = logging.getLogger("localstack.request.aws")
PASSED_THROUGH = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan"}
TARGET_PREFIX = "DynamoDB_20120810."
CREDENTIAL = re.compile(AUTH_CREDENTIAL_REGEX, re.IGNORECASE)
NOT_FORWARDED = {"host", "content-length", "connection", "keep-alive", "transfer-encoding"}
NOT_RETURNED = {"content-length", "connection", "keep-alive", "transfer-encoding", "date", "server"}
_connections = threading.local()


def patch() -> Patch:
    return Patch.function(ServiceRequestParser.__call__, _passed_through)


def _passed_through(
    parse: Any, self: ServiceRequestParser, chain: HandlerChain, context: Any, response: Response
) -> None:
    if context.service is None or context.service.service_name != "dynamodb":
        return parse(self, chain, context, response)
    operation = context.request.headers.get("X-Amz-Target", "").removeprefix(TARGET_PREFIX)
    answer = _forward(context, operation)
    if answer is None:
        return parse(self, chain, context, response)
    status, headers, body = answer
    response.status_code = status
    response.headers.update(headers)
    response.data = body
    LOG.info("AWS dynamodb.%s => %d", operation, status)
    chain.terminate()  # nothing is left to parse, serialize or fill in
    return None


def _forward(context: Any, operation: str) -> tuple[int, dict[str, str], bytes] | None:
    """DynamoDB Local's answer to the request, or None where LocalStack's path must serve it."""
    body = passable(context, operation)
    server = DynamodbServer.get()
    if body is None or not server.is_running():
        return None
    account, region = context.account_id, context.region
    namespace = dynamodb_provider.DynamoDBProvider.ddb_region_name(region)
    key = get_ddb_access_key(account, namespace)
    headers = context.request.headers
    forwarded = {k: v for k, v in headers.items() if k.lower() not in NOT_FORWARDED}
    forwarded["Authorization"] = CREDENTIAL.sub(
        rf"Credential={key}/\2/{namespace}/\4/", headers.get("Authorization") or ""
    )
    return _exchange(server.url, body, forwarded)


def passable(context: Any, operation: str) -> bytes | None:
    """The request's body if DynamoDB Local may serve it as it came; None where LocalStack's
    provider adds to the answer or must see the change (see the module's docstring)."""
    if operation not in PASSED_THROUGH:
        return None
    headers = context.request.headers
    if "Origin" in headers or "Content-Encoding" in headers or _errors_injected():
        return None
    body: bytes = context.request.get_data()
    try:
        request = json.loads(body)
    except ValueError:
        return None  # LocalStack's parser says what is wrong with it
    table = request.get("TableName") if isinstance(request, dict) else None
    if not isinstance(table, str) or ":" in table:
        return None
    if request.get("ReturnConsumedCapacity") in ("TOTAL", "INDEXES"):
        return None
    if operation == "Query" and request.get("IndexName"):
        return None
    account, region = context.account_id, context.region
    if dynamodb_provider.get_table_stream_type(account, region, table):
        return None
    store = dynamodb_provider.get_store(account, region)
    if table in store.REPLICAS or store.TABLE_REGION.get(table, region) != region:
        return None
    return body


def _exchange(
    url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes] | None:
    """POST over this thread's kept-alive connection (opened again if DynamoDB Local closed
    it while idle). None if DynamoDB Local cannot be reached; a failure after the request
    was sent raises (LocalStack answers 500), as sending it again could apply it twice."""
    connection = _connection(url)
    try:
        if connection.sock is None:
            connection.connect()
    except OSError:
        _drop_connection()
        return None
    try:
        connection.request("POST", "/", body=body, headers=headers)
        answer = connection.getresponse()
        data = answer.read()
    except BaseException:
        _drop_connection()
        raise
    returned = {k: v for k, v in answer.getheaders() if k.lower() not in NOT_RETURNED}
    if answer.will_close:
        _drop_connection()
    return answer.status, returned, data


def _connection(url: str) -> http.client.HTTPConnection:
    connection: http.client.HTTPConnection | None = getattr(_connections, "connection", None)
    if connection is not None and (_connections.url != url or _closed_by_peer(connection)):
        _drop_connection()
        connection = None
    if connection is None:
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname or "localhost", parts.port)
        _connections.connection, _connections.url = connection, url
    return connection


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """An idle kept-alive socket that reads as ready has been closed by DynamoDB Local."""
    if connection.sock is None:
        return False
    return ready(connection.sock.fileno(), select.POLLIN, 0)


def _drop_connection() -> None:
    connection = getattr(_connections, "connection", None)
    if connection is not None:
        connection.close()
    _connections.connection = None


def _errors_injected() -> bool:
    return bool(
        config.DYNAMODB_ERROR_PROBABILITY
        or config.DYNAMODB_READ_ERROR_PROBABILITY
        or config.DYNAMODB_WRITE_ERROR_PROBABILITY
    )
