"""The on-rail navigation environment: prompts, the verifier, retries and metrics.

One episode walks a route's rail. At every position the agent answers with an action; a
correct one (+1) moves it to the next position (or ends the episode at `stop()`), a wrong one
costs -1 (-1.5 when its claimed observation contradicts whether it stands at an intersection)
and it may try again: 2 tries per position, the third call fails the episode (see
docs/design.md, 'Rewards, retries and metrics').

Two prompt forms: ``original`` (the paper's sections and JSON answer, for LLMs) and ``compact``
(for tiny character-level models trained from scratch). The compact form says the same in few
characters, and adds the action-space mode token (see docs/design.md,
'Compact prompts and the mode token')::

    [inst] 1 west/left; 2 to Blue Door Cafe; 3 south/left; 4 stop at Corner Bakery
    [mode] abs
    [hist] tfff
    [obs] Blue Door Cafe +
    [answer] + 3 south/left turn_direction(south)

A turn sentence gives the compass word, then the relative one. The history has one letter per
past action (``t`` a turn, ``f`` forward) and ``+`` marks an intersection. The answer is the
claimed observation flag (``+`` or ``-``), the number of the sentence being executed, at a turn
that sentence itself (the original's "current instruction", which a small model copies more
easily than the single word it needs), and the action.

With ``visual`` (V-IRL-VL) the current observation is an image instead (see docs/design.md,
'V-IRL-VL'): the original prompt says so in its task description and an ``[Observation format]``
section, and its current line keeps only the intersection phrase (``You observe an image of 4
views; You observe an intersection``); the compact ``[obs]`` keeps only the flag (``+`` or ``-``).
Past observations, instructions and answers are V-IRL-L's.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from amft.tasks.base import Env, Turn, Verification

from .rail import INTERSECTION, Position, build_rail, instruction_sentences
from .routes import COMPASS_WORDS, Route

__all__ = ["ACTION_SPACES", "StepRecord", "VirlEnv", "parse_answer", "render_prompt", "render_target", "step_reward"]

ACTION_SPACES = {"abs": COMPASS_WORDS, "rel": ("left", "right", "slightly left", "slightly right")}
MAX_TRIES = 2
CORRECT, WRONG, WRONG_OBSERVATION = 1.0, -1.0, -1.5
OUTPUT_SKELETON = '{\n  "current observation": "",\n  "current instruction": "",\n  "action": "",\n}'
IMAGE_OBSERVATION = "You observe an image of 4 views; "
OBSERVATION_FORMAT = (
    "[Observation format]\nYou observe a 2x2 grid of street-view images with these headings:\n"
    "[front, right\n back, left]\n"
    "You need to find out whether any landmark of the instruction is visible in the grid.\n\n")


def render_prompt(form: str, sentences: list[str], rail: list[Position], index: int, mode: str,
                  visual: bool = False) -> str:
    """The prompt at rail position ``index``: instruction, action space, history, current observation
    (with ``visual``, an image's: see the module's docstring)."""
    current = rail[index]
    if form == "compact":
        history = "".join(position.action(mode)[0] for position in rail[:index])  # t(urn) or f(orward)
        numbered = "; ".join(f"{i} {s}" for i, s in enumerate(sentences, start=1))
        observation = ("+" if current.at_intersection else "-") if visual else current.compact_observation
        return f"[inst] {numbered}\n[mode] {mode}\n[hist] {history}\n[obs] {observation}\n[answer]"
    choices = ", ".join(ACTION_SPACES[mode])
    lines = [f"O_{i}: {p.observation}\nA_{i}: {p.action(mode)}" for i, p in enumerate(rail[:index], start=1)]
    if visual:
        observation = IMAGE_OBSERVATION + (INTERSECTION if current.at_intersection else "")
    else:
        observation = current.observation
    lines.append(f"O_{index + 1}: {observation}\nA_{index + 1}: ")
    numbered = "\n".join(f"{i}. {s}" for i, s in enumerate(sentences, start=1))
    return (
        "[Task Description]\nYou are an expert in navigation. You will receive a sequence of instructions to follow "
        f"while observing your surrounding {'street views' if visual else 'environment'}, and the sequence of your "
        "past observations and actions. First identify which instruction you are executing now, then choose the next "
        "action.\n\n"
        f"[Instruction]\n{numbered}\n\n"
        f"{OBSERVATION_FORMAT if visual else ''}"
        "[Action space]\n"
        '"forward()": move forward one step\n'
        f'"turn_direction(x)": turn to direction x, where x is one of [{choices}]\n'
        '"stop()": stop, the navigation is finished\n\n'
        "[Observations and actions sequence]\n" + "\n".join(lines) + "\n\n"
        f"[Output]\nYour answer should be in this JSON format:\n{OUTPUT_SKELETON}"
    )


def render_target(form: str, sentences: list[str], position: Position, mode: str) -> str:
    """The expert answer at a position (the SFT target)."""
    action = position.action(mode)
    if form == "compact":
        flag = "+" if position.at_intersection else "-"
        if action.startswith("turn_direction"):
            # Turn k is sentence 2k - 1; the original labels a turn reached without interpolated
            # points with the move sentence before it, which the compact answer does not repeat.
            number = position.sentence + (position.sentence % 2 == 0)
            return f" {flag} {number} {sentences[number - 1]} {action}"
        return f" {flag} {position.sentence} {action}"
    return json.dumps(
        {"current observation": position.observation, "current instruction": sentences[position.sentence - 1],
         "action": action}, indent=2)


_JSON_FIELD = r'"{}"\s*:\s*"([^"]*)"'
# flag, sentence number, (the sentence at a turn), action
_COMPACT_ANSWER = re.compile(r"(\S+) \d+(?: .*)? (forward\(\)|stop\(\)|turn_direction\([^)]*\))")


def parse_answer(form: str, text: str) -> tuple[str | None, str | None]:
    """(action, claimed observation) of an answer; None for what cannot be read."""
    if form == "compact":
        found = _COMPACT_ANSWER.fullmatch(text.strip())
        if found is None:
            return None, None
        # The flag is read as the observation it stands for, so one intersection check serves both forms.
        flag, action = found.groups()
        return action, INTERSECTION if flag == "+" else flag
    try:
        payload = json.loads(text.strip())
        if isinstance(payload, dict):
            action, observation = payload.get("action"), payload.get("current observation")
            return (action if isinstance(action, str) else None, observation if isinstance(observation, str) else None)
    except json.JSONDecodeError:
        pass
    found = [re.search(_JSON_FIELD.format(key), text) for key in ("action", "current observation")]
    return tuple(match.group(1) if match else None for match in found)  # type: ignore[return-value]


def step_reward(form: str, text: str, correct_action: str, at_intersection: bool) -> Verification:
    """The verdict on one answer at a position with ``correct_action`` (the original's rewards, with
    the intersection check against where the agent really stands: see docs/design.md,
    'Deviations from the original')."""
    action, observation = parse_answer(form, text)
    if action == correct_action:
        return Verification(CORRECT, True, "Correct action")
    claims_intersection = observation is not None and "intersection" in observation
    if observation is not None and claims_intersection != at_intersection:
        where = "not at any intersection" if not at_intersection else "at an intersection"
        return Verification(WRONG_OBSERVATION, False, f"you are {where}. Please avoid this observation and try again.")
    return Verification(WRONG, False, "you make incorrect action. Please avoid this action and try again.")


@dataclass
class StepRecord:
    """Counts of one episode: evaluated answers, correct answers, and their rewards."""

    calls: int = 0
    correct: int = 0
    rewards: list[float] = field(default_factory=list)


class VirlEnv(Env):
    """One route, one episode at a time: ``reset()`` returns the first prompt, ``step(text)`` scores an
    answer and returns the next prompt (the same position on a retry, with the feedback appended).
    The episode succeeds when the agent stops at the destination."""

    episodic = True
    #: the current observation is an image (V-IRL-VL's :class:`~amft.tasks.virl.visual.VirlVisualEnv`)
    visual: ClassVar[bool] = False

    def __init__(self, route: Route, *, max_attempts: int, form: str = "compact", mode: str = "abs", seed: int = 0,
                 drop_rate: float = 0.5, wrap: bool = True) -> None:
        super().__init__(max_attempts=max_attempts)
        if form not in ("compact", "original"):
            raise ValueError(f"form must be 'compact' or 'original', got {form!r}")
        if mode not in ACTION_SPACES:
            raise ValueError(f"mode must be one of {tuple(ACTION_SPACES)}, got {mode!r}")
        self.route, self.form, self.mode, self.drop_rate, self.wrap = route, form, mode, drop_rate, wrap
        self._rng = self._episode_rng(seed)
        self.rail: list[Position] = []
        self.sentences: list[str] = []
        self.index = 0
        self.tries = 0
        self.record = StepRecord()

    def _episode_rng(self, seed: int) -> random.Random:
        return random.Random(f"virl-episode:{self.route.route_id}:{seed}")

    def _begin(self, seed: int | None) -> str:
        if seed is not None:
            self._rng = self._episode_rng(seed)
        # init_heading 0 means "random at each reset", as in the original environment.
        heading = self.route.init_heading or self._rng.randrange(360)
        self.rail = build_rail(self.route, self._rng, heading, drop_rate=self.drop_rate, wrap=self.wrap)
        self.sentences = instruction_sentences(self.route, heading, wrap=self.wrap, compact=self.form == "compact")
        self.index, self.tries, self.record = 0, 0, StepRecord()
        return self.prompt()

    def prompt(self) -> str:
        return render_prompt(self.form, self.sentences, self.rail, self.index, self.mode, visual=self.visual)

    def prompt_columns(self, text: str) -> dict[str, Any]:
        """The prompt columns of a row that shows ``text`` at the current position."""
        return {"prompt": text}

    def expert_answer(self) -> str:
        return render_target(self.form, self.sentences, self.rail[self.index], self.mode)

    def _respond(self, answer: str) -> Turn:
        position = self.rail[self.index]
        info = {"gt_action": position.action(self.mode), "position": self.index}
        if self.tries >= MAX_TRIES:
            return Turn(self.prompt(), WRONG, None, truncated=True, info=info)
        verification = step_reward(self.form, answer, position.action(self.mode), position.at_intersection)
        self.tries += 1
        self.record.calls += 1
        self.record.rewards.append(verification.reward)
        if not verification.success:
            return Turn(self._retry_prompt(answer, verification), verification.reward, verification, info=info)
        self.record.correct += 1
        self.tries = 0
        if position.kind == "destination":
            return Turn(self.prompt(), verification.reward, verification, terminated=True, success=True, info=info)
        self.index += 1
        return Turn(self.prompt(), verification.reward, verification, info=info)

    def _retry_prompt(self, text: str, verification: Verification) -> str:
        """The prompt of a retry: the position's prompt, the failed answer and the feedback (in the
        compact form one word for what was wrong, then a fresh ``[answer]``)."""
        if self.form == "compact":
            wrong = "observation" if verification.reward == WRONG_OBSERVATION else "action"
            return f"{self.prompt()}{text}\n[failed] {wrong}\n[answer]"
        return f"{self.prompt()}{text}\nYou failed this trial because {verification.message}\n"

    def wrong_answer(self, rng: random.Random, avoid: frozenset[str] = frozenset()) -> str:
        """The expert's answer with another action of the action space, none turning to a word of ``avoid``:
        a failed first try."""
        correct = self.rail[self.index].action(self.mode)
        words = (word for word in ACTION_SPACES[self.mode] if word not in avoid)
        actions = ["forward()", "stop()", *(f"turn_direction({word})" for word in words)]
        wrong = rng.choice([action for action in actions if action != correct])
        return self.expert_answer().replace(correct, wrong)
