"""The embedded entry's LocalStack patches: each one finds its target in the pinned
LocalStack and does what it says. No sandbox needed: each is applied, checked, undone."""

from __future__ import annotations

import functools
import gc
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip(
    "localstack",
    reason="LocalStack is not installed on this host (Docker mode runs it in a container)",
)
from localstack.utils.patch import Patch, Patches

from sandbox.embedded import dynamodb_local, entry, launcher


@pytest.fixture
def applied() -> Iterator[Callable[[Patch], Patch]]:
    """Applies a patch for one test and undoes it afterwards."""
    patches: list[Patch] = []

    def apply(patch: Patch) -> Patch:
        assert patch.old is not None, f"the target of {patch} is missing"
        patch.apply()
        patches.append(patch)
        return patch

    yield apply
    for patch in reversed(patches):
        patch.undo()


def test_every_patch_is_one_of_localstacks_patches() -> None:
    """LocalStack's Patch raises when its target is gone, so an upgrade cannot silently
    leave a patch unapplied."""
    for make_patch in entry.PATCHES:
        assert isinstance(make_patch(), Patch)
    with pytest.raises(AttributeError):
        Patch(SimpleNamespace(), "gone", lambda: None).apply()


def dynamodb_server(monkeypatch, installed: str, **settings: Any) -> Any:
    """LocalStack's DynamodbServer as its config would make it, DynamoDB Local installed in
    `installed`, without starting anything."""
    from localstack.services.dynamodb import server as dynamodb_server
    from localstack.services.dynamodb.server import DynamodbServer

    agent = SimpleNamespace(get_ddb_agent_jar_path=lambda: "/lib/ddb-local-loader-0.1.jar")
    package = SimpleNamespace(get_installer=lambda: agent, get_installed_dir=lambda: installed)
    monkeypatch.setattr(dynamodb_server, "dynamodblocal_package", package)
    server = DynamodbServer.__new__(DynamodbServer)
    server.__dict__.update(
        heap_size="256m",
        _port=4000,
        db_path=None,
        delay_transient_statuses=False,
        optimize_db_before_startup=False,
        share_db=False,
    )
    server.__dict__.update(settings)
    return server


def test_dynamodb_local_starts_without_the_agent_and_with_a_light_jvm(applied, monkeypatch) -> None:
    applied(entry.dynamodb_local_without_agent())
    command = dynamodb_server(monkeypatch, "/ddb", share_db=True)._create_shell_command()
    assert not any(arg.startswith("-javaagent:") for arg in command)
    assert command[1 : 1 + len(entry.LIGHT_JVM)] == list(entry.LIGHT_JVM)
    assert command[-4:] == ["-port", "4000", "-inMemory", "-sharedDb"]


def test_dynamodb_local_started_early_is_the_one_localstack_would_start(
    applied, monkeypatch, tmp_path
) -> None:
    """Otherwise LocalStack would not adopt it, and would start a second JVM."""
    applied(entry.dynamodb_local_without_agent())
    installed = str(tmp_path / "dynamodb-local" / "2")  # LocalStack's DynamoDBLocal, version 2
    server = dynamodb_server(monkeypatch, installed, _port=4321, heap_size="300m")
    early = dynamodb_local.command(tmp_path, 4321, entry.LIGHT_JVM, "300m")
    assert server._create_shell_command() == early


def started(code: str) -> tuple[list[str], subprocess.Popen[bytes]]:
    command = [sys.executable, "-c", code]
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
    return command, subprocess.Popen(command, **output)  # type: ignore[call-overload]


def test_localstack_adopts_the_early_process_when_it_would_run_the_same_command(applied) -> None:
    from localstack.services.dynamodb import server

    command, process = started("print('started early')")
    applied(entry.dynamodb_local_adopted(entry.EarlyProcess(command, process)))
    lines: list[str] = []
    thread = server.ShellCommandThread(command, log_listener=lambda line, **_: lines.append(line))
    thread.run_cmd(None)  # in this thread: its first (and only) run
    assert thread.process is process and process.returncode == 0
    assert [line.strip() for line in lines] == ["started early"]


