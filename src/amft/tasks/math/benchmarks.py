"""Math and out-of-distribution benchmarks, from their Hub datasets or from local files.

In-distribution (free-form answers, Math-Verify): AIME24, AIME25, AMC, MATH500, Minerva,
OlympiadBench. Out-of-distribution (multiple choice, the chosen letter is compared):
ARC-Challenge, GPQA-Diamond, MMLU-Pro.

Where a benchmark comes from, first match wins:

* benchmark files in the verl layout (LUFFY's ``valid.all.parquet``, ``valid.arc_c.parquet``, ...):
  one file may hold several benchmarks, told apart by the ``data_source`` column (``aime``,
  ``aime25``, ``amc``, ``math``, ``minerva``, ``olympiad_bench``, ``arc_c``, ``gpqa``, ``mmlu_pro``);
  a row is chat ``prompt`` messages and ``reward_model.ground_truth``; multiple-choice rows keep
  their options inside the question and a letter as ground truth;
* ``<benchmark_dir>/<name>.jsonl`` (or ``.json`` / ``.parquet``), in the benchmark's Hub layout or
  the verl layout;
* the benchmark's Hub dataset.

A file may list a problem several times (see docs/design.md, 'The math task'): when every problem
of a benchmark appears the same number k of times, the k copies are k samples of one problem
(avg@k); when the counts differ, the copies are duplicates and each problem counts once.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from amft.tasks.base import DataError

from .data import MathColumns, answer_text, load_math_rows, read_table
from .verify import gold_parses

__all__ = [
    "BENCHMARKS",
    "BENCHMARK_OF_SOURCE",
    "Benchmark",
    "BenchmarkRows",
    "load_benchmark",
    "multiple_choice_row",
    "option_letters",
    "read_benchmark_files",
]

logger = logging.getLogger(__name__)

LETTERS = "ABCDEFGHIJ"
#: columns a file needs to be read in the verl layout
VERL_COLUMNS = ("prompt", "reward_model")
#: rows named in one warning at most
_NAMED_ROWS = 10


@dataclass(frozen=True)
class Benchmark:
    """Where a benchmark lives and how it is scored (``"free"`` answer or ``"choice"`` letter);
    ``data_sources``: the names its rows carry in the ``data_source`` column of verl-layout files."""

    hub_id: str
    split: str
    kind: str
    subset: str | None = None
    columns: MathColumns = MathColumns()
    data_sources: tuple[str, ...] = ()


BENCHMARKS: dict[str, Benchmark] = {
    "aime24": Benchmark("HuggingFaceH4/aime_2024", "train", "free", data_sources=("aime", "aime24", "aime2024")),
    "aime25": Benchmark("math-ai/aime25", "test", "free", data_sources=("aime25", "aime2025")),
    "amc": Benchmark("AI-MO/aimo-validation-amc", "train", "free", data_sources=("amc", "amc23", "amc2023")),
    "math500": Benchmark("HuggingFaceH4/MATH-500", "test", "free", data_sources=("math", "math500", "math_500")),
    "minerva": Benchmark("math-ai/minervamath", "test", "free", data_sources=("minerva", "minerva_math")),
    "olympiad": Benchmark("Hothan/OlympiadBench", "train", "free", subset="OE_TO_maths_en_COMP",
                          columns=MathColumns(problem="question", answer="final_answer"),
                          data_sources=("olympiad_bench", "olympiadbench", "olympiad")),
    "arc-c": Benchmark("allenai/ai2_arc", "test", "choice", subset="ARC-Challenge",
                       data_sources=("arc_c", "arc-c", "arc_challenge")),
    "gpqa-diamond": Benchmark("Idavidrein/gpqa", "train", "choice", subset="gpqa_diamond",
                              data_sources=("gpqa", "gpqa_diamond", "gpqa-diamond")),
    "mmlu-pro": Benchmark("TIGER-Lab/MMLU-Pro", "test", "choice", data_sources=("mmlu_pro", "mmlu-pro")),
}
#: ``data_source`` value (lower case) -> benchmark name
BENCHMARK_OF_SOURCE: dict[str, str] = {
    source: name for name, benchmark in BENCHMARKS.items() for source in benchmark.data_sources
}


@dataclass(frozen=True)
class BenchmarkRows:
    """One benchmark as read: each distinct problem once, and ``repeats``, the number of times the
    source lists every problem (its avg@k samples; 1 for a source without repeats).

    A row has ``problem`` and ``answer``; a multiple-choice row has ``letters`` (its option letters)
    and, from the Hub layouts, ``choices`` (the options, rendered into the prompt); a verl-layout row
    has ``messages`` (its chat prompt without the system message).
    """

    name: str
    kind: str
    source: str
    rows: list[dict[str, Any]] = field(repr=False)
    repeats: int = 1


def multiple_choice_row(row: Mapping[str, Any], index: int) -> tuple[dict[str, Any], str | None]:
    """``({"problem", "choices", "answer"}, None)`` for the ARC, MMLU-Pro and GPQA layouts, or
    ``(partial, missing_field)``. GPQA's options are shuffled with a seed fixed by the row index."""
    question = row.get("question") or row.get("Question")
    choices, answer = None, None
    if isinstance(row.get("choices"), Mapping):  # ARC: {"text": [...], "label": [...]}, answerKey
        texts, labels = list(row["choices"].get("text", [])), list(row["choices"].get("label", []))
        choices = texts
        key = row.get("answerKey")
        answer = LETTERS[labels.index(key)] if key in labels else None
    elif isinstance(row.get("options"), list):  # MMLU-Pro: options, answer letter (or answer_index)
        choices = list(row["options"])
        answer = row.get("answer") if isinstance(row.get("answer"), str) else None
        if answer is None and isinstance(row.get("answer_index"), int):
            answer = LETTERS[row["answer_index"]]
    elif row.get("Correct Answer"):  # GPQA: one correct and three incorrect answers
        options = [row["Correct Answer"], *(row.get(f"Incorrect Answer {i}") for i in (1, 2, 3))]
        options = [str(o).strip() for o in options if o]
        order = list(range(len(options)))
        random.Random(f"gpqa:{index}").shuffle(order)
        choices = [options[i] for i in order]
        answer = LETTERS[order.index(0)]
    result = {"problem": question, "choices": choices, "answer": answer}
    if not question:
        return result, "question"
    if not choices:
        return result, "choices"
    if not answer or answer not in LETTERS[: len(choices)]:
        return result, "answer"
    result["letters"] = LETTERS[: len(choices)]
    return result, None


