"""parallel-map: the worker's business step, its in-flight counter, and the Map settings."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from sandbox.patterns import find
from tests.conftest import load_handler

app = load_handler("parallel_map")


def test_an_item_becomes_its_square() -> None:
    assert app.process({"n": 7, "work": 0.1}) == {"n": 7, "square": 49}


@pytest.mark.parametrize(
    ("value", "reason"),
    [({"n": 3, "fail": True}, "marked to fail"), ({"n": "3"}, "integer 'n'"), (None, "'n'")],
)
def test_a_bad_or_failing_item_raises_item_failed(value: Any, reason: str) -> None:
    with pytest.raises(app.ItemFailed, match=reason):
        app.process(value)


@pytest.mark.parametrize(
    ("value", "seconds"), [({"n": 1}, 0.3), ({"n": 1, "work": 1}, 1.0), ({"n": 1, "work": 99}, 0.3)]
)
def test_work_time_is_the_items_own_within_bounds(value: Any, seconds: float) -> None:
    assert app.work_seconds(value, 0.3) == seconds


class FakeCounterTable:
    """Enough of a DynamoDB Table for in_flight: ADD, SET peak with its condition, list_append."""

    def __init__(self) -> None:
        self.row: dict[str, Any] = {}

    def update_item(self, **kw: Any) -> dict[str, Any]:
        values = kw["ExpressionAttributeValues"]
        expression = kw["UpdateExpression"]
        if expression == "ADD inflight :one":
            self.row["inflight"] = self.row.get("inflight", 0) + 1
            return {"Attributes": {"inflight": self.row["inflight"]}}
        if expression.startswith("SET peak"):
            if self.row.get("peak", 0) >= values[":now"]:
                raise ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "Update")
            self.row["peak"] = values[":now"]
            return {}
        self.row["inflight"] -= 1
        self.row["done"] = self.row.get("done", 0) + 1
        self.row["finished"] = self.row.get("finished", []) + values[":me"]
        return {}


def test_in_flight_keeps_the_peak_and_releases_its_slot_even_on_failure() -> None:
    # GIVEN two overlapping items, the second of which fails
    table = FakeCounterTable()
    # WHEN they run nested (both in flight at once)
    with app.in_flight(table, "run#inline", 0) as first:
        with pytest.raises(app.ItemFailed):
            with app.in_flight(table, "run#inline", 1) as second:
                app.process({"n": 1, "fail": True})
    with app.in_flight(table, "run#inline", 2):
        pass
    # THEN the peak is 2, nothing is left in flight, and the finish order is recorded
    assert (first, second) == (1, 2)
    assert table.row == {"inflight": 0, "peak": 2, "done": 3, "finished": [1, 0, 2]}


def test_the_scenario_reads_the_limits_from_the_state_machine() -> None:
    maps = find("parallel-map").bootstrap.map_settings()
    assert maps["InlineMap"] == {"MaxConcurrency": 3}
    assert maps["DistributedMap"] == {"MaxConcurrency": 2, "ToleratedFailurePercentage": 25.0}
    assert isinstance(maps["DistributedMap"]["ToleratedFailurePercentage"], float)