def test_localstack_runs_its_own_command_and_the_early_process_ends(applied) -> None:
    from localstack.services.dynamodb import server

    command, process = started("import time; time.sleep(60)")
    applied(entry.dynamodb_local_adopted(entry.EarlyProcess(command, process)))
    own = [sys.executable, "-c", "print('started by LocalStack')"]
    lines: list[str] = []
    thread = server.ShellCommandThread(own, log_listener=lambda line, **_: lines.append(line))
    thread.run_cmd(None)
    assert process.returncode is not None  # ended, not left running beside LocalStack's own
    assert thread.process is not process
    assert [line.strip() for line in lines] == ["started by LocalStack"]


def test_an_early_process_localstack_never_asked_for_ends() -> None:
    command, process = started("import time; time.sleep(600)")
    taking = threading.Thread(target=entry.EarlyProcess(command, process).take, args=(None,))
    taking.start()
    taking.join(10)
    assert not taking.is_alive(), "the early process was waited for, not ended"
    assert process.returncode is not None


def test_a_permission_added_while_a_function_starts_waits_for_the_start_to_be_written(
    monkeypatch,
) -> None:
    """Otherwise AddPermission writes back the version it read as Pending, over the start's
    Active, and the function stays Pending for good."""
    from localstack.services.lambda_.invocation.lambda_service import LambdaService
    from localstack.services.lambda_.provider import LambdaProvider

    writing, written = threading.Event(), threading.Event()
    order: list[str] = []

    @functools.wraps(LambdaService.update_version_state)
    def start_written(*_: Any) -> None:
        writing.set()
        written.wait(10)
        order.append("start written")

    @functools.wraps(LambdaProvider.add_permission)
    def permission_added(*_: Any) -> None:
        order.append("permission added")

    monkeypatch.setattr(LambdaService, "update_version_state", start_written)
    monkeypatch.setattr(LambdaProvider, "add_permission", permission_added)
    patches = entry.function_start_not_undone()
    patches.apply()
    try:
        start = threading.Thread(target=LambdaService.update_version_state, args=(None,) * 3)
        start.start()
        assert writing.wait(10)
        permission = threading.Thread(target=LambdaProvider.add_permission, args=(None,) * 2)
        permission.start()
        permission.join(0.3)
        assert permission.is_alive(), "AddPermission ran while the start was being written"
        written.set()
        start.join(10)
        permission.join(10)
        assert order == ["start written", "permission added"]
    finally:
        patches.undo()


def test_kinesis_mock_starts_with_the_listen_local_script(applied, monkeypatch) -> None:
    from localstack.services.kinesis.kinesis_mock_server import KinesisMockNodeServer

    monkeypatch.setattr(KinesisMockNodeServer, "_environment_variables", {"A": "1"})
    applied(entry.kinesis_mock_on_this_machine_only())
    server = KinesisMockNodeServer.__new__(KinesisMockNodeServer)
    server._exe_path = Path("/lib/kinesis-local/main.js")
    command, env = server._create_shell_command()
    assert command == ["node", "--require", entry.NODE_LISTEN_LOCAL, server._exe_path]
    assert env == {"A": "1"}
    assert Path(entry.NODE_LISTEN_LOCAL).is_file()


def test_the_gateway_listens_only_on_its_configured_host(applied, monkeypatch) -> None:
    from localstack import config
    from localstack.config import HostAndPort
    from twisted.internet import endpoints, reactor

    monkeypatch.setattr(config, "GATEWAY_LISTEN", [HostAndPort("127.0.0.1", 4999)])
    applied(entry.gateway_bound_to_its_host())
    assert endpoints.TCP4ServerEndpoint(reactor, 4999)._interface == "127.0.0.1"
    assert endpoints.TCP4ServerEndpoint(reactor, 5000)._interface == ""


