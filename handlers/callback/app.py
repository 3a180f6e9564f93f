"""A stand-in asynchronous "job API" for the callback pattern's polling loop.

Event (from the state machine):
  {"action": "start", "orderId": <str>}  -> {"jobId", "status": "RUNNING", "polls": 0}
  {"action": "status", "jobId": <str>}   -> {"jobId", "status": "RUNNING" | "DONE", "polls": n,
                                             "result": {...} once DONE}
Environment: JOBS_TABLE, POLLS_UNTIL_DONE (how many status calls a job takes to finish).

Like a real asynchronous API, `start` only accepts the job and `status` reports progress:
each status call counts as one poll and the job is DONE from the POLLS_UNTIL_DONE-th poll
on. Starting the same order again restarts its job (the workflow's Retry may repeat it).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3

RUNNING, DONE = "RUNNING", "DONE"


class InvalidJobRequest(ValueError):
    """The event is not a job request this API knows."""


class JobNotFound(LookupError):
    """No job with this id was started."""


def job_id_for(order_id: str) -> str:
    return f"job-{order_id}"


def status_after(polls: int, polls_until_done: int) -> str:
    """The job's status once it has been polled `polls` times."""
    return DONE if polls >= polls_until_done else RUNNING


def describe(job_id: str, polls: int, polls_until_done: int) -> dict[str, Any]:
    status = status_after(polls, polls_until_done)
    answer: dict[str, Any] = {"jobId": job_id, "status": status, "polls": polls}
    if status == DONE:
        answer["result"] = {"jobId": job_id, "outcome": "processed"}
    return answer


@cache
def _table() -> Any:
    return boto3.resource("dynamodb").Table(os.environ["JOBS_TABLE"])


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    until = int(os.environ["POLLS_UNTIL_DONE"])
    action = event.get("action")
    if action == "start":
        order_id = event.get("orderId")
        if not isinstance(order_id, str) or not order_id:
            raise InvalidJobRequest(f"'orderId' must be a non-empty string, got {order_id!r}")
        job_id = job_id_for(order_id)
        _table().put_item(Item={"jobId": job_id, "polls": 0})
        return describe(job_id, 0, until)
    if action == "status":
        job_id = event.get("jobId")
        if not isinstance(job_id, str) or not job_id:
            raise InvalidJobRequest(f"'jobId' must be a non-empty string, got {job_id!r}")
        try:
            updated = _table().update_item(
                Key={"jobId": job_id},
                UpdateExpression="ADD polls :one",
                ConditionExpression="attribute_exists(jobId)",
                ExpressionAttributeValues={":one": 1},
                ReturnValues="ALL_NEW",
            )
        except _table().meta.client.exceptions.ConditionalCheckFailedException as error:
            raise JobNotFound(f"no job {job_id!r}") from error
        return describe(job_id, int(updated["Attributes"]["polls"]), until)
    raise InvalidJobRequest(f"'action' must be 'start' or 'status', got {action!r}")