_OPTION_LABEL = re.compile(r"^\s*\(?([A-J])[.):]\s", flags=re.MULTILINE)


def option_letters(question: str) -> str:
    """The option letters of a question that lists its options, one per line, as ``A. ...``,
    ``(A) ...``, ``A) ...`` or ``A: ...``: ``"ABCD"`` for four. All ten letters A-J when the labels
    found are not A, B, C, ... in order."""
    found = "".join(_OPTION_LABEL.findall(question))
    return found if len(found) >= 2 and LETTERS.startswith(found) else LETTERS


def _chat_messages(value: Any) -> list[dict[str, str]] | None:
    """The prompt's messages without system messages, or None unless they end with a user message."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        return None
    messages = [{"role": m.get("role"), "content": m.get("content")} for m in value if isinstance(m, Mapping)]
    messages = [m for m in messages if m["role"] != "system"]
    if not messages or messages[-1]["role"] != "user" or not all(isinstance(m["content"], str) for m in messages):
        return None
    return messages


def _verl_row(raw: Mapping[str, Any], path: str, index: int, kind: str) -> dict[str, Any]:
    """One verl-layout row (1-based ``index`` of file ``path``) of a benchmark of ``kind``; a row
    that cannot be evaluated raises :class:`DataError` naming the file, the row and the field."""
    messages = _chat_messages(raw.get("prompt"))
    if messages is None or not messages[-1]["content"].strip():
        raise DataError(path, index, "prompt", "expected chat messages ending with a user message")
    reward_model = raw.get("reward_model")
    answer = answer_text(reward_model.get("ground_truth")) if isinstance(reward_model, Mapping) else None
    if not answer:
        raise DataError(path, index, "reward_model.ground_truth", "missing or empty")
    problem = messages[-1]["content"]
    row: dict[str, Any] = {"problem": problem, "answer": answer, "messages": messages}
    if kind == "choice":
        letters = option_letters(problem)
        letter = answer.strip().strip("()").rstrip(".").strip().upper()
        if len(letter) != 1 or letter not in letters:
            raise DataError(path, index, "reward_model.ground_truth",
                            f"{answer!r} is not one of the option letters {letters[0]}-{letters[-1]}")
        row.update(answer=letter, letters=letters)
    return row


def _problem_key(row: Mapping[str, Any]) -> tuple:
    prompt = tuple((m["role"], m["content"]) for m in row["messages"]) if row.get("messages") else row["problem"]
    return prompt, tuple(row.get("choices") or ()), row["answer"]


def _named_rows(indices: Sequence[int]) -> str:
    shown = ", ".join(map(str, indices[:_NAMED_ROWS]))
    return f"rows {shown}" + (f" and {len(indices) - _NAMED_ROWS} more" if len(indices) > _NAMED_ROWS else "")


def _collect_benchmark(name: str, source: str, rows: Iterable[tuple[int, dict[str, Any]]],
                      answer_field: str = "answer", count_repeats: bool = True) -> BenchmarkRows:
    """The benchmark ``name`` from its rows ``(1-based row of source, row)``: repeated problems become
    avg@k samples or are de-duplicated (``count_repeats``), and gold answers Math-Verify cannot read
    are reported (they make every answer wrong)."""
    kind = BENCHMARKS[name].kind
    indexed = list(rows)
    if not indexed:
        raise DataError(source, None, None, f"no rows of benchmark {name}")
    first_row: dict[tuple, tuple[int, dict[str, Any]]] = {}
    counts: Counter[tuple] = Counter()
    for index, row in indexed:
        key = _problem_key(row)
        first_row.setdefault(key, (index, row))
        counts[key] += 1
    repeats = 1
    if count_repeats and len(set(counts.values())) == 1:
        repeats = next(iter(counts.values()))
    elif count_repeats:
        logger.warning("%s: the problems of %s are listed unequally often (%d to %d times): duplicates, each "
                       "problem is evaluated once", source, name, min(counts.values()), max(counts.values()))
    unique = list(first_row.values())
    if kind == "free":
        unreadable = [index for index, row in unique if not gold_parses(row["answer"])]
        if unreadable:
            logger.warning("%s: %s: field '%s': Math-Verify cannot read the gold answer, so every answer to "
                           "these problems of %s counts as wrong", source, _named_rows(unreadable), answer_field, name)
    return BenchmarkRows(name, kind, source, [row for _, row in unique], repeats)


def _is_verl_layout(table: Any) -> bool:
    return all(column in getattr(table, "column_names", ()) for column in VERL_COLUMNS)


def read_benchmark_files(paths: Sequence[str]) -> dict[str, BenchmarkRows]:
    """The benchmarks in verl-layout files, split by each row's ``data_source``. A benchmark in two
    files, a file without the layout's columns and a row that cannot be evaluated raise
    :class:`DataError`; data sources that name no benchmark are reported and left out."""
    found: dict[str, BenchmarkRows] = {}
    for path in paths:
        table = read_table(path)
        columns = getattr(table, "column_names", ())
        missing = [column for column in ("data_source", *VERL_COLUMNS) if column not in columns]
        if missing:
            raise DataError(path, None, missing[0], "missing column: a benchmark file in the verl layout has "
                            "data_source, prompt (chat messages) and reward_model (with ground_truth)")
        grouped: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        unknown: Counter[str] = Counter()
        for index, raw in enumerate(table, start=1):
            source = raw.get("data_source")
            if not isinstance(source, str) or not source.strip():
                raise DataError(path, index, "data_source", "missing or empty")
            name = BENCHMARK_OF_SOURCE.get(source.strip().lower())
            if name is None:
                unknown[source] += 1
                continue
            grouped.setdefault(name, []).append((index, _verl_row(raw, path, index, BENCHMARKS[name].kind)))
        if unknown:
            logger.warning("%s: data sources that name no benchmark, not evaluated: %s", path,
                           ", ".join(f"{source} ({count} rows)" for source, count in unknown.items()))
        if not grouped:
            raise DataError(path, None, "data_source", f"no row names a known benchmark; known data sources: "
                            f"{', '.join(BENCHMARK_OF_SOURCE)}")
        for name, rows in grouped.items():
            if name in found:
                raise DataError(path, None, "data_source", f"benchmark {name} is also in {found[name].source}")
            found[name] = _collect_benchmark(name, path, rows, "reward_model.ground_truth")
    return found


def _local_file(benchmark_dir: str | None, name: str) -> str | None:
    if not benchmark_dir:
        return None
    for extension in (".jsonl", ".json", ".parquet"):
        path = os.path.join(benchmark_dir, name + extension)
        if os.path.isfile(path):
            return path
    return None


def load_benchmark(name: str, benchmark_dir: str | None = None) -> BenchmarkRows:
    """Benchmark ``name`` from ``<benchmark_dir>/<name>.jsonl|.json|.parquet`` (its Hub layout or the
    verl layout, every row belonging to ``name``) when that file exists, else from its Hub dataset."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    spec = BENCHMARKS[name]
    path = _local_file(benchmark_dir, name)
    source, split, subset = (path, "train", None) if path else (spec.hub_id, spec.split, spec.subset)
    if path and _is_verl_layout(table := read_table(path)):
        rows = ((index, _verl_row(raw, path, index, spec.kind)) for index, raw in enumerate(table, start=1))
        return _collect_benchmark(name, path, rows, "reward_model.ground_truth")
    # Hub datasets are taken as published; only files are read for repeats.
    if spec.kind == "free":
        rows = load_math_rows(source, split=split, subset=subset, columns=spec.columns)[0]
        return _collect_benchmark(name, source, enumerate(rows, start=1), count_repeats=bool(path))
    choice_rows = []
    for index, raw in enumerate(read_table(source, split, subset), start=1):
        row, missing = multiple_choice_row(raw, index)
        if missing is not None:
            raise DataError(source, index, missing, "missing or not understood (ARC, MMLU-Pro, GPQA or verl layout "
                            "expected)")
        choice_rows.append((index, row))
    return _collect_benchmark(name, source, choice_rows, count_repeats=bool(path))
