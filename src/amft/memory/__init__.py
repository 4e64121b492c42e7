"""Mem4Nav's hierarchical spatial memory: a sparse octree keyed by Morton codes, a semantic
topology graph, a short-term cache in relative coordinates, a long-term memory written through a
reversible Transformer, the retrieval policy between them, and `Mem4NavMemory`
(`amft.memory.system`), which puts them together for an agent. Pure torch: the navigation
benchmark and agents that use it are in `amft.navigation`."""

from .graph import GraphNode, TopologyGraph
from .long_term import LongTermMemory, ReversibleBlock, ReversibleTransformer
from .octree import OctreeLeaf, SparseOctree, morton_decode, morton_encode, parent_key
from .retrieval import Retrieved, retrieve
from .short_term import ShortTermEntry, ShortTermMemory
from .system import ABLATIONS, Mem4NavConfig, Mem4NavMemory

__all__ = [
    "ABLATIONS",
    "GraphNode",
    "LongTermMemory",
    "Mem4NavConfig",
    "Mem4NavMemory",
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
