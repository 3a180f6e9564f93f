"""Scenario for dependent-uploads: files of a pair arrive in S3 in either order; the first
one's workflow stores its task token and stays paused until the second arrives.

1. The bucket notifies the upload function for every object created under incoming/.
2. Two pairs start in opposite orders (orders first; customers first). Each first upload's
   execution reaches WaitForPartner and stays RUNNING for 2 s, with its token stored on the
   pair's row and nothing processed.
3. The second files arrive: each waiting execution resumes only after its partner's upload,
   processes the pair once (joined orders in processed/<pair>.json) and succeeds; the
   partner's execution ends in ResumedPartner.
4. A malformed upload (unknown kind) fails in IdentifyUpload's Catch path, RejectUpload with
   InvalidUpload; nothing is recorded for its pair.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import partial
from typing import Any

from bootstrap.dependent_uploads import DependentUploads
from sandbox import executions
from sandbox.aws import Aws
from sandbox.executions import Execution
from sandbox.harness import Scenario, await_value, holds_for, unique_name

HOLD_SECONDS = 2.0


def run(aws: Aws, resources: DependentUploads, scenario: Scenario) -> None:
    s3, dynamodb = aws.client("s3"), aws.client("dynamodb")

    def execution_arn(key: str) -> str:
        name = key.removeprefix(resources.prefix).replace("/", "-").replace(".", "-")
        return executions.execution_arn(resources.state_machine, name)

    def read(key: str) -> Execution | None:
        try:
            return executions.read(aws, execution_arn(key))
        except aws.client("stepfunctions").exceptions.ExecutionDoesNotExist:
            return None

    def row(pair_id: str) -> dict[str, Any]:
        return dynamodb.get_item(TableName=resources.table, Key={"id": {"S": pair_id}}).get(
            "Item", {}
        )

    def upload(pair_id: str, kind: str, body: Any) -> tuple[str, datetime]:
        key = f"{resources.prefix}{pair_id}/{kind}.json"
        s3.put_object(Bucket=resources.bucket, Key=key, Body=json.dumps(body).encode())
        return key, datetime.now().astimezone()

    with scenario.step("Uploads under incoming/ notify the function that starts a workflow"):
        config = s3.get_bucket_notification_configuration(Bucket=resources.bucket)
        targets = [
            (c["LambdaFunctionArn"], c["Events"], c["Filter"]["Key"]["FilterRules"][0]["Value"])
            for c in config.get("LambdaFunctionConfigurations", [])
        ]
        scenario.check(
            "S3 notification",
            expected=[(resources.on_upload_arn, ["s3:ObjectCreated:*"], resources.prefix)],
            seen=targets,
        )

    pairs = {
        unique_name("orders-first"): ("orders", "customers"),
        unique_name("customers-first"): ("customers", "orders"),
    }
    firsts: dict[str, str] = {}
    with scenario.step("The first file of each pair arrives: its workflow waits, paused"):
        for pair_id, (first, _) in pairs.items():
            key, _at = upload(pair_id, first, _sample(pair_id, first))
            firsts[pair_id] = key
            scenario.note(f"put {key}")
        for pair_id, key in firsts.items():
            waiting = await_value(
                partial(read, key),
                until=lambda e: e is not None and "WaitForPartner" in e.entered,
                timeout=30,
                waiting_for=f"the execution for {key} to reach WaitForPartner",
            )
            assert waiting is not None  # `until` accepts only an execution
            scenario.check(f"{pair_id}: status", expected="RUNNING", seen=waiting.status)
        statuses = holds_for(
            lambda: {pair_id: _status(read(key)) for pair_id, key in firsts.items()},
            until=lambda seen: set(seen.values()) == {"RUNNING"},
            duration=HOLD_SECONDS,
        )
        scenario.check(
            f"still paused after {HOLD_SECONDS:g} s",
            expected=dict.fromkeys(firsts, "RUNNING"),
            seen=statuses,
        )
        for pair_id, (first, _) in pairs.items():
            stored = row(pair_id)
            scenario.check_that(
                f"{pair_id}: row holds the {first} file and its task token, not processed",
                f"token_{first}" in stored and "processed" not in stored,
                expected=f"token_{first} set, no processed",
                seen=sorted(stored),
            )

    with scenario.step("The second file arrives: it resumes the waiting workflow"):
        seconds: dict[str, tuple[str, datetime]] = {}
        for pair_id, (_, second) in pairs.items():
            seconds[pair_id] = upload(pair_id, second, _sample(pair_id, second))
            scenario.note(f"put {seconds[pair_id][0]}")
        for pair_id, (_, second) in pairs.items():
            waited = executions.finish(aws, execution_arn(firsts[pair_id]), timeout=30)
            completed = executions.finish(aws, execution_arn(seconds[pair_id][0]), timeout=30)
            scenario.check(
                f"{pair_id}: waiting execution", expected="SUCCEEDED", seen=waited.status
            )
            scenario.check(
                f"{pair_id}: its path",
                expected=["IdentifyUpload", "WaitForPartner", "WaitedOrCompleted", "ProcessPair"],
                seen=waited.entered,
            )
            resumed_at, uploaded_at = _left_wait_at(waited), seconds[pair_id][1]
            scenario.check_that(
                f"{pair_id}: WaitForPartner left after the {second} upload",
                resumed_at is not None and resumed_at >= uploaded_at,
                expected=f"after {uploaded_at:%H:%M:%S.%f}",
                seen=f"{resumed_at:%H:%M:%S.%f} (upload at {uploaded_at:%H:%M:%S.%f})",
            )
            scenario.check(
                f"{pair_id}: resumed by", expected=second, seen=waited.output["pair"]["resumed_by"]
            )
            scenario.check(
                f"{pair_id}: the {second} execution",
                expected=("SUCCEEDED", "ResumedPartner"),
                seen=(completed.status, completed.entered[-1]),
            )
            processed = waited.output["processed"]
            joined = json.loads(
                s3.get_object(Bucket=resources.bucket, Key=processed["output_key"])["Body"].read()
            )
            scenario.check(
                f"{pair_id}: {processed['output_key']}",
                expected=[
                    {"order_id": f"{pair_id}-1", "customer_id": "c-1", "customer_name": "Ada"}
                ],
                seen=joined,
            )
            scenario.check(
                f"{pair_id}: ProcessPair ran once for the pair",
                expected=1,
                seen=waited.entered.count("ProcessPair") + completed.entered.count("ProcessPair"),
            )

    with scenario.step("A malformed upload fails in a named state; nothing is recorded"):
        bad_pair = unique_name("bad")
        key = f"{resources.prefix}{bad_pair}/invoices.json"
        s3.put_object(Bucket=resources.bucket, Key=key, Body=b"[]")
        scenario.note(f"put {key} (invoices is not a kind of this pair)")
        await_value(lambda: read(key), timeout=30, waiting_for=f"the execution for {key}")
        bad = executions.finish(aws, execution_arn(key), timeout=30)
        scenario.check("status", expected="FAILED", seen=bad.status)
        scenario.check("error", expected="InvalidUpload", seen=bad.error)
        scenario.check(
            "path (Catch from IdentifyUpload)",
            expected=["IdentifyUpload", "RejectUpload"],
            seen=bad.entered,
        )
        scenario.check("row for the pair", expected={}, seen=row(bad_pair))


def _sample(pair_id: str, kind: str) -> list[dict[str, str]]:
    if kind == "orders":
        return [{"order_id": f"{pair_id}-1", "customer_id": "c-1"}]
    return [{"customer_id": "c-1", "name": "Ada"}]


def _status(execution: Execution | None) -> str | None:
    return execution.status if execution else None


def _left_wait_at(execution: Execution) -> datetime | None:
    """When WaitForPartner got its token back and was left."""
    for event in execution.events:
        if event.get("stateExitedEventDetails", {}).get("name") == "WaitForPartner":
            return event["timestamp"]
    return None
