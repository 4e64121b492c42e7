"""A row store for nearest-neighbour search: rows live in one preallocated tensor that doubles
when full, so appending is amortised O(1) and a search is one vectorised pass."""

from __future__ import annotations

from collections.abc import Hashable

import torch
from torch import Tensor

__all__ = ["RowStore"]


class RowStore:
    def __init__(self, width: int, dtype: torch.dtype = torch.float32, capacity: int = 64) -> None:
        self._data = torch.empty(capacity, width, dtype=dtype)
        self._index: dict[Hashable, int] = {}
        self.keys: list[Hashable] = []

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

    def nearest(self, query: Tensor, count: int = 1) -> list[tuple[Hashable, float]]:
        """The ``count`` keys whose rows are nearest to ``query`` (L2), with their distances."""
        if not self.keys:
            return []
        distances = (self.rows - query.to(self._data.dtype)).norm(dim=1)
        order = torch.topk(distances, min(count, len(self.keys)), largest=False).indices.tolist()
        return [(self.keys[i], float(distances[i])) for i in order]
