"""The data regime: a seeded partition of the value multisets (see docs/design.md, 'The data regime').

A *value multiset* is the sorted tuple of a deal's 4 values (1..13), so there are
C(16, 4) = 1820 of them; under the target 24, 1362 are solvable (566 over 1..10, the
ID multisets, and 796 containing a value in 11..13).  Unsolvable multisets never occur
(deals are redrawn until solvable) and belong to no role.

Procedure (:func:`make_partition`), with ``rng = random.Random(seed)`` and
``count(f, n) = floor(f * n + 0.5)`` (round half up):

1. ``id_solvable``: the solvable multisets with every value <= 10, in sorted order;
   ``other``: the remaining solvable multisets (some value in 11..13), in sorted order.
2. ``unseen = rng.sample(id_solvable, count(unseen_fraction, len(id_solvable)))``.
   These are never trained on: every training sampler rejects them.
3. ``train_id``: ``id_solvable`` without ``unseen`` (sorted); ``rng.shuffle`` it; the first
   ``count(demo_fraction, len(train_id))`` are ``demo``, the rest ``rl-only``.
4. The same for ``other`` (shuffled with the same ``rng``, after step 3).  The split is
   stratified so that both the ID multisets (the ``id`` / ``rl-only`` eval splits) and the
   others get the exact ``demo_fraction``.

Roles: ``demo`` multisets have demonstrations (and RL prompts), ``rl-only`` ones only RL
prompts, ``unseen`` ones are evaluation-only.  The defaults (seed 0, 15 %, 50 %) give
unseen 85, demo 639 (241 ID + 398 other), rl-only 638 (240 ID + 398 other).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations_with_replacement
from typing import Iterable

from .cards import multiset
from .solver import solvable

__all__ = ["Partition", "make_partition", "all_multisets", "round_half_up"]


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def all_multisets(max_value: int = 13) -> tuple[tuple[int, ...], ...]:
    """Every sorted 4-tuple over 1..max_value (1820 for 13, 715 for 10)."""
    return tuple(combinations_with_replacement(range(1, max_value + 1), 4))


@dataclass(frozen=True)
class Partition:
    """The roles of the value multisets (sorted 4-tuples)."""

    seed: int
    unseen_fraction: float
    demo_fraction: float
    target: int
    unseen: frozenset[tuple[int, ...]]
    demo: frozenset[tuple[int, ...]]
    rl_only: frozenset[tuple[int, ...]]

    @property
    def training(self) -> frozenset[tuple[int, ...]]:
        """Multisets that may appear in training prompts: ``demo | rl_only``."""
        return self.demo | self.rl_only

    def role(self, values: Iterable[int]) -> str:
        """``"demo"``, ``"rl-only"``, ``"unseen"`` or ``"unsolvable"`` for a deal's values."""
        key = multiset(values)
        if key in self.demo:
            return "demo"
        if key in self.rl_only:
            return "rl-only"
        if key in self.unseen:
            return "unseen"
        return "unsolvable"

    def members(self, role: str) -> frozenset[tuple[int, ...]]:
        if role == "demo":
            return self.demo
        if role == "rl-only":
            return self.rl_only
        if role == "unseen":
            return self.unseen
        raise ValueError(f"unknown role {role!r}; known: demo, rl-only, unseen")

    def counts(self) -> dict[str, int]:
        def n_id(s: frozenset) -> int:
            return sum(1 for m in s if max(m) <= 10)

        return {"unseen": len(self.unseen), "demo": len(self.demo), "rl-only": len(self.rl_only),
                "demo_id": n_id(self.demo), "rl-only_id": n_id(self.rl_only)}

    def settings(self) -> dict:
        return {"seed": self.seed, "unseen_fraction": float(self.unseen_fraction),
                "demo_fraction": float(self.demo_fraction), "target": self.target}


@lru_cache(maxsize=16)
def make_partition(seed: int = 0, unseen_fraction: float = 0.15, demo_fraction: float = 0.5,
                   target: int = 24) -> Partition:
    """The seeded partition described in the module docstring (cached)."""
    if not 0.0 <= unseen_fraction <= 1.0 or not 0.0 <= demo_fraction <= 1.0:
        raise ValueError("fractions must be in [0, 1]")
    rng = random.Random(seed)
    solv = [m for m in all_multisets(13) if solvable(m, target)]
    id_solvable = [m for m in solv if max(m) <= 10]
    other = [m for m in solv if max(m) > 10]
    unseen = set(rng.sample(id_solvable, round_half_up(unseen_fraction * len(id_solvable))))
    demo: set = set()
    rl_only: set = set()
    for group in ([m for m in id_solvable if m not in unseen], other):
        shuffled = list(group)
        rng.shuffle(shuffled)
        k = round_half_up(demo_fraction * len(shuffled))
        demo.update(shuffled[:k])
        rl_only.update(shuffled[k:])
    return Partition(seed, float(unseen_fraction), float(demo_fraction), int(target),
                     frozenset(unseen), frozenset(demo), frozenset(rl_only))
