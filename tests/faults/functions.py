"""A fault's own Lambda function (and table), made for the test and deleted after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

from sandbox import provision
from sandbox.aws import Aws
from sandbox.embedded import launcher
from sandbox.harness import unique_name
from tests.conftest import zip_files


@dataclass(frozen=True)
class FaultFunction:
    name: str
    table: str


@contextmanager
def fault_function(
    aws: Aws, prefix: str, source: str, *, timeout: int = 5, memory: int = 256
) -> Iterator[FaultFunction]:
    """A Python function running `source` as app.py, with a table in TABLE for its counts."""
    name = unique_name(prefix)
    table = provision.ensure_table(aws, name)
    lambda_ = aws.client("lambda")
    lambda_.create_function(
        FunctionName=name,
        Role=provision.ensure_role(aws, provision.LAMBDA_ROLE, "lambda.amazonaws.com"),
        Runtime=provision.LAMBDA_RUNTIME,
        Handler="app.handler",
        Timeout=timeout,
        MemorySize=memory,
        Code={"ZipFile": zip_files({"app.py": source})},
        Environment={"Variables": {"TABLE": table}},
    )
    try:
        provision.wait_for_function(lambda_, name)
        yield FaultFunction(name, table)
    finally:
        lambda_.delete_function(FunctionName=name)
        aws.client("dynamodb").delete_table(TableName=table)


def sandbox_processes(instance: str) -> list[psutil.Process]:
    """The live processes of one embedded sandbox (its token in their environment)."""
    found = []
    for pid in launcher.processes_of(instance):
        try:
            found.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    return found
