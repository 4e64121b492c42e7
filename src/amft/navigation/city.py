"""A synthetic city for the navigation-memory benchmark: a street grid with
graph nodes every few metres, deleted street segments and dead ends, landmarks placed at nodes,
and VELMA's navigator semantics (see docs/design.md, 'City and navigator').

Navigator: the agent stands on a node facing along an edge. ``forward`` follows the edge
straight ahead (at an intersection, the outgoing edge closest to the arrival direction, i.e.
the middle one); ``left`` / ``right`` take the edge turning most to that side short of a U-turn, and
only at intersections (degree > 2) — elsewhere they mean ``forward``; ``turn_around`` reverses
the heading in place; ``stop`` ends the episode.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

__all__ = ["ACTIONS", "City", "Landmark", "NavigatorState", "make_city"]

ACTIONS = ("forward", "left", "right", "turn_around", "stop")
_KINDS = ("bank", "bakery", "pharmacy", "bus stop", "fire hydrant", "cafe", "bookshop", "post box", "fountain", "florist")
_ATTRIBUTES = ("red", "blue", "green", "tall", "old", "small", "corner", "striped")
_DISTRACTORS = ("fire hydrant", "bus stop", "post box")  # repeated, so that "the second hydrant" means something


@dataclass(frozen=True)
class Landmark:
    name: str
    node: int
    side: str  # left or right of the street, seen along the edge's direction


@dataclass
class City:
    """Nodes with positions (metres), directed edges with headings, landmarks by node."""

    positions: list[tuple[float, float]]
    edges: dict[int, dict[int, float]]  # node -> {successor: heading in degrees, clockwise from north}
    landmarks: dict[int, list[Landmark]] = field(default_factory=dict)
    seed: int = 0

    def degree(self, node: int) -> int:
        return len(self.edges.get(node, {}))

    def is_intersection(self, node: int) -> bool:
        return self.degree(node) > 2

    def successors(self, node: int) -> list[int]:
        return list(self.edges.get(node, {}))


def _turn(from_heading: float, to_heading: float) -> float:
    """Signed turn in degrees, in (-180, 180]: positive is to the right."""
    return -((from_heading - to_heading + 180) % 360 - 180)


@dataclass
class NavigatorState:
    """Where the agent is and which way it faces (the previous node it came from defines the heading)."""

    node: int
    heading: float

    def step(self, city: City, action: str) -> NavigatorState:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; actions: {ACTIONS}")
        if action == "stop":
            return self
        if action == "turn_around":
            return NavigatorState(self.node, (self.heading + 180) % 360)
        outgoing = city.edges.get(self.node, {})
        if not outgoing:
            return self
        turns = {successor: _turn(self.heading, heading) for successor, heading in outgoing.items()}
        if action != "forward" and city.is_intersection(self.node):
            side = 1 if action == "right" else -1
            candidates = {s: t for s, t in turns.items() if 30 < side * t < 150}  # a turn, not a U-turn
            if candidates:
                target = max(candidates, key=lambda s: side * candidates[s])
                return NavigatorState(target, outgoing[target])
        # forward (or a turn that means forward): the edge closest to straight ahead, never back where we came from
        ahead = {s: t for s, t in turns.items() if abs(t) < 135}
        if not ahead:
            return self  # a dead end: forward does nothing; turn around to leave
        target = min(ahead, key=lambda s: abs(ahead[s]))
        return NavigatorState(target, outgoing[target])

    def equivalent(self, city: City, action: str) -> list[str]:
        """The actions that do what ``action`` does from here, in the order of :data:`ACTIONS`
        (so the first is the canonical one: ``forward`` before a turn that means forward)."""
        if action == "stop":
            return ["stop"]
        target = self.step(city, action)
        return [a for a in ACTIONS if a != "stop" and self.step(city, a) == target]


def _bearing(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360


def make_city(seed: int, size: int = 10, block: float = 80.0, spacing: float = 20.0, deletion_rate: float = 0.08,
              landmark_rate: float = 0.15) -> City:
    """A ``size`` x ``size`` grid of intersections ``block`` metres apart, with nodes every ``spacing``
    metres along streets; each block-long street segment is deleted with ``deletion_rate``."""
    rng = random.Random(f"mem4nav-city:{seed}")
    steps = round(block / spacing)
    index: dict[tuple[int, int], int] = {}
    positions: list[tuple[float, float]] = []

    def node(i: int, j: int) -> int:
        if (i, j) not in index:
            index[(i, j)] = len(positions)
            positions.append((i * spacing, j * spacing))
        return index[(i, j)]

    edges: dict[int, dict[int, float]] = {}
    for gi in range(size):
        for gj in range(size):
            for di, dj in ((1, 0), (0, 1)):
                if gi + di >= size or gj + dj >= size or rng.random() < deletion_rate:
                    continue
                chain = [node(gi * steps + di * k, gj * steps + dj * k) for k in range(steps + 1)]
                for a, b in zip(chain, chain[1:]):
                    edges.setdefault(a, {})[b] = _bearing(positions[a], positions[b])
                    edges.setdefault(b, {})[a] = _bearing(positions[b], positions[a])
    landmarks: dict[int, list[Landmark]] = {}
    unique = [f"{a} {k}" for a in _ATTRIBUTES for k in _KINDS if k not in _DISTRACTORS]
    rng.shuffle(unique)
    for n in sorted(edges):
        if rng.random() < landmark_rate:
            name = rng.choice(_DISTRACTORS) if rng.random() < 0.4 or not unique else unique.pop()
            landmarks.setdefault(n, []).append(Landmark(name, n, rng.choice(("left", "right"))))
    return City(positions, edges, landmarks, seed)
