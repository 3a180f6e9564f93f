"""A bank of the loan broker (scatter-gather). One code, one function per bank, set by env.

Recipient list (invoked by the workflow's Map):
  Event: {"SSN", "Amount", "Term", "Credit": {"Score", "History"}}
  Returns: {"bankId", "rate": <number> | None, "declined": <reason> (only when declined)}
Publish-subscribe (an SNS subscription; Records[].Sns.Message is the same request plus
  "RequestId" and "TaskToken"): a bank that lends sends {"RequestId", "TaskToken",
  "Quote": {"bankId", "rate"}} to the quotes queue; a bank that does not lend stays silent.
Environment: BANK_ID, BASE_RATE, MAX_LOAN_AMOUNT, MIN_CREDIT_SCORE, QUOTES_QUEUE_URL.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any, NamedTuple

import boto3


class Bank(NamedTuple):
    bank_id: str
    base_rate: float
    max_loan_amount: float
    min_credit_score: int


def from_environment() -> Bank:
    return Bank(
        os.environ["BANK_ID"],
        float(os.environ["BASE_RATE"]),
        float(os.environ["MAX_LOAN_AMOUNT"]),
        int(os.environ["MIN_CREDIT_SCORE"]),
    )


def decline_reason(bank: Bank, amount: float, score: int) -> str | None:
    if score < bank.min_credit_score:
        return f"credit score {score} is below {bank.min_credit_score}"
    if amount > bank.max_loan_amount:
        return f"amount {amount:g} is above {bank.max_loan_amount:g}"
    return None


def rate(bank: Bank, score: int, history: int) -> float:
    """The bank's rate: its base rate, more for a lower score, less for a long history."""
    return round(bank.base_rate + (900 - score) / 200 - min(history, 10) / 100, 2)


def quote(bank: Bank, request: dict[str, Any]) -> dict[str, Any]:
    score, history = int(request["Credit"]["Score"]), int(request["Credit"]["History"])
    reason = decline_reason(bank, float(request["Amount"]), score)
    if reason:
        return {"bankId": bank.bank_id, "rate": None, "declined": reason}
    return {"bankId": bank.bank_id, "rate": rate(bank, score, history)}


@cache
def _sqs() -> Any:
    return boto3.client("sqs")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any] | None:
    bank = from_environment()
    if "Records" not in event:
        return quote(bank, event)
    for record in event["Records"]:
        request = json.loads(record["Sns"]["Message"])
        answer = quote(bank, request)
        if answer["rate"] is None:
            print(f"{bank.bank_id} declines {request['RequestId']}: {answer['declined']}")
            continue
        reply = {"RequestId": request["RequestId"], "TaskToken": request["TaskToken"]}
        _sqs().send_message(
            QueueUrl=os.environ["QUOTES_QUEUE_URL"],
            MessageBody=json.dumps({**reply, "Quote": answer}),
        )
    return None
