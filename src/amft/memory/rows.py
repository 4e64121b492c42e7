"""A row store for nearest-neighbour search: rows live in one preallocated tensor that doubles
when full, so appending is amortised O(1). Search is exact (one vectorised pass over every row)
by default, or approximate through an HNSW graph (hnswlib, the ``hnsw`` extra) whose cost grows
with the logarithm of the number of rows."""

from __future__ import annotations

from collections.abc import Hashable

import torch
from torch import Tensor

__all__ = ["INDEXES", "RowStore"]

INDEXES = ("exact", "hnsw")


class _HnswIndex:
    """hnswlib's HNSW graph over the store's row positions (its labels). A row written again
    under the same label replaces the old one in the graph."""

    #: hnswlib's usual settings: links per node, and the candidate lists of insertion and search
    M, EF_CONSTRUCTION, EF_SEARCH = 16, 200, 64

    def __init__(self, width: int, capacity: int) -> None:
        try:
            import hnswlib
        except ImportError as exc:
            raise ImportError("index='hnsw' needs hnswlib: pip install 'amft[hnsw]'") from exc
        self.graph = hnswlib.Index(space="l2", dim=width)
        self.graph.init_index(max_elements=capacity, ef_construction=self.EF_CONSTRUCTION, M=self.M)

    def put(self, label: int, row: Tensor) -> None:
        if self.graph.get_current_count() >= self.graph.get_max_elements():
            self.graph.resize_index(2 * self.graph.get_max_elements())
        self.graph.add_items(row.detach().float().numpy()[None], [label])

    def candidates(self, query: Tensor, count: int) -> list[int]:
        self.graph.set_ef(max(self.EF_SEARCH, count))
        labels, _ = self.graph.knn_query(query.detach().float().numpy()[None], k=count)
        return labels[0].tolist()


class RowStore:
    def __init__(self, width: int, dtype: torch.dtype = torch.float32, capacity: int = 64, index: str = "exact") -> None:
        if index not in INDEXES:
            raise ValueError(f"index must be one of {', '.join(INDEXES)}, got {index!r}")
        self._data = torch.empty(capacity, width, dtype=dtype)
        self._index: dict[Hashable, int] = {}
        self.keys: list[Hashable] = []
        self._hnsw = _HnswIndex(width, capacity) if index == "hnsw" else None

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._index

    @property
    def rows(self) -> Tensor:
        """The stored rows, in insertion order of their keys (a view)."""
        return self._data[: len(self.keys)]

    def get(self, key: Hashable) -> Tensor:
        return self._data[self._index[key]]

    def put(self, key: Hashable, row: Tensor) -> None:
        """Store ``row`` under ``key``, replacing the key's earlier row."""
        position = self._index.get(key)
        if position is None:
            if len(self.keys) == self._data.size(0):
                self._data = torch.cat([self._data, torch.empty_like(self._data)])
            position = self._index[key] = len(self.keys)
            self.keys.append(key)
        self._data[position] = row.to(self._data.dtype)
        if self._hnsw is not None:
            self._hnsw.put(position, self._data[position])

    def nearest(self, query: Tensor, count: int = 1) -> list[tuple[Hashable, float]]:
        """The ``count`` keys whose rows are nearest to ``query`` (L2), with their distances. With
        HNSW the keys are the graph's approximate answer; their distances are exact."""
        if not self.keys:
            return []
        count = min(count, len(self.keys))
        query = query.to(self._data.dtype)
        if self._hnsw is None:
            distances = (self.rows - query).norm(dim=1)
            order = torch.topk(distances, count, largest=False).indices.tolist()
            return [(self.keys[i], float(distances[i])) for i in order]
        positions = self._hnsw.candidates(query, count)
        distances = (self._data[positions] - query).norm(dim=1).tolist()
        return sorted(((self.keys[p], d) for p, d in zip(positions, distances)), key=lambda hit: hit[1])
