"""City navigation with Mem4Nav memory for language-model agents (the VELMA-style interface of
Mem4Nav spec §9: memory rendered as prompt lines), on the synthetic cities of ``amft.memory``.

A decision prompt holds the instruction, the actions so far (one letter each, upper case where
the step started at an intersection), the current observation (landmarks at the agent's node
and the street sign at intersections) and, with memory, a ``[mem]`` line: for each landmark the
instruction names, the number of distinct places it was seen at before this step, and whether
memory recalls the current place. Without memory (``nav_memory: none``) the line is absent, so
the agent cannot count what it passed or know it is back. The answer is one action word.

Training rows are the steps of expert episodes (the demonstration is the expert's action; an
answer is rewarded 1 when it leads to the same next state). Evaluation runs whole episodes with
the model's own actions, within 2 x (expert length) + 10 steps; an episode succeeds when the
agent stops on the goal node (TC of convention B: the goal node is the only node within 3 m).
Splits: ``plain``, ``counting``, ``loop``, ``long`` (held-out episodes on the training city) and
``unseen`` (all four kinds on another city).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Mapping

from amft.memory.agents import parse_instruction
from amft.memory.city import ACTIONS, City
from amft.memory.episodes import Episode
from amft.memory.observations import Observer
from amft.memory.study import SUBSETS, NavBenchmark, build_benchmark, training_stream
from amft.memory.system import ABLATIONS, Mem4NavConfig, Mem4NavMemory
from amft.tasks.base import Env, Task, TaskConfig, Verification, completion_text

__all__ = ["CityNavConfig", "CityNavEnv", "CityNavTask", "parse_action"]

_LETTERS = {"forward": "f", "left": "l", "right": "r", "turn_around": "u"}


@dataclass(frozen=True)
class CityNavConfig(TaskConfig):
    """Options of the city-navigation task (each is also a flag of `amft train`)."""

    city_size: int = 8
    city_seed: int = 0
    #: the memory behind the [mem] line: an ablation of amft.memory.system.ABLATIONS ("none": no line)
    nav_memory: str = "full"
    #: shares of training episodes that are loops and counting episodes (the rest: random routes)
    loop_fraction: float = 0.3
    counting_fraction: float = 0.2
    nav_eval_episodes: int = 50

    def __post_init__(self) -> None:
        if self.nav_memory not in ABLATIONS:
            raise ValueError(f"nav_memory must be one of {tuple(ABLATIONS)}, got {self.nav_memory!r}")
        if min(self.loop_fraction, self.counting_fraction) < 0.0 or self.loop_fraction + self.counting_fraction > 1.0:
            raise ValueError("loop_fraction and counting_fraction must be >= 0 with a sum of at most 1, got "
                             f"{self.loop_fraction} and {self.counting_fraction}")


def parse_action(text: str) -> str | None:
    """The action word an answer starts with, or None."""
    words = text.strip().split()
    return words[0] if words and words[0] in ACTIONS else None


def _mentioned(instruction: str) -> list[str]:
    names = []
    for step in parse_instruction(instruction):
        if step[0] == "stop":
            names.append(step[1])
        elif step[0] == "turn" and step[2].endswith(" here"):
            names.append(step[2][: -len(" here")])
    return list(dict.fromkeys(names))


class _Walker:
    """Walks one episode: the navigator state, the action letters so far and the memory."""

    def __init__(self, city: City, observer: Observer, episode: Episode, memory: Mem4NavMemory | None) -> None:
        self.city, self.observer, self.episode, self.memory = city, observer, episode, memory
        self.state, self.letters, self.path = episode.start, "", [episode.start.node]
        self.names = _mentioned(episode.instruction)
        self.memory_line: str | None = None
        if memory is not None:
            memory.reset()
        self._look()

    def _look(self) -> None:
        """Read memory for the current place (before writing it), then write the observation."""
        node, text = self.state.node, self.observer.text(self.state)
        here = [landmark.name for landmark in self.city.landmarks.get(node, [])]
        parts = [f"{name} here" for name in here] or ["nothing here"]
        if self.city.is_intersection(node):
            parts.append(text.rsplit("| ", 1)[-1].replace("sign: ", "sign "))
        self.observation = " | ".join(parts)
        if self.memory is not None:
            x, y = self.city.positions[node]
            embedding = self.observer.embed(text)
            recalled = self.memory.recall((x, y, 0.0), embedding)
            counts = [f"{name} x{self.memory.places_with(name)}" for name in self.names if self.memory.places_with(name)]
            self.memory_line = "; ".join([*counts, "been here" if recalled.seen_before else "new place"])
            self.memory.observe((x, y, 0.0), embedding, here)

    def prompt(self) -> str:
        lines = [f"[inst] {self.episode.instruction}", f"[hist] {self.letters}", f"[obs] {self.observation}"]
        if self.memory_line is not None:
            lines.append(f"[mem] {self.memory_line}")
        return "\n".join(lines) + "\n[answer]"

    def equivalent(self, expert: str) -> list[str]:
        """The actions that do what ``expert`` does from the current state."""
        return self.state.equivalent(self.city, expert)

    def move(self, action: str) -> None:
        letter = _LETTERS[action]
        self.letters += letter.upper() if self.city.is_intersection(self.state.node) else letter
        self.state = self.state.step(self.city, action)
        if self.state.node != self.path[-1]:
            self.path.append(self.state.node)
        self._look()


class CityNavEnv(Env):
    """One evaluation episode: ``step(text)`` moves the agent by the answer's action (an answer that
    names no action leaves it in place); the episode ends at ``stop`` or when the budget is spent."""

    def __init__(self, city: City, observer: Observer, episode: Episode, memory: Mem4NavMemory | None) -> None:
        self.city, self.observer, self.episode, self._memory = city, observer, episode, memory
        self.budget = 2 * len(episode.actions) + 10

    def reset(self) -> str:
        self.walker = _Walker(self.city, self.observer, self.episode, self._memory)
        self.steps, self._on_expert_path, self._done = 0, True, False
        return self.walker.prompt()

    def step(self, text: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("episode ended; call reset()")
        walker, action = self.walker, parse_action(text)
        # A call is correct while the agent is still on the expert's trajectory and does what it does.
        expert = self.episode.actions[self.steps] if self._on_expert_path and self.steps < len(self.episode.actions) else None
        correct = expert is not None and action in walker.equivalent(expert)
        self._on_expert_path = correct
        self.steps += 1
        stopped = action == "stop"
        if action is not None and not stopped:
            walker.move(action)
        self._done = stopped or self.steps >= self.budget
        success = stopped and walker.state.node == self.episode.goal
        message = "on the expert's way" if correct else "off the expert's way"
        info = {"verification": Verification(1.0 if correct else 0.0, correct, message), "episode_success": success,
                "path": list(walker.path), "stopped": stopped}
        return walker.prompt(), 1.0 if correct else 0.0, stopped, self._done and not stopped, info


class CityNavTask(Task):
    """Rows carry ``prompt`` and ``valid_actions`` (the answers that do what the expert does)."""

    name = "citynav"
    splits = (*SUBSETS, "unseen")
    quick_eval_attempts = None

    def __init__(self, config: CityNavConfig | None = None, **overrides: Any) -> None:
        self.config = config or CityNavConfig(**overrides)
        self._benchmarks: dict[str, NavBenchmark] = {}
        self._train_city: tuple[City, Observer] | None = None

    def _memory(self) -> Mem4NavMemory | None:
        switches = ABLATIONS[self.config.nav_memory]
        config = Mem4NavConfig(**switches)
        return Mem4NavMemory(config) if config.enabled else None

    def benchmark(self, split: str) -> NavBenchmark:
        kind = "unseen" if split == "unseen" else "test"
        if kind not in self._benchmarks:
            self._benchmarks[kind] = build_benchmark(self.config.city_seed, kind, city_size=self.config.city_size,
                                                     per_subset=self.config.nav_eval_episodes)
        return self._benchmarks[kind]

    # ------------------------------------------------------------------ training rows
    def _rows(self, n: int, stream: str) -> list[dict[str, Any]]:
        benchmark = self.benchmark("test")
        episodes = training_stream(benchmark, f"citynav-{stream}", self.config.loop_fraction, self.config.counting_fraction)
        memory, rows = self._memory(), []
        while len(rows) < n:
            episode = next(episodes)
            walker = _Walker(benchmark.city, benchmark.observer, episode, memory)
            for expert in episode.actions:
                rows.append({"prompt": walker.prompt(), "valid_actions": walker.equivalent(expert),
                             "demonstration": f" {expert}"})
                if expert != "stop":
                    walker.move(expert)
        random.Random(stream).shuffle(rows)
        return rows[:n]

    def train_prompts(self, n: int, seed: int) -> list[dict]:
        return self._rows(n, f"train:{seed}")

    def demonstrations(self, n: int, seed: int) -> list[dict]:
        rows = self._rows(n, f"demo:{seed}")
        for row in rows:
            row["completion"] = row.pop("demonstration")
        return rows

    def validation_prompts(self, n: int, seed: int) -> list[dict]:
        return self._rows(n, f"validation:{seed}")

    # ------------------------------------------------------------------ evaluation
    def eval_episodes(self, split: str) -> list[dict]:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(self.splits)}")
        benchmark = self.benchmark(split)
        pairs = [(subset, i) for subset in (SUBSETS if split == "unseen" else (split,))
                 for i in range(len(benchmark.episodes[subset]))]
        return [{"split": split, "subset": subset, "index": i, "episode": k} for k, (subset, i) in enumerate(pairs)]

    def make_env(self, row: Mapping[str, Any]) -> CityNavEnv:
        benchmark = self.benchmark(row["split"])
        return CityNavEnv(benchmark.city, benchmark.observer, benchmark.episodes[row["subset"]][row["index"]],
                          self._memory())

    def verify(self, row: Mapping[str, Any], completion: Any) -> Verification:
        action = parse_action(completion_text(completion))
        correct = action is not None and action in row.get("valid_actions", ())
        return Verification(1.0 if correct else 0.0, correct, "same move as the expert" if correct else "another move")
