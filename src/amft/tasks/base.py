"""The task interface shared by every ``amft`` task, and a checked row loader.

A :class:`Task` supplies (think gymnasium, but text in / text out):

* ``train_prompts(n, seed)``      RL prompt rows: ``{"prompt": str, ...reward columns}``
* ``demonstrations(n, seed)``     SFT rows: ``{"prompt": str, "completion": str, ...}``
* ``validation_prompts(n, seed)`` held-out rows from the training distribution (meta-gradient)
* ``eval_episodes(split)``        fixed evaluation rows of a named split
* ``verify(row, completion)``     one :class:`Verification`
* ``reward(prompts, completions, **columns)``  a TRL-compatible reward function
* ``make_env(row, max_attempts=n)`` an :class:`Env` for multi-turn evaluation

Rows are plain ``dict`` objects so they go straight into ``datasets.Dataset.from_list``.

:func:`load_rows` reads user-supplied JSONL / JSON row files and raises :class:`DataError`
naming the file, the 1-based row and the field of the first bad row (or skips and counts
bad rows with ``skip_invalid=True``).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Mapping, Sequence, overload

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "Verification", "Turn", "Env", "Task", "TaskConfig", "DataError", "load_rows", "completion_text", "prompt_text",
]


@dataclass(frozen=True)
class Verification:
    """The verdict on one attempt.

    ``reward``: the shaped reward (a float); ``success``: whether the attempt solves the
    task; ``message``: the verifier's feedback (what a revision turn shows the model).
    """

    reward: float
    success: bool
    message: str


class TaskConfig:
    """Base of the task config dataclasses: their fields are the task's options."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class Turn:
    """What an environment makes of one answer, before :meth:`Env.step` applies the attempt budget.

    ``verification`` is ``None`` for an answer the environment does not evaluate (V-IRL's call
    after the tries of a position are spent); ``reward`` is then the environment's penalty.
    ``terminated``: the episode reached an end state (solved, or stopped); ``truncated``: a limit of
    the task's own rules (tries per position, steps per route) cut it short; ``success``: the
    episode is solved; ``info``: the environment's own extra keys.
    """

    observation: str
    reward: float
    verification: Verification | None
    terminated: bool = False
    truncated: bool = False
    success: bool = False
    info: Mapping[str, Any] = field(default_factory=dict)


