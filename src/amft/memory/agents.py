"""A rule-based instruction follower for the navigation-memory benchmark, using Mem4Nav's memory
with any of its components switched off (Mem4Nav spec §13 agents; M5: it gets the instruction,
its observations and its own pose, never the goal or the map).

The follower executes the templated instruction step by step. Two kinds of step need memory:
- counting ("stop at the second fire hydrant") needs how many distinct places with that landmark
  it has passed: octree leaves tell places apart by position; without the octree, graph nodes
  (appearance clusters) can merge two places that look alike; with neither it stops at the
  first such landmark;
- loops ("turn right at every intersection and stop when you are back where you started") need
  to recognise a place seen before: the short-term memory, or the long-term memory when that
  has nothing; with neither it never knows it is back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .city import City, NavigatorState
from .episodes import Episode
from .metrics import metrics_convention_a, metrics_convention_b
from .observations import Observer
from .system import ABLATIONS, Mem4NavConfig, Mem4NavMemory

__all__ = ["FollowerAgent", "RunResult", "parse_instruction", "run_episode", "evaluate_agent"]

_ORDINAL_WORDS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5}
LOOP_SENTENCE = re.compile(r"turn (left|right) at every intersection and stop when you are back where you started")


def parse_instruction(text: str) -> list[tuple]:
    """The steps of a templated instruction: ("straight", n), ("turn", side, anchor), ("turn_around",),
    ("stop", name, k), ("loop", side); a turn's anchor is the observation text that marks its intersection."""
    steps: list[tuple] = []
    for sentence in text.rstrip(".").split(", then "):
        sentence = sentence[0].lower() + sentence[1:]
        if match := re.fullmatch(r"go straight past (\d+) intersections?", sentence):
            steps.append(("straight", int(match.group(1))))
        elif match := re.fullmatch(r"turn (left|right) at (?:the (.+)|(Avenue \S+) and (Street \d+))", sentence):
            side, landmark, avenue, street = match.groups()
            anchor = f"{landmark} here" if landmark else f"sign: {avenue} & {street}"
            steps.append(("turn", side, anchor))
        elif sentence == "turn around":
            steps.append(("turn_around",))
        elif match := LOOP_SENTENCE.fullmatch(sentence):
            steps.append(("loop", match.group(1)))
        elif match := re.fullmatch(r"stop at the (?:(first|second|third|fourth|fifth) )?(.+)", sentence):
            steps.append(("stop", match.group(2), _ORDINAL_WORDS.get(match.group(1) or "first", 1)))
        else:
            raise ValueError(f"cannot parse instruction step {sentence!r}")
    return steps


@dataclass
class FollowerAgent:
    """``memory`` names an ablation of :data:`amft.memory.system.ABLATIONS` ("full", "no-octree", ...,
    "none"); ``memory_options`` are further :class:`Mem4NavConfig` fields."""

    memory: str = "full"
    memory_options: dict = field(default_factory=dict)
    _steps: list[tuple] = field(default_factory=list)
    _pointer: int = 0
    _passed: int = 0
    _start: tuple[float, float, float] | None = None
    _moved: bool = False

    def __post_init__(self) -> None:
        if self.memory not in ABLATIONS:
            raise ValueError(f"memory must be one of {tuple(ABLATIONS)}, got {self.memory!r}")
        self._memory = Mem4NavMemory(Mem4NavConfig(**{**ABLATIONS[self.memory], **self.memory_options}))

    def reset(self, instruction: str) -> None:
        self._steps, self._pointer, self._passed = parse_instruction(instruction), 0, 0
        self._start, self._moved = None, False
        self._memory.reset()

    def act(self, observation: str, embedding, position: tuple[float, float, float]) -> str:
        here = [m.group(1) for m in re.finditer(r"(?:^landmarks: |; )([a-z ]+?) here(?=;| \|)", observation)]
        recollection = self._memory.recall(position, embedding)
        self._memory.observe(position, embedding, here)
        at_intersection = "sign:" in observation
        # As in the instruction's template, the starting node is never an intersection "passed".
        self._start = position if self._start is None else self._start
        self._moved = self._moved or position != self._start
        while self._pointer < len(self._steps):
            step = self._steps[self._pointer]
            if step[0] == "straight":
                if self._passed >= step[1]:
                    self._pointer, self._passed = self._pointer + 1, 0
                    continue
                self._passed += int(at_intersection and self._moved)
                return "forward"
            if step[0] == "turn":
                if at_intersection and step[2] in observation:
                    self._pointer += 1
                    return step[1]
                return "forward"
            if step[0] == "turn_around":
                self._pointer += 1
                return "turn_around"
            if step[0] == "loop":
                if self._moved and recollection.seen_before:
                    return "stop"
                return step[1] if at_intersection else "forward"
            name, count = step[1], step[2]
            config = self._memory.config
            # Without places to count by, the ordinal cannot be checked: it stops at the first such landmark.
            if name in here and (not (config.octree or config.graph) or self._memory.places_with(name) >= count):
                return "stop"
            return "forward"
        return "stop"


@dataclass
class RunResult:
    path: list[int]
    positions: list[tuple[float, float]]
    stopped: bool


def run_episode(city: City, observer: Observer, agent: FollowerAgent, episode: Episode) -> RunResult:
    """Run ``agent`` on ``episode`` within the step budget 2 x (expert length) + 10."""
    agent.reset(episode.instruction)
    state, path = episode.start, [episode.start.node]
    for _ in range(2 * len(episode.actions) + 10):
        text = observer.text(state)
        x, y = city.positions[state.node]
        action = agent.act(text, observer.embed(text), (x, y, 0.0))
        if action == "stop":
            return RunResult(path, [city.positions[n] for n in path], True)
        state = state.step(city, action)
        if state.node != path[-1]:
            path.append(state.node)
    return RunResult(path, [city.positions[n] for n in path], False)


def evaluate_agent(city: City, observer: Observer, agent: FollowerAgent, episodes: list[Episode]) -> dict[str, dict]:
    """Both metric conventions over the episodes (labelled; never mixed)."""
    runs = [run_episode(city, observer, agent, e) for e in episodes]
    graph = {node: list(successors) for node, successors in city.edges.items()}
    return {
        "A": metrics_convention_a(graph, [(r.path, list(e.path)) for r, e in zip(runs, episodes)]),
        "B": metrics_convention_b([(r.positions, [city.positions[n] for n in e.path]) for r, e in zip(runs, episodes)]),
    }
