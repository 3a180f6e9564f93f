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


def run(aws: Aws, resources: ConsistentHashing, scenario: Scenario) -> None:
    ring = unique_name("ring")
    keys = [f"customer-{number:03d}-{ring[-4:]}" for number in range(KEYS)]

    def admin(action: str, node: str) -> dict[str, Any]:
        request = {"action": action, "ring": ring, "node": node, "vnodes": resources.vnodes}
        if action == "add":
            request["queue_url"] = resources.shards[node].url
        answer: dict[str, Any] = observe.invoke(aws, resources.admin_function, request)
        return answer

    def route(phase: str, batch: list[str]) -> dict[str, Any]:
        messages = [
            {"key": key, "body": json.dumps({"ring": ring, "phase": phase, "key": key})}
            for key in batch
        ]
        answer: dict[str, Any] = observe.invoke(
            aws, resources.router_function, {"ring": ring, "messages": messages}
        )
        return answer

    def landed(phase: str, routed: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """(key, shard) of each message of this phase found on the shard queues (deleted):
        as many on each shard as the router said it sent there, then nothing more of this
        phase on any shard (the router has sent them all before it answers)."""

        def of_phase(message: observe.Message) -> bool:
            body = json.loads(message["Body"])
            return body.get("ring") == ring and body.get("phase") == phase

        sent = Counter(entry["node"] for entry in routed)
        found = [
            (json.loads(message["Body"])["key"], shard)
            for shard, queue in resources.shards.items()
            for message in observe.collect(
                aws,
                queue.url,
                of_phase,
                sent[shard],
                waiting_for=f"'{phase}' messages on shard {shard}",
            )
        ]
        extra = [
            (json.loads(message["Body"])["key"], shard)
            for shard, queue in resources.shards.items()
            for message in observe.take_all(aws, queue.url, of_phase)
        ]
        scenario.check(f"'{phase}' messages beyond those the router sent", expected=[], seen=extra)
        return found

    with scenario.step("A ring of four nodes, with virtual nodes, is kept in DynamoDB"):
        for node in "abcd":
            answer = admin("add", node)
        scenario.check(
            "points per node",
            expected=dict.fromkeys("abcd", resources.vnodes),
            seen=answer["nodes"],
        )
        stored = aws.client("dynamodb").query(
            TableName=resources.ring_table,
            KeyConditionExpression="#r = :r",
            ExpressionAttributeNames={"#r": "ring"},
            ExpressionAttributeValues={":r": {"S": ring}},
            Select="COUNT",
        )["Count"]
        scenario.check("ring items in DynamoDB", expected=4 * resources.vnodes, seen=stored)

    with scenario.step("A key always lands on the same shard"):
        repeats = [entry for _ in range(3) for entry in route("repeat", [keys[0]])["routed"]]
        found = landed("repeat", repeats)
        scenario.check(
            "shards the three copies of one key reached", expected=1, seen=len(set(found))
        )
        scenario.note(f"{keys[0]} -> shard {found[0][1]}")
        answer = route("four", keys)
        said = {entry["key"]: entry["node"] for entry in answer["routed"]}
        four = dict(landed("four", answer["routed"]))
        scenario.check("keys found on the shard queues", expected=KEYS, seen=len(four))
        scenario.check(
            "keys found on another shard than the router named",
            expected={},
            seen={k: (said.get(k), shard) for k, shard in four.items() if said.get(k) != shard},
        )
        scenario.note(f"keys per shard: {_per_shard(four)}")

    with scenario.step("Adding a node moves about 1/N of the keys, all to the new node"):
        admin("add", "e")
        five = dict(landed("five", route("five", keys)["routed"]))
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

    with scenario.step("Removing a node moves only its keys"):
        answer = admin("remove", "b")
        scenario.check("nodes left", expected=["a", "c", "d", "e"], seen=sorted(answer["nodes"]))
        after = dict(landed("four-again", route("four-again", keys)["routed"]))
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

    with scenario.step("Bad input: a keyless message is rejected, the rest still go"):
        messages = [
            {"key": keys[1], "body": json.dumps({"ring": ring, "phase": "bad", "key": keys[1]})},
            {"body": "no key here"},
            {"key": keys[2], "body": json.dumps({"ring": ring, "phase": "bad", "key": keys[2]})},
        ]
        error, answer = observe.call(
            aws, resources.router_function, {"ring": ring, "messages": messages}
        )
        scenario.check(
            "rejected",
            expected=[{"index": 1, "reason": "no string 'key'"}],
            seen=answer["rejected"],
        )
        arrived = landed("bad", answer["routed"])
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
