"""Scenario for dependent-uploads: files of a pair arrive in S3 in either order, or at the
same moment; the first one's workflow stores its task token and stays paused until the
second arrives, and the pair is processed exactly once.

1. The bucket notifies the upload function for every object created under incoming/.
2. Two pairs start in opposite orders (orders first; customers first). Each first upload's
   execution reaches WaitForPartner and stays RUNNING for 2 s, with its token stored on the
   pair's row and nothing processed.
3. The second files arrive: each waiting execution resumes only after its partner's upload,
   processes the pair once (joined orders in processed/<pair>.json) and succeeds; the
   partner's execution ends in ResumedPartner.
4. Both files of several pairs are uploaded at once, from two threads; the registrations
   race (the pairs table records when each ran). Every pair is still processed exactly
   once, by one of its two executions, and both succeed.
5. A malformed upload (unknown kind) fails in IdentifyUpload's Catch path, RejectUpload with
   InvalidUpload; nothing is recorded for its pair.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Any

from bootstrap.dependent_uploads import DependentUploads
from sandbox import executions, items
from sandbox.aws import Aws
from sandbox.executions import Execution
from sandbox.harness import Scenario, await_value, holds_for, unique_name

HOLD_SECONDS = 2.0
SIMULTANEOUS_PAIRS = 6
RACE_WINDOW = 0.25  # seconds: registrations this close ran at the same moment
WAITED_PATH = ["IdentifyUpload", "WaitForPartner", "WaitedOrCompleted", "ProcessPair"]
COMPLETED_PATH = ["IdentifyUpload", "WaitForPartner", "WaitedOrCompleted", "ResumedPartner"]


def run(aws: Aws, resources: DependentUploads, scenario: Scenario) -> None:
    check_notification(aws, resources, scenario)
    pairs = {
        unique_name("orders-first"): ("orders", "customers"),
        unique_name("customers-first"): ("customers", "orders"),
    }
    firsts = first_files_wait(aws, resources, scenario, pairs)
    second_files_resume(aws, resources, scenario, pairs, firsts)
    simultaneous_uploads_pair_once(aws, resources, scenario)
    malformed_upload_is_rejected(aws, resources, scenario)


def check_notification(aws: Aws, resources: DependentUploads, scenario: Scenario) -> None:
    with scenario.step("Uploads under incoming/ notify the function that starts a workflow"):
        config = aws.client("s3").get_bucket_notification_configuration(Bucket=resources.bucket)
        targets = [
            (
                target["LambdaFunctionArn"],
                target["Events"],
                target["Filter"]["Key"]["FilterRules"][0]["Value"],
            )
            for target in config.get("LambdaFunctionConfigurations", [])
        ]
        scenario.check(
            "S3 notification",
            expected=[(resources.on_upload_arn, ["s3:ObjectCreated:*"], resources.prefix)],
            seen=targets,
        )


def first_files_wait(
    aws: Aws, resources: DependentUploads, scenario: Scenario, pairs: dict[str, tuple[str, str]]
) -> dict[str, str]:
    """Returns each pair's first key."""
    firsts: dict[str, str] = {}
    with scenario.step("The first file of each pair arrives: its workflow waits, paused"):
        for pair_id, (first, _) in pairs.items():
            key, _at = _upload(aws, resources, pair_id, first)
            firsts[pair_id] = key
            scenario.note(f"put {key}")
        for pair_id, key in firsts.items():
            await_value(
                partial(_read, aws, resources, key),
                until=lambda execution: execution is not None
                and "WaitForPartner" in execution.entered,
                timeout=30,
                waiting_for=f"the execution for {key} ({pair_id}) to reach WaitForPartner",
            )
            token_field = f"token_{pairs[pair_id][0]}"
            await_value(
                partial(_row, aws, resources, pair_id),
                until=partial(_holds_field, token_field),
                timeout=30,
                waiting_for=f"{pair_id}'s row to hold {token_field}",
            )
        statuses = holds_for(
            lambda: {
                pair_id: _status(_read(aws, resources, key)) for pair_id, key in firsts.items()
            },
            until=lambda seen: set(seen.values()) == {"RUNNING"},
            duration=HOLD_SECONDS,
        )
        scenario.check(
            f"still paused after {HOLD_SECONDS:g} s",
            expected=dict.fromkeys(firsts, "RUNNING"),
            seen=statuses,
        )
        for pair_id, (first, second) in pairs.items():
            stored = _row(aws, resources, pair_id)
            scenario.check_that(
                f"{pair_id}: row holds the {first} file and token only, not processed",
                f"file_{second}" not in stored and "processed" not in stored,
                expected=f"no file_{second}, no processed",
                seen=sorted(stored),
            )
    return firsts


