"""`make up` twice at once: the second waits for the first (which holds a lock on a file in
the state folder), says so, and starts nothing of its own meanwhile."""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path

import pytest

from sandbox import cli
from sandbox.harness import await_value


def test_a_second_up_waits_for_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lock_file = tmp_path / "up.lock"
    monkeypatch.setattr(cli, "UP_LOCK_FILE", lock_file)
    monkeypatch.setattr(cli.settings, "STATE_DIR", tmp_path)
    entered = threading.Event()

    def second_up() -> None:
        with cli.only_one_up():
            entered.set()

    with lock_file.open("w") as first:
        first.write("12345")
        first.flush()
        fcntl.flock(first, fcntl.LOCK_EX)  # the first `up`, still starting
        waiting = threading.Thread(target=second_up)
        waiting.start()
        await_value(
            lambda: "waiting for it" in capsys.readouterr().out,
            timeout=10,
            waiting_for="the second `up` to say it waits",
        )
        assert not entered.is_set(), "the second `up` went ahead while the first held the lock"
        fcntl.flock(first, fcntl.LOCK_UN)
    waiting.join(timeout=10)
    assert entered.is_set(), "the second `up` did not go ahead once the first finished"
