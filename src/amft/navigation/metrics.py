"""Navigation metrics in the two conventions of the literature (see docs/design.md, 'Metric conventions A and B').

(A) published baselines (VELMA, ORAR, FLAME), on the navigation graph:
    TC   = 100 * share of episodes ending on the goal node or a neighbour of it (either direction);
    SPD  = mean shortest-path length in hops from the final node to the goal;
    nDTW = exp(-DTW(Q, R) / (d_th * sqrt(|R|))), d_th = 2, DTW cost = graph hop distance.
(B) the Mem4Nav code, on positions in metres:
    TC   = 100 * share of episodes ending within 3 m (Euclidean) of the goal;
    SPD  = mean Euclidean distance in metres from the final position to the goal;
    nDTW = exp(-DTW(Q, R) / L), DTW over Euclidean distances, L = the reference path's length.
Results of the two conventions are never mixed: every function names its convention.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence

__all__ = ["CONVENTION_A", "CONVENTION_B", "dtw", "episodes_convention_a", "episodes_convention_b", "graph_hops"]

Graph = Mapping[Hashable, Sequence[Hashable]]  # node -> successors (directed)


def graph_hops(graph: Graph, source: Hashable) -> dict[Hashable, int]:
    """Unweighted shortest-path lengths from ``source`` following directed edges (breadth first)."""
    hops = {source: 0}
    queue = deque([source])
    while queue:
        node = queue.popleft()
        for neighbour in graph.get(node, ()):
            if neighbour not in hops:
                hops[neighbour] = hops[node] + 1
                queue.append(neighbour)
    return hops


def dtw(query: Sequence, reference: Sequence, cost: Callable[[object, object], float]) -> float:
    """Dynamic time warping distance between two sequences under ``cost``."""
    if not query or not reference:
        raise ValueError("DTW needs two non-empty sequences")
    previous = [math.inf] * (len(reference) + 1)
    previous[0] = 0.0
    for q in query:
        current = [math.inf] * (len(reference) + 1)
        for j, r in enumerate(reference, start=1):
            current[j] = cost(q, r) + min(previous[j], previous[j - 1], current[j - 1])
        previous = current
    return previous[-1]


def episodes_convention_a(graph: Graph, episodes: Sequence[tuple[Sequence[Hashable], Sequence[Hashable]]],
                          d_th: float = 2.0) -> list[dict[str, float]]:
    """Convention (A) per episode over ``(agent path, reference path)`` node sequences; the goal is
    the reference's last node. nDTW uses the normaliser d_th * sqrt(|R|)."""
    undirected: dict[Hashable, set] = {}
    for node, successors in graph.items():
        for successor in successors:
            undirected.setdefault(node, set()).add(successor)
            undirected.setdefault(successor, set()).add(node)
    hop_cache: dict[Hashable, dict[Hashable, int]] = {}

    def hops(a: Hashable, b: Hashable) -> float:
        if a not in hop_cache:
            hop_cache[a] = graph_hops(graph, a)
        return float(hop_cache[a].get(b, math.inf))

    rows = []
    for path, reference in episodes:
        goal, final = reference[-1], path[-1]
        rows.append({"TC": 100.0 * (final == goal or final in undirected.get(goal, ())), "SPD": hops(final, goal),
                     "nDTW": 100 * math.exp(-dtw(path, reference, hops) / (d_th * math.sqrt(len(reference))))})
    return rows


def episodes_convention_b(episodes: Sequence[tuple[Sequence[tuple[float, ...]], Sequence[tuple[float, ...]]]],
                          success_radius: float = 3.0) -> list[dict[str, float]]:
    """Convention (B) per episode over ``(agent positions, reference positions)`` in metres; nDTW = exp(-DTW / L)."""
    rows = []
    for path, reference in episodes:
        distance = math.dist(path[-1], reference[-1])
        length = sum(math.dist(a, b) for a, b in zip(reference, reference[1:]))
        rows.append({"TC": 100.0 * (distance <= success_radius), "SPD": distance,
                     "nDTW": 100 * math.exp(-dtw(path, reference, math.dist) / max(length, 1e-9))})
    return rows


CONVENTION_A = "A (graph hops; nDTW / (d_th*sqrt|R|), d_th=2)"
CONVENTION_B = "B (metres; TC within 3 m; nDTW / reference length)"
