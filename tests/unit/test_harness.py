"""The scenario harness: waits with deadlines, checks that say expected versus seen."""

from __future__ import annotations

import io
import itertools
import json

import pytest

from sandbox.harness import (
    Scenario,
    ScenarioFailed,
    WaitTimedOut,
    await_count,
    await_value,
    holds_for,
    unique_name,
)


def test_await_value_returns_the_first_value_that_holds() -> None:
    counter = itertools.count()
    assert await_value(lambda: next(counter), until=lambda n: n >= 3, interval=0) == 3


def test_await_value_times_out_with_the_last_value_seen() -> None:
    with pytest.raises(WaitTimedOut, match="the queue to drain; last saw: 5"):
        await_value(
            lambda: 5,
            until=lambda n: n == 0,
            timeout=0.05,
            interval=0.01,
            waiting_for="the queue to drain",
        )


def test_await_count_waits_for_at_least_the_expected_number() -> None:
    counter = itertools.count()
    assert await_count(lambda: next(counter), 4, timeout=1) >= 4


def test_holds_for_fails_as_soon_as_the_condition_breaks() -> None:
    values = iter([0, 0, 1])
    with pytest.raises(ScenarioFailed, match="changed: 1"):
        holds_for(lambda: next(values), until=lambda n: n == 0, duration=5, interval=0)


def test_unique_names_differ_and_keep_the_prefix() -> None:
    a, b = unique_name("orders"), unique_name("orders")
    assert a != b and a.startswith("orders-") and len(a) == len("orders-") + 8


def test_a_failed_check_says_expected_and_seen_and_marks_the_step(tmp_path) -> None:
    out = io.StringIO()
    scenario = Scenario("demo", out=out)
    with pytest.raises(ScenarioFailed, match="items written: expected 3, saw 2"):
        with scenario.step("Write items"):
            scenario.check("items written", expected=3, seen=2)
    scenario.finish()
    assert not scenario.ok
    report = json.loads(scenario.save(tmp_path).read_text())
    assert report["ok"] is False
    assert report["steps"][0]["error"].startswith("ScenarioFailed: items written")
    assert "✗ items written" in out.getvalue()


def test_a_passing_scenario_records_steps_checks_and_timings() -> None:
    scenario = Scenario("demo", out=io.StringIO())
    with scenario.step("Count"):
        scenario.check("count", expected=1, seen=1)
        scenario.check_that("positive", True, expected="> 0", seen=1)
    scenario.finish()
    report = scenario.report()
    assert scenario.ok and report["ok"]
    assert report["steps"][0]["checks"] == ["count: 1", "positive: 1"]
    assert report["steps"][0]["seconds"] >= 0


def test_an_unfinished_scenario_is_not_ok() -> None:
    scenario = Scenario("demo", out=io.StringIO())
    with scenario.step("Only step"):
        pass
    assert not scenario.ok


def test_steps_and_checks_carry_when_they_happened_for_a_timeline() -> None:
    scenario = Scenario("demo", out=io.StringIO())
    with scenario.step("Count"):
        scenario.check("count", expected=1, seen=1)
    scenario.finish()
    report = scenario.report()
    step = report["steps"][0]
    assert report["started"] <= step["started"] <= step["check_details"][0]["at"]
    assert step["check_details"] == [
        {"what": "count", "at": step["check_details"][0]["at"], "outcome": "passed", "seen": "1"}
    ]


def test_a_failed_check_keeps_expected_and_seen_as_json(tmp_path) -> None:
    scenario = Scenario("demo", out=io.StringIO())
    with pytest.raises(ScenarioFailed):
        with scenario.step("Read the table"):
            scenario.check("items", expected={"a": [1, 2]}, seen={"a": [1]})
    report = json.loads(scenario.save(tmp_path, activity={"invocations": []}).read_text())
    failed = report["steps"][0]["check_details"][0]
    assert (failed["outcome"], failed["expected"], failed["seen"]) == (
        "failed",
        {"a": [1, 2]},
        {"a": [1]},
    )
    assert report["activity"] == {"invocations": []}


def test_a_limit_is_its_own_outcome_never_a_pass() -> None:
    out = io.StringIO()
    scenario = Scenario("demo", out=out)
    with scenario.step("a step"):
        scenario.not_proven("it fails as AWS does", reason="the engine never fails it", limit="x")
    scenario.finish()
    (detail,) = scenario.steps[0].check_details
    assert detail["outcome"] == "not proven" and detail["limit"] == "docs/engine-limits.md#x"
    assert scenario.report()["not_proven"] == scenario.not_proven_count == 1
    assert "○ not proven here: it fails as AWS does" in out.getvalue()
    assert "✓" not in out.getvalue()
