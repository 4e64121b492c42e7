"""Math and out-of-distribution benchmarks in their common public layouts.

In-distribution (free-form answers, Math-Verify): AIME24, AMC, MATH500, Minerva, OlympiadBench.
Out-of-distribution (multiple choice, the chosen letter is compared): ARC-Challenge,
GPQA-Diamond, MMLU-Pro. A benchmark is read from ``<benchmark_dir>/<name>.jsonl`` (or
``.json`` / ``.parquet``) when that file exists, else from its Hub dataset.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from amft.tasks.base import DataError

from .data import MathColumns, load_math_rows, read_table

__all__ = ["BENCHMARKS", "Benchmark", "load_benchmark", "multiple_choice_row"]

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Benchmark:
    """Where a benchmark lives and how it is scored (``"free"`` answer or ``"choice"`` letter)."""

    hub_id: str
    split: str
    kind: str
    subset: str | None = None
    columns: MathColumns = MathColumns()


BENCHMARKS: dict[str, Benchmark] = {
    "aime24": Benchmark("HuggingFaceH4/aime_2024", "train", "free"),
    "amc": Benchmark("AI-MO/aimo-validation-amc", "train", "free"),
    "math500": Benchmark("HuggingFaceH4/MATH-500", "test", "free"),
    "minerva": Benchmark("math-ai/minervamath", "test", "free"),
    "olympiad": Benchmark("Hothan/OlympiadBench", "train", "free", subset="OE_TO_maths_en_COMP",
                          columns=MathColumns(problem="question", answer="final_answer")),
    "arc-c": Benchmark("allenai/ai2_arc", "test", "choice", subset="ARC-Challenge"),
    "gpqa-diamond": Benchmark("Idavidrein/gpqa", "train", "choice", subset="gpqa_diamond"),
    "mmlu-pro": Benchmark("TIGER-Lab/MMLU-Pro", "test", "choice"),
}


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
    return result, None


def _local_file(benchmark_dir: str | None, name: str) -> str | None:
    if not benchmark_dir:
        return None
    for extension in (".jsonl", ".json", ".parquet"):
        path = os.path.join(benchmark_dir, name + extension)
        if os.path.isfile(path):
            return path
    return None


def load_benchmark(name: str, benchmark_dir: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """The rows of benchmark ``name`` and its kind; a local file wins over the Hub."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    spec = BENCHMARKS[name]
    path = _local_file(benchmark_dir, name)
    source, split, subset = (path, "train", None) if path else (spec.hub_id, spec.split, spec.subset)
    if spec.kind == "free":
        return load_math_rows(source, split=split, subset=subset, columns=spec.columns)[0], spec.kind
    rows = []
    for index, raw in enumerate(read_table(source, split, subset), start=1):
        row, missing = multiple_choice_row(raw, index)
        if missing is not None:
            raise DataError(source, index, missing, "missing or not understood (ARC, MMLU-Pro or GPQA layout expected)")
        rows.append(row)
    return rows, spec.kind

