"""Idempotent building blocks for `bootstrap/<pattern>.py`.

Each `ensure_*` creates a resource or brings an existing one to the asked-for settings, so
running a bootstrap twice changes nothing the second time. Names are fixed per pattern (the
`make up` table prints them); scenarios make their data unique instead.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import io
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from sandbox import modes, settings
from sandbox.aws import Aws
from sandbox.embedded import launcher

LOG = logging.getLogger(__name__)
HANDLERS_DIR = settings.PROJECT_ROOT / "handlers"
BUILD_DIR = settings.BUILD_DIR
LAMBDA_RUNTIME = "python3.13"
LAMBDA_ROLE = "sandbox-lambda-role"
STATES_ROLE = "sandbox-states-role"
STATE_MACHINES_DIR = settings.PROJECT_ROOT / "state_machines"


@dataclass(frozen=True)
class Queue:
    name: str
    url: str
    arn: str


WAIT_INTERVAL = 0.05
WAIT_TIMEOUT = 60.0


def wait_for(ready: Callable[[], bool], what: str, timeout: float = WAIT_TIMEOUT) -> None:
    """Ask `ready()` every 50 ms until it holds; after `timeout` s raise TimeoutError naming
    `what`."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"Waited {timeout:g} s for {what}")
        time.sleep(WAIT_INTERVAL)


# -- SQS -----------------------------------------------------------------------------
def ensure_queue(
    aws: Aws,
    name: str,
    *,
    dead_letter: Queue | None = None,
    max_receive_count: int = 3,
    visibility_timeout: int = 5,
    **attributes: str,
) -> Queue:
    """A queue; with `dead_letter`, messages received `max_receive_count` times move there."""
    sqs = aws.client("sqs")
    attrs = {"VisibilityTimeout": str(visibility_timeout), **attributes}
    if name.endswith(".fifo"):
        attrs["FifoQueue"] = "true"
    if dead_letter is not None:
        attrs["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dead_letter.arn, "maxReceiveCount": str(max_receive_count)}
        )
    try:  # one request when nothing changed: CreateQueue returns an identical queue's URL
        url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    except sqs.exceptions.QueueNameExists:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sqs.set_queue_attributes(
            QueueUrl=url, Attributes={k: v for k, v in attrs.items() if k != "FifoQueue"}
        )
    return Queue(name, url, f"arn:aws:sqs:{aws.region}:{aws.account_id}:{name}")


def ensure_queue_with_dlq(
    aws: Aws, name: str, *, max_receive_count: int = 3, **kwargs: Any
) -> tuple[Queue, Queue]:
    """A queue and its dead-letter queue `<name>-dlq` (every queue that can fail gets one);
    a FIFO queue's DLQ is FIFO too: `<base>-dlq.fifo`."""
    base, fifo, _ = name.partition(".fifo")
    dlq = ensure_queue(aws, f"{base}-dlq{fifo}")
    return ensure_queue(
        aws, name, dead_letter=dlq, max_receive_count=max_receive_count, **kwargs
    ), dlq


