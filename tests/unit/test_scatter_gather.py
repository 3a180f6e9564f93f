"""scatter-gather's handler logic: the bureau's scores and recipient list, the banks'
quotes, and the aggregator's replies and completion condition."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_handler

bureau = load_handler("scatter_gather", "bureau")
bank = load_handler("scatter_gather", "bank")
aggregator = load_handler("scatter_gather", "aggregator")

BANKS = [
    {"bankId": "Premium", "function": "fn-premium", "minCreditScore": 750},
    {"bankId": "Universal", "function": "fn-universal", "minCreditScore": 500},
    {"bankId": "PawnShop", "function": "fn-pawnshop", "minCreditScore": 400},
]
PREMIUM = bank.Bank("Premium", 3.0, 900_000, 750)


def test_the_score_comes_from_the_ssn() -> None:
    assert bureau.credit_score("123-45-0500") == 800
    assert bureau.credit_score("123-45-0050") == 350
    assert bureau.credit_history("123-45-0500") == 123 % 30


@pytest.mark.parametrize(
    ("score", "functions"),
    [
        (800, ["fn-premium", "fn-universal", "fn-pawnshop"]),
        (600, ["fn-universal", "fn-pawnshop"]),
        (400, ["fn-pawnshop"]),
        (350, []),
    ],
)
def test_the_recipient_list_holds_the_banks_lending_at_that_score(
    score: int, functions: list[str]
) -> None:
    assert bureau.eligible_banks(score, BANKS) == functions


@pytest.mark.parametrize(
    ("application", "reason"),
    [
        ({"SSN": "12-345-6789", "Amount": 1, "Term": 1}, "SSN must look like"),
        ({"SSN": "123-45-6789", "Amount": 0, "Term": 1}, "Amount must be a positive number"),
        ({"SSN": "123-45-6789", "Amount": True, "Term": 1}, "Amount must be a positive number"),
        ({"SSN": "123-45-6789", "Amount": 5, "Term": 1.5}, "Term must be a positive whole"),
        ("not an object", "must be an object"),
    ],
)
def test_invalid_applications_are_refused_saying_why(application: object, reason: str) -> None:
    with pytest.raises(bureau.InvalidApplication, match=reason):
        bureau.validate(application)


def test_a_bank_quotes_when_score_and_amount_fit() -> None:
    request = {"Amount": 300_000, "Credit": {"Score": 800, "History": 5}}
    assert bank.quote(PREMIUM, request) == {"bankId": "Premium", "rate": 3.45}


@pytest.mark.parametrize(
    ("amount", "score", "reason"),
    [(300_000, 700, "credit score 700 is below 750"), (950_000, 800, "amount 950000 is above")],
)
def test_a_bank_declines_with_a_reason(amount: int, score: int, reason: str) -> None:
    answer = bank.quote(PREMIUM, {"Amount": amount, "Credit": {"Score": score, "History": 0}})
    assert answer["rate"] is None
    assert reason in answer["declined"]


def test_a_lower_score_costs_more() -> None:
    assert bank.rate(PREMIUM, 760, 0) > bank.rate(PREMIUM, 850, 0)


def test_a_bank_reply_is_parsed_and_stored_as_json_text() -> None:
    body = json.dumps(
        {"RequestId": "r1", "TaskToken": "t", "Quote": {"bankId": "Premium", "rate": 3.5}}
    )
    reply = aggregator.parse_reply(body)
    stored = aggregator.stored_quote(reply["Quote"])
    assert aggregator.gathered([stored]) == [{"bankId": "Premium", "rate": 3.5}]


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"RequestId": "r1", "Quote": "not a quote"}),
        json.dumps({"RequestId": "r1", "TaskToken": "t", "Quote": {"bankId": "B"}}),
    ],
)
def test_malformed_replies_are_refused(body: str) -> None:
    with pytest.raises(aggregator.MalformedReply):
        aggregator.parse_reply(body)


def test_the_aggregate_is_complete_with_enough_quotes() -> None:
    assert not aggregator.is_complete(["a", "b"], 3)
    assert aggregator.is_complete(["a", "b", "c"], 3)
