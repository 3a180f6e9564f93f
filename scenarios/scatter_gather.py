"""Scenario for scatter-gather: Gregor Hohpe's loan broker, recipient list and pub-sub.

All executions start together (the pub-sub timeouts run side by side), then:
Recipient list (credit bureau -> Map over the bank functions it returns):
1. A good applicant gets a quote from every eligible bank, and only those banks are asked.
2. A loan above some banks' limits gets quotes only from the banks that lend that much; a
   score equal to a bank's minimum and a loan equal to a bank's maximum still qualify.
3. A middling applicant is not sent to the bank whose minimum score it misses.
4. A poor applicant gets no quote, and the execution still succeeds.
5. An invalid application fails in "Invalid Application".
Publish-subscribe (SNS with a task token -> banks -> SQS -> aggregator in DynamoDB):
6. A good applicant: every bank replies, the aggregator resumes the workflow with
   SendTaskSuccess before the timeout (complete).
7. A middling applicant: only two banks reply, so the wait times out and the timeout path
   returns the two quotes gathered in DynamoDB (not complete).
8. A poor applicant: no bank replies; the timeout path returns no quote and succeeds.
9. An invalid application fails in "Invalid Application" before anything is recorded or
   published.
10. A malformed reply on the quotes queue is retried, then dead-lettered; nothing is lost.
11. A bank's reply delivered again (SQS is at least once) adds no second quote.
"""

from __future__ import annotations

import json
import random
from typing import Any

from bootstrap.scatter_gather import ScatterGather
from sandbox import executions, items, observe
from sandbox.aws import Aws
from sandbox.harness import Scenario

# The stand-in bureau's score is 300 + the SSN's last four digits (mod 601).
GOOD, MIDDLING, POOR = ("0500", 800), ("0300", 600), ("0050", 350)
AMOUNT, BIG_AMOUNT, TERM = 300_000, 800_000, 30


Finished = dict[tuple[str, str], executions.Execution]  # by (variant, applicant)


def run(aws: Aws, resources: ScatterGather, scenario: Scenario) -> None:
    prefix = f"{random.randint(100, 999)}-{random.randint(10, 99)}"  # a new applicant per run
    done, bad_reply = applications_start_at_once(scenario, aws, resources, prefix)
    recipient_list_good_applicant(scenario, resources, done[("recipient", "good")])
    recipient_list_big_loan(scenario, resources, done[("recipient", "big")])
    recipient_list_at_the_limits(scenario, resources, done[("recipient", "limits")])
    recipient_list_middling_applicant(scenario, resources, done[("recipient", "middling")])
    recipient_list_poor_applicant(scenario, resources, done[("recipient", "poor")])
    recipient_list_invalid_application(scenario, resources, done[("recipient", "invalid")])
    pubsub_every_bank_replies(scenario, aws, resources, done[("pubsub", "good")])
    pubsub_timeout_returns_what_was_gathered(scenario, aws, resources, done[("pubsub", "middling")])
    pubsub_poor_applicant(scenario, done[("pubsub", "poor")])
    pubsub_invalid_application(scenario, aws, resources, done[("pubsub", "invalid")])
    malformed_reply_is_dead_lettered(scenario, aws, resources, bad_reply)
    redelivered_reply_changes_nothing(scenario, aws, resources, done[("pubsub", "good")])


def applications_start_at_once(
    scenario: Scenario, aws: Aws, resources: ScatterGather, prefix: str
) -> tuple[Finished, str]:
    """Returns the finished executions by (variant, applicant), and the bad reply sent."""
    with scenario.step("Ten loan applications start at once (both variants)"):
        started = {
            key: executions.start(aws, arn, payload)
            for key, (arn, payload) in _applications(resources, prefix).items()
        }
        # A bad reply travels with them: the aggregator must dead-letter it, not lose it.
        bad_reply = json.dumps({"RequestId": f"{prefix}-bad", "Quote": "not a quote"})
        aws.client("sqs").send_message(QueueUrl=resources.quotes_queue.url, MessageBody=bad_reply)
        scenario.note(
            f"applicant SSNs {prefix}-NNNN; good = score {GOOD[1]}, middling = "
            f"{MIDDLING[1]}, poor = {POOR[1]}; banks: "
            + ", ".join(f"{bank.bank_id} (min {bank.min_credit_score})" for bank in resources.banks)
        )
        timeout = resources.gather_timeout_seconds + 40
        done = {key: executions.finish(aws, arn, timeout=timeout) for key, arn in started.items()}
        for (variant, who), execution in done.items():
            scenario.note(f"{variant}/{who}: {execution.status} — {' → '.join(execution.entered)}")
        return done, bad_reply


