"""City navigation with Mem4Nav memory for language-model agents (the VELMA-style interface of
Mem4Nav: memory rendered as prompt lines), on the synthetic cities of ``amft.navigation``
(see docs/design.md, 'The language-model agent').

The agent has the modular agent's planning and mapping (``amft.navigation.agents.FollowerAgent``'s
instruction tracker and Mem4Nav's memory); the language model replaces the decision rule. A
decision prompt holds the instruction step being executed (``[step] left at sign Avenue 2 &
Street 3``, ``[step] stop at post box #2``, ``[step] loop right``), the current observation
(landmarks at the agent's node and the street sign at intersections) and, with memory, a
``[mem]`` line: for a stop step, the number of distinct places its landmark was seen at, this
one included, and whether memory recognises the current place. Without memory
(``nav_memory: none``) the line is absent, so the agent cannot count what it passed or know it
is back. The answer is one action word. The tracker takes the tiny model's hardest job (finding
its place in a long instruction from its own action history) off it, so what the study varies
is only what memory tells it.

Training rows are the steps of expert episodes (the demonstration is the expert's action; an
answer is rewarded 1 when it leads to the same next state). Evaluation runs whole episodes with
the model's own actions, within 2 x (expert length) + 10 steps; an episode succeeds when the
agent stops on the goal node (TC of convention B: the goal node is the only node within 3 m).
Splits: ``plain``, ``counting``, ``loop``, ``long`` (held-out episodes on the training city) and
``unseen`` (all four kinds on another city).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Mapping

from amft.memory.system import ABLATIONS
from amft.navigation.agents import FollowerAgent
from amft.navigation.benchmark import SUBSETS, NavBenchmark, build_benchmark, training_stream
from amft.navigation.city import ACTIONS, City
from amft.navigation.episodes import Episode
from amft.navigation.observations import Observer
from amft.tasks.base import Env, Task, TaskConfig, Turn, Verification, completion_text

__all__ = ["CityNavConfig", "CityNavEnv", "CityNavTask", "parse_action", "step_line"]


@dataclass(frozen=True)
class CityNavConfig(TaskConfig):
    """Options of the city-navigation task: each field is a flag and a YAML key of `amft train` /
    `amft eval` when the task is ``citynav``, and a keyword of ``get_task("citynav", ...)``."""

    _argument_group_name = "citynav task options"

    city_size: int = field(default=8, metadata={"help": "The synthetic city is a grid of N x N intersections."})
    city_seed: int = field(default=0, metadata={"help": (
        "Seed of the training city (the 'unseen' split uses another city).")})
    nav_memory: str = field(default="full", metadata={"help": (
        "The memory behind the prompt's [mem] line: full, no-octree, no-graph, no-short-term, no-long-term "
        "or none (no line).")})
    loop_fraction: float = field(default=0.3, metadata={"help": "Share of training episodes that are loops."})
    counting_fraction: float = field(default=0.2, metadata={"help": (
        "Share of training episodes that are counting episodes ('stop at the second X'); the rest are random routes.")})
    decision_share: float = field(default=0.5, metadata={"help": (
        "Share of training rows drawn from decisions (an intersection, a landmark the step names, a place seen "
        "before, or an action other than forward); the rest are plain walking along a street.")})
    nav_eval_episodes: int = field(default=50, metadata={"help": "Evaluation episodes per subset."})

    def __post_init__(self) -> None:
        if self.nav_memory not in ABLATIONS:
            raise ValueError(f"nav_memory must be one of {tuple(ABLATIONS)}, got {self.nav_memory!r}")
        if min(self.loop_fraction, self.counting_fraction) < 0.0 or self.loop_fraction + self.counting_fraction > 1.0:
            raise ValueError("loop_fraction and counting_fraction must be >= 0 with a sum of at most 1, got "
                             f"{self.loop_fraction} and {self.counting_fraction}")
        if not 0.0 <= self.decision_share <= 1.0:
            raise ValueError(f"decision_share must be in [0, 1], got {self.decision_share}")


def parse_action(text: str) -> str | None:
    """The action word an answer starts with, or None."""
    words = text.strip().split()
    return words[0] if words and words[0] in ACTIONS else None


def step_line(step: tuple) -> str:
    """The instruction step being executed, in the words the observation line uses for its anchor."""
    kind = step[0]
    if kind == "turn":
        return f"{step[1]} at {step[2].replace('sign: ', 'sign ')}"
    if kind == "stop":
        return "stop" if step[1] is None else f"stop at {step[1]} #{step[2]}"
    return {"straight": "go straight", "turn_around": "turn around"}.get(kind) or f"loop {step[1]}"


class _Walker:
    """Walks one episode: the navigator state and the follower's tracker and memory, which make the prompt."""

    def __init__(self, city: City, observer: Observer, episode: Episode, agent: FollowerAgent) -> None:
        self.city, self.observer, self.agent = city, observer, agent
        self.state, self.path = episode.start, [episode.start.node]
        agent.reset(episode.instruction)
        self._look()

    def _look(self) -> None:
        """Recall the current place and write it to memory (the tracker's facts), and render it."""
        node, text = self.state.node, self.observer.text(self.state)
        x, y = self.city.positions[node]
        self.facts = self.agent.observe(text, self.observer.embed(text), (x, y, 0.0))
        parts = [f"{landmark.name} here" for landmark in self.city.landmarks.get(node, [])] or ["nothing here"]
        if self.city.is_intersection(node):
            parts.append(text.rsplit("| ", 1)[-1].replace("sign: ", "sign "))
        self.observation = " | ".join(parts)

    def prompt(self) -> str:
        lines = [f"[step] {step_line(self.facts.step)}", f"[obs] {self.observation}"]
        if self.agent.memory != "none":
            facts, memory = self.facts, []
            if facts.step[0] == "stop" and facts.step[1] is not None and facts.counts_places:
                memory.append(f"{facts.step[1]} x{facts.target_places}")
            memory.append("been here" if facts.seen_before else "new place")
            lines.append(f"[mem] {'; '.join(memory)}")
        return "\n".join(lines) + "\n[answer]"

    def equivalent(self, expert: str) -> list[str]:
        """The actions that do what ``expert`` does from the current state."""
        return self.state.equivalent(self.city, expert)

    def move(self, action: str) -> None:
        self.agent.commit(self.facts, action)
        self.state = self.state.step(self.city, action)
        if self.state.node != self.path[-1]:
            self.path.append(self.state.node)
        self._look()


