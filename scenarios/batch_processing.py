"""Scenario for batch-processing.

1. SQS batch with partial failures: one batch of valid records, one that fails once, and a
   malformed body. Only the failed records are received again (attempts per message id);
   the malformed one ends in the DLQ; every valid record is written once.
2. A record delivered again is not written again (Powertools idempotency).
3. Step Functions: N records in S3 at chunk size k make ceil(N/k) Map iterations (history);
   the invalid ones are reported with a reason, the valid ones written once; N = written +
   rejected. Running the same job again writes nothing twice.
4. An unusable job input (chunk size 0) fails through the Catch with a clear error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from bootstrap.batch_processing import BatchProcessing
from sandbox import executions, items, observe
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, holds_for, unique_name

TOTAL, CHUNK_SIZE = 23, 5


@dataclass(frozen=True)
class Counters:
    """What the handlers count: deliveries per message id, writes per record id."""

    aws: Aws
    resources: BatchProcessing

    def attempts(self, message_id: str) -> int:
        item = items.get(self.aws, self.resources.attempts_table, {"id": message_id}) or {}
        return int(item.get("attempts", 0))

    def writes(self, record_id: str) -> int:
        item = items.get(self.aws, self.resources.records_table, {"id": record_id}) or {}
        return int(item.get("writes", 0))


@dataclass(frozen=True)
class Job:
    """A Step Functions job over records in S3, and which of its records are valid."""

    input: dict[str, Any]
    valid_ids: list[str]
    invalid_ids: list[str]


def run(aws: Aws, resources: BatchProcessing, scenario: Scenario) -> None:
    counters = Counters(aws, resources)
    run_id = unique_name("batch")
    valid_ids = [f"{run_id}-sqs-{number}" for number in range(6)]
    sqs_batch_retries_only_failed_records(scenario, counters, run_id, valid_ids)
    redelivered_record_is_not_written_again(scenario, counters, valid_ids[0])
    job = _upload_job(aws, resources, run_id)
    job_processes_every_chunk(scenario, counters, job, run_id)
    same_job_again_writes_nothing_twice(scenario, counters, job)
    unusable_input_fails_through_the_catch(scenario, aws, resources, job)


def sqs_batch_retries_only_failed_records(
    scenario: Scenario, counters: Counters, run_id: str, valid_ids: list[str]
) -> None:
    aws, resources = counters.aws, counters.resources
    sqs = aws.client("sqs")
    flaky_id = f"{run_id}-sqs-flaky"
    bad_body = f"not a record {run_id}"
    with scenario.step("An SQS batch with partial failures: only the failed records are retried"):
        entries = [
            {"Id": f"v{number}", "MessageBody": json.dumps({"id": record_id, "amount": number})}
            for number, record_id in enumerate(valid_ids)
        ]
        entries.append(
            {
                "Id": "flaky",
                "MessageBody": json.dumps({"id": flaky_id, "amount": 7, "simulate_failures": 1}),
            }
        )
        entries.append({"Id": "bad", "MessageBody": bad_body})
        sent = sqs.send_message_batch(QueueUrl=resources.queue.url, Entries=entries)
        message_ids = {entry["Id"]: entry["MessageId"] for entry in sent["Successful"]}
        scenario.note(f"sent {len(valid_ids)} valid, 1 failing once (simulated), 1 malformed")

        await_value(
            lambda: counters.writes(flaky_id),
            timeout=45,
            waiting_for="the record that failed once to be written on its retry",
        )
        scenario.check(
            "the failing record's attempts",
            expected=2,
            seen=counters.attempts(message_ids["flaky"]),
        )
        dead = await_value(
            lambda: observe.find(aws, resources.dlq.url, observe.with_body(bad_body)),
            timeout=45,
            waiting_for="the malformed message in the DLQ",
        )
        sqs.change_message_visibility(  # back for the tally below, which reads the DLQ
            QueueUrl=resources.dlq.url, ReceiptHandle=dead["ReceiptHandle"], VisibilityTimeout=0
        )
        scenario.check(
            "the malformed message's attempts before the DLQ",
            expected=resources.max_receive_count,
            seen=counters.attempts(message_ids["bad"]),
        )
        first_batch = items.get(aws, resources.attempts_table, {"id": message_ids["flaky"]}) or {}
        scenario.check_that(
            "size of the batch the failing record first came in",
            first_batch.get("first_batch_size", 0) > 1,
            expected="more than 1 (it failed alone, not its batch)",
            seen=first_batch.get("first_batch_size"),
        )
        valid_attempts = [
            counters.attempts(message_ids[f"v{number}"]) for number in range(len(valid_ids))
        ]
        scenario.check(
            "attempts of each valid record", expected=[1] * len(valid_ids), seen=valid_attempts
        )
        scenario.check(
            "writes of each valid record",
            expected=[1] * (len(valid_ids) + 1),
            seen=[counters.writes(record_id) for record_id in [*valid_ids, flaky_id]],
        )
        observe.check_nothing_lost(
            scenario,
            aws,
            sent=len(entries),
            processed=sum(counters.writes(record_id) for record_id in [*valid_ids, flaky_id]),
            dlq=resources.dlq,
            of_run=lambda message: run_id in message["Body"],
        )


def redelivered_record_is_not_written_again(
    scenario: Scenario, counters: Counters, record_id: str
) -> None:
    sqs = counters.aws.client("sqs")
    with scenario.step("A record delivered again is not written again (idempotency)"):
        again = sqs.send_message(
            QueueUrl=counters.resources.queue.url,
            MessageBody=json.dumps({"id": record_id, "amount": 0}),
        )["MessageId"]
        await_value(
            lambda: counters.attempts(again), timeout=45, waiting_for="the redelivered record"
        )
        holds_for(lambda: counters.writes(record_id), until=lambda writes: writes == 1, duration=2)
        scenario.check(
            "writes of the record delivered twice", expected=1, seen=counters.writes(record_id)
        )
        scenario.check("the second delivery's attempts", expected=1, seen=counters.attempts(again))


def _upload_job(aws: Aws, resources: BatchProcessing, run_id: str) -> Job:
    """Puts the job's records in S3; the job reads them from there."""
    records, invalid_ids = _job_records(run_id)
    key = f"{run_id}/input.json"
    aws.client("s3").put_object(Bucket=resources.bucket, Key=key, Body=json.dumps(records).encode())
    valid_ids = [
        record["id"] for record in records if record.get("id") and record["id"] not in invalid_ids
    ]
    job_input = {"bucket": resources.bucket, "key": key, "chunk_size": CHUNK_SIZE}
    return Job(input=job_input, valid_ids=valid_ids, invalid_ids=invalid_ids)