def second_files_resume(
    aws: Aws,
    resources: DependentUploads,
    scenario: Scenario,
    pairs: dict[str, tuple[str, str]],
    firsts: dict[str, str],
) -> None:
    with scenario.step("The second file arrives: it resumes the waiting workflow"):
        seconds: dict[str, tuple[str, datetime]] = {}
        for pair_id, (_, second) in pairs.items():
            seconds[pair_id] = _upload(aws, resources, pair_id, second)
            scenario.note(f"put {seconds[pair_id][0]}")
        for pair_id, (_, second) in pairs.items():
            waited = executions.finish(aws, _execution_arn(resources, firsts[pair_id]), timeout=30)
            completed = executions.finish(
                aws, _execution_arn(resources, seconds[pair_id][0]), timeout=30
            )
            scenario.check(
                f"{pair_id}: waiting execution (status, path)",
                expected=("SUCCEEDED", WAITED_PATH),
                seen=(waited.status, waited.entered),
            )
            resumed_at, uploaded_at = _left_wait_at(waited), seconds[pair_id][1]
            scenario.check_that(
                f"{pair_id}: WaitForPartner left after the {second} upload",
                resumed_at is not None and resumed_at >= uploaded_at,
                expected=f"after {uploaded_at:%H:%M:%S.%f}",
                seen=f"{resumed_at} (upload at {uploaded_at:%H:%M:%S.%f})",
            )
            scenario.check(
                f"{pair_id}: resumed by", expected=second, seen=waited.output["pair"]["resumed_by"]
            )
            scenario.check(
                f"{pair_id}: the {second} execution (status, path)",
                expected=("SUCCEEDED", COMPLETED_PATH),
                seen=(completed.status, completed.entered),
            )
            _check_processed_once(aws, resources, scenario, pair_id, [waited, completed])


def simultaneous_uploads_pair_once(
    aws: Aws, resources: DependentUploads, scenario: Scenario
) -> None:
    with scenario.step(
        f"Both files of {SIMULTANEOUS_PAIRS} pairs uploaded at once: each pair processed once"
    ):
        pair_ids = [unique_name("together") for _ in range(SIMULTANEOUS_PAIRS)]
        start_together = threading.Barrier(2)

        def upload_after_barrier(pair_id: str, kind: str) -> str:
            start_together.wait(timeout=10)
            return _upload(aws, resources, pair_id, kind)[0]

        keys: dict[str, list[str]] = {}
        with ThreadPoolExecutor(2) as pool:
            for pair_id in pair_ids:
                futures = [
                    pool.submit(upload_after_barrier, pair_id, kind) for kind in resources.kinds
                ]
                keys[pair_id] = [future.result() for future in futures]
        scenario.note(f"uploaded orders and customers of {len(pair_ids)} pairs, two at a time")
        gaps = {}
        for pair_id in pair_ids:
            finished = [
                executions.finish(aws, _execution_arn(resources, key), timeout=45)
                for key in keys[pair_id]
            ]
            scenario.check(
                f"{pair_id}: both executions",
                expected=["SUCCEEDED", "SUCCEEDED"],
                seen=[execution.status for execution in finished],
            )
            scenario.check(
                f"{pair_id}: paths (one processed, one resumed its partner)",
                expected=sorted([WAITED_PATH, COMPLETED_PATH]),
                seen=sorted(execution.entered for execution in finished),
            )
            _check_processed_once(aws, resources, scenario, pair_id, finished)
            row = _row(aws, resources, pair_id)
            times = [float(row.get(f"registered_{kind}", 0)) for kind in resources.kinds]
            if all(times):
                gaps[pair_id] = round(abs(times[0] - times[1]), 3)
        scenario.note(f"seconds between the two registrations of each pair: {gaps}")
        raced = [pair_id for pair_id, gap in gaps.items() if gap <= RACE_WINDOW]
        scenario.check_that(
            f"pairs whose registrations ran within {RACE_WINDOW} s of each other",
            len(raced) >= 1,
            expected="at least 1 (the race happened)",
            seen=len(raced),
        )


