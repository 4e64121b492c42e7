"""Cards, value rules (J/Q/K mappings) and deal sampling for GeneralPoints.

See docs/design.md, 'Rules and the value-mapping header', and for the sampling docs/design.md,
'Deal sampling and the solver'.

* Ranks are the integers 1..13 (A=1, 2..10, J=11, Q=12, K=13).  The model sees
  rank *symbols*: ``A``, ``2`` .. ``10``, ``J``, ``Q``, ``K`` (the ten is ``10``).
* A :class:`Rule` maps the face ranks J/Q/K to values; A and 2..10 always count at
  face value.  The ID rule is (10, 10, 10); the held-out OOD rule is (11, 12, 13).
* Deal sampling follows the original code, not the paper: ranks are drawn
  uniformly *with replacement*; the OOD sampler draws 3 ranks uniformly from
  1..13 plus one from 11..13 and shuffles, so at least one face card appears.
  Suits are irrelevant for GP-L and are not sampled.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import product
from typing import Iterable, Iterator, Sequence

__all__ = [
    "SYMBOLS",
    "SYMBOL_TO_RANK",
    "Rule",
    "ID_RULE",
    "OOD_RULE",
    "default_training_rules",
    "rank_symbol",
    "symbol_rank",
    "sample_ranks",
    "sampler_support",
    "multiset",
]

SYMBOLS: dict[int, str] = {1: "A", **{r: str(r) for r in range(2, 11)}, 11: "J", 12: "Q", 13: "K"}
SYMBOL_TO_RANK: dict[str, int] = {s: r for r, s in SYMBOLS.items()}


def rank_symbol(rank: int) -> str:
    """The symbol the model sees for ``rank`` (``A``, ``2``..``10``, ``J``, ``Q``, ``K``)."""
    return SYMBOLS[rank]


def symbol_rank(symbol: str) -> int:
    """Inverse of :func:`rank_symbol` (accepts ``T`` for ten as in the original assets)."""
    symbol = symbol.strip()
    if symbol == "T":
        return 10
    return SYMBOL_TO_RANK[symbol]


@dataclass(frozen=True, order=True)
class Rule:
    """A value mapping for the face cards: J -> ``j``, Q -> ``q``, K -> ``k``.

    ``Rule(10, 10, 10)`` is the ID rule of the paper, ``Rule(11, 12, 13)`` the rule-OOD one.
    """

    j: int
    q: int
    k: int

    def __post_init__(self) -> None:
        for v in (self.j, self.q, self.k):
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 99:
                raise ValueError(f"face-card values must be integers in 1..99, got {self.as_tuple()}")

    @classmethod
    def of(cls, value: "Rule | Sequence[int] | str") -> "Rule":
        """Coerce a ``Rule``, a ``(j, q, k)`` sequence or a ``"j,q,k"`` string to a ``Rule``."""
        if isinstance(value, Rule):
            return value
        if isinstance(value, str):
            value = value.split(",")
        j, q, k = value
        return cls(int(j), int(q), int(k))

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.j, self.q, self.k)

    def value(self, rank: int) -> int:
        """The value of one rank under this rule."""
        if rank == 11:
            return self.j
        if rank == 12:
            return self.q
        if rank == 13:
            return self.k
        if 1 <= rank <= 10:
            return rank
        raise ValueError(f"rank must be in 1..13, got {rank}")

    def values(self, ranks: Iterable[int]) -> list[int]:
        return [self.value(r) for r in ranks]

    @property
    def sentence(self) -> str:
        """The natural-language rule sentence of the original prompt (ends with a period).

        ID: ``'J', 'Q', and 'K' count as '10'.``; otherwise
        ``'J', 'Q', and 'K' count as '11', '12', and '13' respectively.``
        """
        if self.j == self.q == self.k:
            return f"'J', 'Q', and 'K' count as '{self.j}'."
        return f"'J', 'Q', and 'K' count as '{self.j}', '{self.q}', and '{self.k}' respectively."

    @property
    def header(self) -> str:
        """The compact value-mapping header, e.g. ``J=10 Q=10 K=10``."""
        return f"J={self.j} Q={self.q} K={self.k}"


ID_RULE = Rule(10, 10, 10)
OOD_RULE = Rule(11, 12, 13)


def default_training_rules() -> tuple[Rule, ...]:
    """Every J/Q/K triple over {10, 11, 12, 13} except the held-out (11, 12, 13): 63 rules."""
    return tuple(Rule(*t) for t in product((10, 11, 12, 13), repeat=3) if t != OOD_RULE.as_tuple())


def sample_ranks(rng: random.Random, ood: bool = False) -> tuple[int, int, int, int]:
    """Draw 4 ranks as the original code does.

    ``ood=False``: 4 ranks i.i.d. uniform on 1..13.
    ``ood=True``: 3 ranks uniform on 1..13 plus 1 rank uniform on 11..13, then shuffled.
    """
    if not ood:
        return tuple(rng.randint(1, 13) for _ in range(4))  # type: ignore[return-value]
    ranks = [rng.randint(1, 13) for _ in range(3)] + [rng.randint(11, 13)]
    rng.shuffle(ranks)
    return tuple(ranks)  # type: ignore[return-value]


def sampler_support(ood: bool = False) -> Iterator[tuple[int, int, int, int]]:
    """Every rank tuple :func:`sample_ranks` can draw (with ``ood=True``: those with a face rank)."""
    return (ranks for ranks in product(range(1, 14), repeat=4) if not ood or max(ranks) >= 11)


def multiset(values: Iterable[int]) -> tuple[int, ...]:
    """The order-free key of a deal's values: the sorted tuple."""
    return tuple(sorted(int(v) for v in values))
