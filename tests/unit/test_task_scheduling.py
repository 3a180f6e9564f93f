"""task-scheduling's handler logic: job definitions, keys, delays, and the tick's claims."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import load_handler

app = load_handler("task_scheduling")

NOW = datetime(2026, 11, 23, 12, 0, 30, 123000, tzinfo=UTC)


def test_a_job_is_keyed_by_its_due_minute_and_time() -> None:
    item = app.new_job({"due": "2026-11-23T13:05:07.5+01:00", "payload": {"a": 1}}, NOW)
    assert item["bucket"] == "2026-11-23T12:05"
    assert item["job_key"].startswith("2026-11-23T12:05:07.500Z#")
    assert (item["due"], item["run_at"], item["status"]) == (
        "2026-11-23T12:05:07.500Z",
        "2026-11-23T12:05:07.500Z",
        "PENDING",
    )
    assert json.loads(item["payload"]) == {"a": 1}
    assert app.key_of(item["job_key"]) == {"bucket": item["bucket"], "job_key": item["job_key"]}


def test_an_overdue_job_runs_now() -> None:
    item = app.new_job({"due": "2026-11-23T11:00:00Z", "payload": {}}, NOW)
    assert item["due"] == "2026-11-23T11:00:00.000Z"
    assert item["run_at"] == "2026-11-23T12:00:30.123Z"
    assert item["bucket"] == "2026-11-23T12:00"


@pytest.mark.parametrize(
    ("definition", "says"),
    [
        ("soon", "JSON object"),
        ({"payload": {}}, "due is required"),
        ({"due": "next tuesday", "payload": {}}, "not an ISO 8601 time"),
        ({"due": "2026-11-23T12:01:00", "payload": {}}, "time zone"),
        ({"due": "2026-11-23T12:01:00Z"}, "payload is required"),
        ({"due": "2026-11-23T12:01:00Z", "payload": [1]}, "payload is required"),
        ({"due": "2026-11-23T12:01:00Z", "payload": {}, "retries": 3}, "unknown fields: retries"),
        ({"due": "2031-01-01T00:00:00Z", "payload": {}}, "days ahead"),
        ({"due": "2026-11-23T12:01:00Z", "payload": {"x": "y" * 200_001}}, "larger than"),
    ],
)
def test_malformed_definitions_are_refused_saying_why(definition: Any, says: str) -> None:
    with pytest.raises(app.InvalidJob, match=says):
        app.new_job(definition, NOW)


def test_the_sqs_delay_makes_the_message_visible_at_the_due_time() -> None:
    assert app.delay_seconds("2026-11-23T12:00:37.000Z", NOW) == 7  # 6.877 s, rounded up
    assert app.delay_seconds("2026-11-23T11:59:00.000Z", NOW) == 0
    assert app.delay_seconds("2026-11-23T13:00:00.000Z", NOW) == 900


def test_a_tick_reads_the_lookback_buckets_and_those_before_the_next_tick() -> None:
    assert app.buckets_to_read(NOW, timedelta(seconds=60), 2) == [
        "2026-11-23T11:58",
        "2026-11-23T11:59",
        "2026-11-23T12:00",
        "2026-11-23T12:01",
    ]


class FakeJobs:
    """Just enough of a DynamoDB Table for the tick: query a bucket, conditional updates."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = {i["job_key"]: dict(i) for i in items}

    def query(self, **params: Any) -> dict[str, Any]:
        values = params["ExpressionAttributeValues"]
        found = [
            dict(i)
            for i in self.items.values()
            if i["bucket"] == values[":b"]
            and i["job_key"] <= values[":end"]
            and i["status"] == "PENDING"
        ]
        return {"Items": sorted(found, key=lambda i: i["job_key"])}

    def update_item(self, **params: Any) -> None:
        item = self.items[params["Key"]["job_key"]]
        values = params["ExpressionAttributeValues"]
        if ":claimed" in values and ":done" not in values:
            if item["status"] != "PENDING":
                raise ClientError(
                    {"Error": {"Code": "ConditionalCheckFailedException", "Message": ""}},
                    "UpdateItem",
                )
            item.update(status="CLAIMED", claimed_by=values[":tick"])
        else:
            assert item["claimed_by"] == values[":tick"]
            item["status"] = "DONE"


def job(due: str, status: str = "PENDING") -> dict[str, Any]:
    item = app.new_job({"due": due, "payload": {"due": due}}, NOW)
    item["status"] = status
    return item


def test_a_tick_dispatches_due_jobs_with_delays_and_marks_them_done() -> None:
    # GIVEN a due job, one due in 7 s, one due in 2 minutes and a cancelled one
    jobs = [
        job("2026-11-23T12:00:00Z"),
        job("2026-11-23T12:00:37Z"),
        job("2026-11-23T12:02:31Z"),
        job("2026-11-23T12:00:10Z", status="CANCELLED"),
    ]
    table, sent = FakeJobs(jobs), []
    # WHEN a tick runs
    result = app.tick(
        table, lambda body, delay: sent.append((body, delay)), lambda: NOW, timedelta(seconds=60), 2
    )
    # THEN the first two are sent (the second held back 7 s) and marked done
    assert result["dispatched"] == [jobs[0]["job_key"], jobs[1]["job_key"]]
    assert [delay for _, delay in sent] == [0, 7]
    assert json.loads(sent[1][0])["payload"] == {"due": "2026-11-23T12:00:37Z"}
    assert [table.items[j["job_key"]]["status"] for j in jobs] == [
        "DONE",
        "DONE",
        "PENDING",
        "CANCELLED",
    ]
    # AND a second tick sends nothing again
    again = app.tick(
        table, lambda body, delay: sent.append((body, delay)), lambda: NOW, timedelta(seconds=60), 2
    )
    assert (again["dispatched"], len(sent)) == ([], 2)


def test_a_job_another_tick_claimed_first_is_not_sent() -> None:
    jobs = [job("2026-11-23T12:00:00Z")]
    table, sent = FakeJobs(jobs), []
    real_query = table.query

    def query_then_lose(**params: Any) -> dict[str, Any]:
        found = real_query(**params)
        for item in found["Items"]:
            table.items[item["job_key"]].update(status="CLAIMED", claimed_by="other")
        return found

    table.query = query_then_lose  # type: ignore[method-assign]
    result = app.tick(
        table, lambda body, delay: sent.append(body), lambda: NOW, timedelta(seconds=60), 2
    )
    assert (result["dispatched"], result["lost"], sent) == ([], [jobs[0]["job_key"]], [])


@pytest.mark.parametrize("job_id", [None, "", "abc", "2026-11-23T12:00:00Z#x"])
def test_job_ids_are_checked(job_id: Any) -> None:
    with pytest.raises(app.InvalidJob, match="not a job id"):
        app.key_of(job_id)