class CityNavEnv(Env):
    """One evaluation episode: ``step(text)`` moves the agent by the answer's action (an answer that
    names no action leaves it in place); the episode ends at ``stop`` (solved when the agent stands on
    the goal) or, truncated, when its step budget (2 x the expert's length + 10) or ``max_attempts``
    is spent."""

    episodic = True

    def __init__(self, city: City, observer: Observer, episode: Episode, agent: FollowerAgent, *,
                 max_attempts: int) -> None:
        super().__init__(max_attempts=max_attempts)
        self.city, self.observer, self.episode, self.agent = city, observer, episode, agent
        self.budget = 2 * len(episode.actions) + 10

    def _begin(self, seed: int | None) -> str:
        self.walker = _Walker(self.city, self.observer, self.episode, self.agent)
        self.steps, self._on_expert_path = 0, True
        return self.walker.prompt()

    def _respond(self, answer: str) -> Turn:
        walker, action = self.walker, parse_action(answer)
        # A call is correct while the agent is still on the expert's trajectory and does what it does.
        expert = self.episode.actions[self.steps] if self._on_expert_path and self.steps < len(self.episode.actions) else None
        correct = expert is not None and action in walker.equivalent(expert)
        self._on_expert_path = correct
        self.steps += 1
        stopped = action == "stop"
        if action is not None and not stopped:
            walker.move(action)
        message = "on the expert's way" if correct else "off the expert's way"
        verification = Verification(1.0 if correct else 0.0, correct, message)
        return Turn(walker.prompt(), verification.reward, verification, terminated=stopped,
                    truncated=self.steps >= self.budget, success=stopped and walker.state.node == self.episode.goal,
                    info={"path": list(walker.path), "stopped": stopped})


class CityNavTask(Task):
    """Rows carry ``prompt`` and ``valid_actions`` (the answers that do what the expert does)."""

    name = "citynav"
    reward_fields = {"valid_actions": list}
    splits = (*SUBSETS, "unseen")
    quick_eval_attempts = None
    #: whole episodes: the environment ends them at stop or at its step limit
    default_eval_attempts = 250

    def __init__(self, config: CityNavConfig | None = None, **overrides: Any) -> None:
        self.config = config or CityNavConfig(**overrides)
        self._benchmarks: dict[str, NavBenchmark] = {}

    def _agent(self) -> FollowerAgent:
        return FollowerAgent(memory=self.config.nav_memory)

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
        agent = self._agent()
        wanted = round(n * self.config.decision_share)
        decisions: list[dict[str, Any]] = []
        walking: list[dict[str, Any]] = []
        while len(decisions) < wanted or len(walking) < n - wanted:
            episode = next(episodes)
            walker = _Walker(benchmark.city, benchmark.observer, episode, agent)
            for expert in episode.actions:
                facts = walker.facts
                decisive = (expert != "forward" or facts.at_intersection or facts.anchor_here or facts.target_here
                            or facts.seen_before)
                (decisions if decisive else walking).append(
                    {"prompt": walker.prompt(), "valid_actions": walker.equivalent(expert), "demonstration": f" {expert}"})
                if expert != "stop":
                    walker.move(expert)
        rows = decisions[:wanted] + walking[: n - wanted]
        random.Random(stream).shuffle(rows)
        return rows

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

    def make_env(self, row: Mapping[str, Any], *, max_attempts: int) -> CityNavEnv:
        benchmark = self.benchmark(row["split"])
        return CityNavEnv(benchmark.city, benchmark.observer, benchmark.episodes[row["subset"]][row["index"]],
                          self._agent(), max_attempts=max_attempts)

    def verify(self, row: Mapping[str, Any], completion: Any) -> Verification:
        action = parse_action(completion_text(completion))
        correct = action is not None and action in row.get("valid_actions", ())
        return Verification(1.0 if correct else 0.0, correct, "same move as the expert" if correct else "another move")
