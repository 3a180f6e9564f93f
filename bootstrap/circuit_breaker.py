"""Provision circuit-breaker: a workflow guarding a Lambda service with a circuit in DynamoDB."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.aws import Aws
from sandbox.provision import ensure_function, ensure_state_machine, ensure_table, ensure_ttl

# Long enough that the scenario reaches its fail-fast run while the circuit is open, even
# on a busy machine (waiting for the failing calls' log lines takes a few seconds).
OPEN_SECONDS = 15
SERVICE_ATTEMPTS = 3  # the first call and the Retry's MaxAttempts 2


@dataclass(frozen=True)
class CircuitBreaker:
    state_machine: str
    circuit_table: str
    calls_table: str
    circuit_function: str
    service_function: str
    circuit_key: str  # the circuit item's key: the service's ARN, as the workflow names it
    open_seconds: int
    service_attempts: int


def provision(aws: Aws) -> CircuitBreaker:
    circuit_table = ensure_table(aws, "circuit-breaker-circuits", hash_key="service")
    ensure_ttl(aws, circuit_table, "ttl")
    calls_table = ensure_table(aws, "circuit-breaker-service-calls", hash_key="caller")
    circuit_function = "circuit-breaker-circuit"
    service_function = "circuit-breaker-service"
    circuit_arn = ensure_function(
        aws,
        circuit_function,
        "circuit_breaker",
        handler="circuit.handler",
        environment={"CIRCUIT_TABLE": circuit_table, "OPEN_SECONDS": str(OPEN_SECONDS)},
        timeout=5,
    )
    service_arn = ensure_function(
        aws,
        service_function,
        "circuit_breaker",
        handler="service.handler",
        environment={"CALLS_TABLE": calls_table},
        timeout=5,
    )
    state_machine = ensure_state_machine(
        aws,
        "circuit-breaker",
        "circuit_breaker.json",
        {"CircuitFunction": circuit_arn, "ServiceFunction": service_arn},
    )
    return CircuitBreaker(
        state_machine,
        circuit_table,
        calls_table,
        circuit_function,
        service_function,
        service_arn,
        OPEN_SECONDS,
        SERVICE_ATTEMPTS,
    )
