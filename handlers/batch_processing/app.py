"""batch-processing: SQS records with partial batch failures, and chunks of a large input.

Four entry points, one per function:
- `handler` (batch-processing-worker): an SQS batch from an event source mapping with
  ReportBatchItemFailures. Each body is a record {"id", "amount"[, "simulate_failures": n]};
  a record fails only itself (Powertools' batch utility), so SQS redelivers just that one,
  and a body that is not a valid record ends in the DLQ after maxReceiveCount receives.
  `simulate_failures` makes a record fail its first n attempts, standing in for a transient
  downstream error. Every receive is counted per message id in the attempts table.
- `split_handler` (batch-processing-split): {"bucket", "key", "chunk_size"} -> the JSON list of
  records in that S3 object cut into chunks {"chunks": [{"index", "records"}], "total"}.
  Raises InvalidInput for an unusable input (the state machine's Catch reports it).
- `chunk_handler` (batch-processing-chunk): {"index", "records"} -> {"index", "valid": [ids],
  "invalid": [{"id", "reason"}]}; valid records are written, invalid ones reported.
- `summary_handler` (batch-processing-summary): the Map's list of chunk results -> the report.

Records are written through Powertools' idempotency (DynamoDB persistence layer, keyed by the
record id), so a record delivered or processed twice is written once (`writes` stays 1).
Environment: RECORDS_TABLE, ATTEMPTS_TABLE, IDEMPOTENCY_TABLE, POWERTOOLS_SERVICE_NAME.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from records import InvalidInput, InvalidRecord, chunk, parse_body, summarise, to_decimal, validate

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)
dynamodb = boto3.resource("dynamodb")
s3 = boto3.client("s3")
persistence = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])
idempotency = IdempotencyConfig(event_key_jmespath="id", raise_on_no_idempotency_key=True)


class TransientFailure(RuntimeError):
    """A record that should succeed when retried (simulated downstream hiccup)."""


# One key per record id whichever function writes it (the default prefix names the function).
@idempotent_function(
    data_keyword_argument="record",
    config=idempotency,
    persistence_store=persistence,
    key_prefix="batch-processing.write_record",
)
def write_record(record: dict[str, Any]) -> dict[str, Any]:
    """Store one valid record; `writes` counts the stores, so a second one would show."""
    dynamodb.Table(os.environ["RECORDS_TABLE"]).update_item(
        Key={"id": record["id"]},
        UpdateExpression="SET amount = :amount ADD writes :one",
        ExpressionAttributeValues={":amount": to_decimal(record["amount"]), ":one": 1},
    )
    logger.info("Record written", extra={"record_id": record["id"]})
    return {"id": record["id"]}


def _count_attempt(message_id: str, batch_size: int) -> int:
    """Count this receive; also note how big the batch of the first receive was."""
    updated = dynamodb.Table(os.environ["ATTEMPTS_TABLE"]).update_item(
        Key={"id": message_id},
        UpdateExpression="SET first_batch_size = if_not_exists(first_batch_size, :n) "
        "ADD attempts :one",
        ExpressionAttributeValues={":one": 1, ":n": batch_size},
        ReturnValues="UPDATED_NEW",
    )
    return int(updated["Attributes"]["attempts"])


def record_handler(record: SQSRecord) -> None:
    attempt = _count_attempt(record.message_id, len(processor.records))
    item = parse_body(record.body)
    if attempt <= int(item.get("simulate_failures", 0)):
        raise TransientFailure(f"{item['id']}: simulated failure on attempt {attempt}")
    write_record(record={"id": item["id"], "amount": item["amount"]})


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    idempotency.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )


def split_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    for field in ("bucket", "key"):
        if not isinstance(event.get(field), str):
            raise InvalidInput(f"the input needs {field!r}")
    body = s3.get_object(Bucket=event["bucket"], Key=event["key"])["Body"].read()
    try:
        items = json.loads(body)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"s3://{event['bucket']}/{event['key']} is not JSON: {error}") from error
    chunks = chunk(items, event.get("chunk_size"))
    logger.info("Input split", extra={"records": len(items), "chunk_count": len(chunks)})
    return {
        "total": len(items),
        "chunks": [{"index": i, "records": records} for i, records in enumerate(chunks)],
    }


def chunk_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    idempotency.register_lambda_context(context)
    valid, invalid = [], []
    for position, candidate in enumerate(event["records"]):
        try:
            record = validate(candidate)
        except InvalidRecord as error:
            where = f"chunk {event['index']} item {position}"
            record_id = candidate.get("id") if isinstance(candidate, dict) else None
            invalid.append({"id": record_id or where, "reason": str(error)})
            continue
        write_record(record={"id": record["id"], "amount": record["amount"]})
        valid.append(record["id"])
    return {"index": event["index"], "valid": valid, "invalid": invalid}


def summary_handler(event: list[dict[str, Any]], context: Any) -> dict[str, Any]:
    report = summarise(event)
    logger.info("Batch done", extra={k: v for k, v in report.items() if k != "invalid"})
    return report
