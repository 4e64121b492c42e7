"""What a comparison of training methods leaves, on the study harness
(:mod:`amft.evaluation.harness`): success per split (mean and 95% t-interval over seeds), steps
to a target, the controller's terms, and curves of success, mu and entropy over steps.

Reads the run folders `amft compare` writes (`summary.json`, `progress_eval.jsonl`,
`log_history.json`); it never trains anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from amft.evaluation.harness import Curve, ExtraColumn, Metric, plot_curves, results_markdown
from amft.evaluation.harness import summarize as summarize_over_seeds
from amft.evaluation.harness import write_results as write_table
from amft.evaluation.report import read_progress

NOTE = ("Success within the evaluation budget, mean ± 95% confidence interval over seeds (percent); "
        "steps to a target: mean over the runs that reached it, by the quick greedy evaluation.")


@dataclass
class RunRecord:
    """One finished run of a comparison."""

    variant: str
    seed: int
    success: dict[str, float]
    steps: int
    wall_time_seconds: float
    controller: dict[str, Any]
    curves: dict[str, Curve] = field(default_factory=dict)  # split -> quick-eval success over steps
    mu: Curve = field(default_factory=list)
    entropy: Curve = field(default_factory=list)


def read_run(run_dir: str, variant: str, seed: int, start: Mapping[str, float] | None = None) -> RunRecord:
    """The record of a finished run folder. ``start`` adds a step-0 point (the starting model's quick
    evaluation) to every curve."""
    with open(os.path.join(run_dir, "summary.json")) as handle:
        summary = json.load(handle)
    curves: dict[str, Curve] = {split: [(0, value)] for split, value in (start or {}).items()}
    for split, curve in read_progress(run_dir).items():
        curves.setdefault(split, []).extend(curve)
    history_path = os.path.join(run_dir, "log_history.json")
    history = []
    if os.path.exists(history_path):
        with open(history_path) as handle:
            history = json.load(handle)
    return RunRecord(
        variant=variant,
        seed=seed,
        success=summary["success_rate"],
        steps=summary["run"]["steps"],
        wall_time_seconds=summary["wall_time_seconds"],
        controller=summary.get("controller", {}),
        curves=curves,
        mu=[(row["step"], row["amft/mu"]) for row in history if "amft/mu" in row],
        entropy=[(row["step"], row["amft/entropy"]) for row in history if "amft/entropy" in row],
    )


def steps_to_reach(curve: Curve, target: float) -> int | None:
    """The first step at which the curve reaches ``target`` (``None`` if it never does)."""
    return next((step for step, value in curve if value >= target), None)


def final_value(curve: Curve) -> float | None:
    return curve[-1][1] if curve else None


def success_metrics(splits: Sequence[str]) -> list[Metric]:
    return [Metric(split, split, scale=100.0) for split in splits]


def summarize(
    records: Sequence[RunRecord],
    variants: Sequence[str],
    splits: Sequence[str],
    *,
    target_split: str,
    target_success: float,
    reference_variant: str | None = None,
) -> list[dict[str, Any]]:
    """One row per variant: success per split (mean, CI), steps to the target, the controller's terms.

    Steps are counted to the first quick evaluation (greedy, single try) at or above the target:
    ``target_success`` on ``target_split``, and, with ``reference_variant``, that variant's mean
    final quick-evaluation success on ``target_split``.
    """
    reference_target = None
    if reference_variant:
        finals = [final_value(r.curves.get(target_split, [])) for r in records if r.variant == reference_variant]
        finals = [v for v in finals if v is not None]
        reference_target = sum(finals) / len(finals) if finals else None
    rows = summarize_over_seeds([(r.variant, r.seed, r.success) for r in records], variants, success_metrics(splits))
    for row in rows:
        runs = [r for r in records if r.variant == row["variant"]]
        targets = {"steps_to_target": target_success}
        if reference_target is not None:
            targets["steps_to_reference"] = reference_target
        for key, target in targets.items():
            reached = [steps_to_reach(r.curves.get(target_split, []), target) for r in runs]
            hits = [s for s in reached if s is not None]
            row[key] = {"target": target, "reached": len(hits), "mean_steps": sum(hits) / len(hits) if hits else None}
        row["steps"] = max(r.steps for r in runs)
        row["minutes_per_run"] = sum(r.wall_time_seconds for r in runs) / len(runs) / 60
        for key in ("mu_final", "meta_term_total", "entropy_term_total"):
            values = [r.controller.get(key) for r in runs]
            row[key] = sum(values) / len(values) if all(v is not None for v in values) else None
    return rows


def _steps(cell: Mapping[str, Any], runs: int) -> str:
    if cell["mean_steps"] is None:
        return f"not reached (0/{runs})"
    return f"{cell['mean_steps']:.0f} ({cell['reached']}/{runs})"


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def extra_columns(rows: Sequence[Mapping[str, Any]], target_split: str, reference_variant: str | None) -> list[ExtraColumn]:
    """The comparison's columns after the success per split: steps to the targets, the controller's terms."""
    target = rows[0]["steps_to_target"]["target"] if rows else 0.0
    columns: list[ExtraColumn] = [(f"steps to {100 * target:.0f}% {target_split}",
                                   lambda row: _steps(row["steps_to_target"], row["runs"]))]
    if rows and "steps_to_reference" in rows[0]:
        columns.append((f"steps to {reference_variant}'s final {target_split}",
                        lambda row: _steps(row["steps_to_reference"], row["runs"])))
    columns += [
        ("final mu", lambda row: "-" if row["mu_final"] is None else f"{row['mu_final']:.2f}"),
        ("meta term sum", lambda row: _number(row["meta_term_total"])),
        ("entropy term sum", lambda row: _number(row["entropy_term_total"])),
        ("min per run", lambda row: f"{row['minutes_per_run']:.1f}"),
    ]
    return columns


def markdown_table(rows: Sequence[Mapping[str, Any]], splits: Sequence[str], target_split: str, reference_variant: str | None) -> str:
    return results_markdown(rows, success_metrics(splits), extra_columns(rows, target_split, reference_variant))


def write_results(
    output_dir: str,
    rows: Sequence[Mapping[str, Any]],
    splits: Sequence[str],
    *,
    target_split: str,
    reference_variant: str | None,
    settings: Mapping[str, Any],
) -> str:
    """`results.json` (rows and the study's settings), `results.csv` (flat) and `results.md`; returns the table."""
    return write_table(output_dir, rows, success_metrics(splits), note=NOTE, settings=settings,
                       extra=extra_columns(rows, target_split, reference_variant))


def plot_comparison(records: Sequence[RunRecord], variants: Sequence[str], splits: Sequence[str], output_dir: str) -> list[str]:
    """`success_vs_step.png` (one panel per split), `mu.png` and `entropy.png`: one line per variant,
    the mean over its seeds. Returns the paths written."""
    def runs_of(curve) -> dict[str, list[Curve]]:
        return {variant: [curve(r) for r in records if r.variant == variant] for variant in variants}

    return [
        plot_curves({split: runs_of(lambda r, split=split: r.curves.get(split, [])) for split in splits}, variants,
                    os.path.join(output_dir, "success_vs_step.png"), xlabel="optimizer step",
                    ylabels={splits[0]: "success (quick greedy evaluation)"}),
        plot_curves({"mu": runs_of(lambda r: r.mu)}, variants, os.path.join(output_dir, "mu.png"),
                    xlabel="optimizer step", ylabels={"mu": "mu"}),
        plot_curves({"entropy": runs_of(lambda r: r.entropy)}, variants, os.path.join(output_dir, "entropy.png"),
                    xlabel="optimizer step", ylabels={"entropy": "policy entropy H (sampled tokens)"}),
    ]
