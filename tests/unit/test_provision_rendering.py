"""State machine definitions get their ARNs at bootstrap, and a typo is caught there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.provision import render_state_machine

ASL = {
    "Comment": "calls ${Fn}",
    "StartAt": "Call",
    "States": {"Call": {"Type": "Task", "Resource": "${Fn}", "InputPath": "$.order", "End": True}},
}


def write(tmp_path: Path, definition: dict[str, object]) -> Path:
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(definition))
    return path


def test_placeholders_are_replaced_and_json_paths_left_alone(tmp_path: Path) -> None:
    rendered = json.loads(render_state_machine(write(tmp_path, ASL), {"Fn": "arn:fn"}))
    assert rendered["States"]["Call"]["Resource"] == "arn:fn"
    assert rendered["States"]["Call"]["InputPath"] == "$.order"
    assert rendered["Comment"] == "calls arn:fn"


def test_a_placeholder_without_a_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"without a value: \['Fn'\]"):
        render_state_machine(write(tmp_path, ASL), {})


def test_a_value_without_a_placeholder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"without a placeholder: \['Typo'\]"):
        render_state_machine(write(tmp_path, ASL), {"Fn": "arn:fn", "Typo": "x"})