def allow_service_to_send(aws: Aws, queue: Queue, service: str, source_arns: list[str]) -> None:
    """A queue policy letting e.g. events.amazonaws.com send, as real AWS requires."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sqs:SendMessage",
                "Resource": queue.arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": source_arns}},
            }
        ],
    }
    aws.client("sqs").set_queue_attributes(
        QueueUrl=queue.url, Attributes={"Policy": json.dumps(policy)}
    )


# -- DynamoDB ------------------------------------------------------------------------
def ensure_table(
    aws: Aws,
    name: str,
    *,
    hash_key: str = "id",
    range_key: str | None = None,
    stream_view: str | None = None,
    key_types: dict[str, str] | None = None,
) -> str:
    """An on-demand table keyed by `hash_key` (and `range_key`); returns its name.
    `key_types` gives a key's type when it is not a string ("N", "B")."""
    dynamodb = aws.client("dynamodb")
    keys = [(hash_key, "HASH")] + ([(range_key, "RANGE")] if range_key else [])
    types = key_types or {}
    params: dict[str, Any] = {
        "TableName": name,
        "KeySchema": [{"AttributeName": k, "KeyType": t} for k, t in keys],
        "AttributeDefinitions": [
            {"AttributeName": k, "AttributeType": types.get(k, "S")} for k, _ in keys
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream_view:
        params["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream_view}
    try:  # created first: on a fresh sandbox, a look first would be one more request each
        created = dynamodb.create_table(**params)["TableDescription"]
        if created["TableStatus"] == "ACTIVE":  # DynamoDB Local's at once; AWS's CREATING
            return name
    except dynamodb.exceptions.ResourceInUseException:
        pass  # it exists; it may still be being created by another pattern
    wait_for(
        lambda: dynamodb.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE",
        f"table {name} to be ACTIVE",
    )
    return name


def ensure_ttl(aws: Aws, table: str, attribute: str) -> None:
    """Time to live on `attribute` (epoch seconds): DynamoDB deletes expired items itself."""
    dynamodb = aws.client("dynamodb")
    described = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    if described.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        dynamodb.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute}
        )


# -- IAM -----------------------------------------------------------------------------
def ensure_role(aws: Aws, name: str, service: str) -> str:
    """A role the given service may assume (LocalStack does not enforce IAM; AWS would).
    Looked up once per `Aws`: every function of every pattern names the same role."""
    if name not in aws.role_arns:
        aws.role_arns[name] = _ensured_role(aws, name, service)
    return aws.role_arns[name]


def _ensured_role(aws: Aws, name: str, service: str) -> str:
    iam = aws.client("iam")
    try:
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])
    except iam.exceptions.NoSuchEntityException:
        pass
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }
    try:
        role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    except iam.exceptions.EntityAlreadyExistsException:  # a pattern provisioned alongside
        role = iam.get_role(RoleName=name)
    arn: str = role["Role"]["Arn"]
    return arn


# -- Lambda --------------------------------------------------------------------------
def package_handler(folder: Path) -> bytes:
    """A deployment zip of a handler folder, with the packages its requirements.txt names
    installed beside the code (so it runs the same in AWS's runtime images)."""
    return _package(folder)[0]


_packages: dict[str, tuple[bytes, str]] = {}
_packaging = threading.Lock()
# LocalStack's marker bucket (BUCKET_MARKER_LOCAL): the key is a folder on its host, used as
# the function's code as it is (LocalStack calls it hot reloading).
HOST_FOLDER_BUCKET = "hot-reload"


def _build_key(folder: Path) -> tuple[str, list[Path], Path | None]:
    """A name for this content of the folder and its dependencies, the folder's files, and
    the dependencies' folder (None without a requirements.txt)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    deps = _vendored_dependencies(folder / "requirements.txt")
    fingerprint = hashlib.sha256(str(deps).encode())
    for path in files:
        stat = path.stat()
        fingerprint.update(
            f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns};".encode()
        )
    return f"{folder.name}-{fingerprint.hexdigest()[:16]}", files, deps


def _package(folder: Path) -> tuple[bytes, str]:
    """The zip and its CodeSha256, built once per content of the folder and its dependencies
    (compressing a vendored Powertools takes ~0.4 s; a folder may serve several functions)."""
    with _packaging:
        key, files, deps = _build_key(folder)
        if key not in _packages:
            cached = BUILD_DIR / "zips" / f"{key}.zip"
            if cached.is_file():
                code = cached.read_bytes()
            else:
                code = _zip(folder, files, deps)
                cached.parent.mkdir(parents=True, exist_ok=True)
                # Its own partial file: every sandbox of the checkout shares the folder.
                partial = cached.with_suffix(f".{os.getpid()}.partial")
                partial.write_bytes(code)
                partial.replace(cached)
            _packages[key] = (code, base64.b64encode(hashlib.sha256(code).digest()).decode())
        return _packages[key]


def _code_folder(folder: Path) -> Path:
    """The handler's files beside links to its vendored dependencies, in a folder per content
    (a function's code never changes under it), made once across processes."""
    with _packaging:
        key, files, deps = _build_key(folder)
    target = BUILD_DIR / "code" / key
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=target.parent))
    staging.chmod(0o755)
    for path in files:
        copy = staging / path.relative_to(folder)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
    for entry in sorted(deps.iterdir()) if deps else []:
        if entry.name != "__pycache__":  # the handler's own compiled files go in its folder
            (staging / entry.name).symlink_to(entry.resolve())
    try:
        staging.rename(target)
    except OSError:  # another process made it meanwhile
        shutil.rmtree(staging)
    return target


