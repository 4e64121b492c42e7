"""Semantic topology graph: appearance clusters of embeddings as nodes, traversals as weighted
edges, Dijkstra for planning (see docs/design.md, 'Topology graph').

An observation joins the nearest node when its embedding is within ``delta`` (L2) of that
node's, updating the node's mean embedding and position; otherwise it starts a new node.
Moving from node a to node b sets the edge weight ``alpha * |p(a) - p(b)| + beta * c_instr``,
averaged with an earlier weight of the same edge; no self-loops, no negative weights.

With ``merge_radius`` (metres; not in the paper) an observation may only join a node within that
distance: lookalike places far apart stay apart, and the nearest-node search scans the nodes of
the neighbouring spatial cells instead of the whole graph, so it stays fast as the map grows.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

import torch

from .rows import RowStore

__all__ = ["GraphNode", "TopologyGraph"]


@dataclass
class GraphNode:
    node_id: int
    embedding: torch.Tensor
    position: tuple[float, float, float]
    visits: int


class TopologyGraph:
    def __init__(self, delta: float = 0.7, alpha: float = 1.0, beta: float = 0.5, merge_radius: float | None = None) -> None:
        if merge_radius is not None and merge_radius <= 0:
            raise ValueError(f"merge_radius must be positive or None, got {merge_radius}")
        self.delta, self.alpha, self.beta, self.merge_radius = delta, alpha, beta, merge_radius
        self.nodes: list[GraphNode] = []
        self.edges: dict[int, dict[int, float]] = {}
        self.current: int | None = None
        self._embeddings: RowStore | None = None
        self._cells: dict[tuple[int, ...], set[int]] = {}
        self._cell_of: dict[int, tuple[int, ...]] = {}

    def _cell(self, position: tuple[float, float, float]) -> tuple[int, ...]:
        return tuple(math.floor(c / self.merge_radius) for c in position)

    def nearest(self, embedding: torch.Tensor, position: tuple[float, float, float] | None = None) -> tuple[int | None, float]:
        """The node whose mean embedding is nearest (L2), and the distance; with ``merge_radius`` and
        a ``position``, among the nodes within ``merge_radius`` of it."""
        if self._embeddings is None or not len(self._embeddings):
            return None, math.inf
        if self.merge_radius is None or position is None:
            (index, distance), = self._embeddings.nearest(embedding, 1)
            return index, distance
        cx, cy, cz = self._cell(position)
        candidates = [n for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)
                      for n in self._cells.get((cx + dx, cy + dy, cz + dz), ())
                      if math.dist(self.nodes[n].position, position) <= self.merge_radius]
        if not candidates:
            return None, math.inf
        distances = (self._embeddings.rows[candidates] - embedding.float()).norm(dim=1)
        best = int(distances.argmin())
        return candidates[best], float(distances[best])

    def _store(self, node: GraphNode) -> None:
        if self._embeddings is None:
            self._embeddings = RowStore(node.embedding.numel())
        self._embeddings.put(node.node_id, node.embedding)
        if self.merge_radius is not None:
            cell = self._cell(node.position)
            previous = self._cell_of.get(node.node_id)
            if previous != cell:
                if previous is not None:
                    self._cells[previous].discard(node.node_id)
                self._cells.setdefault(cell, set()).add(node.node_id)
                self._cell_of[node.node_id] = cell

    def add_node(self, embedding: torch.Tensor, position: tuple[float, float, float]) -> int:
        """A new node for one observation (no merging, no edge); its id."""
        node = GraphNode(len(self.nodes), embedding.detach().float().clone(), tuple(position), 1)
        self.nodes.append(node)
        self._store(node)
        return node.node_id

    def observe(self, embedding: torch.Tensor, position: tuple[float, float, float], instruction_cost: float = 0.1) -> int:
        """Merge the observation into a node or create one; link it from the previous node; return its id."""
        embedding = embedding.detach().float()
        index, distance = self.nearest(embedding, position)
        if index is None or distance > self.delta:
            index = self.add_node(embedding, position)
        else:
            node = self.nodes[index]
            node.visits += 1
            node.embedding += (embedding - node.embedding) / node.visits
            node.position = tuple(p + (q - p) / node.visits for p, q in zip(node.position, position))
            self._store(node)
        previous, self.current = self.current, index
        if previous is not None and previous != index:
            cost = max(0.0, self.alpha * math.dist(self.nodes[previous].position, self.nodes[index].position)
                       + self.beta * instruction_cost)
            old = self.edges.setdefault(previous, {}).get(index)
            self.edges[previous][index] = cost if old is None else (old + cost) / 2
        return index

    def shortest_path(self, source: int, target: int) -> tuple[list[int], float] | None:
        """Dijkstra: the node path and its cost, or None when ``target`` cannot be reached."""
        best = {source: 0.0}
        before: dict[int, int] = {}
        queue = [(0.0, source)]
        while queue:
            cost, node = heapq.heappop(queue)
            if node == target:
                path = [node]
                while path[-1] != source:
                    path.append(before[path[-1]])
                return path[::-1], cost
            if cost > best.get(node, math.inf):
                continue
            for neighbour, weight in self.edges.get(node, {}).items():
                if cost + weight < best.get(neighbour, math.inf):
                    best[neighbour] = cost + weight
                    before[neighbour] = node
                    heapq.heappush(queue, (cost + weight, neighbour))
        return None

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": [self.delta, self.alpha, self.beta, self.merge_radius], "current": self.current,
            "nodes": [[n.embedding.tolist(), list(n.position), n.visits] for n in self.nodes],
            "edges": [[a, b, w] for a, targets in self.edges.items() for b, w in targets.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__init__(*state["config"])
        self.nodes = [GraphNode(i, torch.tensor(e), tuple(p), v) for i, (e, p, v) in enumerate(state["nodes"])]
        for node in self.nodes:
            self._store(node)
        for a, b, weight in state["edges"]:
            self.edges.setdefault(a, {})[b] = weight
        self.current = state["current"]
