"""Provision dependent-uploads: an S3 bucket whose uploads start one workflow each, the
workflow (wait for the partner file with a task token, then process the pair), its four
functions and the pairs table."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import (
    allow_invoke,
    ensure_bucket,
    ensure_function,
    ensure_state_machine,
    ensure_table,
)

PREFIX = "incoming/"
KINDS = ("orders", "customers")
RACE_ALIGN_SECONDS = 4


@dataclass(frozen=True)
class DependentUploads:
    bucket: str
    prefix: str
    kinds: tuple[str, ...]
    table: str
    state_machine: str
    on_upload_function: str
    on_upload_arn: str


def provision(aws: Aws) -> DependentUploads:
    table = ensure_table(aws, "dependent-uploads-pairs")
    bucket = ensure_bucket(aws, "dependent-uploads")
    # RACE_ALIGN_SECONDS: a test-only hook (handlers/dependent_uploads/app.py) that makes two
    # uploads arriving together register at the same instant; leave it out on AWS.
    env = {"TABLE_NAME": table, "RACE_ALIGN_SECONDS": str(RACE_ALIGN_SECONDS)}
    arns = {
        name: ensure_function(
            aws,
            f"dependent-uploads-{name}",
            "dependent_uploads",
            handler=f"app.{name}_handler",
            environment=env,
            timeout=10,
        )
        for name in ("identify", "register", "process")
    }
    state_machine = ensure_state_machine(
        aws,
        "dependent-uploads",
        "dependent_uploads.json",
        {
            "IdentifyArn": arns["identify"],
            "RegisterArn": arns["register"],
            "ProcessArn": arns["process"],
        },
    )
    on_upload = "dependent-uploads-on-upload"
    on_upload_arn = ensure_function(
        aws,
        on_upload,
        "dependent_uploads",
        handler="app.on_upload_handler",
        environment={"STATE_MACHINE_ARN": state_machine},
        timeout=10,
    )
    _notify_function(aws, bucket, on_upload, on_upload_arn)
    return DependentUploads(bucket, PREFIX, KINDS, table, state_machine, on_upload, on_upload_arn)


def _notify_function(aws: Aws, bucket: str, function: str, function_arn: str) -> None:
    """S3 ObjectCreated under PREFIX -> the function, with the permission AWS requires.
    (A candidate for sandbox/provision.py: ensure_bucket_notification.)"""
    allow_invoke(aws, function, "s3.amazonaws.com", f"arn:aws:s3:::{bucket}")
    aws.client("s3").put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [
                {
                    "Id": "uploads-start-workflows",
                    "LambdaFunctionArn": function_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": PREFIX}]}},
                }
            ]
        },
    )
