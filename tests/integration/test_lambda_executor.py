"""Lambda in the sandbox behaves as AWS Lambda does: context, timeouts, errors, retries,
logs, warm reuse and concurrency. In embedded mode this exercises the local-process executor."""

from __future__ import annotations

import base64
import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sandbox import provision
from sandbox.aws import Aws
from sandbox.harness import await_value, unique_name
from sandbox.observe import log_lines
from sandbox.patterns import find
from tests.conftest import zip_files

pytestmark = pytest.mark.integration
PROBE = Path(__file__).parent / "lambdas" / "probe"


@pytest.fixture(scope="module")
def make_function(aws: Aws):
    """Factory: create a function with a unique name; all are deleted at the end."""
    lambda_ = aws.client("lambda")
    role = provision.ensure_role(aws, provision.LAMBDA_ROLE, "lambda.amazonaws.com")
    created: list[str] = []

    def make(code: bytes | None = None, **config: Any) -> str:
        name = unique_name("probe")
        params = {
            "Runtime": provision.LAMBDA_RUNTIME,
            "Handler": "app.handler",
            "Timeout": 5,
            **config,
        }
        lambda_.create_function(
            FunctionName=name,
            Role=role,
            Code={"ZipFile": code or provision.package_handler(PROBE)},
            **params,
        )
        created.append(name)
        provision.wait_for_function(lambda_, name)
        return name

    yield make
    for name in reversed(created):
        lambda_.delete_function(FunctionName=name)


def invoke(aws: Aws, name: str, event: dict[str, Any] | None = None) -> dict[str, Any]:
    response = aws.client("lambda").invoke(
        FunctionName=name, Payload=json.dumps(event or {}), LogType="Tail"
    )
    return {
        "error": response.get("FunctionError"),
        "payload": json.loads(response["Payload"].read()),
        "log": base64.b64decode(response.get("LogResult", "")).decode(),
    }


def test_context_and_environment_are_lambdas(aws: Aws, make_function) -> None:
    name = make_function(Timeout=7, MemorySize=256, Environment={"Variables": {"CUSTOM": "yes"}})
    result = invoke(aws, name)["payload"]
    assert result["function_name"] == name
    assert result["function_version"] == "$LATEST"
    assert result["invoked_function_arn"].endswith(f":function:{name}")
    assert result["memory_limit_in_mb"] == "256"  # a string, as in Lambda's Python runtime
    assert result["log_group_name"] == f"/aws/lambda/{name}"
    assert result["log_stream_name"]
    assert 0 < result["remaining_ms"] <= 7000
    assert result["custom"] == "yes" and result["has_credentials"]
    assert result["endpoint"].startswith("http://")


def test_a_warm_environment_is_reused(aws: Aws, make_function) -> None:
    name = make_function()
    first, second = invoke(aws, name), invoke(aws, name)
    assert first["payload"]["pid"] == second["payload"]["pid"]
    assert "Init Duration" in first["log"] and "Init Duration" not in second["log"]


