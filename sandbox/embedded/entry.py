"""Start LocalStack's runtime in this process, with the patches the embedded mode needs.

The launcher runs this module as the sandbox's main process (`python -m sandbox.embedded.entry`).
Every patch goes through LocalStack's own `Patch`, which raises if its target is gone, and
they are written against one LocalStack version: `check_localstack_version` refuses another.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localstack.utils.patch import Patch, Patches

from sandbox.embedded import dynamodb_local
from sandbox.embedded.launcher import (
    PRESTART_BACKENDS,
    WrongLocalStackVersion,
    check_localstack_version,
)
from sandbox.health import free_port

# DynamoDB Local serves one developer: the client compiler alone and the serial collector
# start it sooner and leave it smaller and quieter when idle than the server defaults. Its
# heap starts small and gives memory back after a burst: by default the JVM commits the whole
# -Xmx (256 MB) up front, and a burst's garbage keeps ~75 MB of it resident for good. Docker
# mode passes the same options as JAVA_TOOL_OPTIONS (docker-compose.yml).
LIGHT_JVM = (
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    "-Xss512k",
    "-Xms16m",
    "-XX:MinHeapFreeRatio=10",
    "-XX:MaxHeapFreeRatio=30",
)

# AWS Lambda's invocation payload limits (bytes): RequestResponse and Event.
MAX_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
MAX_ASYNC_PAYLOAD_BYTES = 256 * 1024


def dynamodb_local_without_agent() -> Patch:
    """LocalStack adds `-javaagent:ddb-local-loader` (a patch jar it downloads) to DynamoDB
    Local's command line; offline there is no such jar and the JVM refuses to start. The patch
    only lifts the GSI limit, so we start DynamoDB Local without it (and with LIGHT_JVM)."""
    from localstack.services.dynamodb.server import DynamodbServer

    def without_agent(create_shell_command: Any, self: DynamodbServer) -> list[str]:
        command = [arg for arg in create_shell_command(self) if not arg.startswith("-javaagent:")]
        return [command[0], *LIGHT_JVM, *command[1:]]

    return Patch.function(DynamodbServer._create_shell_command, without_agent)


class EarlyProcess:
    """A backend's process started before LocalStack asks for it, until LocalStack takes it."""

    def __init__(self, command: list[str], process: subprocess.Popen[bytes]) -> None:
        self.command = command
        self._process: subprocess.Popen[bytes] | None = process
        self._lock = threading.Lock()

    def take(self, command: list[str] | None) -> subprocess.Popen[bytes] | None:
        """The process, if it still runs this command; otherwise (or for None) it ends."""
        with self._lock:
            process, self._process = self._process, None
        if process is None:
            return None
        if command == self.command and process.poll() is None:
            return process
        if command is not None:
            print(
                f"The process started early was not used: LocalStack wants {command}, "
                f"not {self.command} (exit code {process.poll()}); LocalStack starts its own.",
                file=sys.stderr,
            )
        process.kill()
        process.wait()
        return None