def test_the_first_idle_poll_waits_no_longer_than_the_maximum(applied) -> None:
    from localstack.services.lambda_.event_source_mapping import esm_worker

    applied(entry.first_idle_poll_wait_within_the_maximum())
    backoff = esm_worker.ExponentialBackoff(initial_interval=1, max_interval=0.2)
    assert backoff.initial_interval == 0.2  # was 1: the first wait ignored the maximum
    assert backoff.max_interval == 0.2


@pytest.mark.parametrize(
    ("invocation_type", "limit"),
    [("RequestResponse", 6 * 1024 * 1024), ("Event", 256 * 1024)],
)
def test_payloads_over_lambdas_limits_are_refused(applied, invocation_type, limit) -> None:
    """Over the limit: AWS's RequestEntityTooLargeException (413). At the limit: on to
    LocalStack's own invoke (which here finds no such function)."""
    from localstack.services.lambda_.invocation.lambda_models import (
        RequestEntityTooLargeException,
    )
    from localstack.services.lambda_.invocation.lambda_service import LambdaService

    applied(entry.payloads_within_lambdas_limits())
    call = {
        "function_name": "absent",
        "qualifier": None,
        "region": "us-east-1",
        "account_id": "000000000000",
        "invocation_type": invocation_type,
        "client_context": None,
        "request_id": "r1",
    }
    with pytest.raises(RequestEntityTooLargeException) as refused:
        LambdaService.invoke(SimpleNamespace(), **call, payload=b"x" * (limit + 1))
    assert refused.value.status_code == 413
    assert f"smaller than {limit} bytes" in refused.value.message
    with pytest.raises(Exception, match="Function not found") as passed_on:
        LambdaService.invoke(SimpleNamespace(), **call, payload=b"x" * limit)
    assert not isinstance(passed_on.value, RequestEntityTooLargeException)


def test_another_localstack_version_is_refused_with_a_clear_message(monkeypatch, capsys) -> None:
    monkeypatch.setattr(launcher.metadata, "version", lambda _name: "4.15.0")
    with pytest.raises(SystemExit) as exit_:
        entry.main()
    assert exit_.value.code == 2
    message = capsys.readouterr().err
    assert "4.15.0" in message and launcher.PATCHED_LOCALSTACK_VERSION in message
    assert "make deps" in message and "Traceback" not in message


def test_a_role_is_assumed_once_per_service_and_settings(applied) -> None:
    from localstack.aws.connect import InternalClientFactory

    assumed: list[str] = []

    class CountingFactory(InternalClientFactory):
        """STS answers from here: each assume_role is counted, nothing is sent."""

        def __call__(self, **_: Any) -> Any:
            return SimpleNamespace(sts=SimpleNamespace(request_metadata=lambda **_: self))

        def assume_role(self, RoleArn: str, **_: Any) -> dict[str, Any]:  # noqa: N803
            assumed.append(RoleArn)
            keys = ("AccessKeyId", "SecretAccessKey", "SessionToken")
            return {"Credentials": {key: f"{key}-{len(assumed)}" for key in keys}}

    applied(entry.role_sessions_reused())
    factory, role = CountingFactory(), "arn:aws:iam::000000000000:role/r"

    def session(principal: str, region: str) -> Any:
        return factory.with_assumed_role(
            role_arn=role, service_principal=principal, region_name=region
        )

    first, again = session("states", "us-east-1"), session("states", "us-east-1")
    other, elsewhere = session("events", "us-east-1"), session("states", "eu-west-1")
    assert first is again
    assert len({id(first), id(other), id(elsewhere)}) == 3
    assert assumed == [role] * 3


