"""consistent-hashing's ring: virtual nodes, stable lookups, and how few keys move."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import load_handler

hash_ring = load_handler("consistent_hashing", "hash_ring")
app = load_handler("consistent_hashing")

KEYS = [f"key-{i}" for i in range(5000)]


def owners(ring: Any) -> dict[str, str]:
    return {key: ring.node_for(key) for key in KEYS}


def test_each_node_gets_its_virtual_nodes() -> None:
    ring = hash_ring.HashRing.of(["a", "b", "c"], vnodes=16)
    assert len(ring) == 48
    assert ring.point_counts() == {"a": 16, "b": 16, "c": 16}
    assert ring.points_of("a") == sorted(hash_ring.vnode_points("a", 16))


def test_a_key_always_maps_to_the_same_node() -> None:
    # Two rings built separately (as two router invocations would) agree on every key.
    first = hash_ring.HashRing.of(["a", "b", "c", "d"])
    second = hash_ring.HashRing(
        reversed([(t, n) for n in "dcba" for t in hash_ring.vnode_points(n)])
    )
    assert owners(first) == owners(second)


def test_virtual_nodes_spread_keys_fairly() -> None:
    counts: dict[str, int] = {}
    for node in owners(hash_ring.HashRing.of(["a", "b", "c", "d"])).values():
        counts[node] = counts.get(node, 0) + 1
    assert all(0.15 <= n / len(KEYS) <= 0.35 for n in counts.values()), counts


@pytest.mark.parametrize("nodes", [4, 9])
def test_adding_a_node_moves_about_one_nth_of_the_keys_all_to_it(nodes: int) -> None:
    # GIVEN a ring of `nodes` nodes
    names = [f"node-{i}" for i in range(nodes)]
    before = owners(hash_ring.HashRing.of(names))
    # WHEN one more node joins
    after = owners(hash_ring.HashRing.of(names).add("new"))
    # THEN only keys that now belong to it moved, about 1/(nodes+1) of them
    moved = {key for key in KEYS if before[key] != after[key]}
    assert {after[key] for key in moved} == {"new"}
    expected = len(KEYS) / (nodes + 1)
    assert 0.6 * expected <= len(moved) <= 1.4 * expected


def test_removing_a_node_moves_only_its_keys() -> None:
    ring = hash_ring.HashRing.of(["a", "b", "c", "d", "e"])
    before = owners(ring)
    after = owners(ring.remove("b"))
    moved = {key for key in KEYS if before[key] != after[key]}
    assert moved == {key for key in KEYS if before[key] == "b"}
    assert "b" not in after.values()


def test_an_empty_ring_refuses_lookups() -> None:
    with pytest.raises(LookupError, match="no nodes"):
        hash_ring.HashRing().node_for("k")


def test_keyless_messages_are_rejected_and_the_rest_kept() -> None:
    good, rejected = app.split_messages([{"key": "k1", "body": "x"}, {"body": "y"}, "z"])
    assert good == [("k1", "x")]
    assert rejected == [
        {"index": 1, "reason": "no string 'key'"},
        {"index": 2, "reason": "no string 'key'"},
    ]


def test_routing_groups_messages_by_node() -> None:
    ring = hash_ring.HashRing.of(["a", "b"])
    routed = app.route(ring, [(k, "body") for k in KEYS[:50]])
    assert sum(len(pairs) for pairs in routed.values()) == 50
    assert all(ring.node_for(key) == node for node, pairs in routed.items() for key, _ in pairs)
