"""Scenario for cqrs: commands append versioned events, a stream projector keeps the read model.

1. Commands on a new account append events v1..v3; the query side (read model only) catches up.
2. Four commands sent at once at the same version: one is accepted, the others are rejected
   with VersionConflict; one event is stored, not four.
3. A late write loses, decided by the command handler itself: command A reads version 4 and
   is held (test hook) before its write; command B at version 4 is accepted; A, released,
   passes the version check it made on its read but its conditional put refuses it. B's
   event stands.
4. Bad commands (no account id, unknown account, missing or wrong version, overdraft) are
   refused with a clear error and stored nowhere.
5. The projector fails once on a marked event; the stream retries it, and the read model
   still counts every event exactly once.
6. A stale projection loses, decided by the projector itself: projector A (a delivery of
   Dave's v3) reads his view at v2 and is held (test hook) before its write; the stream's
   own projector applies v3 and v4; A, released, is refused by the read model's condition
   and leaves the view at v4. The same for a view not yet created: projector C (Erin's
   opening) finds no view and is held while the stream creates it and applies v2; C's
   write is refused and Erin's view stays at v2.
7. Every read model of this run equals a replay of the event store.
8. Redelivering already-projected events to the projector changes nothing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bootstrap.cqrs import Cqrs
from sandbox import items
from sandbox.aws import Aws
from sandbox.harness import Scenario, await_value, unique_name
from sandbox.observe import invoke
from sandbox.race import HeldCall


class Bank:
    """The pattern as a client sees it: commands, queries, and the event store to inspect."""

    def __init__(self, aws: Aws, resources: Cqrs) -> None:
        self.aws, self.resources = aws, resources

    def command(self, **fields: Any) -> dict[str, Any]:
        answer: dict[str, Any] = invoke(self.aws, self.resources.command_function, fields)
        return answer

    def view(self, account_id: str) -> dict[str, Any] | None:
        answer = invoke(self.aws, self.resources.query_function, {"account_id": account_id})
        return answer["account"] if answer["found"] else None

    def view_at(self, account_id: str, version: int) -> dict[str, Any]:
        """The read model once it has caught up with `version`."""
        found = await_value(
            lambda: self.view(account_id),
            until=lambda view: view is not None and view["version"] >= version,
            timeout=30,
            waiting_for=f"the read model of {account_id} at version {version}",
        )
        assert found is not None  # `until` accepts only a view
        return found

    def events(self, account_id: str) -> list[dict[str, Any]]:
        """The account's stored events, in version order."""
        return items.query(
            self.aws,
            self.resources.events_table,
            KeyConditionExpression="aggregate_id = :id",
            ExpressionAttributeValues=items.wire({":id": account_id}),
            ConsistentRead=True,
        )

    def versions(self, account_id: str) -> list[int]:
        return [event["version"] for event in self.events(account_id)]


def run(aws: Aws, resources: Cqrs, scenario: Scenario) -> None:
    bank = Bank(aws, resources)
    alice, bob, carol, dave, erin = (
        unique_name(f"acc-{name}") for name in ("alice", "bob", "carol", "dave", "erin")
    )
    commands_append_versioned_events(scenario, bank, alice)
    first_deposit = commands_racing_at_one_version(scenario, bank, alice)
    late_write_loses(scenario, bank, alice, balance_before=300 + first_deposit)
    bad_commands_are_refused(scenario, bank, alice)
    projector_failure_is_retried(scenario, bank, bob, carol)
    stale_projection_loses(scenario, bank, dave, erin)
    read_models_equal_replay(scenario, bank, [alice, bob, carol, dave, erin])
    redelivered_events_change_nothing(scenario, aws, resources, bank, alice)


def commands_append_versioned_events(scenario: Scenario, bank: Bank, alice: str) -> None:
    with scenario.step("Commands append versioned events; the query side catches up"):
        answers = [
            bank.command(type="OpenAccount", account_id=alice, owner="Alice"),
            bank.command(type="Deposit", account_id=alice, amount=500, expected_version=1),
            bank.command(type="Withdraw", account_id=alice, amount=200, expected_version=2),
        ]
        for answer in answers:
            scenario.note(f"{answer['event']} -> version {answer['version']}")
        scenario.check(
            "versions assigned", expected=[1, 2, 3], seen=[answer["version"] for answer in answers]
        )
        view = bank.view_at(alice, 3)
        scenario.check(
            "read model (query side): balance, version",
            expected=(300, 3),
            seen=(view["balance"], view["version"]),
        )


