"""Mem4Nav's memory as one object a navigation agent can use, with each component switchable for
the paper's ablations (see docs/design.md, 'The composite memory and its ablations').

Per step, :meth:`Mem4NavMemory.observe` takes the agent's position, its observation embedding
and the landmark names it sees at its own node, and writes them everywhere that is switched
on: the octree leaf of the position, the topology-graph node (merged by embedding distance),
the long-term memory tokens of the leaf and the node, and a short-term entry per landmark in
coordinates relative to the current graph node (re-anchored when the node changes; relative
to the agent's start without a graph, the "-semantic graph" ablation).

Two questions agents ask it:
- :meth:`places_with` -- how many distinct places has a landmark been seen at? Places are octree
  leaves (exact positions) or, without the octree, graph nodes (appearance clusters, so two
  places that look alike count once).
- :meth:`recall` -- what was seen near here before? The short-term memory answers first; when it
  has nothing near and similar enough, the long-term memory's nearest tokens are decoded (R^-1)
  and compared with the current observation.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .graph import TopologyGraph
from .long_term import LongTermMemory, ReversibleTransformer
from .octree import SparseOctree
from .retrieval import Retrieved, retrieve
from .short_term import ShortTermMemory

__all__ = ["ABLATIONS", "Mem4NavConfig", "Mem4NavMemory", "Recollection"]

Position = tuple[float, float, float]


@dataclass(frozen=True)
class Mem4NavConfig:
    """Which components are on, and their sizes (the paper's values where they carry over to the
    synthetic city: 4 m leaves instead of 1.5 mm, d = 64 instead of 384)."""

    octree: bool = True
    graph: bool = True
    short_term: bool = True
    long_term: bool = True
    dim: int = 64
    #: octree: a cube of side ``octree_side`` metres centred on the origin, 2^depth leaves per axis
    octree_side: float = 4096.0
    octree_depth: int = 10
    #: topology-graph merge distance (unit-length observation embeddings)
    graph_delta: float = 0.35
    short_term_capacity: int = 128
    short_term_radius: float = 3.0
    #: best cosine a short-term hit needs before the long-term memory is skipped (tau)
    retrieval_threshold: float = 0.7
    #: a recalled observation this similar to the current one means "seen here before"
    same_place_similarity: float = 0.95
    #: long-term read: "exact" nearest-neighbour search (the default) or "hnsw" (approximate; the hnsw extra)
    long_term_index: str = "exact"
    long_term_depth: int = 2
    long_term_heads: int = 4
    top_m: int = 3
    seed: int = 0

    @property
    def enabled(self) -> bool:
        return self.octree or self.graph or self.short_term or self.long_term


#: the paper's ablations as config overrides
ABLATIONS: dict[str, dict[str, bool]] = {
    "full": {},
    "no-octree": {"octree": False},
    "no-graph": {"graph": False},
    "no-short-term": {"short_term": False},
    "no-long-term": {"long_term": False},
    "none": {"octree": False, "graph": False, "short_term": False, "long_term": False},
}


@dataclass
class Recollection:
    """What :meth:`Mem4NavMemory.recall` found: the source, the landmark names remembered near
    here, and whether the current place was seen before."""

    source: str
    landmarks: list[str] = field(default_factory=list)
    seen_before: bool = False


class Mem4NavMemory:
    def __init__(self, config: Mem4NavConfig | None = None, **overrides: Any) -> None:
        self.config = config or Mem4NavConfig(**overrides)
        transformer = None
        if self.config.long_term:
            torch.manual_seed(self.config.seed)  # R's weights: fixed per seed, never trained (R^-1 R = id)
            transformer = ReversibleTransformer(self.config.dim, self.config.long_term_depth, self.config.long_term_heads)
        self._transformer = transformer
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything (a new episode)."""
        c = self.config
        half = c.octree_side / 2
        self.octree = SparseOctree(side=c.octree_side, depth=c.octree_depth, origin=(-half, -half, -half)) if c.octree else None
        self.graph = TopologyGraph(delta=c.graph_delta) if c.graph else None
        self.short_term = ShortTermMemory(capacity=c.short_term_capacity, radius=c.short_term_radius) if c.short_term else None
        self.long_term = LongTermMemory(self._transformer, c.long_term_index) if self._transformer is not None else None
        self.step = 0
        self._anchor: Position | None = None
        #: landmark name -> the places (octree keys or graph node ids) it was seen at
        self.sightings: dict[str, set[Hashable]] = {}
        #: long-term key -> (position, landmark names), to turn decoded tokens back into words
        self._long_term_places: dict[Hashable, tuple[Position, tuple[str, ...]]] = {}

    # ------------------------------------------------------------------ writing
    def _place(self, leaf_key: int | None, node: int | None) -> Hashable | None:
        if leaf_key is not None:
            return ("leaf", leaf_key)
        if node is not None:
            return ("node", node)
        return None

    def _relative(self, position: Position) -> Position:
        anchor = self._anchor or (0.0, 0.0, 0.0)
        return tuple(p - a for p, a in zip(position, anchor))  # type: ignore[return-value]

    def observe(self, position: Position, embedding: Tensor, landmarks_here: list[str]) -> None:
        """Write one step's observation: octree leaf, graph node, long-term tokens, short-term entries."""
        self.step += 1
        leaf_key = self.octree.insert(position, embedding).key if self.octree is not None else None
        node = None
        if self.graph is not None:
            node = self.graph.observe(embedding, position)
            anchor = self.graph.nodes[node].position
            if self.short_term is not None and self._anchor is not None and anchor != self._anchor:
                self.short_term.reanchor(self._anchor, anchor)
            self._anchor = anchor
        elif self._anchor is None:
            self._anchor = position  # no graph: positions relative to where the agent started
        place = self._place(leaf_key, node)
        if place is not None:
            for name in landmarks_here:
                self.sightings.setdefault(name, set()).add(place)
        if self.long_term is not None:
            # Tokens for the leaf and the node; with neither structure to key by, one token per step.
            keys = [key for key in (("leaf", leaf_key) if leaf_key is not None else None,
                                    ("node", node) if node is not None else None) if key is not None] or [("step", self.step)]
            self.long_term.write_many(keys, embedding)
            for key in keys:
                self._long_term_places[key] = (position, tuple(landmarks_here))
        if self.short_term is not None:
            relative = self._relative(position)
            for name in landmarks_here or ["nothing"]:
                self.short_term.insert((place or ("at", tuple(round(p, 1) for p in position)), name), name, relative,
                                       embedding, self.step)

    # ------------------------------------------------------------------ reading
    def places_with(self, landmark: str) -> int:
        """Distinct places where ``landmark`` was seen at the agent's own node (0 without octree and graph)."""
        return len(self.sightings.get(landmark, ()))

    def recall(self, position: Position, embedding: Tensor) -> Recollection:
        """Short-term memory first, the long-term memory when that finds nothing similar enough.
        Call before :meth:`observe` of the same step, or the step finds itself."""
        if self.short_term is None and self.long_term is None:
            return Recollection("none")
        query = None
        if self.long_term is not None:
            # The read query: the token this observation would be written as at a new key, R([0; v]).
            # Stored tokens of places with this appearance are its nearest neighbours.
            with torch.no_grad():
                zeros = torch.zeros(self.config.dim, dtype=embedding.dtype)
                query = self.long_term.transformer(torch.cat([zeros, embedding]).view(1, 1, -1)).view(-1)
        short_term = self.short_term or ShortTermMemory(capacity=1)
        found: Retrieved = retrieve(short_term, self.long_term, self._relative(position), embedding, query,
                                    threshold=self.config.retrieval_threshold, top_m=self.config.top_m, step=self.step)
        if found.source == "short-term":
            names = [entry.object_id for entry, _ in found.items if entry.object_id != "nothing"]
            best = found.items[0][1]
            return Recollection("short-term", sorted(set(names)), best >= self.config.same_place_similarity)
        if found.source == "long-term":
            names, seen = set(), False
            for key, _distance, observation in found.items:
                place_position, place_names = self._long_term_places[key]
                similar = float(torch.cosine_similarity(observation.float(), embedding.float(), dim=0))
                near = math.dist(place_position, position) <= self.config.short_term_radius
                if similar >= self.config.same_place_similarity and near:
                    seen = True
                    names.update(place_names)
            return Recollection("long-term", sorted(names), seen)
        return Recollection("none")
