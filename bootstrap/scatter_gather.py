"""Provision scatter-gather: Gregor Hohpe's loan broker, as a recipient list (a Map over the
eligible banks' functions) and as publish-subscribe (SNS to every bank, replies to a queue, an
aggregator in DynamoDB that resumes the workflow)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from botocore.exceptions import ClientError

from sandbox.aws import Aws
from sandbox.provision import (
    Queue,
    ensure_event_source_mapping,
    ensure_function,
    ensure_queue_with_dlq,
    ensure_state_machine,
    ensure_table,
    ensure_topic,
)


@dataclass(frozen=True)
class BankSpec:
    bank_id: str
    base_rate: float
    max_loan_amount: int
    min_credit_score: int

    @property
    def function(self) -> str:
        return f"scatter-gather-bank-{self.bank_id.lower()}"


# Hohpe's three banks: a premium bank, a universal one and a pawn shop.
BANKS = (
    BankSpec("Premium", 3.0, 900_000, 750),
    BankSpec("Universal", 4.0, 700_000, 500),
    BankSpec("PawnShop", 5.0, 500_000, 400),
)
QUOTES_REQUIRED = len(BANKS)  # the aggregator's completion condition
GATHER_TIMEOUT_SECONDS = 8  # as written in state_machines/scatter_gather_pubsub.json
MAX_RECEIVE_COUNT = 2


@dataclass(frozen=True)
class ScatterGather:
    recipient_list: str
    pubsub: str
    banks: tuple[BankSpec, ...]
    bureau_function: str
    aggregator_function: str
    bank_requests_topic: str
    quotes_queue: Queue
    quotes_dlq: Queue
    quotes_table: str
    quotes_required: int
    gather_timeout_seconds: int
    max_receive_count: int


def provision(aws: Aws) -> ScatterGather:
    topic = ensure_topic(aws, "scatter-gather-bank-requests")
    quotes_queue, quotes_dlq = ensure_queue_with_dlq(
        aws, "scatter-gather-quotes", max_receive_count=MAX_RECEIVE_COUNT, visibility_timeout=3
    )
    quotes_table = ensure_table(aws, "scatter-gather-quotes", hash_key="requestId")

    bank_arns = {}
    for bank in BANKS:
        arn = ensure_function(
            aws,
            bank.function,
            "scatter_gather",
            handler="bank.handler",
            environment={
                "BANK_ID": bank.bank_id,
                "BASE_RATE": str(bank.base_rate),
                "MAX_LOAN_AMOUNT": str(bank.max_loan_amount),
                "MIN_CREDIT_SCORE": str(bank.min_credit_score),
                "QUOTES_QUEUE_URL": quotes_queue.url,
            },
            timeout=5,
        )
        bank_arns[bank.bank_id] = arn
        _subscribe_function(aws, topic, bank.function, arn)

    bureau_function = "scatter-gather-credit-bureau"
    recipients = [
        {
            "bankId": b.bank_id,
            "function": bank_arns[b.bank_id],
            "minCreditScore": b.min_credit_score,
        }
        for b in BANKS
    ]
    bureau_arn = ensure_function(
        aws,
        bureau_function,
        "scatter_gather",
        handler="bureau.handler",
        environment={"BANKS": json.dumps(recipients)},
        timeout=5,
    )

    aggregator_function = "scatter-gather-aggregator"
    ensure_function(
        aws,
        aggregator_function,
        "scatter_gather",
        handler="aggregator.handler",
        environment={"QUOTES_TABLE": quotes_table, "QUOTES_REQUIRED": str(QUOTES_REQUIRED)},
        timeout=3,
    )
    ensure_event_source_mapping(aws, aggregator_function, quotes_queue.arn, batch_size=10)

    recipient_list = ensure_state_machine(
        aws,
        "scatter-gather-recipient-list",
        "scatter_gather_recipient_list.json",
        {"BureauFunction": bureau_arn},
    )
    pubsub = ensure_state_machine(
        aws,
        "scatter-gather-pubsub",
        "scatter_gather_pubsub.json",
        {"BureauFunction": bureau_arn, "QuotesTable": quotes_table, "BankRequestsTopic": topic},
    )
    return ScatterGather(
        recipient_list,
        pubsub,
        BANKS,
        bureau_function,
        aggregator_function,
        topic,
        quotes_queue,
        quotes_dlq,
        quotes_table,
        QUOTES_REQUIRED,
        GATHER_TIMEOUT_SECONDS,
        MAX_RECEIVE_COUNT,
    )


def _subscribe_function(aws: Aws, topic_arn: str, function: str, function_arn: str) -> str:
    """Deliver the topic's messages to the function, allowing SNS to invoke it; returns the
    subscription ARN (idempotent). Candidate for sandbox.provision beside subscribe_queue."""
    try:
        aws.client("lambda").add_permission(
            FunctionName=function,
            StatementId="sns-bank-requests",
            Action="lambda:InvokeFunction",
            Principal="sns.amazonaws.com",
            SourceArn=topic_arn,
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceConflictException":
            raise
    sns = aws.client("sns")
    for subscription in sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]:
        if subscription["Endpoint"] == function_arn:
            arn: str = subscription["SubscriptionArn"]
            return arn
    return sns.subscribe(
        TopicArn=topic_arn, Protocol="lambda", Endpoint=function_arn, ReturnSubscriptionArn=True
    )["SubscriptionArn"]