def commands_racing_at_one_version(scenario: Scenario, bank: Bank, alice: str) -> int:
    """Returns the amount of the deposit that won."""
    with scenario.step("Commands sent at once at the same version: one accepted"):
        competing: list[dict[str, Any]] = [
            {"type": "Deposit", "account_id": alice, "amount": amount, "expected_version": 3}
            for amount in (100, 40, 25, 10)
        ]
        with ThreadPoolExecutor(max_workers=len(competing)) as pool:
            results = list(pool.map(lambda fields: bank.command(**fields), competing))
        for sent, got in zip(competing, results, strict=True):
            outcome = f"version {got['version']}" if got["accepted"] else got["message"]
            scenario.note(f"deposit {sent['amount']} at version 3 -> {outcome}")
        accepted = [sent for sent, got in zip(competing, results, strict=True) if got["accepted"]]
        rejected = [got["error"] for got in results if not got["accepted"]]
        scenario.check("accepted", expected=1, seen=len(accepted))
        scenario.check("rejected with", expected=["VersionConflict"] * 3, seen=rejected)
        scenario.check(
            "events stored for the account", expected=[1, 2, 3, 4], seen=bank.versions(alice)
        )
        return int(accepted[0]["amount"]) if accepted else 0


def late_write_loses(scenario: Scenario, bank: Bank, alice: str, balance_before: int) -> None:
    resources = bank.resources
    with scenario.step("A late write loses: the command handler's conditional put decides"):
        late = {"type": "Deposit", "account_id": alice, "amount": 7, "expected_version": 4}
        with HeldCall(bank.aws, resources.held_command, alice, late) as held:
            scenario.note("command A (deposit 7 at version 4) read the account and is held")
            winner = bank.command(type="Deposit", account_id=alice, amount=25, expected_version=4)
            scenario.note(f"command B (deposit 25 at version 4) -> {winner}")
            error, loser = held.release()
        scenario.note(f"command A, released -> {loser}")
        scenario.check(
            "command B (finished first)",
            expected=(True, 5),
            seen=(winner["accepted"], winner.get("version")),
        )
        scenario.check(
            "command A (read version 4 before B wrote; wrote after)",
            expected=(None, False, "VersionConflict"),
            seen=(error, (loser or {}).get("accepted"), (loser or {}).get("error")),
        )
        stored = bank.events(alice)
        scenario.check(
            "stored events: versions, and the amount at version 5 (B's stands)",
            expected=([1, 2, 3, 4, 5], 25),
            seen=([event["version"] for event in stored], stored[-1]["data"]["amount"]),
        )
        view = bank.view_at(alice, 5)
        scenario.check(
            "read model balance (A's deposit in nowhere)",
            expected=balance_before + 25,
            seen=view["balance"],
        )


def bad_commands_are_refused(scenario: Scenario, bank: Bank, alice: str) -> None:
    with scenario.step("Bad commands are refused with a clear error and stored nowhere"):
        ghost = unique_name("acc-ghost")
        before = bank.versions(alice)
        current = before[-1]
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
                {"type": "Deposit", "account_id": alice, "amount": 10, "expected_version": 3},
                "VersionConflict",
            ),
            (
                {"type": "Deposit", "account_id": alice, "amount": 0, "expected_version": current},
                "InvalidCommand",
            ),
            (
                {
                    "type": "Withdraw",
                    "account_id": alice,
                    "amount": 10**6,
                    "expected_version": current,
                },
                "InsufficientFunds",
            ),
        ]
        for payload, code in bad:
            answer = bank.command(**payload)
            scenario.check(
                f"{code}: {answer.get('message')}",
                expected=(False, code),
                seen=(answer["accepted"], answer.get("error")),
            )
        scenario.check(
            "events stored for the unknown account", expected=[], seen=bank.versions(ghost)
        )
        scenario.check("read model of the unknown account", expected=None, seen=bank.view(ghost))
        scenario.check("events stored for the account", expected=before, seen=bank.versions(alice))


