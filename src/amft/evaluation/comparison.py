"""What a comparison leaves: per-variant means with 95% confidence intervals, steps to a target,
tables (Markdown, CSV, JSON) and plots of success, mu and entropy over steps.

Reads the run folders `amft compare` writes (`summary.json`, `progress_eval.jsonl`,
`log_history.json`); it never trains anything.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from scipy import stats  # noqa: E402

from amft.evaluation.report import read_progress  # noqa: E402
from amft.io import atomic_write_json  # noqa: E402

Curve = list[tuple[int, float]]


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


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float | None]:
    """Mean and half-width of the Student-t confidence interval (``None`` for a single value)."""
    if not values:
        raise ValueError("no values")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)


def steps_to_reach(curve: Curve, target: float) -> int | None:
    """The first step at which the curve reaches ``target`` (``None`` if it never does)."""
    return next((step for step, value in curve if value >= target), None)


def final_value(curve: Curve) -> float | None:
    return curve[-1][1] if curve else None


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
    rows = []
    for variant in variants:
        runs = [r for r in records if r.variant == variant]
        if not runs:
            continue
        row: dict[str, Any] = {"variant": variant, "seeds": [r.seed for r in runs], "runs": len(runs)}
        for split in splits:
            mean, half = mean_ci([r.success[split] for r in runs])
            row[split] = {"mean": mean, "ci95": half}
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
        rows.append(row)
    return rows


def _percent(cell: Mapping[str, Any]) -> str:
    if cell["ci95"] is None:
        return f"{100 * cell['mean']:.1f}"
    return f"{100 * cell['mean']:.1f} ± {100 * cell['ci95']:.1f}"


def _steps(cell: Mapping[str, Any], runs: int) -> str:
    if cell["mean_steps"] is None:
        return f"not reached (0/{runs})"
    return f"{cell['mean_steps']:.0f} ({cell['reached']}/{runs})"


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def markdown_table(rows: Sequence[Mapping[str, Any]], splits: Sequence[str], target_split: str, reference_variant: str | None) -> str:
    has_reference = bool(rows) and "steps_to_reference" in rows[0]
    header = ["variant", "runs", *splits, f"steps to {100 * rows[0]['steps_to_target']['target']:.0f}% {target_split}" if rows else "steps"]
    if has_reference:
        header.append(f"steps to {reference_variant}'s final {target_split}")
    header += ["final mu", "meta term sum", "entropy term sum", "min per run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["variant"], str(row["runs"]), *(_percent(row[split]) for split in splits)]
        cells.append(_steps(row["steps_to_target"], row["runs"]))
        if has_reference:
            cells.append(_steps(row["steps_to_reference"], row["runs"]))
        mu = row["mu_final"]
        cells += ["-" if mu is None else f"{mu:.2f}", _number(row["meta_term_total"]), _number(row["entropy_term_total"]),
                  f"{row['minutes_per_run']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(
    output_dir: str,
    rows: Sequence[Mapping[str, Any]],
    splits: Sequence[str],
    *,
    target_split: str,
    reference_variant: str | None,
    settings: Mapping[str, Any],
) -> None:
    """`results.json` (rows and the study's settings), `results.csv` (flat) and `results.md`."""
    atomic_write_json(os.path.join(output_dir, "results.json"), {"settings": dict(settings), "variants": list(rows)})
    with open(os.path.join(output_dir, "results.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["variant", "runs"]
        for split in splits:
            header += [f"{split}_mean", f"{split}_ci95"]
        header += ["steps_to_target", "target_reached", "steps_to_reference", "reference_reached", "mu_final",
                   "meta_term_total", "entropy_term_total", "minutes_per_run"]
        writer.writerow(header)
        for row in rows:
            reference = row.get("steps_to_reference", {"mean_steps": None, "reached": None})
            line = [row["variant"], row["runs"]]
            for split in splits:
                line += [row[split]["mean"], row[split]["ci95"]]
            line += [row["steps_to_target"]["mean_steps"], row["steps_to_target"]["reached"], reference["mean_steps"],
                     reference["reached"], row["mu_final"], row["meta_term_total"], row["entropy_term_total"],
                     row["minutes_per_run"]]
            writer.writerow(["" if value is None else value for value in line])
    with open(os.path.join(output_dir, "results.md"), "w") as handle:
        handle.write(
            "Success within the evaluation budget, mean ± 95% confidence interval over seeds (percent); "
            "steps to a target: mean over the runs that reached it, by the quick greedy evaluation.\n\n"
        )
        handle.write(markdown_table(rows, splits, target_split, reference_variant))


def mean_curve(curves: Sequence[Curve]) -> Curve:
    """Mean over runs at the steps all of them logged."""
    if not curves:
        return []
    shared = set.intersection(*(set(step for step, _ in curve) for curve in curves))
    by_step = [dict(curve) for curve in curves]
    return [(step, sum(c[step] for c in by_step) / len(by_step)) for step in sorted(shared)]


def plot_comparison(records: Sequence[RunRecord], variants: Sequence[str], splits: Sequence[str], output_dir: str) -> list[str]:
    """`success_vs_step.png` (one panel per split), `mu.png` and `entropy.png`: one line per variant,
    the mean over its seeds. Returns the paths written."""
    colors = plt.get_cmap("tab20")
    style = {variant: dict(color=colors(i % 20), linestyle="-" if i < 10 else "--") for i, variant in enumerate(variants)}
    paths = []

    fig, axes = plt.subplots(1, len(splits), figsize=(4.2 * len(splits), 3.8), squeeze=False, sharey=True)
    for ax, split in zip(axes[0], splits):
        for variant in variants:
            curve = mean_curve([r.curves[split] for r in records if r.variant == variant and r.curves.get(split)])
            if curve:
                ax.plot(*zip(*curve), label=variant, **style[variant])
        ax.set_title(split)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("success (quick greedy evaluation)")
    axes[0][-1].legend(fontsize=7, loc="best")
    paths.append(_save(fig, os.path.join(output_dir, "success_vs_step.png")))

    for name, attribute, label in (("mu.png", "mu", "mu"), ("entropy.png", "entropy", "policy entropy H (sampled tokens)")):
        fig, ax = plt.subplots(figsize=(7, 4))
        for variant in variants:
            curve = mean_curve([getattr(r, attribute) for r in records if r.variant == variant and getattr(r, attribute)])
            if curve:
                ax.plot(*zip(*curve), label=variant, **style[variant])
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        paths.append(_save(fig, os.path.join(output_dir, name)))
    return paths


def _save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
