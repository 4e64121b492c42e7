"""The retrieval policy: short-term memory first; the long-term memory only when the short-term
memory has nothing near or nothing similar enough (see docs/design.md, 'Retrieval')."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from .long_term import LongTermMemory
from .short_term import ShortTermMemory

__all__ = ["Retrieved", "retrieve"]


@dataclass
class Retrieved:
    """What a decision gets from memory: the source used and its items."""

    source: str  # "short-term", "long-term" or "none"
    items: list[Any] = field(default_factory=list)


def retrieve(short_term: ShortTermMemory, long_term: LongTermMemory | None, relative_position: tuple[float, float, float],
             embedding: Tensor, long_term_query: Tensor | None, *, threshold: float = 0.7, top_m: int = 3,
             step: int | None = None) -> Retrieved:
    """Short-term hits if the best cosine is at least ``threshold``; else the long-term memory's
    ``top_m`` nearest tokens to ``long_term_query``; else nothing."""
    hits = short_term.retrieve(relative_position, embedding, step=step)
    if hits and hits[0][1] >= threshold:
        return Retrieved("short-term", hits)
    if long_term is not None and long_term_query is not None and len(long_term):
        return Retrieved("long-term", long_term.search(long_term_query, top_m))
    return Retrieved("none")