def _function_code(aws: Aws, folder: Path) -> tuple[dict[str, Any], str]:
    """CreateFunction's Code for a handler folder, and what GetFunction shows of it once it is
    deployed (`_deployed_code`). Where functions run as processes on this host (embedded),
    the code is a folder: a function made from a 1 MB zip costs LocalStack ~70 ms of its one
    core (JSON, base64, its internal S3, unzipping), from a folder ~12 ms. In containers
    (Docker mode, or any LocalStack of the user's) it is the zip, as on AWS."""
    if _functions_run_here(aws):
        path = _code_folder(folder)
        return {"S3Bucket": HOST_FOLDER_BUCKET, "S3Key": str(path)}, f"file://{path}"
    code, sha = _package(folder)
    return {"ZipFile": code}, sha


def _deployed_code(function: dict[str, Any]) -> str:
    """What `_function_code` names for the code of this GetFunction answer."""
    location = str(function.get("Code", {}).get("Location", ""))
    return location if location.startswith("file://") else function["Configuration"]["CodeSha256"]


def _functions_run_here(aws: Aws) -> bool:
    """The endpoint is this host's embedded sandbox (its functions see this host's folders)."""
    if aws.functions_run_here is None:
        port = urlsplit(aws.endpoint_url).port
        running = launcher.EmbeddedSandbox(port).running() if port else None
        aws.functions_run_here = running is not None and running.port == port
    return aws.functions_run_here


