"""Every pattern's bootstrap is idempotent: provisioning it again returns the same record;
a state machine whose definition changed is updated in place.

Not in test_scenarios.py: these are quick and wait on nothing, so they run in `make test`'s
second run instead of after the scenarios, whose run waits on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox import patterns, provision
from sandbox.aws import Aws
from sandbox.harness import unique_name


@pytest.mark.integration
@pytest.mark.parametrize("pattern", patterns.catalogue(), ids=lambda p: p.slug)
def test_bootstrap_is_idempotent(pattern: patterns.Pattern, aws: Aws) -> None:
    assert pattern.provision(aws) == pattern.provision(aws)


@pytest.mark.integration
def test_a_changed_state_machine_definition_is_brought_up_to_date(
    aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a state machine provisioned from a definition with a placeholder
    monkeypatch.setattr(provision, "STATE_MACHINES_DIR", tmp_path)
    (tmp_path / "probe.json").write_text(
        json.dumps(
            {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "${Value}", "End": True}}}
        )
    )
    name = unique_name("probe-machine")
    first = provision.ensure_state_machine(aws, name, "probe.json", {"Value": "one"})
    # WHEN it is provisioned again with the same value, then with another
    again = provision.ensure_state_machine(aws, name, "probe.json", {"Value": "one"})
    changed = provision.ensure_state_machine(aws, name, "probe.json", {"Value": "two"})
    # THEN it stays one machine, and holds the new definition
    sfn = aws.client("stepfunctions")
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=first)["definition"])
    assert first == again == changed
    assert definition["States"]["P"]["Result"] == "two"
    sfn.delete_state_machine(stateMachineArn=first)