class Env(ABC):
    """A text environment in the shape of gymnasium's ``Env``, for multi-turn evaluation.

    * ``reset(seed=None) -> (observation, info)`` starts an episode; ``seed`` reseeds the
      environment's random choices (an environment without any accepts it and stays the same).
    * ``step(action) -> (observation, reward, terminated, truncated, info)`` takes the model's
      answer (text, or chat messages) and returns the text the model continues from next (the
      conversation so far, with the feedback on a failed answer).
    * ``episodic`` (a class attribute): True when an episode spans several decisions and the
      environment decides its success (navigation: the agent reaches the goal); False when an
      episode is one problem that ends at its first verified success (GeneralPoints, math).
    * ``max_attempts``: the episode's budget of answers (model calls), set by the evaluator.
      The answer that spends it ends the episode with ``truncated=True`` unless it ended it
      anyway; the task's own rules may end an episode sooner.

    ``info`` always holds ``verification`` (the :class:`Verification` of the last answer;
    ``None`` after ``reset`` and for an answer the environment does not evaluate), ``attempts``
    (the answers taken this episode) and ``is_success`` (whether the episode is solved, the key
    gymnasium-robotics and Stable-Baselines3 use), plus each environment's own keys.  Calling
    ``step`` after the episode ended, or before ``reset``, raises ``RuntimeError``.

    A subclass declares ``episodic``, calls ``super().__init__(max_attempts=...)`` and implements
    :meth:`_begin` (the first observation) and :meth:`_respond` (one answer's :class:`Turn`).
    """

    episodic: ClassVar[bool]

    def __init__(self, *, max_attempts: int) -> None:
        if not isinstance(getattr(type(self), "episodic", None), bool):
            raise TypeError(f"{type(self).__name__} must declare the class attribute episodic: bool")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be a positive integer, got {max_attempts!r}")
        self.max_attempts = max_attempts
        self.attempts = 0
        self.is_success = False
        self._over = True

    def reset(self, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        observation = self._begin(seed)
        self.attempts, self.is_success, self._over = 0, False, False
        return observation, {"verification": None, "attempts": 0, "is_success": False}

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._over:
            raise RuntimeError("the episode is over or not started; call reset()")
        self.attempts += 1
        turn = self._respond(completion_text(action))
        self.is_success = turn.success
        truncated = not turn.terminated and (turn.truncated or self.attempts >= self.max_attempts)
        self._over = turn.terminated or truncated
        info = {**turn.info, "verification": turn.verification, "attempts": self.attempts, "is_success": turn.success}
        return turn.observation, float(turn.reward), turn.terminated, truncated, info

    @abstractmethod
    def _begin(self, seed: int | None) -> str:
        """Start a new episode (reseeded with ``seed`` when given); return its first observation."""

    @abstractmethod
    def _respond(self, answer: str) -> Turn:
        """Score one answer text and move the episode on."""


class Task(ABC):
    """A task: prompt rows, demonstration rows, a reward function, splits and an env."""

    #: registry name, e.g. ``"general-points"``
    name: str = ""
    #: names accepted by :meth:`eval_episodes`
    splits: tuple[str, ...] = ()
    #: the reward of a solved episode: a rollout with at least this reward counts as solved
    success_reward: float = 1.0
    #: evaluated in episodes with verified retries (True), or by independent samples (avg@k, pass@k)
    #: unless the run gives an attempt budget
    multi_turn: bool = True
    #: model calls per evaluation episode when the run gives none (`--eval_attempts`)
    default_eval_attempts: int = 5
    #: model calls per episode in the quick progress evaluation (None: the run's eval_attempts, for
    #: episodes that are sequences of decisions)
    quick_eval_attempts: int | None = 1
    #: prompts show images (rows carry an ``images`` column; an environment exposes ``images`` and the
    #: conversation as chat ``messages()``): a vision-language model with its processor reads them
    image_prompts: bool = False
    #: the columns a prompt row needs beside ``prompt`` for the reward to score it, name -> type(s) as
    #: `load_rows` checks them: a user's prompt file without them is refused, naming file, row and field
    reward_fields: Mapping[str, Any] = {}

    def scoring_problem(self, row: Mapping[str, Any]) -> str | None:
        """Why the reward could not score the prompt row ``row`` of a user's file, where the columns of
        `reward_fields` cannot say it (a task that reads its input in several forms); None if it can."""
        return None

    @property
    def default_splits(self) -> tuple[str, ...]:
        """The splits a run evaluates when none are named."""
        return self.splits

    @abstractmethod
    def train_prompts(self, n: int, seed: int) -> list[dict]:
        """``n`` RL prompt rows (key ``prompt`` plus the columns the reward needs)."""

    @abstractmethod
    def demonstrations(self, n: int, seed: int) -> list[dict]:
        """``n`` SFT rows with ``prompt`` and ``completion``."""

    @abstractmethod
    def validation_prompts(self, n: int, seed: int) -> list[dict]:
        """``n`` held-out prompt rows from the training distribution, disjoint from eval sets."""

    @abstractmethod
    def eval_episodes(self, split: str) -> list[dict]:
        """The fixed evaluation rows of ``split`` (one of :attr:`splits`)."""

    def eval_repeats(self, split: str) -> int:
        """Samples per problem that ``split``'s own data asks for (a benchmark file listing each
        problem k times asks for avg@k); evaluation by samples draws this many per ``--eval_samples``."""
        return 1

    @abstractmethod
    def verify(self, row: Mapping[str, Any], completion: Any) -> Verification:
        """Score one completion for one row; never raises on any completion text."""

    @abstractmethod
    def make_env(self, row: Mapping[str, Any], *, max_attempts: int) -> Env:
        """An environment for one evaluation row, allowed ``max_attempts`` answers per episode."""

    def eval_metrics(self, verifications: Sequence[Verification | None]) -> dict[str, float]:
        """The task's own measures over the verdicts of evaluated answers (a split's, or one episode's),
        reported beside success; ``None`` entries are calls the environment did not evaluate. None here."""
        return {}

    def reward(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None,
               **columns: Any) -> list[float]:
        """TRL reward function: ``f(prompts=..., completions=..., completion_ids=..., **columns)``.

        Every extra dataset column arrives as a list aligned with ``completions``; unknown
        keyword arguments (``completion_ids``, ``trainer_state``, ...) are ignored.  Returns
        one float per completion.  Completions may be strings or chat message lists.
        """
        completions = list(completions or [])
        n = len(completions)
        prompts_list = list(prompts) if prompts is not None else [None] * n
        rows = []
        for i in range(n):
            row: dict[str, Any] = {}
            for key, col in columns.items():
                if isinstance(col, (list, tuple)) and len(col) == n:
                    row[key] = col[i]
            if i < len(prompts_list) and "prompt" not in row:
                row["prompt"] = prompts_list[i]
            rows.append(row)
        return [float(self.verify(row, c).reward) for row, c in zip(rows, completions)]


def completion_text(completion: Any) -> str:
    """The text of a completion given as a string or as TRL conversational messages.

    For a list of ``{"role", "content"}`` dicts the content of the last message is used.
    Anything else becomes ``""`` (which a verifier then penalises), never an exception.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        content = completion.get("content")
        return content if isinstance(content, str) else ""
    if isinstance(completion, (list, tuple)) and completion:
        return completion_text(completion[-1])
    return ""


def prompt_text(prompt: Any, tokenizer: PreTrainedTokenizerBase) -> str:
    """A prompt as text: strings as they are, chat messages through the chat template."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


# --------------------------------------------------------------------------- row files


class DataError(ValueError):
    """A bad row in a data file; the message names the file, the 1-based row and the field.

    ``unit`` names what is counted (``"row"``, or e.g. ``"route"`` for a file of routes).
    """

    def __init__(self, path: str | Path, row: int | None, field: str | None, problem: str, unit: str = "row"):
        self.path = str(path)
        self.row = row
        self.field = field
        self.problem = problem
        where = f"{self.path}"
        if row is not None:
            where += f": {unit} {row}"
        if field is not None:
            where += f": field '{field}'"
        super().__init__(f"{where}: {problem}")


def _type_name(t: Any) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return getattr(t, "__name__", str(t))


def _matches(value: Any, expected: type | tuple[type, ...]) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    for t in types:
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                continue
            return True
        if t is int and isinstance(value, bool):
            continue
        if isinstance(value, t):
            return True
    return False


def _check_row(path: Path, row_no: int, obj: Any, required: Mapping[str, Any],
               check: Callable[[dict], str | None] | None) -> dict:
    if not isinstance(obj, dict):
        raise DataError(path, row_no, None, f"expected a JSON object, got {type(obj).__name__}")
    for field, expected in required.items():
        if field not in obj:
            raise DataError(path, row_no, field, "missing field")
        if not _matches(obj[field], expected):
            raise DataError(path, row_no, field,
                            f"expected {_type_name(expected)}, got {type(obj[field]).__name__}")
    problem = check(obj) if check else None
    if problem:
        raise DataError(path, row_no, None, problem)
    return obj


@overload
def load_rows(path: str | Path, required: Mapping[str, Any] | None = ...,
              skip_invalid: Literal[False] = ..., check: Callable[[dict], str | None] | None = ...) -> list[dict]: ...


@overload
def load_rows(path: str | Path, required: Mapping[str, Any] | None = ...,
              *, skip_invalid: Literal[True], check: Callable[[dict], str | None] | None = ...) -> tuple[list[dict], int]: ...


def load_rows(path: str | Path, required: Mapping[str, Any] | None = None,
              skip_invalid: bool = False, check: Callable[[dict], str | None] | None = None,
              ) -> list[dict] | tuple[list[dict], int]:
    """Read prompt or demonstration rows from a ``.jsonl`` or ``.json`` file, checked.

    ``required`` maps field names to a type or tuple of types (``{"prompt": str,
    "values": list}``); ``int`` rejects booleans and ``float`` accepts ints. ``check`` says what else
    is wrong with a row (a message), or None.

    * JSONL (any suffix but ``.json``): one JSON object per line; blank lines are ignored;
      the row number is the 1-based line number.
    * JSON (``.json``): a list of objects, or an object with a ``"rows"`` or ``"data"``
      list; the row number is the 1-based position in that list.

    Missing fields, wrong types, non-object rows and invalid JSON lines raise
    :class:`DataError` (message: ``<file>: row <n>: field '<name>': <problem>``).
    With ``skip_invalid=True`` bad rows are skipped instead, and the function returns
    ``(rows, n_skipped)``; otherwise it returns ``rows``.  A missing file raises
    ``FileNotFoundError``; an unparsable ``.json`` file raises ``DataError`` even when
    skipping (there are no rows to keep).
    """
    path = Path(path)
    required = dict(required or {})
    rows: list[dict] = []
    skipped = 0
    with path.open("r", encoding="utf-8") as fh:
        if path.suffix.lower() == ".json":
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise DataError(path, None, None, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
            if isinstance(data, dict):
                for key in ("rows", "data"):
                    if isinstance(data.get(key), list):
                        data = data[key]
                        break
            if not isinstance(data, list):
                raise DataError(path, None, None, "expected a JSON list of row objects")
            numbered = list(enumerate(data, start=1))
            for row_no, obj in numbered:
                try:
                    rows.append(_check_row(path, row_no, obj, required, check))
                except DataError:
                    if not skip_invalid:
                        raise
                    skipped += 1
        else:
            for row_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    try:
                        obj = json.loads(line)
                    except (json.JSONDecodeError, RecursionError) as exc:
                        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nesting too deep"
                        raise DataError(path, row_no, None, f"invalid JSON: {msg}") from exc
                    rows.append(_check_row(path, row_no, obj, required, check))
                except DataError:
                    if not skip_invalid:
                        raise
                    skipped += 1
    if skip_invalid:
        return rows, skipped
    return rows