def test_timeout_fails_as_lambda_reports_it_and_replaces_the_environment(
    aws: Aws, make_function
) -> None:
    name = make_function(Timeout=1)
    before = invoke(aws, name)["payload"]
    timed_out = invoke(aws, name, {"sleep": 3})
    assert timed_out["error"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in timed_out["payload"]["errorMessage"]
    assert "Task timed out after 1.00 seconds" in timed_out["log"]
    after = invoke(aws, name)["payload"]
    assert after["pid"] != before["pid"] and after["started"] != before["started"]


def test_an_exception_comes_back_in_lambdas_error_shape(aws: Aws, make_function) -> None:
    name = make_function()
    result = invoke(aws, name, {"fail": "bad input: no id"})
    assert result["error"] == "Unhandled"
    assert result["payload"]["errorType"] == "ValueError"
    assert result["payload"]["errorMessage"] == "bad input: no id"
    assert any("app.py" in line for line in result["payload"]["stackTrace"])
    assert "[ERROR] ValueError: bad input: no id" in result["log"]


def test_a_module_that_cannot_be_imported_is_an_init_error(aws: Aws, make_function) -> None:
    name = make_function(code=zip_files({"app.py": "import no_such_module\n"}))
    result = invoke(aws, name)
    assert result["error"] == "Unhandled"
    assert result["payload"]["errorType"] == "Runtime.ImportModuleError"
    assert "no_such_module" in result["payload"]["errorMessage"]


def test_what_the_handler_prints_reaches_cloudwatch_logs(aws: Aws, make_function) -> None:
    name = make_function()
    marker = unique_name("marker")
    invoke(aws, name, {"print": marker})
    assert await_value(
        lambda: log_lines(aws, name, marker), timeout=15, waiting_for=f"{marker} in CloudWatch Logs"
    )


def test_invocations_and_errors_reach_cloudwatch_metrics(aws: Aws, make_function) -> None:
    """Counted per function and published together, the sums are one per invocation."""
    name = make_function()
    for _ in range(3):
        invoke(aws, name)
    invoke(aws, name, {"fail": "boom"})
    cloudwatch = aws.client("cloudwatch")

    def total(metric: str) -> float:
        now = datetime.now(UTC)
        datapoints = cloudwatch.get_metric_statistics(
            Namespace="AWS/Lambda",
            MetricName=metric,
            Dimensions=[{"Name": "FunctionName", "Value": name}],
            StartTime=now - timedelta(minutes=5),
            EndTime=now + timedelta(minutes=1),
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"]
        return sum(point["Sum"] for point in datapoints)

    await_value(lambda: total("Invocations"), until=lambda n: n == 4, timeout=15)
    assert total("Errors") == 1


def test_a_failing_async_invocation_is_retried_then_sent_to_the_dlq(
    aws: Aws, make_function
) -> None:
    dlq = provision.ensure_queue(aws, unique_name("probe-dlq"))
    name = make_function(DeadLetterConfig={"TargetArn": dlq.arn})
    aws.client("lambda").put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    marker = unique_name("lost-not")
    aws.client("lambda").invoke(
        FunctionName=name,
        InvocationType="Event",
        Payload=json.dumps({"fail": marker, "print": marker}),
    )
    sqs = aws.client("sqs")

    def dead_letters() -> list[dict[str, Any]]:
        received = sqs.receive_message(
            QueueUrl=dlq.url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        return received.get("Messages", [])

    messages = await_value(dead_letters, timeout=30, waiting_for="the failed event in the DLQ")
    assert json.loads(messages[0]["Body"]) == {"fail": marker, "print": marker}

    def attempts() -> int:
        return sum(1 for line in log_lines(aws, name, marker) if line.startswith(marker))

    assert (
        await_value(
            attempts,
            until=lambda n: n == 2,
            timeout=10,
            waiting_for="two attempts (one retry) in the logs",
        )
        == 2
    )


def test_concurrent_invocations_run_in_parallel_environments(aws: Aws, make_function) -> None:
    name = make_function()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: invoke(aws, name, {"sleep": 1.5}), range(4)))
    failed = [(result["payload"], result["log"]) for result in results if result["error"]]
    assert not failed, f"invocations failed: {failed}"
    pids = {result["payload"]["pid"] for result in results}
    assert len(pids) >= 2, f"expected parallel environments, all ran in {pids}"


NODE_HANDLER = """
exports.handler = async (event, context) => {
  console.log("node says", event.say);
  if (event.fail) throw new TypeError(event.fail);
  return { functionName: context.functionName, remaining: context.getRemainingTimeInMillis() };
};
"""


def test_nodejs_handlers_run_too(aws: Aws, make_function) -> None:
    name = make_function(
        code=zip_files({"index.js": NODE_HANDLER}), Runtime="nodejs20.x", Handler="index.handler"
    )
    ok = invoke(aws, name, {"say": "hi"})
    assert ok["error"] is None
    assert ok["payload"]["functionName"] == name and 0 < ok["payload"]["remaining"] <= 5000
    assert "node says hi" in ok["log"]
    failed = invoke(aws, name, {"fail": "no id"})
    assert failed["error"] == "Unhandled"
    assert failed["payload"]["errorType"] == "TypeError"
    assert failed["payload"]["errorMessage"] == "no id"


def test_hot_reload_folder_picks_up_changed_code(aws: Aws, sandbox, tmp_path: Path) -> None:
    """LocalStack's hot-reload bucket points a function at a local folder; an edit there
    takes effect on the next invocation."""
    if sandbox.name != "embedded":
        pytest.skip("hot-reload folders here are host paths: embedded mode only")
    # GIVEN a function whose code is a local folder
    handler = tmp_path / "app.py"
    handler.write_text("def handler(event, context):\n    return 'first'\n")
    lambda_ = aws.client("lambda")
    name = unique_name("hot")
    lambda_.create_function(
        FunctionName=name,
        Role=provision.ensure_role(aws, provision.LAMBDA_ROLE, "lambda.amazonaws.com"),
        Runtime=provision.LAMBDA_RUNTIME,
        Handler="app.handler",
        Code={"S3Bucket": "hot-reload", "S3Key": str(tmp_path)},
    )
    try:
        lambda_.get_waiter("function_active_v2").wait(FunctionName=name)
        assert invoke(aws, name)["payload"] == "first"
        # WHEN the code changes on disk
        handler.write_text("def handler(event, context):\n    return 'second'\n")
        # THEN the next invocation runs the new code
        assert invoke(aws, name)["payload"] == "second"
    finally:
        lambda_.delete_function(FunctionName=name)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_child_process_started_by_a_handler_that_times_out_is_ended(
    aws: Aws, sandbox, make_function
) -> None:
    """On AWS a timed-out environment is replaced whole; nothing its handler started lives on."""
    if sandbox.name != "embedded":
        pytest.skip("the child's pid is a host pid in embedded mode only")
    name = make_function(Timeout=1)
    timed_out = invoke(aws, name, {"spawn": True, "sleep": 3})
    assert "Task timed out" in timed_out["payload"]["errorMessage"]
    child = int(re.search(r"child pid (\d+)", timed_out["log"]).group(1))
    assert await_value(
        lambda: not alive(child), timeout=10, waiting_for=f"the handler's child {child} to end"
    )


def test_a_payload_over_6_mb_is_refused_as_aws_refuses_it(aws: Aws, make_function) -> None:
    name = make_function()
    with pytest.raises(ClientError) as refused:
        aws.client("lambda").invoke(FunctionName=name, Payload=json.dumps({"a": "x" * (7 << 20)}))
    assert refused.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_an_async_payload_over_256_kb_is_refused(aws: Aws, make_function) -> None:
    name = make_function()
    with pytest.raises(ClientError) as refused:
        aws.client("lambda").invoke(
            FunctionName=name, InvocationType="Event", Payload=json.dumps({"a": "x" * 300_000})
        )
    assert refused.value.response["Error"]["Code"] == "RequestEntityTooLargeException"


def test_a_handler_imports_boto3_but_not_what_only_the_sandbox_installed(
    aws: Aws, make_function
) -> None:
    """A forgotten requirements.txt fails here as on AWS; boto3 is the runtime's."""
    with_boto3 = make_function(
        code=zip_files({"app.py": "import boto3\ndef handler(e, c):\n    return boto3.__name__\n"})
    )
    assert invoke(aws, with_boto3)["payload"] == "boto3"
    with_yaml = make_function(
        code=zip_files({"app.py": "import yaml\ndef handler(e, c):\n    return 1\n"})
    )
    failed = invoke(aws, with_yaml)
    assert failed["payload"]["errorType"] == "Runtime.ImportModuleError"
    assert "yaml" in failed["payload"]["errorMessage"]


def test_provisioned_functions_run_from_a_folder_of_this_host(aws: Aws, sandbox) -> None:
    """In embedded mode a pattern's function is made from a folder (provision._function_code):
    it runs with its vendored dependencies, and provisioning it again changes nothing."""
    if sandbox.name != "embedded":
        pytest.skip("functions in containers are made from a zip, as on AWS")
    counters = find("sequence-generator").provision(aws).counters_table
    lambda_ = aws.client("lambda")
    name = unique_name("folder")

    def provision_it() -> None:  # with a fresh Aws, as another `make up` would
        provision.ensure_function(
            Aws(aws.endpoint_url),
            name,
            "sequence_generator",
            handler="app.next_handler",
            environment={"COUNTERS_TABLE": counters},
        )

    provision_it()
    try:
        first = lambda_.get_function(FunctionName=name)
        location = first["Code"]["Location"]
        assert location.startswith(f"file://{provision.BUILD_DIR / 'code'}/"), location
        answer = lambda_.invoke(FunctionName=name, Payload=json.dumps({"scope": name}))
        assert json.loads(answer["Payload"].read()) == {"scope": name, "value": 1}
        provision_it()
        again = lambda_.get_function(FunctionName=name)["Configuration"]
        assert again["LastModified"] == first["Configuration"]["LastModified"]
    finally:
        lambda_.delete_function(FunctionName=name)
