"""The navigation benchmark built on Mem4Nav's memory (`amft.memory`): synthetic cities with
VELMA's navigator, what an agent observes there, episodes with templated instructions, metrics in
the two conventions of the literature, the rule-based follower and the modular agent with a learned
controller, and the benchmark of seeds, splits and memory-dependent subsets.

The study runner (`amft.navigation.study`) is not imported here: tasks use the benchmark and the
agents alone."""

from .agents import FollowerAgent, run_episode
from .benchmark import SPLITS, SUBSETS, NavBenchmark, build_benchmark, evaluate_episodes, training_stream
from .city import ACTIONS, City, make_city
from .episodes import Episode
from .observations import Observer

__all__ = [
    "ACTIONS",
    "SPLITS",
    "SUBSETS",
    "City",
    "Episode",
    "FollowerAgent",
    "NavBenchmark",
    "Observer",
    "build_benchmark",
    "evaluate_episodes",
    "make_city",
    "run_episode",
    "training_stream",
]
