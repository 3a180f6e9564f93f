"""Races forced through a pattern's own handler, not left to luck.

A handler whose point is concurrency reads, decides, then writes with a condition. To show
that condition deciding a race, a scenario holds one real invocation (A) between its read
and its write, lets another (B) finish, then releases A: A must lose, by the handler's own
condition.

The hold is a test-only hook in the handler (`hold_after_read`), off unless the function has
SANDBOX_TEST_HOLD_TABLE set. Bootstrap sets it on a second variant of the function only
(`<name>-held`, same code, same tables), so the function the pattern uses never pauses.
Even the variant holds only for a key the scenario armed in that table:

    armed (scenario) -> held (A, after its read) -> released (scenario) -> A writes
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from sandbox import items
from sandbox.aws import Aws
from sandbox.harness import ScenarioFailed, await_value
from sandbox.observe import call
from sandbox.provision import ensure_function, ensure_table

HOLD_TABLE_VARIABLE = "SANDBOX_TEST_HOLD_TABLE"
HOLD_SECONDS_VARIABLE = "SANDBOX_TEST_HOLD_SECONDS"
HOLD_SECONDS = 20  # the longest a held invocation waits for its release


@dataclass(frozen=True)
class HeldVariant:
    """The `-held` copy of a function and the table its holds are armed in."""

    function: str
    holds_table: str


def ensure_held_variant(
    aws: Aws,
    function: str,
    handler_folder: str,
    *,
    handler: str,
    environment: dict[str, str],
    timeout: int,
) -> HeldVariant:
    """`<function>-held`: the same code and settings with the test hook switched on."""
    holds_table = ensure_table(aws, f"{function}-holds")
    held = f"{function}-held"
    ensure_function(
        aws,
        held,
        handler_folder,
        handler=handler,
        environment={
            **environment,
            HOLD_TABLE_VARIABLE: holds_table,
            HOLD_SECONDS_VARIABLE: str(HOLD_SECONDS),
        },
        timeout=timeout + HOLD_SECONDS,
    )
    return HeldVariant(held, holds_table)


class HeldCall:
    """One invocation of the held variant, stopped between its read and its write:

    with HeldCall(aws, variant, key, payload) as held:   # returns once A holds
        ...                                              # B runs to the end
        error, answer = held.release()                   # A writes (or loses)
    """

    def __init__(self, aws: Aws, variant: HeldVariant, key: str, payload: Any) -> None:
        self.aws, self.variant, self.key, self.payload = aws, variant, key, payload
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._answer: Future[tuple[str | None, Any]] | None = None

    def __enter__(self) -> HeldCall:
        self._set_state("armed")
        self._answer = self._pool.submit(call, self.aws, self.variant.function, self.payload)
        answer = self._answer
        await_value(
            lambda: answer.done() or self.state() == "held",
            timeout=30,
            waiting_for=f"{self.variant.function} to hold {self.key} after its read",
        )
        if self.state() != "held":
            raise ScenarioFailed(
                f"{self.variant.function} finished without reaching its hold on {self.key}: "
                f"{answer.result()}"
            )
        return self

    def state(self) -> str | None:
        item = items.get(self.aws, self.variant.holds_table, {"id": self.key})
        return item["state"] if item else None

    def release(self) -> tuple[str | None, Any]:
        """Let A write; returns its (FunctionError or None, answer)."""
        assert self._answer is not None, "release() belongs inside `with HeldCall(...)`"
        self._set_state("released")
        return self._answer.result(timeout=HOLD_SECONDS + 40)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._set_state("released")  # never leave an invocation waiting out its deadline
        self._pool.shutdown(wait=False)

    def _set_state(self, state: str) -> None:
        self.aws.client("dynamodb").put_item(
            TableName=self.variant.holds_table, Item=items.wire({"id": self.key, "state": state})
        )
