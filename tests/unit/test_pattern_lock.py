"""pattern_lock: `make mutants` and the scenarios/provisioning of the same pattern on the same
sandbox wait for each other; a mutants run's own children pass through."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox import pattern_lock

ENDPOINT = "http://localhost:4566"


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(pattern_lock, "LOCK_DIR", tmp_path)
    monkeypatch.setattr(pattern_lock, "WAIT_S", 0.3)
    monkeypatch.delenv(pattern_lock.HELD_BY_PARENT, raising=False)
    return tmp_path


def test_one_sandbox_one_lock_whatever_the_local_name() -> None:
    assert pattern_lock.lock_file("http://localhost:4566", "cqrs") == pattern_lock.lock_file(
        "http://127.0.0.1:4566", "cqrs"
    )
    assert pattern_lock.lock_file(ENDPOINT, "cqrs") != pattern_lock.lock_file(
        "http://localhost:4610", "cqrs"
    )
    assert pattern_lock.lock_file(ENDPOINT, "cqrs") != pattern_lock.lock_file(ENDPOINT, "webhooks")


def test_scenarios_of_a_pattern_run_side_by_side() -> None:
    with pattern_lock.using(ENDPOINT, "cqrs"), pattern_lock.using(ENDPOINT, "cqrs"):
        pass


def test_a_scenario_waits_for_mutants_and_names_them() -> None:
    said = io.StringIO()
    with pattern_lock.exclusive(ENDPOINT, "cqrs", "`make mutants`"):
        assert "make mutants" in in_another_thread(lambda: use(ENDPOINT, "cqrs", said))
        with pattern_lock.using(ENDPOINT, "webhooks"):  # another pattern is free
            pass
    assert "waiting for `make mutants` (pid" in said.getvalue()
    with pattern_lock.using(ENDPOINT, "cqrs"):  # free again once the mutants are done
        pass


def test_mutants_wait_for_a_running_scenario() -> None:
    with pattern_lock.using(ENDPOINT, "cqrs"):
        with pytest.raises(pattern_lock.PatternBusy, match="scenarios and provisioning"):
            with pattern_lock.exclusive(ENDPOINT, "cqrs", "`make mutants`", io.StringIO()):
                pass


class Said(io.StringIO):
    """Output that lets the test know the waiter has started waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def write(self, text: str) -> int:
        self.waiting.set()
        return super().write(text)


def test_the_waiter_goes_on_once_the_holder_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pattern_lock, "WAIT_S", 10.0)
    said, ran = Said(), threading.Event()

    def scenario() -> None:
        with pattern_lock.using(ENDPOINT, "cqrs", said):
            ran.set()

    with pattern_lock.exclusive(ENDPOINT, "cqrs", "`make mutants`"):
        waiter = threading.Thread(target=scenario)
        waiter.start()
        assert said.waiting.wait(10), "the scenario did not wait for the mutants"
        assert not ran.is_set()
    waiter.join(10)
    assert ran.is_set(), "the scenario did not go on after the mutants were done"


def test_the_mutants_runs_own_children_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    with pattern_lock.exclusive(ENDPOINT, "cqrs", "`make mutants`"):
        monkeypatch.setenv(pattern_lock.HELD_BY_PARENT, "cqrs")
        with pattern_lock.using(ENDPOINT, "cqrs"):
            pass


def test_the_holders_own_provisioning_passes_through_in_its_thread_only() -> None:
    """The poison fault provisions the pattern it holds; a scenario of it waits."""
    with pattern_lock.exclusive(ENDPOINT, "cqrs", "the poison fault test"):
        with pattern_lock.using(ENDPOINT, "cqrs"):
            pass
        assert "the poison fault test" in in_another_thread(lambda: use(ENDPOINT, "cqrs"))


def use(endpoint: str, slug: str, out: io.StringIO | None = None) -> None:
    with pattern_lock.using(endpoint, slug, out or io.StringIO()):
        pass


def in_another_thread(work: Callable[[], None]) -> str:
    """What `work` raised in a thread of its own (the lock's holder is this one)."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert raised, "it did not wait for the holder"
    return str(raised[0])


def test_free_says_whether_a_scenario_would_wait() -> None:
    assert pattern_lock.free(ENDPOINT, "cqrs")
    with pattern_lock.using(ENDPOINT, "cqrs"):  # other scenarios run alongside
        assert pattern_lock.free(ENDPOINT, "cqrs")
    with pattern_lock.exclusive(ENDPOINT, "cqrs", "the poison fault test"):
        assert pattern_lock.free(ENDPOINT, "cqrs")  # its holder's own thread passes through
        assert free_in_another_thread(ENDPOINT, "cqrs") is False
        assert free_in_another_thread(ENDPOINT, "webhooks") is True
    assert free_in_another_thread(ENDPOINT, "cqrs") is True


def free_in_another_thread(endpoint: str, slug: str) -> bool | None:
    answers: list[bool] = []
    thread = threading.Thread(target=lambda: answers.append(pattern_lock.free(endpoint, slug)))
    thread.start()
    thread.join(10)
    return answers[0] if answers else None
