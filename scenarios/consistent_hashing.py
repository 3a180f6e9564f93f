"""Scenario for consistent-hashing: keys routed to SQS shard queues by a ring in DynamoDB.

1. A ring of nodes a..d (64 virtual nodes each) is written to DynamoDB.
2. A key always lands on the same shard (one key sent three times; 200 keys each found on
   the queue the router named).
3. Adding node e moves about 1/N of the 200 keys, and every moved key moves to e.
4. Removing node b moves exactly the keys b had; no other key moves.
5. Bad input: a message without a key is rejected and the others still go (sent = landed +
   rejected); a request without a ring, or for a ring with no nodes, gets a clear error.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from bootstrap.consistent_hashing import ConsistentHashing
from sandbox import observe
from sandbox.aws import Aws
from sandbox.harness import Scenario, unique_name

KEYS = 200


class Ring:
    """One ring of this run, as its admin and its router see it, and the keys sent through it."""

    def __init__(self, aws: Aws, resources: ConsistentHashing, name: str) -> None:
        self.aws, self.resources, self.name = aws, resources, name
        self.keys = [f"customer-{number:03d}-{name[-4:]}" for number in range(KEYS)]

    def admin(self, action: str, node: str) -> dict[str, Any]:
        request = {
            "action": action,
            "ring": self.name,
            "node": node,
            "vnodes": self.resources.vnodes,
        }
        if action == "add":
            request["queue_url"] = self.resources.shards[node].url
        answer: dict[str, Any] = observe.invoke(self.aws, self.resources.admin_function, request)
        return answer

    def route(self, phase: str, batch: list[str]) -> dict[str, Any]:
        messages = [
            {"key": key, "body": json.dumps({"ring": self.name, "phase": phase, "key": key})}
            for key in batch
        ]
        answer: dict[str, Any] = observe.invoke(
            self.aws, self.resources.router_function, {"ring": self.name, "messages": messages}
        )
        return answer

    def landed(
        self, scenario: Scenario, phase: str, routed: list[dict[str, Any]]
    ) -> list[tuple[str, str]]:
        """(key, shard) of each message of this phase found on the shard queues (deleted):
        as many on each shard as the router said it sent there, then nothing more of this
        phase on any shard (the router has sent them all before it answers)."""

        def of_phase(message: observe.Message) -> bool:
            body = json.loads(message["Body"])
            return body.get("ring") == self.name and body.get("phase") == phase

        sent = Counter(entry["node"] for entry in routed)
        found = [
            (json.loads(message["Body"])["key"], shard)
            for shard, queue in self.resources.shards.items()
            for message in observe.collect(
                self.aws,
                queue.url,
                of_phase,
                sent[shard],
                waiting_for=f"'{phase}' messages on shard {shard}",
            )
        ]
        extra = [
            (json.loads(message["Body"])["key"], shard)
            for shard, queue in self.resources.shards.items()
            for message in observe.take_all(self.aws, queue.url, of_phase)
        ]
        scenario.check(f"'{phase}' messages beyond those the router sent", expected=[], seen=extra)
        return found


def run(aws: Aws, resources: ConsistentHashing, scenario: Scenario) -> None:
    ring = Ring(aws, resources, unique_name("ring"))
    ring_of_four_nodes_is_stored(scenario, ring)
    four = key_always_lands_on_the_same_shard(scenario, ring)
    five = adding_a_node_moves_about_one_nth(scenario, ring, four)
    removing_a_node_moves_only_its_keys(scenario, ring, five)
    keyless_message_is_rejected(scenario, ring)


def ring_of_four_nodes_is_stored(scenario: Scenario, ring: Ring) -> None:
    resources = ring.resources
    with scenario.step("A ring of four nodes, with virtual nodes, is kept in DynamoDB"):
        for node in "abcd":
            answer = ring.admin("add", node)
        scenario.check(
            "points per node",
            expected=dict.fromkeys("abcd", resources.vnodes),
            seen=answer["nodes"],
        )
        stored = ring.aws.client("dynamodb").query(
            TableName=resources.ring_table,
            KeyConditionExpression="#r = :r",
            ExpressionAttributeNames={"#r": "ring"},
            ExpressionAttributeValues={":r": {"S": ring.name}},
            Select="COUNT",
        )["Count"]
        scenario.check("ring items in DynamoDB", expected=4 * resources.vnodes, seen=stored)


def key_always_lands_on_the_same_shard(scenario: Scenario, ring: Ring) -> dict[str, str]:
    """Returns the shard of every key on the ring of four nodes."""
    keys = ring.keys
    with scenario.step("A key always lands on the same shard"):
        repeats = [entry for _ in range(3) for entry in ring.route("repeat", [keys[0]])["routed"]]
        found = ring.landed(scenario, "repeat", repeats)
        scenario.check(
            "shards the three copies of one key reached", expected=1, seen=len(set(found))
        )
        scenario.note(f"{keys[0]} -> shard {found[0][1]}")
        answer = ring.route("four", keys)
        said = {entry["key"]: entry["node"] for entry in answer["routed"]}
        four = dict(ring.landed(scenario, "four", answer["routed"]))
        scenario.check("keys found on the shard queues", expected=KEYS, seen=len(four))
        scenario.check(
            "keys found on another shard than the router named",
            expected={},
            seen={
                key: (said.get(key), shard) for key, shard in four.items() if said.get(key) != shard
            },
        )
        scenario.note(f"keys per shard: {_per_shard(four)}")
        return four


def adding_a_node_moves_about_one_nth(
    scenario: Scenario, ring: Ring, four: dict[str, str]
) -> dict[str, str]:
    """Returns the shard of every key on the ring of five nodes."""
    keys = ring.keys
    with scenario.step("Adding a node moves about 1/N of the keys, all to the new node"):
        ring.admin("add", "e")
        five = dict(ring.landed(scenario, "five", ring.route("five", keys)["routed"]))
        moved = {key: five[key] for key in keys if five[key] != four[key]}
        scenario.check("where moved keys went", expected={"e"}, seen=set(moved.values()))
        share = len(moved) / KEYS
        scenario.check_that(
            "share of keys moved (N=5)",
            0.5 / 5 <= share <= 1.5 / 5,
            expected="about 1/5 (0.10..0.30)",
            seen=f"{len(moved)}/{KEYS} = {share:.2f}",
        )
        scenario.note(f"keys per shard: {_per_shard(five)}")
        return five


def removing_a_node_moves_only_its_keys(
    scenario: Scenario, ring: Ring, five: dict[str, str]
) -> None:
    keys = ring.keys
    with scenario.step("Removing a node moves only its keys"):
        answer = ring.admin("remove", "b")
        scenario.check("nodes left", expected=["a", "c", "d", "e"], seen=sorted(answer["nodes"]))
        after = dict(ring.landed(scenario, "four-again", ring.route("four-again", keys)["routed"]))
        moved_keys = {key for key in keys if after[key] != five[key]}
        b_keys = {key for key in keys if five[key] == "b"}
        scenario.check("keys moved", expected=len(b_keys), seen=len(moved_keys))
        scenario.check("moved keys that were not b's", expected=set(), seen=moved_keys - b_keys)
        scenario.check_that(
            "no key is left on b",
            "b" not in after.values(),
            expected="no b",
            seen=_per_shard(after),
        )


def keyless_message_is_rejected(scenario: Scenario, ring: Ring) -> None:
    aws, resources, keys = ring.aws, ring.resources, ring.keys
    with scenario.step("Bad input: a keyless message is rejected, the rest still go"):
        messages = [
            {
                "key": keys[1],
                "body": json.dumps({"ring": ring.name, "phase": "bad", "key": keys[1]}),
            },
            {"body": "no key here"},
            {
                "key": keys[2],
                "body": json.dumps({"ring": ring.name, "phase": "bad", "key": keys[2]}),
            },
        ]
        error, answer = observe.call(
            aws, resources.router_function, {"ring": ring.name, "messages": messages}
        )
        scenario.check(
            "rejected",
            expected=[{"index": 1, "reason": "no string 'key'"}],
            seen=answer["rejected"],
        )
        arrived = ring.landed(scenario, "bad", answer["routed"])
        scenario.check(
            "sent = landed + rejected",
            expected=len(messages),
            seen=len(arrived) + len(answer["rejected"]),
        )
        error, answer = observe.call(aws, resources.router_function, {"messages": []})
        scenario.check(
            "no ring: error type", expected="InvalidRequest", seen=answer.get("errorType")
        )
        scenario.note(answer.get("errorMessage", ""))
        error, answer = observe.call(
            aws, resources.router_function, {"ring": unique_name("empty"), "messages": []}
        )
        scenario.check("empty ring: error type", expected="EmptyRing", seen=answer.get("errorType"))


def _per_shard(where: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for shard in where.values():
        counts[shard] = counts.get(shard, 0) + 1
    return dict(sorted(counts.items()))