def job_processes_every_chunk(
    scenario: Scenario, counters: Counters, job: Job, run_id: str
) -> None:
    aws, resources = counters.aws, counters.resources
    chunks = math.ceil(TOTAL / CHUNK_SIZE)
    with scenario.step(
        f"Step Functions: {TOTAL} records at chunk size {CHUNK_SIZE} -> {chunks} chunks"
    ):
        done = executions.run(aws, resources.state_machine_arn, job.input, timeout=60)
        scenario.check("execution", expected="SUCCEEDED", seen=done.status)
        scenario.check(
            "Map iterations in the history", expected=chunks, seen=done.count("MapIterationStarted")
        )
        scenario.check(
            "chunk runs in the history", expected=chunks, seen=done.entered.count("ProcessChunk")
        )
        report = done.output
        scenario.check("records in the report", expected=TOTAL, seen=report["records"])
        scenario.check(
            "invalid records reported",
            expected=sorted(job.invalid_ids),
            seen=sorted(entry["id"] for entry in report["invalid"]),
        )
        scenario.note("reasons: " + "; ".join(entry["reason"] for entry in report["invalid"]))
        written = items.scan(
            aws,
            resources.records_table,
            FilterExpression="begins_with(id, :job)",
            ExpressionAttributeValues={":job": {"S": f"{run_id}-job-"}},
            ConsistentRead=True,
        )
        scenario.check_that(
            "records = written + rejected",
            TOTAL == len(written) + len(report["invalid"]),
            expected=f"{TOTAL} = items written to {resources.records_table} + rejected",
            seen=f"{len(written)} written + {len(report['invalid'])} rejected",
        )
        scenario.check(
            "valid records written once each",
            expected=[1] * len(job.valid_ids),
            seen=[counters.writes(record_id) for record_id in job.valid_ids],
        )
        scenario.check(
            "invalid records written",
            expected=[0] * len(job.invalid_ids),
            seen=[counters.writes(record_id) for record_id in job.invalid_ids],
        )


def same_job_again_writes_nothing_twice(scenario: Scenario, counters: Counters, job: Job) -> None:
    with scenario.step("The same job run again writes nothing twice"):
        again_done = executions.run(
            counters.aws, counters.resources.state_machine_arn, job.input, timeout=60
        )
        scenario.check("execution", expected="SUCCEEDED", seen=again_done.status)
        scenario.check(
            "valid records still written once",
            expected=[1] * len(job.valid_ids),
            seen=[counters.writes(record_id) for record_id in job.valid_ids],
        )


def unusable_input_fails_through_the_catch(
    scenario: Scenario, aws: Aws, resources: BatchProcessing, job: Job
) -> None:
    with scenario.step("An unusable input (chunk size 0) fails through the Catch, saying why"):
        failed = executions.run(
            aws, resources.state_machine_arn, {**job.input, "chunk_size": 0}, timeout=60
        )
        scenario.check("execution", expected="FAILED", seen=failed.status)
        scenario.check("error", expected="InvalidInput", seen=failed.error)
        scenario.check_that(
            "the cause names the problem",
            "chunk_size must be a positive integer" in (failed.cause or ""),
            expected="chunk_size must be a positive integer",
            seen=failed.cause,
        )
        scenario.check_that(
            "states entered",
            "RejectInput" in failed.entered and "ProcessChunks" not in failed.entered,
            expected="Split then RejectInput (the Catch), no chunks",
            seen=failed.entered,
        )


def _job_records(run_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    """TOTAL records for the job; three are invalid (negative, not a number, no id)."""
    records: list[dict[str, Any]] = [
        {"id": f"{run_id}-job-{number:02d}", "amount": number} for number in range(TOTAL)
    ]
    records[4]["amount"] = -1
    records[11]["amount"] = "eleven"
    del records[17]["id"]
    invalid = [
        records[4]["id"],
        records[11]["id"],
        f"chunk {17 // CHUNK_SIZE} item {17 % CHUNK_SIZE}",
    ]
    return records, invalid