def start_dynamodb_local_at_once() -> EarlyProcess | None:
    """DynamoDB Local's JVM needs ~1.5 s of a core before it answers, and LocalStack started it
    ~1.3 s into its own start (after importing its DynamoDB modules), while the second core sat
    idle: `make up`'s first tables waited for it. Start it first thing, on a free port that
    LocalStack's config then holds for DynamoDB Local (unless DYNAMODB_LOCAL_PORT is set)."""
    from localstack import config

    if not config.DYNAMODB_LOCAL_PORT:
        config.DYNAMODB_LOCAL_PORT = free_port()
    var_libs = Path(config.dirs.var_libs)
    command = dynamodb_local.command(
        var_libs, config.DYNAMODB_LOCAL_PORT, LIGHT_JVM, config.DYNAMODB_HEAP_SIZE
    )
    try:
        process = subprocess.Popen(
            command,
            env=dynamodb_local.environment(var_libs),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as error:  # LocalStack starts it on first use, and says what is wrong
        print(f"Starting DynamoDB Local early failed: {error}", file=sys.stderr)
        return None
    return EarlyProcess(command, process)


def dynamodb_local_adopted(early: EarlyProcess) -> Patch:
    """LocalStack runs DynamoDB Local in a ShellCommandThread made in its server module. Given
    the same command as the JVM started early, the thread's first run waits on that process
    instead of starting another; a different command (a setting changed) ends the early one.
    Restarts after the JVM died are LocalStack's own."""
    from localstack.services.dynamodb import server
    from localstack.utils.run import ShellCommandThread

    class Adopting(ShellCommandThread):
        def __init__(self, cmd: list[str], **kwargs: Any) -> None:
            super().__init__(cmd, **kwargs)
            self.early = early.take(cmd)

        def do_run_cmd(self) -> None:
            process, self.early = self.early, None
            if process is None:
                super().do_run_cmd()
                return
            self.process = process  # type: ignore[assignment]  # LocalStack's starts as None
            self.started.set()
            for line in process.stdout or ():
                self.log_listener(line.decode(errors="replace"))  # DynamoDB's passes one
            process.wait()

    return Patch(server, "ShellCommandThread", Adopting)


NODE_LISTEN_LOCAL = str(Path(__file__).with_name("node_listen_local.js"))


def kinesis_mock_on_this_machine_only() -> Patch:
    """kinesis-mock (DynamoDB streams) listens on 0.0.0.0, hard-coded; start it with a
    preloaded script that makes its servers listen on 127.0.0.1 instead."""
    from localstack.services.kinesis.kinesis_mock_server import KinesisMockNodeServer

    def preloaded(create_shell_command: Any, self: KinesisMockNodeServer) -> Any:
        command, env = create_shell_command(self)
        return [command[0], "--require", NODE_LISTEN_LOCAL, *command[1:]], env

    return Patch.function(KinesisMockNodeServer._create_shell_command, preloaded)


def gateway_bound_to_its_host() -> Patch:
    """LocalStack's Twisted gateway listens on every interface whatever GATEWAY_LISTEN's host
    says; the sandbox must only be reachable from this machine."""
    from localstack import config
    from twisted.internet import endpoints

    hosts = {listen.port: listen.host for listen in config.GATEWAY_LISTEN}
    unbound = endpoints.TCP4ServerEndpoint

    def bound(reactor, port, backlog=50, interface=""):  # type: ignore[no-untyped-def]
        return unbound(reactor, port, backlog, interface or hosts.get(port, ""))

    return Patch(endpoints, "TCP4ServerEndpoint", bound)


def first_idle_poll_wait_within_the_maximum() -> Patch:
    """An event source mapping's first empty poll waits 0.5-1.5 s whatever
    LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC says (only later waits are
    capped by it); start the backoff at that maximum so a new message waits no longer."""
    from localstack.services.lambda_.event_source_mapping import esm_worker
    from localstack.utils.backoff import ExponentialBackoff

    def capped(initial_interval: float = 0.5, max_interval: float = 60, **kwargs: Any) -> Any:
        return ExponentialBackoff(
            initial_interval=min(initial_interval, max_interval),
            max_interval=max_interval,
            **kwargs,
        )

    return Patch(esm_worker, "ExponentialBackoff", capped)


MAX_REUSED_ROLE_SESSIONS = 256


def role_sessions_reused() -> Patch:
    """LocalStack assumes a role anew whenever a service acts as one: an STS call, then a new
    boto client (tens of ms of the GIL), for every Step Functions task, event source mapping and
    Lambda log handler. Its assumed-role credentials never expire, so the session of a (role,
    service, session name, region, endpoint, config) is made once and reused, as an AWS
    service keeps one for its duration. A session name LocalStack leaves out (a random one) is
    the first session's."""
    from localstack.aws.connect import ClientFactory

    sessions: dict[tuple[Any, ...], Any] = {}
    lock = threading.Lock()

    def reused(with_assumed_role: Any, self: ClientFactory, **arguments: Any) -> Any:
        key = (self, *sorted(arguments.items(), key=lambda item: item[0]))
        with lock:
            session = sessions.get(key)
        if session is None:
            session = with_assumed_role(self, **arguments)
            with lock:
                if len(sessions) >= MAX_REUSED_ROLE_SESSIONS:
                    sessions.clear()
                sessions[key] = session
        return session

    return Patch.function(ClientFactory.with_assumed_role, reused)


def payloads_within_lambdas_limits() -> Patch:
    """LocalStack leaves the payload limit to the runtime inside its Docker container
    (synchronous only); the local-process executor has none. Refuse what AWS refuses, with
    its error: over 6 MB synchronous, over 256 KB asynchronous."""
    from localstack.aws.api.lambda_ import InvocationType
    from localstack.services.lambda_.invocation.lambda_models import (
        RequestEntityTooLargeException,
    )
    from localstack.services.lambda_.invocation.lambda_service import LambdaService

    def within_limits(invoke: Any, self: LambdaService, *args: Any, **kwargs: Any) -> Any:
        payload = kwargs.get("payload") or b""
        asynchronous = kwargs.get("invocation_type") == InvocationType.Event
        limit = MAX_ASYNC_PAYLOAD_BYTES if asynchronous else MAX_SYNC_PAYLOAD_BYTES
        if len(payload) > limit:
            raise RequestEntityTooLargeException(
                f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
            )
        return invoke(self, *args, **kwargs)

    return Patch.function(LambdaService.invoke, within_limits)


def async_pollers_told_to_stop_together() -> Patch:
    """At shutdown LocalStack stops each function's poller of asynchronous invocations on a
    pool of 6 threads, each stop waiting for that poller's 2 s long poll to end: with ~70
    functions `make down` spent the whole 5 s LocalStack allows. Every poller is told first,
    so their long polls end together, within 2 s."""
    from localstack.services.lambda_.invocation.lambda_service import LambdaService

    def told_together(stop: Any, self: LambdaService) -> None:
        # LocalStack assigns the class attribute `dict[...]` where it meant an annotation.
        for manager in list(self.event_managers.values()):  # type: ignore[call-arg]
            if manager.poller is not None:
                manager.poller.stop()
        stop(self)

    return Patch.function(LambdaService.stop, told_together)


def function_start_not_undone() -> Patches:
    """AddPermission, RemovePermission, TagResource and UntagResource bump a function
    version's revision id by writing back a copy of the version read a moment before. When
    the function's start ends in between (`update_version_state` writes it Active), the copy
    puts "Pending" back, and the function stays Pending for good: `make up` met it once its
    functions started quickly (a permission added right after CreateFunction). Those writes
    and the start's are made one at a time."""
    from localstack.services.lambda_.invocation.lambda_service import LambdaService
    from localstack.services.lambda_.provider import LambdaProvider

    versions_written = threading.RLock()

    def one_at_a_time(write: Any, self: Any, *args: Any, **kwargs: Any) -> Any:
        with versions_written:
            return write(self, *args, **kwargs)

    writes = (
        LambdaService.update_version_state,
        LambdaProvider.add_permission,
        LambdaProvider.remove_permission,
        LambdaProvider.tag_resource,
        LambdaProvider.untag_resource,
    )
    return Patches([Patch.function(write, one_at_a_time) for write in writes])


def routes_added_without_compiling_the_others() -> Patch:
    """LocalStack's router adds a route by copying its URL map (copy on write, for requests
    being matched meanwhile), and the copy compiles every route already there anew: each of
    the 8 routes API Gateway adds as it loads cost a compile of all the others, ~0.4 s of
    LocalStack's one interpreter (SNS ~0.15 s more) in `make up`. The copy takes each route
    as compiled: a shallow copy whose map, converters and URL builders are the copy's own, so
    that no map replaced stays reachable from the new one."""
    import copy

    from rolo.routing import router
    from werkzeug.routing import Map

    def cloned(old: Map) -> Map:
        new = router._clone_map_without_rules(old)
        for rule in old.iter_rules():
            twin = copy.copy(rule)
            twin.map = new
            twin._converters = {name: copy.copy(c) for name, c in rule._converters.items()}
            for converter in twin._converters.values():
                converter.map = new
            twin._build = rule._build.__func__.__get__(twin)  # type: ignore[attr-defined]
            twin._build_unknown = rule._build_unknown.__func__.__get__(twin)  # type: ignore[attr-defined]
            if not twin.build_only:
                new._matcher.add(twin)
            new._rules_by_endpoint.setdefault(twin.endpoint, []).append(twin)
        new._remap = True
        return new

    return Patch(router, "_clone_map_with_rules", cloned)


def botocore_files_parsed_once() -> Patch:
    """Every boto session LocalStack and moto make (per request context, per store, per
    region check) has its own botocore loader, which parses the JSON files it reads anew:
    the S3 model to list regions, a service's model once for LocalStack and again for moto."""
    from botocore import loaders

    from sandbox.executor.python_runtime import parsed_once

    return Patch(loaders.JSONFileLoader, "load_file", parsed_once(loaders.JSONFileLoader.load_file))


def services_listed_once() -> Patch:
    """Each new botocore loader lists its known services (a walk of ~400 data folders) before
    it loads its first model; the folders do not change while LocalStack runs."""
    from botocore import loaders

    listed: dict[tuple[Any, ...], Any] = {}

    list_available_services = loaders.Loader.list_available_services  # an instance_cache

    def once(self: loaders.Loader, type_name: str) -> Any:
        key = (*self.search_paths, type_name)
        if key not in listed:
            listed[key] = list_available_services(self, type_name)
        return list(listed[key])

    return Patch(loaders.Loader, "list_available_services", once)


def regions_listed_once() -> Patch:
    """LocalStack lists a service's regions through a new boto3 session for every store it
    creates (each service, each account) and its region check; the list comes from botocore's
    data files, which do not change while it runs."""
    import boto3

    listed: dict[tuple[Any, ...], list[str]] = {}

    def once(get_available_regions: Any, self: boto3.Session, *args: Any, **kwargs: Any) -> Any:
        key = (*args, *sorted(kwargs.items()))
        if key not in listed:
            listed[key] = get_available_regions(self, *args, **kwargs)
        return list(listed[key])

    return Patch.function(boto3.Session.get_available_regions, once)


def state_machine_definitions_parsed_once() -> Patch:
    """CreateStateMachine parses the definition (ANTLR, in Python: ~50 ms of LocalStack's one
    interpreter) to validate it, then once more only to count which query language it uses
    for LocalStack's usage analytics, which the sandbox does not send (DISABLE_EVENTS)."""
    from localstack.services.stepfunctions.asl.static_analyser.usage_metrics_static_analyser import (  # noqa: E501
        UsageMetricsStaticAnalyser,
    )

    def not_counted(definition: str) -> None:
        return None

    return Patch(UsageMetricsStaticAnalyser, "process", staticmethod(not_counted))


def lambda_role_checked_once() -> Patch:
    """CreateFunction checks that Lambda may assume the function's role with an STS AssumeRole
    through LocalStack's gateway, for every function; a role it could assume once, it still
    can (LocalStack enforces no IAM), so the answer is kept per role and region."""
    from localstack.services.lambda_.invocation.lambda_service import LambdaService

    assumable: set[tuple[str, str]] = set()

    def checked_once(can_assume_role: Any, self: LambdaService, role_arn: str, region: str) -> bool:
        if (role_arn, region) in assumable:
            return True
        if can_assume_role(self, role_arn, region):
            assumable.add((role_arn, region))
            return True
        return False

    return Patch.function(LambdaService.can_assume_role, checked_once)


PATCHES = (
    botocore_files_parsed_once,
    services_listed_once,
    regions_listed_once,
    dynamodb_local_without_agent,
    kinesis_mock_on_this_machine_only,
    gateway_bound_to_its_host,
    first_idle_poll_wait_within_the_maximum,
    payloads_within_lambdas_limits,
    role_sessions_reused,
    lambda_role_checked_once,
    async_pollers_told_to_stop_together,
    routes_added_without_compiling_the_others,
)


def dynamodb_items_passed_through() -> Patch:
    from sandbox.embedded import dynamodb_items  # imports LocalStack's DynamoDB provider

    return dynamodb_items.patch()


# Patches of a service's own modules, applied when LocalStack loads the service: importing
# those modules at start (DynamoDB's provider, the ASL parser) put ~2 s before healthy.
WHEN_LOADED: dict[str, tuple[Callable[[], Patch | Patches], ...]] = {
    "dynamodb": (dynamodb_items_passed_through,),
    "stepfunctions": (state_machine_definitions_parsed_once,),
    "lambda": (function_start_not_undone,),
}


def service_patches_applied_as_services_load() -> Patch:
    """Applies WHEN_LOADED's patches of a service as LocalStack creates it: before, because
    the service's dispatch table keeps the provider's methods as they are then."""
    from localstack.services.plugins import ServicePluginAdapter

    patched: set[str] = set()
    lock = threading.Lock()

    def patched_first(create_service: Any, self: ServicePluginAdapter) -> Any:
        with lock:
            if self.api not in patched:
                patched.add(self.api)
                for make_patch in WHEN_LOADED.get(self.api, ()):
                    make_patch().apply()
        return create_service(self)

    return Patch.function(ServicePluginAdapter.create_service, patched_first)


def _start_backends_early() -> list[threading.Thread]:
    """DynamoDB's service (which adopts the JVM started early) and kinesis-mock (Node.js, for
    DynamoDB streams, ~3 s) start on their service's first use, and `make up` met them one
    after the other, with every provisioning thread waiting. Start both, side by side, as soon
    as LocalStack is ready; returns their threads."""
    from localstack.aws.connect import connect_to
    from localstack.runtime import events

    def start(name: str, first_call: Any) -> None:
        events.infra_ready.wait()
        try:
            first_call()
        except Exception as error:  # the service's first real use will say what is wrong
            print(f"Starting {name} early failed: {error}", file=sys.stderr)

    threads = [
        threading.Thread(target=start, args=(name, first_call), daemon=True)
        for name, first_call in (
            ("DynamoDB Local", lambda: connect_to().dynamodb.list_tables()),
            ("kinesis-mock", lambda: connect_to().kinesis.list_streams()),
        )
    ]
    for thread in threads:
        thread.start()
    return threads


def _start_python_template(after: list[threading.Thread]) -> None:
    """The template Python environments are forked from parses boto3's data for ~0.7 s
    (executor.ForkServer); start it once LocalStack is ready, so the first Python function's
    first cold start does not wait for it. With backends started early, it waits for them
    too: on two cores, LocalStack, DynamoDB Local and kinesis-mock starting beside it slowed
    `make up`'s provisioning (which needs those, not the template)."""
    from localstack.runtime import events

    from sandbox.executor.executor import ForkServer

    def start() -> None:
        events.infra_ready.wait()
        for thread in after:
            thread.join()
        ForkServer.shared()

    threading.Thread(target=start, daemon=True).start()


def _start_websocket_api() -> None:
    """LocalStack 4.14 community has no WebSocket API: the sandbox's stand-in
    (sandbox/websocket_api.py) runs in this process, on the gateway's port + 100 (and + 200
    for its management API), and ends with it."""
    from localstack import config

    from sandbox import websocket_api

    websocket_api.start_for_sandbox(config.GATEWAY_LISTEN[0].port)


def main() -> None:
    try:
        check_localstack_version()
    except WrongLocalStackVersion as wrong:
        print(f"error: {wrong}", file=sys.stderr)
        sys.exit(2)
    prestart = os.environ.get(PRESTART_BACKENDS) == "1"
    early_dynamodb_local = start_dynamodb_local_at_once() if prestart else None
    from sandbox.embedded import lambda_logs, metrics, pollers  # once the version is known to fit

    for make_patch in PATCHES:
        make_patch().apply()
    service_patches_applied_as_services_load().apply()
    if early_dynamodb_local:
        dynamodb_local_adopted(early_dynamodb_local).apply()
    backends_starting = _start_backends_early() if prestart else []
    pollers.apply()
    metrics.apply()
    lambda_logs.apply()
    _start_python_template(after=backends_starting)
    _start_websocket_api()
    from localstack.runtime.main import main as localstack_main

    try:
        localstack_main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    if early_dynamodb_local:
        early_dynamodb_local.take(None)  # LocalStack stopped before it needed DynamoDB
    # After its orderly shutdown, LocalStack's CloudWatch log thread may still retry against
    # the stopped gateway, and Python would wait for it: exit without waiting.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
