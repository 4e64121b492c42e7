"""What a finished run leaves for people: a console table, `summary.json`, `summary.md` and a
PNG of the training dynamics (mu, entropy, reward, success over steps)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: runs write files, they never open windows
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from amft.evaluation.evaluate import SplitResult  # noqa: E402
from amft.evaluation.sampling import SampledResult  # noqa: E402
from amft.io import atomic_write_json, atomic_write_text  # noqa: E402


#: Multi-turn episode results (GeneralPoints) or independent-sample results (math benchmarks).
EvalResult = SplitResult | SampledResult
PROGRESS_FILE = "progress_eval.jsonl"
#: the Trainer's log rows of a finished run
LOG_HISTORY_FILE = "log_history.json"


def read_progress(run_dir: str) -> dict[str, list[tuple[int, float]]]:
    """The quick-evaluation curves of a run folder: split -> [(step, success)] (empty without any)."""
    path = os.path.join(run_dir, PROGRESS_FILE)
    curves: dict[str, list[tuple[int, float]]] = {}
    if os.path.exists(path):
        with open(path) as handle:
            for line in handle:
                row = json.loads(line)
                for split, value in row.items():
                    if split != "step":
                        curves.setdefault(split, []).append((row["step"], value))
    return curves


def results_table(title: str, results: Mapping[str, EvalResult], initial: Mapping[str, EvalResult] | None = None) -> Table:
    """A rich table of per-split results (episode or sampled results: each gives its own columns)."""
    table = Table(title=title)
    columns = list(next(iter(results.values())).display_row()) if results else []
    table.add_column("split")
    if initial:
        table.add_column("success before", justify="right")
    for column in columns:
        table.add_column(column, justify="right")
    for split, result in results.items():
        before = [f"{initial[split].success_rate:.1%}" if split in initial else "-"] if initial else []
        table.add_row(split, *before, *result.display_row().values())
    return table


def print_results(title: str, results: Mapping[str, EvalResult], initial: Mapping[str, EvalResult] | None = None) -> None:
    Console().print(results_table(title, results, initial))


def task_metrics(results: Mapping[str, EvalResult]) -> dict[str, dict[str, float]]:
    """The task's own measures (GP-VL's ``recognition_accuracy``) by name, each split -> value, as
    ``success_rate`` is reported."""
    by_name: dict[str, dict[str, float]] = {}
    for split, result in results.items():
        for name, value in getattr(result, "metrics", {}).items():
            by_name.setdefault(name, {})[split] = value
    return by_name


#: The keys of `summary.json` other than the task's own measures (which :func:`write_summary` adds by name).
SUMMARY_FIELDS = frozenset({"wall_time_seconds", "success_rate", "first_attempt_success_rate",
                            "initial_success_rate", "splits", "run", "controller"})


def read_task_metrics(summary: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The task's own measures of a read `summary.json`: name -> split -> value (empty for most tasks)."""
    return {name: dict(value) for name, value in summary.items() if name not in SUMMARY_FIELDS}


def write_summary(
    run_dir: str,
    *,
    results: Mapping[str, EvalResult],
    initial: Mapping[str, EvalResult] | None,
    wall_time_seconds: float,
    run_info: Mapping[str, Any],
    controller_summary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write `summary.json` (machine-readable) and `summary.md` (for people); return the JSON payload."""
    payload = {
        "wall_time_seconds": round(wall_time_seconds, 1),
        "success_rate": {split: r.success_rate for split, r in results.items()},
        "first_attempt_success_rate": {
            split: r.first_attempt_success_rate for split, r in results.items() if hasattr(r, "first_attempt_success_rate")
        },
        "initial_success_rate": {split: r.success_rate for split, r in (initial or {}).items()},
        **task_metrics(results),
        "splits": {split: r.summary() for split, r in results.items()},
        "run": dict(run_info),
        "controller": dict(controller_summary or {}),
    }
    atomic_write_json(os.path.join(run_dir, "summary.json"), payload)
    lines = [
        f"# Run summary: {run_info.get('method', '')} on {run_info.get('task', '')}",
        "",
        f"Model `{run_info.get('model', '')}`, {run_info.get('steps', '?')} optimizer steps, "
        f"wall time {wall_time_seconds / 60:.1f} min.",
        "",
    ]
    columns = list(next(iter(results.values())).display_row()) if results else []
    lines += ["| split | success before | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for split, r in results.items():
        before = f"{initial[split].success_rate:.1%}" if initial and split in initial else "-"
        lines.append(f"| {split} | {before} | " + " | ".join(r.display_row().values()) + " |")
    if controller_summary:
        lines += ["", "## Controller", ""] + [f"- {key}: {value}" for key, value in controller_summary.items()]
    lines += ["", "![training dynamics](training_dynamics.png)", ""]
    atomic_write_text(os.path.join(run_dir, "summary.md"), "\n".join(lines))
    return payload


def _series(log_history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(row["step"], row[key]) for row in log_history if key in row and "step" in row]
    return [p[0] for p in points], [float(p[1]) for p in points]


def plot_training_dynamics(
    log_history: Sequence[Mapping[str, Any]],
    success_history: Mapping[str, Sequence[tuple[int, float]]],
    path: str,
    title: str = "",
) -> None:
    """Four panels over optimizer steps: mu and its two controller terms; entropy H and target H*;
    training reward; evaluation success per split."""
    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    ax_mu, ax_entropy, ax_reward, ax_success = axes.flat
    steps, mu = _series(log_history, "amft/mu")
    ax_mu.plot(steps, mu, label="mu", color="black")
    for key, label in (("amft/meta_term_total", "meta term (eta_mu * m), summed"),
                       ("amft/entropy_term_total", "entropy term (eta_H * (H* - H)), summed")):
        term_steps, totals = _series(log_history, key)
        if term_steps:
            ax_mu.plot(term_steps, totals, label=label, linestyle="--")
    ax_mu.set_title("balance mu (1 = imitation, 0 = RL)")
    ax_mu.legend(fontsize=7)
    for key, label in (("amft/entropy", "H (sampled completions)"), ("amft/target_entropy", "H* (target)")):
        entropy_steps, values = _series(log_history, key)
        ax_entropy.plot(entropy_steps, values, label=label)
    ax_entropy.set_title("policy entropy per token")
    ax_entropy.legend(fontsize=7)
    for key, label in (("reward", "training reward"), ("amft/val_reward", "validation reward (meta steps)")):
        reward_steps, values = _series(log_history, key)
        ax_reward.plot(reward_steps, values, label=label, marker="." if key != "reward" else None)
    ax_reward.set_title("reward")
    ax_reward.legend(fontsize=7)
    for split, points in success_history.items():
        ax_success.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=split)
    ax_success.set_title("evaluation success")
    ax_success.set_ylim(-0.02, 1.02)
    if success_history:
        ax_success.legend(fontsize=7)
    else:
        ax_success.text(0.5, 0.5, "no quick evaluations\n(progress_eval_steps 0)", ha="center", va="center",
                        transform=ax_success.transAxes, fontsize=8, color="gray")
    for ax in axes[1]:
        ax.set_xlabel("optimizer step")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