def _zip(folder: Path, files: list[Path], deps: Path | None) -> bytes:
    sources: list[tuple[Path, list[Path]]] = [(folder, files)]
    if deps:
        sources.append((deps, sorted(deps.rglob("*"))))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, paths in sources:
            for path in paths:
                if path.is_file() and "__pycache__" not in path.parts:
                    info = zipfile.ZipInfo(
                        str(path.relative_to(root)), date_time=(2020, 1, 1, 0, 0, 0)
                    )
                    info.external_attr = 0o644 << 16
                    archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _vendored_dependencies(requirements: Path) -> Path | None:
    """pip-install a handler's requirements once per content and target, pinned by
    constraints.txt. Functions in Lambda containers (Docker mode) get Linux wheels for the
    runtime's Python whatever this host is (a macOS build of a compiled package would not load
    there); functions run as processes on this host get this host's."""
    if not requirements.is_file():
        return None
    constraints = settings.PROJECT_ROOT / "constraints.txt"
    platform_args = lambda_container_pip_args() if modes.functions_in_docker() else []
    key = hashlib.sha256(
        requirements.read_bytes() + constraints.read_bytes() + " ".join(platform_args).encode()
    ).hexdigest()[:16]
    target = BUILD_DIR / f"deps-{key}"
    if target.is_dir():
        return target
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    # Two processes provisioning at once (make test's parallel runs) build it once.
    with (BUILD_DIR / f"deps-{key}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir():
            return target
        staging = BUILD_DIR / f"deps-{key}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        done = subprocess.run(
            [*pip, "--target", str(staging), *platform_args]
            + ["-r", str(requirements), "-c", str(constraints)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"Installing {requirements} for packaging failed:\n{done.stderr}")
        staging.rename(target)
    return target


def vendor_all_dependencies() -> list[Path]:
    """Every handler's dependencies, installed ahead (the bootstrap image does this at build
    time, so `docker compose up` provisions offline)."""
    found = (_vendored_dependencies(path) for path in HANDLERS_DIR.glob("*/requirements.txt"))
    return sorted({path for path in found if path is not None})


def lambda_architecture() -> str:
    """This machine's architecture in Lambda's words: functions are declared with it, so the
    dependencies vendored for them and the runtime image LocalStack picks agree."""
    return "arm64" if platform.machine().lower() in ("arm64", "aarch64") else "x86_64"


def lambda_container_pip_args() -> list[str]:
    """pip options for wheels that load in AWS's Lambda image for LAMBDA_RUNTIME (AWS's own
    advice for packaging: manylinux2014, binary only, the runtime's Python)."""
    machine = "aarch64" if lambda_architecture() == "arm64" else "x86_64"
    version = LAMBDA_RUNTIME.removeprefix("python")
    return [
        f"--platform=manylinux2014_{machine}",
        f"--python-version={version}",
        "--implementation=cp",
        "--only-binary=:all:",
    ]


def ensure_function(
    aws: Aws,
    name: str,
    handler_folder: str,
    *,
    handler: str = "app.handler",
    environment: dict[str, str] | None = None,
    timeout: int = 10,
    memory: int = 256,
    runtime: str = LAMBDA_RUNTIME,
) -> str:
    """A function from `handlers/<handler_folder>/`, its code and settings kept up to date;
    returns its ARN."""
    lambda_ = aws.client("lambda")
    code, deployed_as = _function_code(aws, HANDLERS_DIR / handler_folder)
    config: dict[str, Any] = {
        "Runtime": runtime,
        "Handler": handler,
        "Timeout": timeout,
        "MemorySize": memory,
        "Environment": {"Variables": environment or {}},
    }
    architectures = [lambda_architecture()]
    function = _function(aws, name)
    if function is None:
        try:
            arn: str = lambda_.create_function(
                FunctionName=name,
                Role=ensure_role(aws, LAMBDA_ROLE, "lambda.amazonaws.com"),
                Code=code,
                Architectures=architectures,
                **config,
            )["FunctionArn"]
        except lambda_.exceptions.ResourceConflictException:  # made since they were listed
            function = lambda_.get_function(FunctionName=name)
        else:
            starting = _functions_starting.get()
            if starting is None:
                wait_for_function(lambda_, name)
            else:
                starting.append(name)
            return arn
    current = function["Configuration"]
    if _deployed_code(function) != deployed_as or current.get("Architectures") != architectures:
        lambda_.update_function_code(FunctionName=name, **code, Architectures=architectures)
        wait_for_function(lambda_, name)
    wanted = {**config, "Environment": config["Environment"]["Variables"]}
    have = {
        **{k: current.get(k) for k in config},
        "Environment": current.get("Environment", {}).get("Variables", {}),
    }
    if wanted != have:
        lambda_.update_function_configuration(FunctionName=name, **config)
        wait_for_function(lambda_, name)
    return str(current["FunctionArn"])


_functions_starting: ContextVar[list[str] | None] = ContextVar("functions_starting", default=None)


@contextmanager
def functions_awaited_together(aws: Aws) -> Iterator[None]:
    """Within it, a new function is not awaited as it is created but at the end, with the
    others: it takes a few hundred ms to start, during which the rest of the pattern is
    provisioned, and each look at it is one more request for LocalStack to serve."""
    starting: list[str] = []
    token = _functions_starting.set(starting)
    try:
        yield
    finally:
        _functions_starting.reset(token)
    lambda_ = aws.client("lambda")
    for name in starting:
        wait_for_function(lambda_, name)


_listing_functions = threading.Lock()


def _function(aws: Aws, name: str) -> dict[str, Any] | None:
    """The function (GetFunction), None if there is none. The functions are listed once per
    `Aws`, so a fresh sandbox's are created without a look at each first."""
    with _listing_functions:
        if aws.functions_found is None:
            pages = aws.client("lambda").get_paginator("list_functions").paginate()
            aws.functions_found = {f["FunctionName"] for page in pages for f in page["Functions"]}
    if name not in aws.functions_found:
        return None
    lambda_ = aws.client("lambda")
    try:
        function: dict[str, Any] = lambda_.get_function(FunctionName=name)
        return function
    except lambda_.exceptions.ResourceNotFoundException:  # deleted since they were listed
        aws.functions_found.discard(name)
        return None


def wait_for_function(lambda_: Any, name: str) -> None:
    """Until the function is Active and its last update Successful (boto3's waiters sleep a
    second or more between looks; a local function is ready in tens of milliseconds)."""

    def ready() -> bool:
        config = lambda_.get_function_configuration(FunctionName=name)
        if "Failed" in (config.get("State"), config.get("LastUpdateStatus")):
            reason = config.get("StateReason") or config.get("LastUpdateStatusReason")
            advice = f" {modes.PULL_ADVICE}" if modes.functions_in_docker() else ""
            raise RuntimeError(f"Function {name} failed to deploy: {reason}.{advice}")
        return bool(
            config.get("State") == "Active" and config.get("LastUpdateStatus") != "InProgress"
        )

    wait_for(ready, f"function {name} to be Active")


def ensure_event_source_mapping(
    aws: Aws,
    function: str,
    source_arn: str,
    *,
    batch_size: int = 10,
    report_batch_item_failures: bool = True,
    **settings_: Any,
) -> str:
    """An enabled mapping from a queue or stream to a function; returns its UUID. A stream
    mapping also needs `StartingPosition` (e.g. "TRIM_HORIZON")."""
    lambda_ = aws.client("lambda")
    config: dict[str, Any] = {
        "BatchSize": batch_size,
        "FunctionResponseTypes": ["ReportBatchItemFailures"] if report_batch_item_failures else [],
        **settings_,
    }
    found = lambda_.list_event_source_mappings(FunctionName=function, EventSourceArn=source_arn)
    if found["EventSourceMappings"]:
        uuid = found["EventSourceMappings"][0]["UUID"]
        # Not the listed record: LocalStack 4.14 may list an enabled mapping as Disabled.
        current = lambda_.get_event_source_mapping(UUID=uuid)
        # Where a stream mapping starts reading is fixed at creation; updates refuse it.
        updatable = {k: v for k, v in config.items() if not k.startswith("StartingPosition")}
        unchanged = current["State"] in ("Enabled", "Enabling") and all(
            current.get(k, [] if isinstance(v, list) else None) == v for k, v in updatable.items()
        )
        # Only update when something changed: LocalStack restarts a stream mapping from the
        # stream's start on every update, so a needless one would redeliver old records.
        if not unchanged:
            lambda_.update_event_source_mapping(
                UUID=uuid, FunctionName=function, Enabled=True, **updatable
            )
    else:
        uuid = lambda_.create_event_source_mapping(
            FunctionName=function, EventSourceArn=source_arn, Enabled=True, **config
        )["UUID"]
    return uuid


def allow_invoke(aws: Aws, function: str, service: str, source_arn: str) -> None:
    """The resource policy real AWS needs before a service (events.amazonaws.com,
    apigateway.amazonaws.com, s3.amazonaws.com...) may invoke the function from `source_arn`.
    LocalStack does not check it; it is kept so the pattern is right on AWS."""
    lambda_ = aws.client("lambda")
    statement = re.sub(r"[^A-Za-z0-9_-]", "-", f"{service.split('.')[0]}-{source_arn}")[-100:]
    try:
        lambda_.add_permission(
            FunctionName=function,
            StatementId=statement,
            Action="lambda:InvokeFunction",
            Principal=service,
            SourceArn=source_arn,
        )
    except lambda_.exceptions.ResourceConflictException:
        pass  # granted by an earlier run


# -- EventBridge ---------------------------------------------------------------------
def ensure_event_bus(aws: Aws, name: str) -> str:
    """A custom event bus; returns its ARN."""
    events = aws.client("events")
    try:
        arn: str = events.describe_event_bus(Name=name)["Arn"]
        return arn
    except events.exceptions.ResourceNotFoundException:
        return events.create_event_bus(Name=name)["EventBusArn"]


def ensure_rule(
    aws: Aws,
    name: str,
    *,
    targets: list[dict[str, Any]],
    schedule: str | None = None,
    pattern: dict[str, Any] | None = None,
    bus: str = "default",
    description: str = "",
) -> str:
    """A rule with a schedule or an event pattern, and exactly these targets; returns its ARN."""
    events = aws.client("events")
    params: dict[str, Any] = {
        "Name": name,
        "EventBusName": bus,
        "State": "ENABLED",
        "Description": description,
    }
    if schedule:
        params["ScheduleExpression"] = schedule
    if pattern:
        params["EventPattern"] = json.dumps(pattern)
    arn = events.put_rule(**params)["RuleArn"]
    existing = {
        t["Id"] for t in events.list_targets_by_rule(Rule=name, EventBusName=bus)["Targets"]
    }
    stale = existing - {t["Id"] for t in targets}
    if stale:
        events.remove_targets(Rule=name, EventBusName=bus, Ids=sorted(stale))
    events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    return arn


# -- S3 and SNS ----------------------------------------------------------------------
def ensure_bucket(aws: Aws, name: str) -> str:
    """A bucket; returns its name."""
    s3 = aws.client("s3")
    try:
        s3.head_bucket(Bucket=name)
    except ClientError:
        s3.create_bucket(Bucket=name)
    return name


def ensure_topic(aws: Aws, name: str) -> str:
    """A topic (create_topic is idempotent by name); returns its ARN."""
    attributes = {"FifoTopic": "true"} if name.endswith(".fifo") else {}
    return aws.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]


