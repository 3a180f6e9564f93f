"""The live page listens on this machine only, and says so when asked otherwise."""

from __future__ import annotations

import socket

import pytest

from sandbox.ui import UiError, check_bind


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_a_non_local_address_is_refused_with_a_clear_error(host: str) -> None:
    with pytest.raises(UiError, match="listens on this machine only"):
        check_bind(host, 8566)


def test_a_port_in_use_is_refused_with_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(UiError, match="is in use"):
            check_bind("127.0.0.1", taken.getsockname()[1])