def recipient_list_good_applicant(
    scenario: Scenario, resources: ScatterGather, good: executions.Execution
) -> None:
    with scenario.step("Recipient list: a good applicant gets a quote from every eligible bank"):
        scenario.check("status", expected="SUCCEEDED", seen=good.status)
        scenario.check(
            "banks asked",
            expected=_eligible(resources, GOOD[1]),
            seen=_banks_asked(resources, good),
        )
        scenario.check(
            "banks that quoted", expected=_eligible(resources, GOOD[1]), seen=_quoted_by(good)
        )
        scenario.note(f"quotes: {good.output['Quotes']}")


def recipient_list_big_loan(
    scenario: Scenario, resources: ScatterGather, big: executions.Execution
) -> None:
    with scenario.step("Recipient list: a loan above some banks' limits is quoted by the others"):
        scenario.check("status", expected="SUCCEEDED", seen=big.status)
        scenario.check(
            "banks asked (by score)",
            expected=_eligible(resources, GOOD[1]),
            seen=_banks_asked(resources, big),
        )
        scenario.check(
            "banks that quoted",
            expected=_eligible(resources, GOOD[1], BIG_AMOUNT),
            seen=_quoted_by(big),
        )


def recipient_list_at_the_limits(
    scenario: Scenario, resources: ScatterGather, limits: executions.Execution
) -> None:
    """A bank's limits are inclusive: a score equal to its minimum and a loan equal to its
    maximum still qualify (an off-by-one comparison would drop that bank)."""
    _, score, amount = _at_the_limits(resources)
    with scenario.step(
        f"Recipient list at the limits: score {score} (a bank's minimum), loan {amount:,} "
        "(a bank's maximum)"
    ):
        scenario.check("status", expected="SUCCEEDED", seen=limits.status)
        scenario.check(
            "banks asked (at the minimum score)",
            expected=_eligible(resources, score),
            seen=_banks_asked(resources, limits),
        )
        scenario.check(
            "banks that quoted (at the minimum score and the maximum loan)",
            expected=_eligible(resources, score, amount),
            seen=_quoted_by(limits),
        )


def recipient_list_middling_applicant(
    scenario: Scenario, resources: ScatterGather, middling: executions.Execution
) -> None:
    with scenario.step(
        "Recipient list: a middling applicant is sent only to the banks it qualifies for"
    ):
        scenario.check("status", expected="SUCCEEDED", seen=middling.status)
        scenario.check(
            "banks asked",
            expected=_eligible(resources, MIDDLING[1]),
            seen=_banks_asked(resources, middling),
        )
        scenario.check(
            "banks that quoted",
            expected=_eligible(resources, MIDDLING[1]),
            seen=_quoted_by(middling),
        )


def recipient_list_poor_applicant(
    scenario: Scenario, resources: ScatterGather, poor: executions.Execution
) -> None:
    with scenario.step("Recipient list: a poor applicant gets no quote and the execution succeeds"):
        scenario.check("status", expected="SUCCEEDED", seen=poor.status)
        scenario.check("banks asked", expected=[], seen=_banks_asked(resources, poor))
        scenario.check("quotes", expected=[], seen=poor.output["Quotes"])


