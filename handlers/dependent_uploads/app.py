"""Dependent uploads: a pair of files (orders and customers of one batch) is processed only
when both have arrived, whichever comes first. One workflow runs per upload; the first of a
pair stores its task token and waits, the second resumes it.

Keys: `incoming/<pair_id>/<kind>.json`, kind one of KINDS. Four functions share this module:

- `app.on_upload_handler`: an S3 ObjectCreated notification (prefix `incoming/`). Starts one
  execution per object, named after its key (a repeated event for the same key is ignored),
  with input {"bucket", "key"}. Environment: STATE_MACHINE_ARN.
- `app.identify_handler`: {"bucket", "key"} -> {"bucket", "key", "pair_id", "kind"}; raises
  InvalidUpload when the key does not name a pair and a known kind.
- `app.register_handler` (invoked with `.waitForTaskToken`): {"token", "upload": <identified>}.
  Records the file and this workflow's token on the pair's row in one atomic update. When the
  row then holds every kind, it sends SendTaskSuccess to each waiting token: the partner that
  waited gets {"role": "waited", ...} and this workflow {"role": "completed", ...}, both with
  "files" {kind: key} and "resumed_by" (the kind that arrived last). Otherwise this workflow
  stays paused until its partner arrives; the row also keeps when each kind registered
  (`registered_<kind>`, unix seconds). Environment: TABLE_NAME, and RACE_ALIGN_SECONDS, a
  test-only hook (unset by default, set by the sandbox's bootstrap): the registration first
  waits until the wall clock reaches a multiple of that many seconds, so two uploads that
  arrive together write at the same instant and the race between them is real.
- `app.process_handler`: {"pair_id", "bucket", "files"} -> {"output_key", "records"}: joins
  the two files into `processed/<pair_id>.json` and marks the pair processed.
  Environment: TABLE_NAME.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from decimal import Decimal
from functools import cache
from typing import Any
from urllib.parse import unquote_plus

import boto3

KINDS = ("orders", "customers")
KEY = re.compile(r"^incoming/(?P<pair_id>[A-Za-z0-9_-]{1,60})/(?P<kind>[a-z]+)\.json$")

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


class InvalidUpload(ValueError):
    """The object's key does not name a pair and one of its kinds."""


# -- pure logic ------------------------------------------------------------------------
def identify(bucket: str, key: str) -> dict[str, str]:
    """Which pair and which kind an uploaded key is."""
    match = KEY.match(key or "")
    if not match:
        raise InvalidUpload(f"{key!r} is not incoming/<pair_id>/<kind>.json")
    if match["kind"] not in KINDS:
        raise InvalidUpload(f"{key!r}: kind {match['kind']!r} is not one of {', '.join(KINDS)}")
    return {"bucket": bucket, "key": key, "pair_id": match["pair_id"], "kind": match["kind"]}


def execution_name(key: str) -> str:
    """A Step Functions execution name for this key (the same key gives the same name)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", key.removeprefix("incoming/"))
    return name[:80]


def resumptions(row: dict[str, Any], arrived: str) -> list[tuple[str, dict[str, Any]]]:
    """The (token, output) pairs to send once `arrived` is recorded on the pair's `row`: none
    while a kind is missing, else one for every kind's waiting workflow."""
    files = {kind: row[f"file_{kind}"] for kind in KINDS if f"file_{kind}" in row}
    if len(files) < len(KINDS):
        return []
    common = {"pair_id": row["id"], "files": files, "resumed_by": arrived}
    return [
        (row[f"token_{kind}"], {**common, "role": "completed" if kind == arrived else "waited"})
        for kind in KINDS
    ]


def join(orders: list[dict[str, Any]], customers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each order with its customer's name (None when the customer is unknown)."""
    names = {c["customer_id"]: c["name"] for c in customers}
    return [{**order, "customer_name": names.get(order["customer_id"])} for order in orders]


# -- AWS adapters ----------------------------------------------------------------------
@cache
def _table() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["TABLE_NAME"])


@cache
def _client(name: str) -> Any:
    return boto3.client(name)


def on_upload_handler(event: dict[str, Any], context: Any) -> list[str]:
    sfn, started = _client("stepfunctions"), []
    for record in event.get("Records", []):
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        name = execution_name(key)
        try:
            sfn.start_execution(
                stateMachineArn=os.environ["STATE_MACHINE_ARN"],
                name=name,
                input=json.dumps({"bucket": bucket, "key": key}),
            )
            started.append(name)
        except sfn.exceptions.ExecutionAlreadyExists:
            logger.info("Execution %s already started: repeated event for %s", name, key)
    return started


def identify_handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    return identify(event.get("bucket", ""), event.get("key", ""))


def _align_for_race() -> None:
    """The test-only hook RACE_ALIGN_SECONDS (see the module docstring)."""
    slot = float(os.environ.get("RACE_ALIGN_SECONDS") or 0)
    if slot > 0:
        time.sleep(slot - time.time() % slot)


def register_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    upload, token = event["upload"], event["token"]
    kind = upload["kind"]
    table = _table()  # made first: a cold start's client must not delay the aligned write
    _align_for_race()
    # One atomic update: whichever registration comes second sees both files.
    row = table.update_item(
        Key={"id": upload["pair_id"]},
        UpdateExpression="SET #file = :key, #token = :token, #at = :now",
        ExpressionAttributeNames={
            "#file": f"file_{kind}",
            "#token": f"token_{kind}",
            "#at": f"registered_{kind}",
        },
        ExpressionAttributeValues={
            ":key": upload["key"],
            ":token": token,
            ":now": Decimal(str(time.time())),
        },
        ReturnValues="ALL_NEW",
    )["Attributes"]
    to_send = resumptions(row, kind)
    for waiting_token, output in to_send:
        _client("stepfunctions").send_task_success(
            taskToken=waiting_token, output=json.dumps(output)
        )
    logger.info("Pair %s: %s arrived, resumed %d", upload["pair_id"], kind, len(to_send))
    return {"resumed": len(to_send)}


def process_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    s3, bucket, files = _client("s3"), event["bucket"], event["files"]
    loaded = {
        kind: json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        for kind, key in files.items()
    }
    joined = join(loaded["orders"], loaded["customers"])
    output_key = f"processed/{event['pair_id']}.json"
    s3.put_object(Bucket=bucket, Key=output_key, Body=json.dumps(joined).encode())
    _table().update_item(
        Key={"id": event["pair_id"]},
        UpdateExpression="SET #processed = :key",
        ExpressionAttributeNames={"#processed": "processed"},  # a reserved word
        ExpressionAttributeValues={":key": output_key},
    )
    return {"output_key": output_key, "records": len(joined)}
