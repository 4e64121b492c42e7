"""Sparse octree over positions, keyed by Morton codes (see docs/design.md, 'Octree and Morton keys').

A position in metres is quantised to a cube of side ``side`` at ``depth`` levels (21 bits per
axis at most) and its three integer coordinates are bit-interleaved: x in bit 0, y in bit 1,
z in bit 2 of each triad. Only visited leaves exist, in a dict; a revisit fuses the new
embedding into the leaf's running mean. The parent of a key one level up is ``key >> 3``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["MAX_DEPTH", "OctreeLeaf", "SparseOctree", "morton_decode", "morton_encode", "parent_key"]

MAX_DEPTH = 21


def _spread(value: int) -> int:
    """The bits of a 21-bit integer moved to every third position (bit i -> bit 3i)."""
    result = 0
    for bit in range(MAX_DEPTH):
        result |= ((value >> bit) & 1) << (3 * bit)
    return result


def _compact(code: int) -> int:
    result = 0
    for bit in range(MAX_DEPTH):
        result |= ((code >> (3 * bit)) & 1) << bit
    return result


def morton_encode(x: int, y: int, z: int) -> int:
    """The Morton code of non-negative integer coordinates below 2**21."""
    for name, value in (("x", x), ("y", y), ("z", z)):
        if not 0 <= value < 2**MAX_DEPTH:
            raise ValueError(f"{name} must be in [0, 2**21), got {value}")
    return _spread(x) | (_spread(y) << 1) | (_spread(z) << 2)


def morton_decode(code: int) -> tuple[int, int, int]:
    """The (x, y, z) of a Morton code."""
    if not 0 <= code < 2 ** (3 * MAX_DEPTH):
        raise ValueError(f"code must be in [0, 2**63), got {code}")
    return _compact(code), _compact(code >> 1), _compact(code >> 2)


def parent_key(code: int, levels: int = 1) -> int:
    """The key of the enclosing cell ``levels`` levels coarser."""
    return code >> (3 * levels)


@dataclass
class OctreeLeaf:
    """A visited cell: its key, centre, the number of observations and their mean embedding."""

    key: int
    center: tuple[float, float, float]
    count: int
    embedding: torch.Tensor


class SparseOctree:
    """Leaves of a cube of side ``side`` metres, ``2**depth`` cells per axis, around ``origin``.

    Positions outside the cube are refused rather than clipped onto its boundary (the public
    code's clipping silently merges everything outside into the faces).
    """

    def __init__(self, side: float = 1024.0, depth: int = 8, origin: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        if not 1 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be in [1, {MAX_DEPTH}], got {depth}")
        if side <= 0:
            raise ValueError(f"side must be > 0, got {side}")
        self.side, self.depth, self.origin = float(side), int(depth), tuple(float(o) for o in origin)
        self.cell = self.side / 2**self.depth
        self.leaves: dict[int, OctreeLeaf] = {}

    def quantize(self, position: tuple[float, float, float]) -> tuple[int, int, int]:
        cells = []
        for axis, (value, low) in enumerate(zip(position, self.origin)):
            offset = float(value) - low
            if not 0.0 <= offset < self.side:
                raise ValueError(f"position {tuple(position)} is outside the octree's cube (axis {axis})")
            cells.append(int(math.floor(offset / self.cell)))
        return cells[0], cells[1], cells[2]

    def key(self, position: tuple[float, float, float]) -> int:
        return morton_encode(*self.quantize(position))

    def center(self, key: int) -> tuple[float, float, float]:
        return tuple(low + (index + 0.5) * self.cell for index, low in zip(morton_decode(key), self.origin))

    def insert(self, position: tuple[float, float, float], embedding: torch.Tensor) -> OctreeLeaf:
        """Record an observation at ``position``; a revisited leaf keeps the running mean embedding."""
        key = self.key(position)
        leaf = self.leaves.get(key)
        embedding = embedding.detach().float()
        if leaf is None:
            leaf = self.leaves[key] = OctreeLeaf(key, self.center(key), 1, embedding.clone())
        else:
            leaf.count += 1
            leaf.embedding += (embedding - leaf.embedding) / leaf.count
        return leaf

    def leaf_at(self, position: tuple[float, float, float]) -> OctreeLeaf | None:
        return self.leaves.get(self.key(position))

    def __len__(self) -> int:
        return len(self.leaves)

    def state_dict(self) -> dict[str, Any]:
        return {
            "side": self.side, "depth": self.depth, "origin": list(self.origin),
            "leaves": [[leaf.key, leaf.count, leaf.embedding.tolist()] for leaf in self.leaves.values()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__init__(state["side"], state["depth"], tuple(state["origin"]))
        for key, count, embedding in state["leaves"]:
            self.leaves[key] = OctreeLeaf(key, self.center(key), count, torch.tensor(embedding))