def recipient_list_invalid_application(
    scenario: Scenario, resources: ScatterGather, bad: executions.Execution
) -> None:
    with scenario.step("Recipient list: an invalid application fails in 'Invalid Application'"):
        scenario.check("status", expected="FAILED", seen=bad.status)
        scenario.check("error", expected="InvalidApplication", seen=bad.error)
        scenario.check("last state entered", expected="Invalid Application", seen=bad.entered[-1])
        scenario.check("banks asked", expected=[], seen=_banks_asked(resources, bad))


def pubsub_every_bank_replies(
    scenario: Scenario, aws: Aws, resources: ScatterGather, good: executions.Execution
) -> None:
    with scenario.step("Pub-sub: every bank replies and the aggregator resumes the workflow"):
        scenario.check("status", expected="SUCCEEDED", seen=good.status)
        scenario.check(
            "banks that quoted", expected=_eligible(resources, GOOD[1]), seen=_quoted_by(good)
        )
        scenario.check("complete (SendTaskSuccess)", expected=True, seen=good.output["Complete"])
        scenario.check("timed out", expected=0, seen=good.count("TaskTimedOut"))
        scenario.check(
            "timeout path taken", expected=False, seen="Get Gathered Quotes" in good.entered
        )
        stored = _record(aws, resources, good) or {}
        scenario.check("quotes stored", expected=len(resources.banks), seen=len(stored["quotes"]))
        scenario.check("completed flag", expected=True, seen=stored.get("completed"))


def pubsub_timeout_returns_what_was_gathered(
    scenario: Scenario, aws: Aws, resources: ScatterGather, middling: executions.Execution
) -> None:
    with scenario.step(
        f"Pub-sub: too few replies, so after {resources.gather_timeout_seconds} s the timeout path "
        "returns what was gathered"
    ):
        scenario.check("status", expected="SUCCEEDED", seen=middling.status)
        scenario.check("timed out", expected=1, seen=middling.count("TaskTimedOut"))
        scenario.check(
            "'Get Gathered Quotes' entered",
            expected=True,
            seen="Get Gathered Quotes" in middling.entered,
        )
        scenario.check(
            "banks that quoted",
            expected=_eligible(resources, MIDDLING[1]),
            seen=_quoted_by(middling),
        )
        scenario.check("complete", expected=False, seen=middling.output["Complete"])
        stored = _record(aws, resources, middling) or {}
        scenario.check(
            "quotes stored",
            expected=len(_eligible(resources, MIDDLING[1])),
            seen=len(stored["quotes"]),
        )


def pubsub_poor_applicant(scenario: Scenario, poor: executions.Execution) -> None:
    with scenario.step("Pub-sub: a poor applicant gets no quote and the execution succeeds"):
        scenario.check("status", expected="SUCCEEDED", seen=poor.status)
        scenario.check("timed out", expected=1, seen=poor.count("TaskTimedOut"))
        scenario.check("quotes", expected=[], seen=poor.output["Quotes"])


def pubsub_invalid_application(
    scenario: Scenario, aws: Aws, resources: ScatterGather, bad: executions.Execution
) -> None:
    with scenario.step("Pub-sub: an invalid application fails before anything is recorded or sent"):
        scenario.check("status", expected="FAILED", seen=bad.status)
        scenario.check("error", expected="InvalidApplication", seen=bad.error)
        scenario.check("last state entered", expected="Invalid Application", seen=bad.entered[-1])
        scenario.check("quote request recorded", expected=None, seen=_record(aws, resources, bad))
        scenario.check(
            "'Request Quotes' entered", expected=False, seen="Request Quotes" in bad.entered
        )


def malformed_reply_is_dead_lettered(
    scenario: Scenario, aws: Aws, resources: ScatterGather, bad_reply: str
) -> None:
    with scenario.step(
        "A malformed reply is retried, then dead-lettered "
        f"(maxReceiveCount={resources.max_receive_count})"
    ):
        observe.check_dead_lettered(
            scenario,
            aws,
            resources.quotes_dlq,
            observe.with_body(bad_reply),
            max_receive_count=resources.max_receive_count,
        )
        scenario.check(
            "still in the quotes queue",
            expected=None,
            seen=observe.find(aws, resources.quotes_queue.url, observe.with_body(bad_reply)),
        )


