"""Write and read latency of the memory components as the map grows (10^3, 10^4, 10^5 entries).

    python benchmarks/memory_scaling.py [--sizes 1000,10000,100000] [--dim 64]

For each size N the structures are filled with N random entries over a map that grows with N
at a street-like density (one entry per 20 m x 20 m, so the map is 20 * sqrt(N) metres wide):
octree leaves, graph nodes, long-term tokens; the short-term cache is bounded by its capacity.
Then the mean latency of a write and of a read is timed over the same number of extra
operations at every size. The last line is one JSON object: {size: {component: {write_us,
read_us}}}. Octree reads are hash lookups; graph and long-term reads are exact nearest-neighbour
passes over all entries (linear in N, vectorised); the graph with a 50 m merge radius (not in
the paper) searches only the nodes of the neighbouring spatial cells; the long-term memory's
HNSW index (the paper's; measured when hnswlib is installed) walks a graph of the tokens.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time

import torch

from amft.memory import LongTermMemory, ReversibleTransformer, ShortTermMemory, SparseOctree, TopologyGraph

TIMED = 200
#: the long-term memory's read indexes: exact always, HNSW where hnswlib is installed (the hnsw extra)
LONG_TERM_INDEXES = {"long_term": "exact"} | ({"long_term_hnsw": "hnsw"} if importlib.util.find_spec("hnswlib") else {})


def _mean_us(operation, count: int = TIMED) -> float:
    started = time.perf_counter()
    for i in range(count):
        operation(i)
    return round((time.perf_counter() - started) / count * 1e6, 2)


def measure(size: int, dim: int, generator: torch.Generator) -> dict[str, dict[str, float]]:
    embeddings = torch.randn(size + TIMED, dim, generator=generator)
    width = 20.0 * size**0.5
    positions = (torch.rand(size + TIMED, 3, generator=generator) * torch.tensor([width, width, 20.0])).tolist()
    octree = SparseOctree(side=16384.0, depth=12)  # 4 m cells over up to 16 km
    for p, e in zip(positions[:size], embeddings[:size]):
        octree.insert(p, e)
    graph = TopologyGraph(delta=0.0)  # every timed observation makes a new node next to N existing ones
    gated = TopologyGraph(delta=0.0, merge_radius=50.0)  # nearest-node search among nodes within 50 m
    for p, e in zip(positions[:size], embeddings[:size]):
        graph.add_node(e, p)
        gated.add_node(e, p)
    transformer = ReversibleTransformer(dim=dim, depth=2, heads=4)
    long_term = {name: LongTermMemory(transformer, index) for name, index in LONG_TERM_INDEXES.items()}
    for ltm in long_term.values():
        for i in range(size):
            ltm.stored.put(i, torch.cat([embeddings[i], embeddings[i]]))  # filling through R would dominate setup time
    stm = ShortTermMemory(capacity=128)
    for i in range(min(size, 128)):
        stm.insert(i, "o", tuple(positions[i]), embeddings[i], step=i)
    extra = range(size, size + TIMED)
    results = {
        "octree": {"write_us": _mean_us(lambda i: octree.insert(positions[extra[i]], embeddings[extra[i]])),
                   "read_us": _mean_us(lambda i: octree.leaf_at(positions[i % size]))},
        "graph": {"write_us": _mean_us(lambda i: graph.observe(embeddings[extra[i]], positions[extra[i]])),
                  "read_us": _mean_us(lambda i: graph.nearest(embeddings[i % size]))},
        "graph_merge_radius_50m": {
            "write_us": _mean_us(lambda i: gated.observe(embeddings[extra[i]], positions[extra[i]])),
            "read_us": _mean_us(lambda i: gated.nearest(embeddings[i % size], positions[i % size]))},
        "short_term": {"write_us": _mean_us(lambda i: stm.insert(size + i, "o", tuple(positions[extra[i]]),
                                                                 embeddings[extra[i]], step=size + i)),
                       "read_us": _mean_us(lambda i: stm.retrieve(tuple(positions[i % size]), embeddings[i % size]))},
    }
    for name, ltm in long_term.items():
        results[name] = {"write_us": _mean_us(lambda i: ltm.write(size + i, embeddings[extra[i]])),
                         "read_us": _mean_us(lambda i: ltm.search(torch.cat([embeddings[i % size]] * 2), 3))}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="Comma-separated numbers of stored entries.")
    parser.add_argument("--dim", type=int, default=64, help="Embedding size d (long-term tokens have 2d).")
    options = parser.parse_args()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    measure(TIMED, options.dim, torch.Generator().manual_seed(1))  # warm-up: first calls pay one-off set-up costs
    results = {}
    for size in (int(s) for s in options.sizes.split(",")):
        results[size] = measure(size, options.dim, generator)
        print(f"N={size}: {results[size]}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
