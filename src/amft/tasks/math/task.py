"""The math task: problems with a final answer, scored by Math-Verify (or by option letter).

Training data comes from a dataset (``dataset``: a local file or a Hub name) or, by default,
from the generator of small word problems (the CPU demo). Evaluation splits are benchmark
names (see :mod:`.benchmarks`) or, for generated problems, ``id`` (held-out problems like
the training ones) and ``longer`` (three steps, one more than training ever shows). A benchmark
file that lists each problem k times asks for k samples per problem (:meth:`MathTask.eval_repeats`).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any, Mapping

from amft.defaults import changed_from_default
from amft.tasks.base import Env, Task, TaskConfig, Turn, Verification, completion_text

from .answers import choice_letter
from .benchmarks import BENCHMARKS, LETTERS, BenchmarkRows, load_benchmark, read_benchmark_files
from .data import MathColumns, load_math_rows
from .generator import generate_problems
from .verify import answers_match

logger = logging.getLogger(__name__)

__all__ = ["MathConfig", "MathTask", "MathEnv"]

GENERATED_SPLITS = ("id", "longer")
DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CHOICE_INSTRUCTION = "Answer with the letter of the correct option within \\boxed{}."
#: what follows a wrong answer in a revision episode
RETRY_PROMPT = "\nThat answer is incorrect. Try again.\nAnswer:"


#: the options that only a `dataset` reads
DATASET_OPTIONS = ("dataset_split", "problem_column", "answer_column", "solution_column", "validation_size",
                   "skip_invalid_dataset_rows")


@dataclass(frozen=True)
class MathConfig(TaskConfig):
    """Options of the math task: each field is a flag and a YAML key of `amft train` / `amft eval`
    when the task is ``math``, and a keyword of ``get_task("math", ...)``."""

    _argument_group_name = "math task options"

    dataset: str | None = field(default=None, metadata={"help": (
        "Training problems from a .jsonl/.json/.parquet file or a Hub dataset (default: generated word problems).")})
    dataset_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
    problem_column: str | None = field(default=None, metadata={"help": "Column of the problem (default: detected)."})
    answer_column: str | None = field(default=None, metadata={"help": "Column of the final answer (default: detected)."})
    solution_column: str | None = field(default=None, metadata={"help": (
        "Column of the worked solution or trace to imitate (default: detected).")})
    prompt_style: str = field(default="plain", metadata={"help": (
        "'plain' text prompts (base and tiny models) or 'chat' messages (instruct models).")})
    instruction: str | None = field(default=None, metadata={"help": (
        "The instruction after each chat prompt (default: 'Please reason step by step, and put your final answer "
        "within \\boxed{}.'; multiple-choice benchmarks ask for the letter).")})
    require_boxed: bool = field(default=True, metadata={"help": "A completion without a \\boxed{} answer scores 0."})
    verify_timeout_seconds: int = field(default=5, metadata={"help": (
        "Seconds Math-Verify may spend on one answer before it counts as wrong.")})
    validation_size: int = field(default=256, metadata={"help": (
        "Dataset problems held out for the meta-gradient's validation prompts.")})
    benchmark_dir: str | None = field(default=None, metadata={"help": (
        "Folder of local benchmark files <benchmark>.jsonl/.json/.parquet, in the benchmark's Hub layout or the "
        "verl layout (default: the Hub).")})
    benchmark_files: str | None = field(default=None, metadata={"help": (
        "Comma-separated benchmark files in the verl layout, as LUFFY ships them (valid.all.parquet, "
        "valid.arc_c.parquet, ...): each row's data_source names its benchmark (aime -> aime24, aime25, amc, "
        "math -> math500, minerva, olympiad_bench -> olympiad, arc_c, gpqa, mmlu_pro). They win over "
        "--benchmark_dir and the Hub, and their benchmarks are the default evaluation splits. A file listing "
        "every problem of a benchmark k times gives k samples per problem (avg@k).")})
    benchmark_prompts: str = field(default="task", metadata={"help": (
        "'task': every benchmark problem gets this task's prompt (--prompt_style, --instruction); 'file': a "
        "benchmark row with its own chat messages (the verl layout) is sent as the file wrote it, without its "
        "system message, through the model's chat template, as LUFFY evaluates.")})
    eval_size: int = field(default=200, metadata={"help": "Generated problems per evaluation split ('id', 'longer')."})
    generated_max_number: int = field(default=10, metadata={"help": (
        "Largest starting count and amount in generated word problems (used when no dataset is given).")})
    skip_invalid_dataset_rows: bool = field(default=False, metadata={"help": (
        "Skip and count malformed rows of a dataset file instead of stopping with an error naming file, row and "
        "field.")})

    def __post_init__(self) -> None:
        if self.prompt_style not in ("plain", "chat"):
            raise ValueError(f"prompt_style must be 'plain' or 'chat', got {self.prompt_style!r}")
        if self.benchmark_prompts not in ("task", "file"):
            raise ValueError(f"benchmark_prompts must be 'task' or 'file', got {self.benchmark_prompts!r}")
        if self.verify_timeout_seconds < 1:
            raise ValueError("verify_timeout_seconds must be >= 1 (Math-Verify's alarm counts whole seconds)")
        if self.instruction is not None and self.prompt_style != "chat":
            raise ValueError("instruction ends the chat prompt; the plain prompt ('Question: ... Answer:') has none: "
                             "set prompt_style 'chat' or leave instruction out")
        if self.dataset is None:
            given = changed_from_default(self, DATASET_OPTIONS)
            if given:
                raise ValueError(f"{', '.join(given)}: options of the training dataset, which is generated here; "
                                 "give --dataset, or leave them out")



class MathTask(Task):
    """Math problems; rows carry ``prompt``, ``answer`` and, for multiple choice, ``letters`` (the
    option letters) and ``choices`` where the options are listed apart from the question."""

    name = "math"
    reward_fields = {"answer": (str, int, float)}
    multi_turn = False
    default_eval_attempts = 1

    def __init__(self, config: MathConfig | None = None, **overrides: Any) -> None:
        self.config = config or MathConfig(**overrides)
        self.splits = tuple(BENCHMARKS) + GENERATED_SPLITS
        self._dataset: tuple[list[dict], list[dict]] | None = None
        self._eval_cache: dict[str, list[dict]] = {}
        self._file_benchmarks: dict[str, BenchmarkRows] | None = None
        self._benchmarks: dict[str, BenchmarkRows] = {}
        self._eval_questions: frozenset[str] | None = None

    @property
    def default_splits(self) -> tuple[str, ...]:
        if self.config.benchmark_files:
            return tuple(name for name in BENCHMARKS if name in self._benchmark_files())
        return ("aime24", "amc", "math500", "minerva", "olympiad") if self.config.dataset else GENERATED_SPLITS

    # ------------------------------------------------------------------ prompts
    def render_prompt(self, problem: str, choices: list[str] | None = None, *, multiple_choice: bool = False) -> Any:
        """The task's prompt for ``problem``; ``choices`` are listed as lettered options, and a
        ``multiple_choice`` problem (or one with ``choices``) asks for the letter."""
        text = problem.strip()
        instruction = self.config.instruction or DEFAULT_INSTRUCTION
        if choices:
            text += "\n" + "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))
        if choices or multiple_choice:
            instruction = CHOICE_INSTRUCTION
        if self.config.prompt_style == "chat":
            return [{"role": "user", "content": f"{text}\n{instruction}"}]
        return f"Question: {text}\nAnswer:"

    def _row(self, problem: str, answer: str, solution: str | None = None) -> dict:
        return {"prompt": self.render_prompt(problem), "answer": answer,
                "demonstration": f" {solution.strip()}" if solution else None}

    def _benchmark_row(self, row: Mapping[str, Any], kind: str) -> dict:
        if self.config.benchmark_prompts == "file" and row.get("messages"):
            prompt: Any = [dict(message) for message in row["messages"]]
        else:
            prompt = self.render_prompt(row["problem"], row.get("choices"), multiple_choice=kind == "choice")
        result = {"prompt": prompt, "answer": row["answer"], "demonstration": None}
        for key in ("choices", "letters"):
            if row.get(key):
                result[key] = row[key]
        return result

    # ------------------------------------------------------------------ data
    def _dataset_rows(self) -> tuple[list[dict], list[dict]]:
        """(training rows, held-out validation rows) of the configured dataset, split by a fixed seed."""
        if self._dataset is None:
            config = self.config
            columns = MathColumns(config.problem_column, config.answer_column, config.solution_column)
            rows, skipped = load_math_rows(config.dataset, split=config.dataset_split, columns=columns,
                                           skip_invalid=config.skip_invalid_dataset_rows)
            if skipped:
                logger.warning("%s: skipped %d malformed row(s), kept %d", config.dataset, skipped, len(rows))
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

    def _benchmark_files(self) -> dict[str, BenchmarkRows]:
        if self._file_benchmarks is None:
            paths = [path.strip() for path in (self.config.benchmark_files or "").split(",") if path.strip()]
            self._file_benchmarks = read_benchmark_files(paths)
        return self._file_benchmarks

    def benchmark(self, name: str) -> BenchmarkRows:
        """Benchmark ``name`` as this task reads it: from the benchmark files, else the benchmark
        folder, else the Hub (see :mod:`.benchmarks`)."""
        if name not in self._benchmarks:
            from_files = self._benchmark_files()
            self._benchmarks[name] = from_files[name] if name in from_files else load_benchmark(
                name, self.config.benchmark_dir)
        return self._benchmarks[name]

    def eval_repeats(self, split: str) -> int:
        """Times the split's benchmark file lists each problem (its avg@k samples), 1 for the rest."""
        return self.benchmark(split).repeats if split in BENCHMARKS else 1

    def eval_episodes(self, split: str) -> list[dict]:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(self.splits)}")
        if split not in self._eval_cache:
            if split in GENERATED_SPLITS:
                rows = [self._row(p.question, str(p.answer)) for p in self._generated_eval(split)]
            else:
                benchmark = self.benchmark(split)
                rows = [self._benchmark_row(r, benchmark.kind) for r in benchmark.rows]
            for index, row in enumerate(rows):
                row.update(split=split, episode=index)
            self._eval_cache[split] = rows
        return [dict(row) for row in self._eval_cache[split]]

    # ------------------------------------------------------------------ scoring
    def verify(self, row: Mapping[str, Any], completion: Any) -> Verification:
        text = completion_text(completion)
        answer = str(row.get("answer") or "")
        letters = row.get("letters") or (LETTERS[: len(row["choices"])] if row.get("choices") else None)
        if letters:
            correct = choice_letter(text, letters) == answer
        else:
            correct = answers_match(text, answer, timeout_seconds=self.config.verify_timeout_seconds,
                                    require_boxed=self.config.require_boxed)
        return Verification(reward=1.0 if correct else 0.0, success=correct,
                            message="correct" if correct else "incorrect")

    def make_env(self, row: Mapping[str, Any], *, max_attempts: int) -> MathEnv:
        return MathEnv(self, row, max_attempts=max_attempts)


class MathEnv(Env):
    """Sequential revision on one problem: after a wrong answer the model sees it judged
    incorrect and answers again, until a correct answer or ``max_attempts`` answers."""

    episodic = False

    def __init__(self, task: MathTask, row: Mapping[str, Any], *, max_attempts: int) -> None:
        super().__init__(max_attempts=max_attempts)
        self.task, self.row = task, dict(row)
        prompt = self.row["prompt"]
        self.prompt = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        self.conversation = self.prompt

    def _begin(self, seed: int | None) -> str:
        self.conversation = self.prompt
        return self.conversation

    def _respond(self, answer: str) -> Turn:
        verification = self.task.verify(self.row, answer)
        self.conversation += answer
        if not verification.success:
            self.conversation += RETRY_PROMPT
        return Turn(self.conversation, verification.reward, verification, terminated=verification.success,
                    success=verification.success)