def test_every_service_patch_is_one_of_localstacks_patches() -> None:
    for service, patches in entry.WHEN_LOADED.items():
        for make_patch in patches:
            made = make_patch()
            for patch in made.patches if isinstance(made, Patches) else [made]:
                assert isinstance(patch, Patch) and patch.old is not None, (service, patch)


def test_a_services_patches_apply_when_localstack_creates_it(applied) -> None:
    """Once, before the service serves a request; other services' patches wait for theirs."""
    from localstack.services.plugins import ServicePluginAdapter
    from localstack.services.stepfunctions.asl.static_analyser.usage_metrics_static_analyser import (  # noqa: E501
        UsageMetricsStaticAnalyser,
    )

    analyse = UsageMetricsStaticAnalyser.process
    applied(entry.service_patches_applied_as_services_load())
    created = ServicePluginAdapter("sqs", create_service=lambda: "sqs service").create_service()
    assert created == "sqs service"
    assert UsageMetricsStaticAnalyser.process is analyse
    plugin = ServicePluginAdapter("stepfunctions", create_service=lambda: "sfn service")
    try:
        assert plugin.create_service() == "sfn service"
        assert UsageMetricsStaticAnalyser.process is not analyse
        assert UsageMetricsStaticAnalyser.process('{"StartAt": "A"}') is None  # not parsed
        patched = UsageMetricsStaticAnalyser.process
        plugin.create_service()  # a service loaded again is not patched twice
        assert UsageMetricsStaticAnalyser.process is patched
    finally:
        for patch in [p for p in Patch.applied_patches if p.obj is UsageMetricsStaticAnalyser]:
            patch.undo()


def test_a_route_added_compiles_itself_only_and_the_others_match_as_before(
    applied, monkeypatch
) -> None:
    from rolo import Router
    from werkzeug.exceptions import NotFound
    from werkzeug.routing import Rule

    applied(entry.routes_added_without_compiling_the_others())
    router: Router = Router()
    queue = router.add("/queues/<name>", endpoint="queue")
    router.add("/files/<path:key>", endpoint="file", methods=["PUT"])
    router.add("/accounts/<regex('[0-9]{3}'):account>/x", endpoint="account")
    compiled: list[str] = []
    compile_rule = Rule.compile

    def compile_counted(rule: Rule) -> None:
        compiled.append(rule.rule)
        compile_rule(rule)

    monkeypatch.setattr(Rule, "compile", compile_counted)
    replaced = weakref.ref(router.url_map)
    router.add("/later", endpoint="later")
    assert compiled == ["/later"]  # not the three routes before it, anew
    gc.collect()
    assert replaced() is None, "the map a route was added to is still held by the new one"

    urls = router.url_map.bind("localhost")
    assert urls.match("/queues/q1")[0] == "queue" and urls.match("/queues/q1")[1]["name"] == "q1"
    assert urls.match("/files/a/b.txt", method="PUT")[1]["key"] == "a/b.txt"
    assert urls.match("/accounts/123/x")[1]["account"] == "123"
    with pytest.raises(NotFound):
        urls.match("/accounts/12/x")
    assert urls.match("/later")[0] == "later"
    assert urls.build("queue", {"name": "q2", "__host__": "localhost"}) == "/queues/q2"
    router.remove(queue)
    with pytest.raises(NotFound):
        router.url_map.bind("localhost").match("/queues/q1")
    assert router.url_map.bind("localhost").match("/later")[0] == "later"


def test_dynamodb_local_that_cannot_start_early_is_left_to_localstack(
    monkeypatch, capsys, tmp_path
) -> None:
    from localstack import config

    monkeypatch.setattr(config, "DYNAMODB_LOCAL_PORT", 4000)
    monkeypatch.setattr(config.dirs, "var_libs", str(tmp_path))  # no Java laid out there
    monkeypatch.setenv("PATH", str(tmp_path))  # nor on the PATH
    assert entry.start_dynamodb_local_at_once() is None
    assert "Starting DynamoDB Local early failed" in capsys.readouterr().err
