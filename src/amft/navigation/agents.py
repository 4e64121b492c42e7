"""A rule-based instruction follower for the navigation-memory benchmark, using Mem4Nav's memory
with any of its components switched off (it gets the instruction, its
observations and its own pose, never the goal or the map: see docs/design.md, 'No oracle goal').

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from amft.memory.system import ABLATIONS, Mem4NavConfig, Mem4NavMemory

from .city import City
from .episodes import Episode
from .observations import Observer

__all__ = ["Facts", "FollowerAgent", "InstructionTracker", "RunResult", "follow", "parse_instruction",
           "run_episode"]

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
class Facts:
    """What one step's decision may use: the instruction step being executed, the observation, and
    what memory says (zeros without it)."""

    step: tuple
    at_intersection: bool
    moved: bool  # the agent has left its start
    anchor_here: bool  # a turn step: its anchor (landmark or street sign) is in the observation
    target_here: bool  # a stop step: its landmark is at the agent's node
    target_places: int  # a stop step: distinct places its landmark was seen at, this one included
    seen_before: bool  # memory recognises the current place
    counts_places: bool  # the memory can count places (octree or graph on)


class InstructionTracker:
    """The planning module: which step of the instruction the agent is executing, advanced by the
    actions it takes (a turn counts only where its anchor is)."""

    def __init__(self, instruction: str) -> None:
        self.steps, self.pointer, self.passed = parse_instruction(instruction), 0, 0

    def current(self) -> tuple:
        """The step to execute now; a "go straight past n" step ends once n intersections are behind."""
        while self.pointer < len(self.steps):
            step = self.steps[self.pointer]
            if step[0] == "straight" and self.passed >= step[1]:
                self.pointer, self.passed = self.pointer + 1, 0
                continue
            return step
        return ("stop", None, 1)

    def advance(self, facts: Facts, action: str) -> None:
        kind = facts.step[0]
        if kind == "straight" and action == "forward":
            # As in the instruction's template, the starting node is never an intersection "passed".
            self.passed += int(facts.at_intersection and facts.moved)
        elif kind == "turn" and action == facts.step[1] and facts.at_intersection and facts.anchor_here:
            self.pointer += 1
        elif kind == "turn_around" and action == "turn_around":
            self.pointer += 1


def follow(facts: Facts) -> str:
    """The hand-written decision rule for one step."""
    kind = facts.step[0]
    if kind == "turn":
        return facts.step[1] if facts.at_intersection and facts.anchor_here else "forward"
    if kind == "turn_around":
        return "turn_around"
    if kind == "loop":
        if facts.moved and facts.seen_before:
            return "stop"
        return facts.step[1] if facts.at_intersection else "forward"
    if kind == "stop":
        # Without places to count by, the ordinal cannot be checked: it stops at the first such landmark.
        if facts.step[1] is None or (facts.target_here and (not facts.counts_places or facts.target_places >= facts.step[2])):
            return "stop"
    return "forward"


@dataclass
class FollowerAgent:
    """The instruction tracker, Mem4Nav's memory and a decision policy (the hand-written rule by
    default). ``memory`` names an ablation of :data:`amft.memory.system.ABLATIONS` ("full",
    "no-octree", ..., "none"); ``memory_options`` are further :class:`Mem4NavConfig` fields."""

    memory: str = "full"
    memory_options: dict = field(default_factory=dict)
    policy: Callable[[Facts, Any], str] | None = None  # (facts, observation embedding) -> action

    def __post_init__(self) -> None:
        if self.memory not in ABLATIONS:
            raise ValueError(f"memory must be one of {tuple(ABLATIONS)}, got {self.memory!r}")
        undone = sorted(name for name, value in self.memory_options.items()
                        if name in ABLATIONS[self.memory] and value != ABLATIONS[self.memory][name])
        if undone:
            raise ValueError(f"memory {self.memory!r} sets {', '.join(undone)}; memory_options would undo the "
                             "ablation: name another memory instead")
        self._memory = Mem4NavMemory(Mem4NavConfig(**{**ABLATIONS[self.memory], **self.memory_options}))
        self._tracker: InstructionTracker | None = None
        self._start: tuple[float, float, float] | None = None
        self._moved = False

    def reset(self, instruction: str) -> None:
        self._tracker, self._start, self._moved = InstructionTracker(instruction), None, False
        self._memory.reset()

    def observe(self, observation: str, embedding, position: tuple[float, float, float]) -> Facts:
        """Recall the place, write this step's observation to memory, and return the facts for the decision."""
        here = [m.group(1) for m in re.finditer(r"(?:^landmarks: |; )([a-z ]+?) here(?=;| \|)", observation)]
        recollection = self._memory.recall(position, embedding)
        at_intersection = "sign:" in observation
        self._start = position if self._start is None else self._start
        self._moved = self._moved or position != self._start
        self._memory.observe(position, embedding, here)
        step = self._tracker.current()
        target = step[1] if step[0] == "stop" else None
        config = self._memory.config
        return Facts(step, at_intersection, self._moved, anchor_here=step[0] == "turn" and step[2] in observation,
                     target_here=target in here, target_places=self._memory.places_with(target) if target else 0,
                     seen_before=recollection.seen_before, counts_places=config.octree or config.graph)

    def commit(self, facts: Facts, action: str) -> None:
        """Tell the instruction tracker which action was taken on ``facts``."""
        self._tracker.advance(facts, action)

    def act(self, observation: str, embedding, position: tuple[float, float, float]) -> str:
        facts = self.observe(observation, embedding, position)
        action = follow(facts) if self.policy is None else self.policy(facts, embedding)
        self.commit(facts, action)
        return action


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
