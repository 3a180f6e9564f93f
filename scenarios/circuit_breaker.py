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

from datetime import UTC, datetime
from typing import Any

from sandbox import executions, observe
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, holds_for, unique_name


def run(aws: Aws, res: Any, s: Scenario) -> None:
    dynamodb = aws.client("dynamodb")
    run_id = unique_name("cb")
    group = f"/aws/lambda/{res.service_function}"

    def circuit() -> dict[str, Any]:
        """The circuit as the workflow sees it (the same function it asks)."""
        answer: dict[str, Any] = observe.invoke(
            aws, res.circuit_function, {"action": "get", "service": res.circuit_key}
        )
        return answer

    def calls(caller: str) -> dict[str, Any]:
        item = dynamodb.get_item(
            TableName=res.calls_table, Key={"caller": {"S": caller}}, ConsistentRead=True
        ).get("Item", {})
        return {
            "calls": int(item["calls"]["N"]) if item else 0,
            "requestIds": sorted(item["requestIds"]["SS"]) if item else [],
        }

    def report_lines() -> list[str]:
        found = observe.log_lines(aws, res.service_function, "REPORT RequestId:")
        return [line for line in found if line.startswith("REPORT RequestId:")]

    with s.step("The circuit starts closed"):
        state = await_value(
            circuit,
            until=lambda c: c.get("state") == "CLOSED",
            timeout=res.open_seconds + 20,
            waiting_for="the circuit to be closed",
        )
        s.check("circuit", expected="CLOSED", seen=state["state"])

    with s.step("A malformed request fails in 'Request Rejected' and leaves the circuit closed"):
        bad_caller = f"{run_id}-bad"
        done = executions.run(aws, res.state_machine, {"caller": bad_caller, "request": "oops"})
        s.note(f"entered: {' → '.join(done.entered)}")
        s.check("status", expected="FAILED", seen=done.status)
        s.check("error", expected="InvalidRequest", seen=done.error)
        s.check("last state entered", expected="Request Rejected", seen=done.entered[-1])
        s.check(
            "service tasks scheduled (no retry)",
            expected=1,
            seen=done.tasks_for(res.service_function),
        )
        s.check("'Open Circuit' entered", expected=False, seen="Open Circuit" in done.entered)
        s.check("circuit", expected="CLOSED", seen=circuit()["state"])

    with s.step(f"A failing service is retried ({res.service_attempts} calls), then OPENs"):
        failing = f"{run_id}-outage"
        payload = {"caller": failing, "request": {"order": run_id}, "simulateFailure": True}
        done = executions.run(aws, res.state_machine, payload)
        s.note(f"entered: {' → '.join(done.entered)}")
        s.check("status", expected="FAILED", seen=done.status)
        s.check("error", expected="ServiceUnavailable", seen=done.error)
        s.check(
            "service tasks scheduled",
            expected=res.service_attempts,
            seen=done.tasks_for(res.service_function),
        )
        s.check("'Open Circuit' entered", expected=True, seen="Open Circuit" in done.entered)
        counted = calls(failing)
        s.check(
            "service invocations it counted", expected=res.service_attempts, seen=counted["calls"]
        )
        state = circuit()
        s.check("circuit", expected="OPEN", seen=state["state"])
        expires = datetime.fromisoformat(state["expiresAt"])
        s.check_that(
            "circuit expires in the future",
            expires > datetime.now(UTC),
            expected=f"later than now (open {res.open_seconds} s)",
            seen=state["expiresAt"],
        )
        # Every invocation so far has its REPORT line before we take the baseline.
        await_value(
            lambda: all(
                any(rid in line for line in report_lines()) for rid in counted["requestIds"]
            ),
            timeout=20,
            waiting_for="the REPORT lines of the failing calls",
        )
        baseline = len(report_lines())
        s.note(f"{baseline} REPORT lines in {group} so far")

    with s.step("The next run fails fast in 'Circuit Open' without invoking the service"):
        blocked = f"{run_id}-blocked"
        done = executions.run(aws, res.state_machine, {"caller": blocked, "request": {"n": 1}})
        s.note(f"entered: {' → '.join(done.entered)}")
        s.check("status", expected="FAILED", seen=done.status)
        s.check("error", expected="CircuitOpen", seen=done.error)
        s.check("'Call Service' entered", expected=False, seen="Call Service" in done.entered)
        s.check("service tasks scheduled", expected=0, seen=done.tasks_for(res.service_function))
        s.check("service invocations it counted", expected=0, seen=calls(blocked)["calls"])
        lines = holds_for(lambda: len(report_lines()), until=lambda n: n == baseline, duration=1.5)
        s.check("REPORT lines in the service's log group", expected=baseline, seen=lines)

    with s.step(f"After the expiry ({res.open_seconds} s) calls go through again"):
        state = await_value(
            circuit,
            until=lambda c: c.get("state") == "CLOSED",
            timeout=res.open_seconds + 20,
            waiting_for="the circuit to expire",
        )
        s.check("circuit", expected="CLOSED", seen=state["state"])
        healed = f"{run_id}-healed"
        done = executions.run(aws, res.state_machine, {"caller": healed, "request": {"n": 2}})
        s.note(f"entered: {' → '.join(done.entered)}")
        s.check("status", expected="SUCCEEDED", seen=done.status)
        s.check("service tasks scheduled", expected=1, seen=done.tasks_for(res.service_function))
        s.check("service invocations it counted", expected=1, seen=calls(healed)["calls"])
        s.check(
            "answer", expected="served ['n']", seen=done.output["service"]["response"]["answer"]
        )
