"""The stand-in server scenarios start: loopback only, every request recorded."""

from __future__ import annotations

import urllib.request

from sandbox.local_http import Reply, serve


def test_requests_are_answered_and_recorded() -> None:
    with serve(lambda request: Reply(201, request.body.upper())) as server:
        assert server.url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(f"{server.url}/hook?try=1", data=b"ping", method="POST")
        with urllib.request.urlopen(request) as response:
            assert (response.status, response.read()) == (201, b"PING")
    [seen] = server.to("/hook")
    assert (seen.method, seen.body) == ("POST", b"ping")
