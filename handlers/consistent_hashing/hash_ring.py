"""A consistent-hash ring with virtual nodes (pure logic, no AWS).

Each node owns `vnodes` points on a 64-bit ring, at the hashes of "<node>#<i>". A key belongs
to the first point at or after the key's own hash, wrapping round at the top. Adding a node
takes over only the arcs in front of its new points (about 1/N of the keys, all moving to
it); removing one hands only its own keys to the next points.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable

DEFAULT_VNODES = 64


def position(text: str) -> int:
    """A point on the ring: the first 8 bytes of the MD5 of `text`, as an unsigned integer."""
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "big")


def vnode_points(node: str, vnodes: int = DEFAULT_VNODES) -> list[int]:
    """The ring points of a node's virtual nodes."""
    return [position(f"{node}#{i}") for i in range(vnodes)]


class HashRing:
    """Points (token -> node), kept sorted for lookups."""

    def __init__(self, points: Iterable[tuple[int, str]] = ()) -> None:
        self._owner: dict[int, str] = {}
        for token, node in points:
            self._owner[token] = node
        self._tokens = sorted(self._owner)

    @classmethod
    def of(cls, nodes: Iterable[str], vnodes: int = DEFAULT_VNODES) -> HashRing:
        return cls((t, n) for n in nodes for t in vnode_points(n, vnodes))

    @property
    def nodes(self) -> set[str]:
        return set(self._owner.values())

    def __len__(self) -> int:
        return len(self._tokens)

    def add(self, node: str, vnodes: int = DEFAULT_VNODES) -> HashRing:
        return HashRing([*self._owner.items(), *((t, node) for t in vnode_points(node, vnodes))])

    def remove(self, node: str) -> HashRing:
        return HashRing((t, n) for t, n in self._owner.items() if n != node)

    def node_for(self, key: str) -> str:
        if not self._tokens:
            raise LookupError("the ring has no nodes")
        index = bisect.bisect_left(self._tokens, position(key))
        return self._owner[self._tokens[index % len(self._tokens)]]

    def points_of(self, node: str) -> list[int]:
        return [t for t in self._tokens if self._owner[t] == node]

    def point_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self._owner.values():
            counts[node] = counts.get(node, 0) + 1
        return dict(sorted(counts.items()))
