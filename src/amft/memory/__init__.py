"""Mem4Nav's hierarchical spatial memory: a sparse octree keyed by Morton codes, a semantic
topology graph, a short-term cache in relative coordinates, a long-term memory written through a
reversible Transformer, and the retrieval policy between them (spec: mem4nav.md)."""

from .graph import GraphNode, TopologyGraph
from .long_term import LongTermMemory, ReversibleBlock, ReversibleTransformer
from .octree import OctreeLeaf, SparseOctree, morton_decode, morton_encode, parent_key
from .retrieval import Retrieved, retrieve
from .short_term import ShortTermEntry, ShortTermMemory

__all__ = [
    "GraphNode",
    "LongTermMemory",
    "OctreeLeaf",
    "Retrieved",
    "ReversibleBlock",
    "ReversibleTransformer",
    "ShortTermEntry",
    "ShortTermMemory",
    "SparseOctree",
    "TopologyGraph",
    "morton_decode",
    "morton_encode",
    "parent_key",
    "retrieve",
]