def redelivered_reply_changes_nothing(
    scenario: Scenario, aws: Aws, resources: ScatterGather, good: executions.Execution
) -> None:
    """SQS delivers at least once: a bank's reply handed over again (here, sent again with
    another rate) must not add a second quote from that bank."""
    with scenario.step("A bank's reply delivered again adds no quote"):
        before = _record(aws, resources, good) or {}
        bank = json.loads(before["quotes"][0])["bankId"]
        again = {
            "RequestId": before["requestId"],
            "TaskToken": "the workflow has finished",
            "Quote": {"bankId": bank, "rate": 99.5},
        }
        aws.client("sqs").send_message(
            QueueUrl=resources.quotes_queue.url, MessageBody=json.dumps(again)
        )
        scenario.note(f"sent {bank}'s reply for {before['requestId'][:8]}… again")
        observe.await_empty(
            aws,
            resources.quotes_queue.url,
            timeout=30,
            waiting_for=f"{resources.quotes_queue.name} to be empty (the reply consumed)",
        )
        after = _record(aws, resources, good) or {}
        scenario.check(
            "quotes stored after the repeated reply (bank, rate)",
            expected=sorted(before["quotes"]),
            seen=sorted(after.get("quotes", [])),
        )


def _applications(
    resources: ScatterGather, prefix: str
) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """(state machine, input) by (variant, applicant)."""

    def application(last_four: str, amount: int = AMOUNT) -> dict[str, Any]:
        return {"SSN": f"{prefix}-{last_four}", "Amount": amount, "Term": TERM}

    invalid = {"SSN": "not-an-ssn", "Amount": -5, "Term": TERM}
    at_limits, _, limit_amount = _at_the_limits(resources)
    return {
        ("recipient", "good"): (resources.recipient_list, application(GOOD[0])),
        ("recipient", "big"): (resources.recipient_list, application(GOOD[0], BIG_AMOUNT)),
        ("recipient", "limits"): (
            resources.recipient_list,
            application(at_limits, limit_amount),
        ),
        ("recipient", "middling"): (resources.recipient_list, application(MIDDLING[0])),
        ("recipient", "poor"): (resources.recipient_list, application(POOR[0])),
        ("recipient", "invalid"): (resources.recipient_list, invalid),
        ("pubsub", "good"): (resources.pubsub, application(GOOD[0])),
        ("pubsub", "middling"): (resources.pubsub, application(MIDDLING[0])),
        ("pubsub", "poor"): (resources.pubsub, application(POOR[0])),
        ("pubsub", "invalid"): (resources.pubsub, invalid),
    }


def _at_the_limits(resources: ScatterGather) -> tuple[str, int, int]:
    """(SSN's last four, score, amount): a score equal to the middle bank's minimum, a loan
    equal to the smallest maximum. The stand-in bureau scores 300 + the last four digits."""
    score = sorted(bank.min_credit_score for bank in resources.banks)[1]
    amount = min(bank.max_loan_amount for bank in resources.banks)
    return f"{score - 300:04d}", score, amount


def _eligible(resources: ScatterGather, score: int, amount: int = AMOUNT) -> list[str]:
    return sorted(
        bank.bank_id
        for bank in resources.banks
        if score >= bank.min_credit_score and amount <= bank.max_loan_amount
    )


def _banks_asked(resources: ScatterGather, done: executions.Execution) -> list[str]:
    """Bank functions the recipient list scheduled a task for (from the history)."""
    return sorted(
        bank.bank_id for bank in resources.banks for _ in range(done.tasks_for(bank.function))
    )


def _quoted_by(done: executions.Execution) -> list[str]:
    return sorted(quote["bankId"] for quote in done.output["Quotes"])


def _record(aws: Aws, resources: ScatterGather, done: executions.Execution) -> items.Item | None:
    request_id = done.arn.rsplit(":", 1)[-1]
    return items.get(aws, resources.quotes_table, {"requestId": request_id})
