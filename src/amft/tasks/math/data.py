"""Math problems from local files (JSONL, JSON, Parquet) or Hub datasets, in their common layouts.

Every source becomes rows ``{"problem", "answer", "solution"}`` (``solution`` may be None):

* plain: ``problem`` / ``question`` / ``query``, ``answer`` / ``final_answer`` / ``ground_truth``,
  ``solution`` (or a reasoning trace column);
* MATH: the answer is the last ``\\boxed{}`` of ``solution``;
* GSM8K: ``question``, and ``answer`` holding the worked solution ending in ``#### 42``;
* verl / LUFFY (OpenR1-Math-46k-8192): ``prompt`` as chat messages, ``reward_model.ground_truth``,
  ``target`` as chat messages holding the demonstration;
* OpenR1-Math-220k: ``generations`` with ``correctness_math_verify``: the first verified
  generation is the demonstration.

Explicit column names (``MathColumns``) override the detection. A row without a problem or an
answer raises :class:`~amft.tasks.base.DataError` naming the source, the 1-based row and the
field, or is skipped and counted with ``skip_invalid=True``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from amft.tasks.base import DataError, load_rows

from .answers import gsm8k_answer, last_boxed_answer

__all__ = ["MathColumns", "answer_text", "load_math_rows", "normalize_row", "read_table"]

PROBLEM_KEYS = ("problem", "question", "Problem", "Question", "query", "prompt")
ANSWER_KEYS = ("answer", "final_answer", "Answer", "ground_truth", "expected_answer", "gt")
SOLUTION_KEYS = ("solution", "target", "reasoning", "trace", "response", "completion")
_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass(frozen=True)
class MathColumns:
    """Explicit column names; ``None`` means detect from the layouts above."""

    problem: str | None = None
    answer: str | None = None
    solution: str | None = None


def read_table(source: str, split: str = "train", subset: str | None = None) -> Iterable[Mapping[str, Any]]:
    """Rows of a local file (by extension) or a Hub dataset name (and ``subset``), through `datasets`."""
    from datasets import load_dataset

    extension = os.path.splitext(source)[1].lower()
    if extension in _FORMATS:
        if not os.path.isfile(source):
            raise FileNotFoundError(f"{source}: no such file")
        try:
            return load_dataset(_FORMATS[extension], data_files=source, split="train")
        except Exception as error:  # `datasets` names neither the file nor the row
            if _FORMATS[extension] == "json":
                _raise_json_syntax_error(source, error)
            raise DataError(source, None, None, f"could not be read: {error}") from error
    if os.path.exists(source):
        raise ValueError(f"{source}: expected a .jsonl, .json or .parquet file or a Hub dataset name")
    try:
        return load_dataset(source, subset, split=split)
    except Exception as error:  # offline, unknown name, missing split: say which source failed
        raise ValueError(f"could not load dataset {source!r} (subset {subset!r}, split {split!r}): {error}") from error


def _raise_json_syntax_error(source: str, error: Exception) -> None:
    """Raise the DataError that names the row (JSONL) or the line and column (JSON) where ``source``
    stops being JSON, when that is why `datasets` failed (``error``); return otherwise."""
    try:
        load_rows(source)
    except DataError as syntax:
        if syntax.row is not None or syntax.problem.startswith("invalid JSON"):
            raise syntax from error


def _message_text(value: Any, role: str) -> str | None:
    """The content of the last ``role`` message of a chat list, or the value itself if it is text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        for message in reversed(value):
            if isinstance(message, Mapping) and message.get("role") == role and isinstance(message.get("content"), str):
                return message["content"]
    return None


def _first(row: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in keys:
        if row.get(key) not in (None, "", []):
            return key, row[key]
    return None, None


def answer_text(value: Any) -> str | None:
    """A final answer as text: numbers written out, the first of a list, GSM8K's ``#### 42`` reduced to 42."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list) and value:  # OlympiadBench keeps a list of final answers
        value = value[0]
    if isinstance(value, str) and value.strip():
        return gsm8k_answer(value) or value.strip()
    return None


def normalize_row(row: Mapping[str, Any], columns: MathColumns = MathColumns()) -> tuple[dict[str, Any], str | None]:
    """``({"problem", "answer", "solution"}, None)``, or ``(partial, missing_field)`` if a row lacks
    its problem or answer."""
    problem_key = columns.problem or _first(row, PROBLEM_KEYS)[0]
    problem = _message_text(row.get(problem_key), "user") if problem_key else None

    solution_key = columns.solution or _first(row, SOLUTION_KEYS)[0]
    solution = _message_text(row.get(solution_key), "assistant") if solution_key else None
    generations, verified = row.get("generations"), row.get("correctness_math_verify")
    if not columns.solution and isinstance(generations, list) and isinstance(verified, list):
        solution = next((g for g, ok in zip(generations, verified) if ok and isinstance(g, str)), solution)

    if columns.answer:
        answer = answer_text(row.get(columns.answer))
    else:
        reward_model = row.get("reward_model")
        ground_truth = reward_model.get("ground_truth") if isinstance(reward_model, Mapping) else None
        raw_answer = _first(row, ANSWER_KEYS)[1]
        answer = answer_text(ground_truth) or answer_text(raw_answer)
        if solution is None and isinstance(raw_answer, str) and "####" in raw_answer and answer:
            # GSM8K keeps the worked solution in its answer column.
            solution = f"{raw_answer.split('####')[0].strip()} \\boxed{{{answer}}}"
        if answer is None and solution:
            answer = last_boxed_answer(solution) or gsm8k_answer(solution)
    result = {"problem": problem, "answer": answer, "solution": solution}
    if not problem:
        return result, columns.problem or "problem"
    if not answer:
        return result, columns.answer or "answer"
    return result, None


def load_math_rows(
    source: str, *, split: str = "train", subset: str | None = None, columns: MathColumns = MathColumns(),
    skip_invalid: bool = False, limit: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Normalised rows of ``source`` and the number of rows skipped (0 unless ``skip_invalid``)."""
    rows, skipped = [], 0
    for index, raw in enumerate(read_table(source, split, subset), start=1):
        if limit is not None and len(rows) >= limit:
            break
        row, missing = normalize_row(raw, columns)
        if missing is None:
            rows.append(row)
        elif skip_invalid:
            skipped += 1
        else:
            raise DataError(source, index, missing, "missing or empty (looked for the usual math layouts; "
                            "name the column with --problem_column / --answer_column)")
    if not rows:
        raise DataError(source, None, None, "no usable rows")
    return rows, skipped
