"""What scenarios read from SQS, CloudWatch Logs, EventBridge rules and synchronous Lambda
calls, and the dead-letter and schedule checks most patterns make.

Reading a queue to look for messages must not steal the others: messages that do not
match are made visible again at once. Every look still counts as a receive of each message
seen, so search queues without a redrive policy (DLQs, subscriber queues); on a queue with a
low maxReceiveCount, repeated searches would push other messages into its DLQ. The searches
of this process are counted, message by message, so `check_dead_lettered` can take them off
a dead-lettered message's receive count: what is left is what its own queue did.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from sandbox.aws import Aws
from sandbox.harness import Scenario, await_lasting, await_value
from sandbox.provision import Queue

Message = dict[str, Any]
COUNTS = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)
# Receives by this process's searches, by (queue url, message id).
_searched: Counter[tuple[str, str]] = Counter()
_searched_lock = threading.Lock()


def with_body(body: str) -> Callable[[Message], bool]:
    return lambda message: message["Body"] == body


def with_id(message_id: str) -> Callable[[Message], bool]:
    return lambda message: message["MessageId"] == message_id


def with_field(name: str, value: Any) -> Callable[[Message], bool]:
    """A JSON body whose `name` is `value`."""

    def match(message: Message) -> bool:
        try:
            body = json.loads(message["Body"])
        except json.JSONDecodeError:
            return False
        return isinstance(body, dict) and body.get(name) == value

    return match


def _search(
    aws: Aws, queue_url: str, match: Callable[[Message], bool], *, first_only: bool
) -> list[Message]:
    """Matching messages in the queue now (only the first if `first_only`), left in flight;
    looks through the whole queue once, holding the others until the search ends, then
    makes them visible again."""
    sqs = aws.client("sqs")
    held: list[Message] = []
    found: list[Message] = []
    while batch := sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=10,
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        with _searched_lock:
            _searched.update((queue_url, message["MessageId"]) for message in batch)
        for message in batch:
            wanted = match(message) and not (first_only and found)
            (found if wanted else held).append(message)
        if first_only and found:
            break
    _in_batches(sqs.change_message_visibility_batch, queue_url, held, VisibilityTimeout=0)
    return found


def _in_batches(
    call: Callable[..., Any], queue_url: str, messages: list[Message], **entry: Any
) -> None:
    """`call` (a *_batch SQS action) on the messages, ten at a time; a failed entry raises."""
    for first in range(0, len(messages), 10):
        chunk = messages[first : first + 10]
        answer = call(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], **entry}
                for i, m in enumerate(chunk)
            ],
        )
        if answer.get("Failed"):
            raise RuntimeError(f"{call.__name__} failed on {queue_url}: {answer['Failed']}")


def find(aws: Aws, queue_url: str, match: Callable[[Message], bool]) -> Message | None:
    """The first message in the queue now that `match`es, left in flight so the caller can
    read its attributes and delete it."""
    found = _search(aws, queue_url, match, first_only=True)
    return found[0] if found else None


def take(aws: Aws, queue_url: str, match: Callable[[Message], bool]) -> Message | None:
    """Like `find`, and delete the message found."""
    found = find(aws, queue_url, match)
    if found is not None:
        aws.client("sqs").delete_message(QueueUrl=queue_url, ReceiptHandle=found["ReceiptHandle"])
    return found


def take_all(aws: Aws, queue_url: str, match: Callable[[Message], bool]) -> list[Message]:
    """Every message in the queue now that `match`es, deleted."""
    found = _search(aws, queue_url, match, first_only=False)
    _in_batches(aws.client("sqs").delete_message_batch, queue_url, found)
    return found


def collect(
    aws: Aws,
    queue_url: str,
    match: Callable[[Message], bool],
    count: int,
    *,
    timeout: float = 30,
    waiting_for: str = "messages",
) -> list[Message]:
    """Wait until `count` matching messages have arrived; they are deleted as they come.
    Returns all that were taken (more than `count` if more arrived)."""
    taken: list[Message] = []

    def look() -> int:
        taken.extend(take_all(aws, queue_url, match))
        return len(taken)

    await_value(
        look,
        until=lambda n: n >= count,
        timeout=timeout,
        interval=0.3,
        waiting_for=f"{count} {waiting_for}",
    )
    return taken


def drain(aws: Aws, queue_url: str) -> list[Message]:
    """Receive and delete everything visible in the queue now; returns what was there."""
    sqs = aws.client("sqs")
    drained: list[Message] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
        drained.extend(batch)
    return drained


def depth(aws: Aws, queue_url: str) -> int:
    """Messages in the queue: visible, in flight and delayed."""
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=list(COUNTS)
    )["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in COUNTS)


EMPTY_SETTLE_S = 1.0


def await_empty(aws: Aws, queue_url: str, *, timeout: float, waiting_for: str) -> int:
    """Until the queue has been empty (visible, in flight, delayed) on every look for
    EMPTY_SETTLE_S; returns its depth then (0). SQS's counts are approximate: LocalStack's
    miss a message while a receive moves it from visible to in flight, so one look can say
    0 before a just-sent message is even taken."""
    return await_lasting(
        lambda: depth(aws, queue_url),
        until=lambda messages: messages == 0,
        duration=EMPTY_SETTLE_S,
        timeout=timeout,
        waiting_for=waiting_for,
    )


def check_dead_lettered(
    scenario: Scenario,
    aws: Aws,
    dlq: Queue,
    match: Callable[[Message], bool],
    *,
    max_receive_count: int,
    timeout: float = 30,
    keep: bool = False,
    which: str = "it",
) -> Message:
    """Check a failing message was received `max_receive_count` times, and at least twice
    (a failed message is retried before it is given up), then moved to the DLQ; deletes it
    from the DLQ (with `keep`, leaves it there) and returns it. (SQS moves it, so it is no
    longer in its queue; searching that queue to show it would count as receives of the
    messages there.) The receive count moves with the message, and finding it here is one
    more receive, as is every earlier search of the DLQ that saw it (searches for other
    messages): those are taken off."""
    dead: Message = await_value(
        lambda: find(aws, dlq.url, match),  # type: ignore[arg-type, return-value]
        timeout=timeout,
        waiting_for=f"the failing message in {dlq.name}",
    )
    with _searched_lock:
        searches = _searched[(dlq.url, dead["MessageId"])]
    in_its_queue = int(dead["Attributes"]["ApproximateReceiveCount"]) - searches
    scenario.check_that(
        f"times {which} was received before the move",
        in_its_queue >= max(max_receive_count, 2),
        expected=f">= {max_receive_count} (maxReceiveCount), and retried: >= 2",
        seen=in_its_queue,
    )
    if keep:  # for check_nothing_lost, which counts the DLQ itself
        _in_batches(
            aws.client("sqs").change_message_visibility_batch, dlq.url, [dead], VisibilityTimeout=0
        )
    else:
        aws.client("sqs").delete_message(QueueUrl=dlq.url, ReceiptHandle=dead["ReceiptHandle"])
    return dead


def check_nothing_lost(
    scenario: Scenario,
    aws: Aws,
    *,
    sent: int,
    processed: int,
    rejected: int = 0,
    dlq: Queue,
    of_run: Callable[[Message], bool],
) -> None:
    """Check in = processed + rejected + dead-lettered. The caller reads `processed` where the
    pattern puts its results (a table, a downstream) and `rejected` from the answers; the
    dead-lettered term is read here from the DLQ itself (this run's messages, taken out)."""
    dead = len(take_all(aws, dlq.url, of_run))
    scenario.check_that(
        "nothing lost",
        sent == processed + rejected + dead,
        expected=f"{sent} in = processed + rejected + dead-lettered",
        seen=f"{sent} in; {processed} processed + {rejected} rejected + {dead} in {dlq.name}",
    )


def check_schedule(scenario: Scenario, aws: Aws, rule: str, schedule: str) -> list[dict[str, Any]]:
    """Check the rule is ENABLED with this schedule expression; returns its targets for the
    caller to check (what each pattern's rule starts differs)."""
    events = aws.client("events")
    described = events.describe_rule(Name=rule)
    scenario.check("schedule", expected=schedule, seen=described.get("ScheduleExpression"))
    scenario.check("state", expected="ENABLED", seen=described["State"])
    targets: list[dict[str, Any]] = events.list_targets_by_rule(Rule=rule)["Targets"]
    return targets


def log_lines(aws: Aws, function: str, containing: str = "") -> list[str]:
    """Lines the function logged so far that contain `containing` (none if it never ran).
    Filtered here: LocalStack's filter_log_events ignores filter patterns."""
    logs = aws.client("logs")
    lines: list[str] = []
    try:
        pages = logs.get_paginator("filter_log_events").paginate(
            logGroupName=f"/aws/lambda/{function}"
        )
        for page in pages:
            lines.extend(e["message"] for e in page["events"] if containing in e["message"])
    except logs.exceptions.ResourceNotFoundException:
        pass
    return lines


def check_logged(
    scenario: Scenario, aws: Aws, function: str, about: str, says: str, *, timeout: float = 20
) -> str:
    """Wait for the function's first log line about `about` (an id of this run) and check
    it says `says`: shows the handler's logging reached CloudWatch Logs. Returns the line."""
    lines = await_value(
        lambda: log_lines(aws, function, containing=about),
        timeout=timeout,
        waiting_for=f"a log line about {about} in /aws/lambda/{function}",
    )
    scenario.check_that(
        f"{function} logged {says!r} about {about}",
        says in lines[0],
        expected=f"a {says!r} line",
        seen=lines[0].strip(),
    )
    return lines[0]


def call(aws: Aws, function: str, payload: Any) -> tuple[str | None, Any]:
    """Call the function synchronously; returns (FunctionError or None, decoded result), for
    scenarios that expect a call to fail and check how."""
    answer = aws.client("lambda").invoke(FunctionName=function, Payload=json.dumps(payload))
    return answer.get("FunctionError"), json.loads(answer["Payload"].read() or b"null")


def invoke(aws: Aws, function: str, payload: Any) -> Any:
    """Call the function synchronously; returns its decoded result. A function error raises
    (a scenario must not mistake an error payload for an answer)."""
    error, body = call(aws, function, payload)
    if error:
        raise AssertionError(f"{function} failed: {body}")
    return body