def subscribe_queue(
    aws: Aws, topic_arn: str, queue: Queue, *, filter_policy: dict[str, Any] | None = None
) -> str:
    """Deliver the topic's messages to the queue (raw: the body is the message itself);
    returns the subscription ARN. Also allows the topic to send to the queue."""
    sns = aws.client("sns")
    attributes = {"RawMessageDelivery": "true"}
    if filter_policy is not None:
        attributes["FilterPolicy"] = json.dumps(filter_policy)
    allow_service_to_send(aws, queue, "sns.amazonaws.com", [topic_arn])
    found = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    for subscription in found:
        if subscription["Endpoint"] == queue.arn:
            arn: str = subscription["SubscriptionArn"]
            for key, value in attributes.items():
                sns.set_subscription_attributes(
                    SubscriptionArn=arn, AttributeName=key, AttributeValue=value
                )
            return arn
    return sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue.arn,
        Attributes=attributes,
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]


# -- Step Functions ------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def render_state_machine(path: Path, substitutions: dict[str, str]) -> str:
    """The ASL file with every `${Name}` replaced (resource ARNs are filled in at bootstrap,
    never written into the file). A placeholder without a value, or a value without a
    placeholder, is an error naming it."""
    text = path.read_text()
    used = set(_PLACEHOLDER.findall(text))
    missing, unused = used - substitutions.keys(), substitutions.keys() - used
    if missing or unused:
        raise ValueError(
            f"{path.name}: placeholders without a value: {sorted(missing)}; "
            f"values without a placeholder: {sorted(unused)}"
        )
    rendered = _PLACEHOLDER.sub(lambda m: substitutions[m.group(1)], text)
    json.loads(rendered)  # fail here, naming the file, rather than inside CreateStateMachine
    return rendered


def ensure_state_machine(
    aws: Aws,
    name: str,
    definition_file: str,
    substitutions: dict[str, str] | None = None,
    *,
    kind: str = "STANDARD",
) -> str:
    """A state machine from `state_machines/<definition_file>`, its definition kept up to
    date; returns its ARN."""
    sfn = aws.client("stepfunctions")
    definition = render_state_machine(STATE_MACHINES_DIR / definition_file, substitutions or {})
    role = ensure_role(aws, STATES_ROLE, "states.amazonaws.com")
    try:  # the same name, definition and role again returns the one there (AWS's and LocalStack's)
        created = sfn.create_state_machine(
            name=name, definition=definition, roleArn=role, type=kind
        )
        return str(created["stateMachineArn"])
    except sfn.exceptions.StateMachineAlreadyExists:  # with another definition: brought up to date
        arn = f"arn:aws:states:{aws.region}:{aws.account_id}:stateMachine:{name}"
        sfn.update_state_machine(stateMachineArn=arn, definition=definition)
        return arn
