"""Short-term memory: a fixed-capacity cache of recent observations in coordinates relative to the
current graph node (see docs/design.md, 'Short-term memory').

Eviction removes the entry with the lowest ``lam * freq - (1 - lam) * (t - last_access)``
(ties: the oldest inserted). Retrieval keeps the entries within ``radius`` of the query's
relative position and ranks them by cosine similarity of embeddings. When the anchor node
changes, :meth:`reanchor` shifts every relative position so absolute positions stay put
(the public code forgets this).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Hashable

import torch

__all__ = ["ShortTermEntry", "ShortTermMemory"]


@dataclass
class ShortTermEntry:
    key: Hashable
    object_id: str
    relative_position: tuple[float, float, float]
    embedding: torch.Tensor
    last_access: int
    frequency: int
    inserted: int


class ShortTermMemory:
    def __init__(self, capacity: int = 128, lam: float = 0.5, radius: float = 3.0, top_k: int = 3) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        self.capacity, self.lam, self.radius, self.top_k = capacity, lam, radius, top_k
        self.entries: dict[Hashable, ShortTermEntry] = {}
        self._inserted = 0

    def __len__(self) -> int:
        return len(self.entries)

    def _score(self, entry: ShortTermEntry, step: int) -> float:
        return self.lam * entry.frequency - (1.0 - self.lam) * (step - entry.last_access)

    def insert(self, key: Hashable, object_id: str, relative_position: tuple[float, float, float],
               embedding: torch.Tensor, step: int) -> Hashable | None:
        """Insert or refresh ``key``; returns the key evicted to make room, if any."""
        embedding = embedding.detach().float().clone()
        entry = self.entries.get(key)
        if entry is not None:
            entry.object_id, entry.relative_position, entry.embedding = object_id, tuple(relative_position), embedding
            entry.last_access, entry.frequency = step, entry.frequency + 1
            return None
        evicted = None
        if len(self.entries) >= self.capacity:
            evicted = min(self.entries.values(), key=lambda e: (self._score(e, step), e.inserted)).key
            del self.entries[evicted]
        self.entries[key] = ShortTermEntry(key, object_id, tuple(relative_position), embedding, step, 1, self._inserted)
        self._inserted += 1
        return evicted

    def retrieve(self, relative_position: tuple[float, float, float], embedding: torch.Tensor,
                 step: int | None = None) -> list[tuple[ShortTermEntry, float]]:
        """Entries within ``radius`` of ``relative_position``, best ``top_k`` by cosine similarity
        (with their similarity); retrieved entries count as accessed at ``step`` when given."""
        query = embedding.detach().float()
        near = [e for e in self.entries.values() if math.dist(e.relative_position, relative_position) <= self.radius]
        scored = sorted(((e, float(torch.cosine_similarity(query, e.embedding, dim=0))) for e in near),
                        key=lambda pair: -pair[1])[: self.top_k]
        if step is not None:
            for entry, _ in scored:
                entry.last_access = step
        return scored

    def reanchor(self, old_anchor: tuple[float, float, float], new_anchor: tuple[float, float, float]) -> None:
        """Express every relative position against ``new_anchor``: p_rel += p(old) - p(new)."""
        shift = [o - n for o, n in zip(old_anchor, new_anchor)]
        for entry in self.entries.values():
            entry.relative_position = tuple(p + s for p, s in zip(entry.relative_position, shift))

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": [self.capacity, self.lam, self.radius, self.top_k], "inserted": self._inserted,
            "entries": [[e.key, e.object_id, list(e.relative_position), e.embedding.tolist(), e.last_access, e.frequency,
                         e.inserted] for e in self.entries.values()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__init__(*state["config"])
        self._inserted = state["inserted"]
        for key, object_id, position, embedding, last, frequency, inserted in state["entries"]:
            key = tuple(key) if isinstance(key, list) else key
            self.entries[key] = ShortTermEntry(key, object_id, tuple(position), torch.tensor(embedding), last, frequency,
                                               inserted)
