"""Credit bureau for the loan broker (scatter-gather): the applicant's credit score and, for
the recipient-list workflow, the banks that lend at that score.

Event: {"SSN": "NNN-NN-NNNN", "Amount": <number > 0>, "Term": <whole months > 0>}
Returns: {"SSN", "Score", "History", "Banks": [bank function ARN, ...]}
Environment: BANKS, a JSON list of {"bankId", "function", "minCreditScore"}.

A stand-in bureau: the score is derived from the SSN (300 + last four digits mod 601) so a
test can pick an applicant's score. An application that is not valid raises
InvalidApplication, which the workflows catch in their "Invalid Application" state.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

SSN = re.compile(r"^\d{3}-\d{2}-\d{4}$")


class InvalidApplication(ValueError):
    """The loan application is malformed."""


def validate(event: Any) -> dict[str, Any]:
    """The application's SSN, Amount and Term, or InvalidApplication saying what is wrong."""
    if not isinstance(event, dict):
        raise InvalidApplication(f"the application must be an object, got {event!r}")
    ssn, amount, term = event.get("SSN"), event.get("Amount"), event.get("Term")
    problems = []
    if not isinstance(ssn, str) or not SSN.match(ssn):
        problems.append(f"SSN must look like 123-45-6789, got {ssn!r}")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
        problems.append(f"Amount must be a positive number, got {amount!r}")
    if isinstance(term, bool) or not isinstance(term, int) or term <= 0:
        problems.append(f"Term must be a positive whole number of months, got {term!r}")
    if problems:
        raise InvalidApplication("; ".join(problems))
    return {"SSN": ssn, "Amount": amount, "Term": term}


def credit_score(ssn: str) -> int:
    return 300 + int(ssn[-4:]) % 601


def credit_history(ssn: str) -> int:
    """Years of credit history."""
    return int(ssn[:3]) % 30


def eligible_banks(score: int, banks: list[dict[str, Any]]) -> list[str]:
    """The functions of the banks that lend at this score (the recipient list)."""
    return [bank["function"] for bank in banks if score >= int(bank["minCreditScore"])]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    application = validate(event)
    score = credit_score(application["SSN"])
    banks = eligible_banks(score, json.loads(os.environ.get("BANKS", "[]")))
    print(f"Score {score} for {application['SSN']}: {len(banks)} eligible banks")
    return {
        "SSN": application["SSN"],
        "Score": score,
        "History": credit_history(application["SSN"]),
        "Banks": banks,
    }