def projector_failure_is_retried(scenario: Scenario, bank: Bank, bob: str, carol: str) -> None:
    with scenario.step("The projector fails once; the stream retries; nothing is projected twice"):
        bank.command(type="OpenAccount", account_id=bob, owner="Bob")
        marked = bank.command(
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
        bank.command(type="OpenAccount", account_id=carol, owner="Carol")
        bank.command(type="Deposit", account_id=carol, amount=5, expected_version=1)
        bank.command(type="Deposit", account_id=bob, amount=30, expected_version=2)
        bob_view, carol_view = bank.view_at(bob, 3), bank.view_at(carol, 2)
        fault = items.get(bank.aws, bank.resources.faults_table, {"id": f"{bob}#2"}) or {}
        scenario.check(
            "deliveries of the marked event (failed, then retried)",
            expected=2,
            seen=fault.get("attempts"),
        )
        scenario.check(
            "Bob's read model: balance, version",
            expected=(100, 3),
            seen=(bob_view["balance"], bob_view["version"]),
        )
        scenario.check(
            "events Bob's view applied (once each)", expected=3, seen=bob_view["events_projected"]
        )
        scenario.check(
            "events Carol's view applied (once each)",
            expected=2,
            seen=carol_view["events_projected"],
        )


def stale_projection_loses(scenario: Scenario, bank: Bank, dave: str, erin: str) -> None:
    """A second delivery of an event (a concurrent projector instance, a stream retry)
    can read the view before the stream's own delivery moves it on; its write must then
    be refused by the read model's condition, not put the view back. Both conditions: the
    one on a view that exists (Dave) and the one on a view not yet created (Erin)."""
    resources = bank.resources
    with scenario.step("A stale projection loses: the projector's conditional write decides"):
        bank.command(type="OpenAccount", account_id=dave, owner="Dave")
        bank.command(type="Deposit", account_id=dave, amount=10, expected_version=1)
        bank.view_at(dave, 2)
        deposit = {"aggregate_id": dave, "version": 3, "type": "MoneyDeposited"}
        early = _stream_batch([{**deposit, "data": {"amount": 20}}], resources.events_stream_arn)
        with HeldCall(bank.aws, resources.held_projector, dave, early) as held:
            scenario.note("projector A (deposit 20, v3) read Dave's view at v2 and is held")
            stored = bank.command(type="Deposit", account_id=dave, amount=20, expected_version=2)
            emptied = bank.command(type="Withdraw", account_id=dave, amount=30, expected_version=3)
            scenario.check(
                "commands B: deposit 20, then withdraw the whole balance (30)",
                expected=[(True, 3), (True, 4)],
                seen=[(answer["accepted"], answer.get("version")) for answer in (stored, emptied)],
            )
            bank.view_at(dave, 4)
            scenario.note("the stream's projector applied v3 and v4")
            error, answer = held.release()
        scenario.note(f"projector A, released -> {answer}")
        scenario.check(
            "projector A: error, failed records (its write refused; it found v3 applied)",
            expected=(None, []),
            seen=(error, (answer or {}).get("batchItemFailures")),
        )
        view = bank.view(dave) or {}
        scenario.check(
            "Dave's read model: balance, version, events applied (not put back to v3)",
            expected=(0, 4, 4),
            seen=(view.get("balance"), view.get("version"), view.get("events_projected")),
        )

        opened = {"aggregate_id": erin, "version": 1, "type": "AccountOpened"}
        early = _stream_batch([{**opened, "data": {"owner": "Erin"}}], resources.events_stream_arn)
        with HeldCall(bank.aws, resources.held_projector, erin, early) as held:
            scenario.note("projector C (Erin's opening, v1) found no view for Erin and is held")
            bank.command(type="OpenAccount", account_id=erin, owner="Erin")
            bank.command(type="Deposit", account_id=erin, amount=15, expected_version=1)
            bank.view_at(erin, 2)
            scenario.note("the stream's projector created Erin's view and applied v2")
            error, answer = held.release()
        scenario.note(f"projector C, released -> {answer}")
        view = bank.view(erin) or {}
        scenario.check(
            "projector C's error, failed records; Erin's read model: balance, version, events"
            " applied (not put back to v1)",
            expected=(None, [], 15, 2, 2),
            seen=(
                error,
                (answer or {}).get("batchItemFailures"),
                view.get("balance"),
                view.get("version"),
                view.get("events_projected"),
            ),
        )


def read_models_equal_replay(scenario: Scenario, bank: Bank, accounts: list[str]) -> None:
    with scenario.step("Every read model equals a replay of its events"):
        for account_id in accounts:
            events = bank.events(account_id)
            current = bank.view(account_id) or {}
            scenario.check(
                f"{account_id}: (owner, balance, version) read model = replay",
                expected=_replay(events),
                seen=(current.get("owner"), current.get("balance"), current.get("version")),
            )
            scenario.check(
                f"{account_id}: events applied",
                expected=len(events),
                seen=current.get("events_projected"),
            )


def redelivered_events_change_nothing(
    scenario: Scenario, aws: Aws, resources: Cqrs, bank: Bank, alice: str
) -> None:
    with scenario.step("Redelivered events change nothing"):
        before = bank.view(alice)
        batch = _stream_batch(bank.events(alice), resources.events_stream_arn)
        answer = invoke(aws, resources.projector_function, batch)
        scenario.note(
            f"sent {len(batch['Records'])} already-projected events to the projector again"
        )
        scenario.check("batch item failures", expected=[], seen=answer.get("batchItemFailures"))
        scenario.check("read model after redelivery", expected=before, seen=bank.view(alice))


def _replay(events: list[dict[str, Any]]) -> tuple[Any, int, int]:
    """The scenario's own fold of the events: (owner, balance, version)."""
    owner, balance, version = None, 0, 0
    for event in sorted(events, key=lambda stored: stored["version"]):
        data = event.get("data") or {}
        if event["type"] == "AccountOpened":
            owner = data["owner"]
        elif event["type"] == "MoneyDeposited":
            balance += data["amount"]
        elif event["type"] == "MoneyWithdrawn":
            balance -= data["amount"]
        version = event["version"]
    return owner, balance, version


def _stream_batch(events: list[dict[str, Any]], stream_arn: str) -> dict[str, Any]:
    """Stored events shaped as the stream delivers them (INSERT, NEW_IMAGE)."""
    records = []
    for number, event in enumerate(events, start=1):
        image = items.wire(event)
        records.append(
            {
                "eventID": f"redelivery-{number}",
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "eventSourceARN": stream_arn,
                "dynamodb": {
                    "Keys": {"aggregate_id": image["aggregate_id"], "version": image["version"]},
                    "NewImage": image,
                    "SequenceNumber": str(number),
                    "StreamViewType": "NEW_IMAGE",
                },
            }
        )
    return {"Records": records}
