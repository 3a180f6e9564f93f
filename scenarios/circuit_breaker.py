"""Scenario for circuit-breaker: what a user would check after wiring the seed's design.

1. A malformed request fails in "Request Rejected" (InvalidRequest), is not retried, and
   leaves the circuit closed: a client error is not an outage.
2. A failing service is retried (three invocations), then the circuit is OPEN with an expiry.
3. The next run fails fast in "Circuit Open": Step Functions schedules no task for the
   service, the service's own call counter does not move, and no invocation (REPORT line)
   reaches its CloudWatch log group.
4. Once the expiry passes the circuit is CLOSED again and a call goes through.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bootstrap.circuit_breaker import CircuitBreaker
from sandbox import executions, items, observe
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, holds_for, unique_name

# How long the circuit stays open, as the pattern's design gives it (docs/patterns/
# circuit_breaker.md), judged against the stored expiry rather than the bootstrap's setting.
DESIGN_OPEN_SECONDS = 15
OPEN_PERIOD_SLACK_S = 3


class Breaker:
    """The pattern as the scenario inspects it: the circuit, the service's counter and log."""

    def __init__(self, aws: Aws, resources: CircuitBreaker) -> None:
        self.aws, self.resources = aws, resources

    def circuit(self) -> dict[str, Any]:
        """The circuit as the workflow sees it (the same function it asks)."""
        answer: dict[str, Any] = observe.invoke(
            self.aws,
            self.resources.circuit_function,
            {"action": "get", "service": self.resources.circuit_key},
        )
        return answer

    def calls(self, caller: str) -> dict[str, Any]:
        item = items.get(self.aws, self.resources.calls_table, {"caller": caller}) or {}
        return {
            "calls": item.get("calls", 0),
            "requestIds": sorted(item.get("requestIds", [])),
        }

    def report_lines(self) -> list[str]:
        found = observe.log_lines(self.aws, self.resources.service_function, "REPORT RequestId:")
        return [line for line in found if line.startswith("REPORT RequestId:")]


def run(aws: Aws, resources: CircuitBreaker, scenario: Scenario) -> None:
    breaker = Breaker(aws, resources)
    run_id = unique_name("cb")
    circuit_starts_closed(scenario, breaker)
    malformed_request_leaves_the_circuit_closed(scenario, breaker, run_id)
    report_lines_when_open = failing_service_is_retried_then_opens(scenario, breaker, run_id)
    next_run_fails_fast(scenario, breaker, run_id, baseline=report_lines_when_open)
    calls_go_through_after_the_expiry(scenario, breaker, run_id)


def circuit_starts_closed(scenario: Scenario, breaker: Breaker) -> None:
    with scenario.step("The circuit starts closed"):
        await_value(
            breaker.circuit,
            until=lambda state: state.get("state") == "CLOSED",
            timeout=breaker.resources.open_seconds + 20,
            waiting_for="the circuit to be closed",
        )
        scenario.note("the circuit is CLOSED (an earlier run's circuit has expired)")


def malformed_request_leaves_the_circuit_closed(
    scenario: Scenario, breaker: Breaker, run_id: str
) -> None:
    aws, resources = breaker.aws, breaker.resources
    with scenario.step(
        "A malformed request fails in 'Request Rejected' and leaves the circuit closed"
    ):
        bad_caller = f"{run_id}-bad"
        done = executions.run(
            aws, resources.state_machine, {"caller": bad_caller, "request": "oops"}
        )
        scenario.note(f"entered: {' → '.join(done.entered)}")
        scenario.check("status", expected="FAILED", seen=done.status)
        scenario.check("error", expected="InvalidRequest", seen=done.error)
        scenario.check("last state entered", expected="Request Rejected", seen=done.entered[-1])
        scenario.check(
            "service tasks scheduled (no retry)",
            expected=1,
            seen=done.tasks_for(resources.service_function),
        )
        scenario.check(
            "'Open Circuit' entered", expected=False, seen="Open Circuit" in done.entered
        )
        scenario.check("circuit", expected="CLOSED", seen=breaker.circuit()["state"])


