"""Scenario for scatter-gather: Gregor Hohpe's loan broker, recipient list and pub-sub.

All executions start together (the pub-sub timeouts run side by side), then:
Recipient list (credit bureau -> Map over the bank functions it returns):
1. A good applicant gets a quote from every eligible bank, and only those banks are asked.
2. A loan above some banks' limits gets quotes only from the banks that lend that much.
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
"""

from __future__ import annotations

import json
import random
from typing import Any

from sandbox import executions, observe
from sandbox.aws import Aws
from sandbox.harness import Scenario

# The stand-in bureau's score is 300 + the SSN's last four digits (mod 601).
GOOD, MIDDLING, POOR = ("0500", 800), ("0300", 600), ("0050", 350)
AMOUNT, BIG_AMOUNT, TERM = 300_000, 800_000, 30


def run(aws: Aws, res: Any, s: Scenario) -> None:
    dynamodb, sqs = aws.client("dynamodb"), aws.client("sqs")
    prefix = f"{random.randint(100, 999)}-{random.randint(10, 99)}"  # a new applicant per run

    def application(last_four: str, amount: int = AMOUNT) -> dict[str, Any]:
        return {"SSN": f"{prefix}-{last_four}", "Amount": amount, "Term": TERM}

    def eligible(score: int, amount: int = AMOUNT) -> list[str]:
        return sorted(
            b.bank_id
            for b in res.banks
            if score >= b.min_credit_score and amount <= b.max_loan_amount
        )

    def banks_asked(done: executions.Execution) -> list[str]:
        """Bank functions the recipient list scheduled a task for (from the history)."""
        return sorted(b.bank_id for b in res.banks for _ in range(done.tasks_for(b.function)))

    def quoted_by(done: executions.Execution) -> list[str]:
        return sorted(q["bankId"] for q in done.output["Quotes"])

    def record(done: executions.Execution) -> dict[str, Any] | None:
        request_id = done.arn.rsplit(":", 1)[-1]
        return dynamodb.get_item(
            TableName=res.quotes_table,
            Key={"requestId": {"S": request_id}},
            ConsistentRead=True,
        ).get("Item")

    invalid = {"SSN": "not-an-ssn", "Amount": -5, "Term": TERM}
    cases = {
        ("recipient", "good"): (res.recipient_list, application(GOOD[0])),
        ("recipient", "big"): (res.recipient_list, application(GOOD[0], BIG_AMOUNT)),
        ("recipient", "middling"): (res.recipient_list, application(MIDDLING[0])),
        ("recipient", "poor"): (res.recipient_list, application(POOR[0])),
        ("recipient", "invalid"): (res.recipient_list, invalid),
        ("pubsub", "good"): (res.pubsub, application(GOOD[0])),
        ("pubsub", "middling"): (res.pubsub, application(MIDDLING[0])),
        ("pubsub", "poor"): (res.pubsub, application(POOR[0])),
        ("pubsub", "invalid"): (res.pubsub, invalid),
    }
    with s.step("Nine loan applications start at once (both variants)"):
        started = {
            key: executions.start(aws, arn, payload) for key, (arn, payload) in cases.items()
        }
        # A bad reply travels with them: the aggregator must dead-letter it, not lose it.
        bad_reply = json.dumps({"RequestId": f"{prefix}-bad", "Quote": "not a quote"})
        sqs.send_message(QueueUrl=res.quotes_queue.url, MessageBody=bad_reply)
        s.note(
            f"applicant SSNs {prefix}-NNNN; good = score {GOOD[1]}, middling = "
            f"{MIDDLING[1]}, poor = {POOR[1]}; banks: "
            + ", ".join(f"{b.bank_id} (min {b.min_credit_score})" for b in res.banks)
        )
        timeout = res.gather_timeout_seconds + 40
        done = {key: executions.finish(aws, arn, timeout=timeout) for key, arn in started.items()}
        for (variant, who), execution in done.items():
            s.note(f"{variant}/{who}: {execution.status} — {' → '.join(execution.entered)}")

    with s.step("Recipient list: a good applicant gets a quote from every eligible bank"):
        good = done[("recipient", "good")]
        s.check("status", expected="SUCCEEDED", seen=good.status)
        s.check("banks asked", expected=eligible(GOOD[1]), seen=banks_asked(good))
        s.check("banks that quoted", expected=eligible(GOOD[1]), seen=quoted_by(good))
        s.note(f"quotes: {good.output['Quotes']}")

    with s.step("Recipient list: a loan above some banks' limits is quoted by the others"):
        big = done[("recipient", "big")]
        s.check("status", expected="SUCCEEDED", seen=big.status)
        s.check("banks asked (by score)", expected=eligible(GOOD[1]), seen=banks_asked(big))
        s.check("banks that quoted", expected=eligible(GOOD[1], BIG_AMOUNT), seen=quoted_by(big))

    with s.step("Recipient list: a middling applicant is sent only to the banks it qualifies for"):
        middling = done[("recipient", "middling")]
        s.check("status", expected="SUCCEEDED", seen=middling.status)
        s.check("banks asked", expected=eligible(MIDDLING[1]), seen=banks_asked(middling))
        s.check("banks that quoted", expected=eligible(MIDDLING[1]), seen=quoted_by(middling))

    with s.step("Recipient list: a poor applicant gets no quote and the execution succeeds"):
        poor = done[("recipient", "poor")]
        s.check("status", expected="SUCCEEDED", seen=poor.status)
        s.check("banks asked", expected=[], seen=banks_asked(poor))
        s.check("quotes", expected=[], seen=poor.output["Quotes"])

    with s.step("Recipient list: an invalid application fails in 'Invalid Application'"):
        bad = done[("recipient", "invalid")]
        s.check("status", expected="FAILED", seen=bad.status)
        s.check("error", expected="InvalidApplication", seen=bad.error)
        s.check("last state entered", expected="Invalid Application", seen=bad.entered[-1])
        s.check("banks asked", expected=[], seen=banks_asked(bad))

    with s.step("Pub-sub: every bank replies and the aggregator resumes the workflow"):
        good = done[("pubsub", "good")]
        s.check("status", expected="SUCCEEDED", seen=good.status)
        s.check("banks that quoted", expected=eligible(GOOD[1]), seen=quoted_by(good))
        s.check("complete (SendTaskSuccess)", expected=True, seen=good.output["Complete"])
        s.check("timed out", expected=0, seen=good.count("TaskTimedOut"))
        s.check("timeout path taken", expected=False, seen="Get Gathered Quotes" in good.entered)
        stored = record(good) or {}
        s.check("quotes stored", expected=len(res.banks), seen=len(stored["quotes"]["L"]))
        s.check("completed flag", expected=True, seen=stored.get("completed", {}).get("BOOL"))

    with s.step(
        f"Pub-sub: too few replies, so after {res.gather_timeout_seconds} s the timeout path "
        "returns what was gathered"
    ):
        middling = done[("pubsub", "middling")]
        s.check("status", expected="SUCCEEDED", seen=middling.status)
        s.check("timed out", expected=1, seen=middling.count("TaskTimedOut"))
        s.check(
            "'Get Gathered Quotes' entered",
            expected=True,
            seen="Get Gathered Quotes" in middling.entered,
        )
        s.check("banks that quoted", expected=eligible(MIDDLING[1]), seen=quoted_by(middling))
        s.check("complete", expected=False, seen=middling.output["Complete"])
        stored = record(middling) or {}
        s.check(
            "quotes stored", expected=len(eligible(MIDDLING[1])), seen=len(stored["quotes"]["L"])
        )

    with s.step("Pub-sub: a poor applicant gets no quote and the execution succeeds"):
        poor = done[("pubsub", "poor")]
        s.check("status", expected="SUCCEEDED", seen=poor.status)
        s.check("timed out", expected=1, seen=poor.count("TaskTimedOut"))
        s.check("quotes", expected=[], seen=poor.output["Quotes"])

    with s.step("Pub-sub: an invalid application fails before anything is recorded or sent"):
        bad = done[("pubsub", "invalid")]
        s.check("status", expected="FAILED", seen=bad.status)
        s.check("error", expected="InvalidApplication", seen=bad.error)
        s.check("last state entered", expected="Invalid Application", seen=bad.entered[-1])
        s.check("quote request recorded", expected=None, seen=record(bad))
        s.check("'Request Quotes' entered", expected=False, seen="Request Quotes" in bad.entered)

    with s.step(
        "A malformed reply is retried, then dead-lettered "
        f"(maxReceiveCount={res.max_receive_count})"
    ):
        observe.check_dead_lettered(
            s,
            aws,
            res.quotes_dlq,
            observe.with_body(bad_reply),
            max_receive_count=res.max_receive_count,
        )
        s.check(
            "still in the quotes queue",
            expected=None,
            seen=observe.find(aws, res.quotes_queue.url, observe.with_body(bad_reply)),
        )
