"""The math task: problems with a final answer, scored by Math-Verify (or by option letter).

Training data comes from a dataset (``dataset``: a local file or a Hub name) or, by default,
from the generator of small word problems (the CPU demo). Evaluation splits are benchmark
names (see :mod:`.benchmarks`) or, for generated problems, ``id`` (held-out problems like
the training ones) and ``longer`` (three steps, one more than training ever shows).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Mapping

from amft.tasks.base import Env, Task, TaskConfig, Verification, completion_text

from .answers import choice_letter
from .benchmarks import BENCHMARKS, LETTERS, load_benchmark
from .data import MathColumns, load_math_rows
from .generator import generate_problems
from .verify import answers_match

__all__ = ["MathConfig", "MathTask", "MathEnv"]

GENERATED_SPLITS = ("id", "longer")
DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CHOICE_INSTRUCTION = "Answer with the letter of the correct option within \\boxed{}."


@dataclass(frozen=True)
class MathConfig(TaskConfig):
    """Options of the math task (each is also a flag of `amft train` / `amft eval`)."""

    #: training problems: a .jsonl/.json/.parquet file or a Hub dataset; None = generated word problems
    dataset: str | None = None
    dataset_split: str = "train"
    problem_column: str | None = None
    answer_column: str | None = None
    solution_column: str | None = None
    #: "plain" (text prompt, for base and tiny models) or "chat" (a user message, for instruct models)
    prompt_style: str = "plain"
    #: the instruction after each chat prompt; None = DEFAULT_INSTRUCTION (multiple choice uses CHOICE_INSTRUCTION)
    instruction: str | None = None
    #: a completion without a \boxed{} answer scores 0
    require_boxed: bool = True
    verify_timeout_seconds: int = 5
    #: problems of the dataset held out for the meta-gradient's validation prompts
    validation_size: int = 256
    #: local folder with benchmark files named <benchmark>.jsonl / .json / .parquet
    benchmark_dir: str | None = None
    #: generated problems per evaluation split
    eval_size: int = 200
    #: largest starting count and amount in generated word problems (used when no dataset is given)
    generated_max_number: int = 10
    skip_invalid_rows: bool = False

    def __post_init__(self) -> None:
        if self.prompt_style not in ("plain", "chat"):
            raise ValueError(f"prompt_style must be 'plain' or 'chat', got {self.prompt_style!r}")
        if self.verify_timeout_seconds < 1:
            raise ValueError("verify_timeout_seconds must be >= 1 (Math-Verify's alarm counts whole seconds)")



class MathTask(Task):
    """Math problems; rows carry ``prompt``, ``answer`` and, for multiple choice, ``choices``."""

    name = "math"
    multi_turn = False

    def __init__(self, config: MathConfig | None = None, **overrides: Any) -> None:
        self.config = config or MathConfig(**overrides)
        self.splits = tuple(BENCHMARKS) + GENERATED_SPLITS
        self._dataset: tuple[list[dict], list[dict]] | None = None
        self._eval_cache: dict[str, list[dict]] = {}
        self._eval_questions: frozenset[str] | None = None

    @property
    def default_splits(self) -> tuple[str, ...]:
        return ("aime24", "amc", "math500", "minerva", "olympiad") if self.config.dataset else GENERATED_SPLITS

    # ------------------------------------------------------------------ prompts
    def render_prompt(self, problem: str, choices: list[str] | None = None) -> Any:
        text = problem.strip()
        instruction = self.config.instruction or DEFAULT_INSTRUCTION
        if choices:
            text += "\n" + "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))
            instruction = CHOICE_INSTRUCTION
        if self.config.prompt_style == "chat":
            return [{"role": "user", "content": f"{text}\n{instruction}"}]
        return f"Question: {text}\nAnswer:"

    def _row(self, problem: str, answer: str, solution: str | None = None, choices: list[str] | None = None) -> dict:
        row = {"prompt": self.render_prompt(problem, choices), "answer": answer,
               "demonstration": f" {solution.strip()}" if solution else None}
        if choices:
            row["choices"] = choices
        return row

    # ------------------------------------------------------------------ data
    def _dataset_rows(self) -> tuple[list[dict], list[dict]]:
        """(training rows, held-out validation rows) of the configured dataset, split by a fixed seed."""
        if self._dataset is None:
            config = self.config
            columns = MathColumns(config.problem_column, config.answer_column, config.solution_column)
            rows, _ = load_math_rows(config.dataset, split=config.dataset_split, columns=columns,
                                     skip_invalid=config.skip_invalid_rows)
            order = list(range(len(rows)))
            random.Random("math-validation").shuffle(order)
            held_out = set(order[: min(config.validation_size, len(rows) // 10)])
            self._dataset = ([r for i, r in enumerate(rows) if i not in held_out],
                             [r for i, r in enumerate(rows) if i in held_out])
        return self._dataset

    def _sample(self, rows: list[dict], n: int, seed: int, stream: str) -> list[dict]:
        rng = random.Random(f"{stream}:{seed}")
        picked = [rows[rng.randrange(len(rows))] for _ in range(n)] if n > len(rows) else rng.sample(rows, n)
        return [self._row(r["problem"], r["answer"], r.get("solution")) for r in picked]

    def _generated(self, n: int, seed: int, stream: str) -> list[dict]:
        if self._eval_questions is None:
            self._eval_questions = frozenset(p.question for split in GENERATED_SPLITS for p in self._generated_eval(split))
        problems = generate_problems(n, f"{stream}:{seed}", max_number=self.config.generated_max_number,
                                     exclude=self._eval_questions)
        return [self._row(p.question, str(p.answer), p.solution) for p in problems]

    def train_prompts(self, n: int, seed: int) -> list[dict]:
        if self.config.dataset:
            return self._sample(self._dataset_rows()[0], n, seed, "math-train")
        return self._generated(n, seed, "train")

    def demonstrations(self, n: int, seed: int) -> list[dict]:
        if self.config.dataset:
            with_solution = [r for r in self._dataset_rows()[0] if r.get("solution")]
            if not with_solution:
                raise ValueError(f"{self.config.dataset}: no row has a solution to imitate (name it with --solution_column)")
            rows = self._sample(with_solution, n, seed, "math-demo")
        else:
            rows = self._generated(n, seed, "demo")
        for row in rows:
            row["completion"] = row.pop("demonstration")
        return rows

    def validation_prompts(self, n: int, seed: int) -> list[dict]:
        if self.config.dataset:
            held_out = self._dataset_rows()[1]
            return [self._row(r["problem"], r["answer"]) for r in held_out[:n]]
        return self._generated(n, seed, "validation")

    def _generated_eval(self, split: str):
        # Fixed streams that training never draws from: 2-step "id" problems and 3-step "longer" ones.
        steps = {"id": (1, 2), "longer": (3, 3)}[split]
        return generate_problems(self.config.eval_size, f"eval-{split}", min_steps=steps[0], max_steps=steps[1],
                                 max_number=self.config.generated_max_number)

    def eval_episodes(self, split: str) -> list[dict]:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(self.splits)}")
        if split not in self._eval_cache:
            if split in GENERATED_SPLITS:
                rows = [self._row(p.question, str(p.answer)) for p in self._generated_eval(split)]
            else:
                raw, _kind = load_benchmark(split, self.config.benchmark_dir)
                rows = [self._row(r["problem"], r["answer"], choices=r.get("choices")) for r in raw]
            for index, row in enumerate(rows):
                row.update(split=split, episode=index)
            self._eval_cache[split] = rows
        return [dict(row) for row in self._eval_cache[split]]

    # ------------------------------------------------------------------ scoring
    def verify(self, row: Mapping[str, Any], completion: Any) -> Verification:
        text = completion_text(completion)
        answer = str(row.get("answer") or "")
        if row.get("choices"):
            chosen = choice_letter(text, LETTERS[: len(row["choices"])])
            correct = chosen == answer
        else:
            correct = answers_match(text, answer, timeout_seconds=self.config.verify_timeout_seconds,
                                    require_boxed=self.config.require_boxed)
        return Verification(reward=1.0 if correct else 0.0, success=correct,
                            message="correct" if correct else "incorrect")

    def make_env(self, row: Mapping[str, Any]) -> MathEnv:
        return MathEnv(self, row)


class MathEnv(Env):
    """One attempt per episode: the prompt, then the verdict on the reply."""

    def __init__(self, task: MathTask, row: Mapping[str, Any]) -> None:
        self.task, self.row = task, dict(row)
        prompt = self.row["prompt"]
        self.prompt = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        self._done = False

    def reset(self) -> str:
        self._done = False
        return self.prompt

    def step(self, text: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("episode ended; call reset()")
        self._done = True
        verification = self.task.verify(self.row, text)
        return self.prompt + text, verification.reward, True, False, {"verification": verification, "attempts": 1}