def malformed_upload_is_rejected(aws: Aws, resources: DependentUploads, scenario: Scenario) -> None:
    with scenario.step("A malformed upload fails in a named state; nothing is recorded"):
        bad_pair = unique_name("bad")
        key, _at = _upload(aws, resources, bad_pair, "invoices")
        scenario.note(f"put {key} (invoices is not a kind of this pair)")
        await_value(
            partial(_read, aws, resources, key),
            timeout=30,
            waiting_for=f"the execution for {key}",
        )
        bad = executions.finish(aws, _execution_arn(resources, key), timeout=30)
        scenario.check(
            "status, error", expected=("FAILED", "InvalidUpload"), seen=(bad.status, bad.error)
        )
        scenario.check(
            "path (Catch from IdentifyUpload)",
            expected=["IdentifyUpload", "RejectUpload"],
            seen=bad.entered,
        )
        scenario.check("row for the pair", expected={}, seen=_row(aws, resources, bad_pair))


def _check_processed_once(
    aws: Aws,
    resources: DependentUploads,
    scenario: Scenario,
    pair_id: str,
    pair_executions: list[Execution],
) -> None:
    """The pair's two executions ran ProcessPair once between them, and its output holds
    the joined records."""
    scenario.check(
        f"{pair_id}: ProcessPair ran once for the pair",
        expected=1,
        seen=sum(execution.entered.count("ProcessPair") for execution in pair_executions),
    )
    row = _row(aws, resources, pair_id)
    output_key = row.get("processed")
    joined = (
        json.loads(
            aws.client("s3").get_object(Bucket=resources.bucket, Key=output_key)["Body"].read()
        )
        if output_key
        else None
    )
    scenario.check(
        f"{pair_id}: processed/{pair_id}.json",
        expected=[{"order_id": f"{pair_id}-1", "customer_id": "c-1", "customer_name": "Ada"}],
        seen=joined,
    )


def _upload(aws: Aws, resources: DependentUploads, pair_id: str, kind: str) -> tuple[str, datetime]:
    key = f"{resources.prefix}{pair_id}/{kind}.json"
    aws.client("s3").put_object(
        Bucket=resources.bucket, Key=key, Body=json.dumps(_sample(pair_id, kind)).encode()
    )
    return key, datetime.now().astimezone()


def _execution_arn(resources: DependentUploads, key: str) -> str:
    name = key.removeprefix(resources.prefix).replace("/", "-").replace(".", "-")
    return executions.execution_arn(resources.state_machine, name)


def _read(aws: Aws, resources: DependentUploads, key: str) -> Execution | None:
    try:
        return executions.read(aws, _execution_arn(resources, key))
    except aws.client("stepfunctions").exceptions.ExecutionDoesNotExist:
        return None


def _row(aws: Aws, resources: DependentUploads, pair_id: str) -> dict[str, Any]:
    return items.get(aws, resources.table, {"id": pair_id}) or {}


def _sample(pair_id: str, kind: str) -> list[dict[str, str]]:
    if kind == "orders":
        return [{"order_id": f"{pair_id}-1", "customer_id": "c-1"}]
    if kind == "customers":
        return [{"customer_id": "c-1", "name": "Ada"}]
    return []


def _holds_field(name: str, row: dict[str, Any]) -> bool:
    return name in row


def _status(execution: Execution | None) -> str | None:
    return execution.status if execution else None


def _left_wait_at(execution: Execution) -> datetime | None:
    """When WaitForPartner got its token back and was left."""
    for event in execution.events:
        if event.get("stateExitedEventDetails", {}).get("name") == "WaitForPartner":
            return event["timestamp"]
    return None
