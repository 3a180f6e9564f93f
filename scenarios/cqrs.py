"""Scenario for cqrs: commands append versioned events, a stream projector keeps the read model.

1. Commands on a new account append events v1..v3; the query side (read model only) catches up.
2. Four commands sent at once at the same version: one is accepted, the others are rejected
   with VersionConflict (stale version, or the conditional put on the version lost the
   race); one event is stored, not four.
3. Bad commands (no account id, unknown account, missing or wrong version, overdraft) are
   refused with a clear error and stored nowhere.
4. The projector fails once on a marked event; the stream retries it, and the read model
   still counts every event exactly once.
5. Every read model of this run equals a replay of the event store.
6. Redelivering already-projected events to the projector changes nothing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bootstrap.cqrs import Cqrs
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, unique_name
from sandbox.observe import invoke


def run(aws: Aws, resources: Cqrs, scenario: Scenario) -> None:
    dynamodb = aws.client("dynamodb")

    def command(**fields: Any) -> dict[str, Any]:
        return invoke(aws, resources.command_function, fields)

    def view(account_id: str) -> dict[str, Any] | None:
        answer = invoke(aws, resources.query_function, {"account_id": account_id})
        return answer["account"] if answer["found"] else None

    def view_at(account_id: str, version: int) -> dict[str, Any]:
        found = await_value(
            lambda: view(account_id),
            until=lambda v: v is not None and v["version"] >= version,
            timeout=30,
            waiting_for=f"the read model of {account_id} at version {version}",
        )
        assert found is not None  # `until` accepts only a view
        return found

    def stored_items(account_id: str) -> list[dict[str, Any]]:
        return dynamodb.query(
            TableName=resources.events_table,
            KeyConditionExpression="aggregate_id = :id",
            ExpressionAttributeValues={":id": {"S": account_id}},
            ConsistentRead=True,
        )["Items"]

    def stored_events(account_id: str) -> list[dict[str, Any]]:
        return [_event(item) for item in stored_items(account_id)]

    alice = unique_name("acc-alice")
    with scenario.step("Commands append versioned events; the query side catches up"):
        answers = [
            command(type="OpenAccount", account_id=alice, owner="Alice"),
            command(type="Deposit", account_id=alice, amount=500, expected_version=1),
            command(type="Withdraw", account_id=alice, amount=200, expected_version=2),
        ]
        for answer in answers:
            scenario.note(f"{answer['event']} -> version {answer['version']}")
        scenario.check(
            "versions assigned", expected=[1, 2, 3], seen=[a["version"] for a in answers]
        )
        seen = view_at(alice, 3)
        scenario.check(
            "read model (query side)", expected=(300, 3), seen=(seen["balance"], seen["version"])
        )

    with scenario.step("Commands racing at the same version: one accepted, the others rejected"):
        amounts = [100, 40, 25, 10]
        competing: list[dict[str, Any]] = [
            {"type": "Deposit", "account_id": alice, "amount": a, "expected_version": 3}
            for a in amounts
        ]
        with ThreadPoolExecutor(max_workers=len(competing)) as pool:
            results = list(
                pool.map(lambda c: invoke(aws, resources.command_function, c), competing)
            )
        for sent, got in zip(competing, results, strict=True):
            outcome = f"version {got['version']}" if got["accepted"] else got["message"]
            scenario.note(f"deposit {sent['amount']} at version 3 -> {outcome}")
        accepted = [c for c, r in zip(competing, results, strict=True) if r["accepted"]]
        rejected = [r["error"] for r in results if not r["accepted"]]
        scenario.check("accepted", expected=1, seen=len(accepted))
        scenario.check("rejected with", expected=["VersionConflict"] * 3, seen=rejected)
        # A command that read version 3 just before the winner appended would pass the
        # version check; the conditional put the command side uses is what stops it.
        late = {
            "aggregate_id": {"S": alice},
            "version": {"N": "4"},
            "type": {"S": "MoneyDeposited"},
            "data": {"M": {"amount": {"N": "40"}}},
        }
        try:
            dynamodb.put_item(
                TableName=resources.events_table,
                Item=late,
                ConditionExpression="attribute_not_exists(version)",
            )
            refused = "stored"
        except dynamodb.exceptions.ConditionalCheckFailedException as error:
            refused = error.response["Error"]["Code"]
        scenario.check(
            "a late append at version 4 (the command side's conditional put)",
            expected="ConditionalCheckFailedException",
            seen=refused,
        )
        versions = [e["version"] for e in stored_events(alice)]
        scenario.check("events stored for the account", expected=[1, 2, 3, 4], seen=versions)
        seen = view_at(alice, 4)
        scenario.check(
            "read model balance includes only the accepted deposit",
            expected=300 + accepted[0]["amount"],
            seen=seen["balance"],
        )

    with scenario.step("Bad commands are refused with a clear error and stored nowhere"):
        ghost = unique_name("acc-ghost")
        bad = [
            ({"type": "Deposit", "amount": 10, "expected_version": 1}, "InvalidCommand"),
            (
                {"type": "Deposit", "account_id": ghost, "amount": 10, "expected_version": 0},
                "UnknownAccount",
            ),
            ({"type": "Deposit", "account_id": alice, "amount": 10}, "InvalidCommand"),
            (
                {"type": "Deposit", "account_id": alice, "amount": 10, "expected_version": "4"},
                "InvalidCommand",
            ),
            (
                {"type": "Deposit", "account_id": alice, "amount": 10, "expected_version": 9},
                "VersionConflict",
            ),
            (
                {"type": "Withdraw", "account_id": alice, "amount": 10**6, "expected_version": 4},
                "InsufficientFunds",
            ),
        ]
        for payload, code in bad:
            answer = invoke(aws, resources.command_function, payload)
            scenario.check(
                f"{code}: {answer.get('message')}",
                expected=(False, code),
                seen=(answer["accepted"], answer.get("error")),
            )
        scenario.check(
            "events stored for the unknown account", expected=[], seen=stored_events(ghost)
        )
        scenario.check("read model of the unknown account", expected=None, seen=view(ghost))
        versions = [e["version"] for e in stored_events(alice)]
        scenario.check("events stored for the account", expected=[1, 2, 3, 4], seen=versions)

    bob, carol = unique_name("acc-bob"), unique_name("acc-carol")
    with scenario.step("The projector fails once; the stream retries; nothing is projected twice"):
        command(type="OpenAccount", account_id=bob, owner="Bob")
        marked = command(
            type="Deposit",
            account_id=bob,
            amount=70,
            expected_version=1,
            fault="fail-projection-once",
        )
        scenario.note(
            f"deposit v{marked['version']} of {bob} is marked to fail its first projection"
        )
        # Events right behind the failing one may share its batch: the retry resends them.
        command(type="OpenAccount", account_id=carol, owner="Carol")
        command(type="Deposit", account_id=carol, amount=5, expected_version=1)
        command(type="Deposit", account_id=bob, amount=30, expected_version=2)
        seen_bob, seen_carol = view_at(bob, 3), view_at(carol, 2)
        attempts = _attempts(dynamodb, resources.faults_table, f"{bob}#2")
        scenario.check(
            "deliveries of the marked event (failed, then retried)", expected=2, seen=attempts
        )
        scenario.check(
            "Bob's read model",
            expected=(100, 3),
            seen=(seen_bob["balance"], seen_bob["version"]),
        )
        scenario.check(
            "events Bob's view applied (once each)", expected=3, seen=seen_bob["events_projected"]
        )
        scenario.check(
            "events Carol's view applied (once each)",
            expected=2,
            seen=seen_carol["events_projected"],
        )

    with scenario.step("Every read model equals a replay of its events"):
        for account_id in (alice, bob, carol):
            events = stored_events(account_id)
            replayed = _replay(events)
            current = view(account_id) or {}
            scenario.check(
                f"{account_id}: (owner, balance, version) read model = replay",
                expected=replayed,
                seen=(current.get("owner"), current.get("balance"), current.get("version")),
            )
            scenario.check(
                f"{account_id}: events applied",
                expected=len(events),
                seen=current.get("events_projected"),
            )

    with scenario.step("Redelivered events change nothing"):
        before = view(alice)
        batch = _stream_batch(stored_items(alice), resources.events_stream_arn)
        answer = invoke(aws, resources.projector_function, batch)
        scenario.note(
            f"sent {len(batch['Records'])} already-projected events to the projector again"
        )
        scenario.check("batch item failures", expected=[], seen=answer.get("batchItemFailures"))
        scenario.check("read model after redelivery", expected=before, seen=view(alice))


def _event(item: dict[str, Any]) -> dict[str, Any]:
    data = {k: v.get("S") or int(v["N"]) for k, v in item.get("data", {}).get("M", {}).items()}
    return {"version": int(item["version"]["N"]), "type": item["type"]["S"], "data": data}


def _replay(events: list[dict[str, Any]]) -> tuple[Any, int, int]:
    """The scenario's own fold of the events: (owner, balance, version)."""
    owner, balance, version = None, 0, 0
    for event in sorted(events, key=lambda e: e["version"]):
        if event["type"] == "AccountOpened":
            owner = event["data"]["owner"]
        elif event["type"] == "MoneyDeposited":
            balance += event["data"]["amount"]
        elif event["type"] == "MoneyWithdrawn":
            balance -= event["data"]["amount"]
        version = event["version"]
    return owner, balance, version


def _attempts(dynamodb: Any, table: str, key: str) -> int:
    item = dynamodb.get_item(TableName=table, Key={"id": {"S": key}}, ConsistentRead=True)
    return int(item.get("Item", {}).get("attempts", {}).get("N", 0))


def _stream_batch(items: list[dict[str, Any]], stream_arn: str) -> dict[str, Any]:
    """Stored events shaped as the stream delivers them (INSERT, NEW_IMAGE)."""
    records = []
    for n, item in enumerate(items, start=1):
        keys = {"aggregate_id": item["aggregate_id"], "version": item["version"]}
        records.append(
            {
                "eventID": f"redelivery-{n}",
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "eventSourceARN": stream_arn,
                "dynamodb": {
                    "Keys": keys,
                    "NewImage": item,
                    "SequenceNumber": str(n),
                    "StreamViewType": "NEW_IMAGE",
                },
            }
        )
    return {"Records": records}
