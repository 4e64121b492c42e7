"""The synthetic city navigation benchmark: per seed, a city and held-out episodes of each
memory-dependent subset, the expert training stream beside them, and per-episode scoring in both
metric conventions.

``test`` is a held-out draw of episodes on the seed's city; ``unseen`` is a different city
(geographically unseen). Subsets: ``plain`` (no memory needed), ``counting`` ("stop at the second
X"), ``loop`` (back to the start around a block) and ``long`` (over 40 actions).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .agents import FollowerAgent, run_episode
from .city import City, make_city
from .episodes import Episode, sample_counting_episode, sample_episode, sample_loop_episode
from .metrics import episodes_convention_a, episodes_convention_b
from .observations import Observer

__all__ = ["SPLITS", "SUBSETS", "NavBenchmark", "build_benchmark", "episode_key", "evaluate_episodes",
           "training_stream"]

SUBSETS = ("plain", "counting", "loop", "long")
SPLITS = ("test", "unseen")


@dataclass
class NavBenchmark:
    city: City
    observer: Observer
    episodes: dict[str, list[Episode]]  # subset -> episodes


def episode_key(episode: Episode) -> tuple:
    """What makes two episodes the same task: start pose, goal and instruction."""
    return episode.start.node, round(episode.start.heading), episode.goal, episode.instruction


def _subset(episode: Episode) -> str:
    for name in ("loop", "counting", "long"):
        if name in episode.subsets:
            return name
    return "plain"


def build_benchmark(seed: int, split: str = "test", *, city_size: int = 8, per_subset: int = 50) -> NavBenchmark:
    """``per_subset`` episodes of each subset on the seed's city (``test``) or on another city (``unseen``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    city = make_city(seed if split == "test" else 10_000 + seed, size=city_size)
    rng = random.Random(f"mem4nav-episodes:{seed}:{split}")
    # Loops and counting episodes are rare among random ones, so each has its own sampler.
    samplers = {"loop": lambda: sample_loop_episode(city, rng),
                "counting": lambda: sample_counting_episode(city, rng, max_actions=120)}
    episodes: dict[str, list[Episode]] = {name: [] for name in SUBSETS}
    seen: set[tuple] = set()
    for _ in range(200 * per_subset):
        missing = [name for name in SUBSETS if len(episodes[name]) < per_subset]
        if not missing:
            break
        episode = samplers.get(missing[0], lambda: sample_episode(city, rng, max_actions=120))()
        name = _subset(episode)
        if len(episodes[name]) < per_subset and episode_key(episode) not in seen:
            seen.add(episode_key(episode))
            episodes[name].append(episode)
    short = [name for name in SUBSETS if len(episodes[name]) < per_subset]
    if short:
        raise RuntimeError(f"city {city.seed} ({city_size}x{city_size}) gave too few episodes of {short}; use a larger city")
    return NavBenchmark(city, Observer(city), episodes)


def training_stream(benchmark: NavBenchmark, stream: str, loop_fraction: float = 0.3,
                    counting_fraction: float = 0.2) -> Iterator[Episode]:
    """Endless expert episodes on the benchmark's city (shares of them loops and counting episodes),
    seeded by ``stream`` and never one of the benchmark's evaluation episodes."""
    held_out = {episode_key(e) for episodes in benchmark.episodes.values() for e in episodes}
    rng = random.Random(f"mem4nav-{stream}")
    while True:
        draw = rng.random()
        if draw < loop_fraction:
            episode = sample_loop_episode(benchmark.city, rng)
        elif draw < loop_fraction + counting_fraction:
            episode = sample_counting_episode(benchmark.city, rng, max_actions=120)
        else:
            episode = sample_episode(benchmark.city, rng, max_actions=120)
        if episode_key(episode) not in held_out:
            yield episode


def evaluate_episodes(benchmark: NavBenchmark, agent: FollowerAgent) -> list[dict[str, Any]]:
    """One row per episode: subset, both conventions' TC/SPD/nDTW (keys ``A_TC`` ... ``B_nDTW``)."""
    city, rows = benchmark.city, []
    graph = {node: list(successors) for node, successors in city.edges.items()}
    for subset, episodes in benchmark.episodes.items():
        runs = [run_episode(city, benchmark.observer, agent, e) for e in episodes]
        a = episodes_convention_a(graph, [(r.path, list(e.path)) for r, e in zip(runs, episodes)])
        b = episodes_convention_b([(r.positions, [city.positions[n] for n in e.path]) for r, e in zip(runs, episodes)])
        for index, (ra, rb) in enumerate(zip(a, b)):
            rows.append({"subset": subset, "episode": index, **{f"A_{k}": v for k, v in ra.items()},
                         **{f"B_{k}": v for k, v in rb.items()}})
    return rows