def failing_service_is_retried_then_opens(scenario: Scenario, breaker: Breaker, run_id: str) -> int:
    """Returns how many REPORT lines the service's log group holds once the circuit is open."""
    aws, resources = breaker.aws, breaker.resources
    with scenario.step(
        f"A failing service is retried ({resources.service_attempts} calls), then OPENs"
    ):
        failing = f"{run_id}-outage"
        payload = {"caller": failing, "request": {"order": run_id}, "simulateFailure": True}
        done = executions.run(aws, resources.state_machine, payload)
        scenario.note(f"entered: {' → '.join(done.entered)}")
        scenario.check("status", expected="FAILED", seen=done.status)
        scenario.check("error", expected="ServiceUnavailable", seen=done.error)
        scenario.check(
            "service tasks scheduled",
            expected=resources.service_attempts,
            seen=done.tasks_for(resources.service_function),
        )
        scenario.check("'Open Circuit' entered", expected=True, seen="Open Circuit" in done.entered)
        counted = breaker.calls(failing)
        scenario.check(
            "service invocations it counted",
            expected=resources.service_attempts,
            seen=counted["calls"],
        )
        state = breaker.circuit()
        scenario.check("circuit", expected="OPEN", seen=state["state"])
        ended_at = done.events[-1]["timestamp"]  # just after 'Open Circuit' wrote the expiry
        open_for = (datetime.fromisoformat(state["expiresAt"]) - ended_at).total_seconds()
        scenario.check_that(
            "circuit stays open for the design's period after the failing run",
            DESIGN_OPEN_SECONDS - OPEN_PERIOD_SLACK_S <= open_for <= DESIGN_OPEN_SECONDS,
            expected=f"{DESIGN_OPEN_SECONDS} s (less up to {OPEN_PERIOD_SLACK_S} s the run took "
            "to end after opening)",
            seen=f"{open_for:.1f} s",
        )
        # Every invocation so far has its REPORT line before we take the baseline.
        await_value(
            lambda: all(
                any(request_id in line for line in breaker.report_lines())
                for request_id in counted["requestIds"]
            ),
            timeout=20,
            waiting_for="the REPORT lines of the failing calls",
        )
        baseline = len(breaker.report_lines())
        scenario.note(f"{baseline} REPORT lines in /aws/lambda/{resources.service_function} so far")
        return baseline


def next_run_fails_fast(scenario: Scenario, breaker: Breaker, run_id: str, baseline: int) -> None:
    aws, resources = breaker.aws, breaker.resources
    with scenario.step("The next run fails fast in 'Circuit Open' without invoking the service"):
        blocked = f"{run_id}-blocked"
        scenario.check(
            "circuit as the run starts", expected="OPEN", seen=breaker.circuit()["state"]
        )
        done = executions.run(
            aws, resources.state_machine, {"caller": blocked, "request": {"n": 1}}
        )
        scenario.note(f"entered: {' → '.join(done.entered)}")
        scenario.check("status", expected="FAILED", seen=done.status)
        scenario.check("error", expected="CircuitOpen", seen=done.error)
        scenario.check(
            "'Call Service' entered", expected=False, seen="Call Service" in done.entered
        )
        scenario.check(
            "service tasks scheduled", expected=0, seen=done.tasks_for(resources.service_function)
        )
        scenario.check(
            "service invocations it counted", expected=0, seen=breaker.calls(blocked)["calls"]
        )
        lines = holds_for(
            lambda: len(breaker.report_lines()),
            until=lambda count: count == baseline,
            duration=1.5,
        )
        scenario.check("REPORT lines in the service's log group", expected=baseline, seen=lines)


def calls_go_through_after_the_expiry(scenario: Scenario, breaker: Breaker, run_id: str) -> None:
    aws, resources = breaker.aws, breaker.resources
    with scenario.step(f"After the expiry ({resources.open_seconds} s) calls go through again"):
        await_value(
            breaker.circuit,
            until=lambda state: state.get("state") == "CLOSED",
            timeout=resources.open_seconds + 20,
            waiting_for="the circuit to expire",
        )
        scenario.note("the circuit is CLOSED again")
        healed = f"{run_id}-healed"
        done = executions.run(aws, resources.state_machine, {"caller": healed, "request": {"n": 2}})
        scenario.note(f"entered: {' → '.join(done.entered)}")
        scenario.check("status", expected="SUCCEEDED", seen=done.status)
        scenario.check(
            "service tasks scheduled", expected=1, seen=done.tasks_for(resources.service_function)
        )
        scenario.check(
            "service invocations it counted", expected=1, seen=breaker.calls(healed)["calls"]
        )
        scenario.check(
            "answer", expected="served ['n']", seen=done.output["service"]["response"]["answer"]
        )
