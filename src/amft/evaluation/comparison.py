"""What a comparison of training methods leaves, on the study harness
(:mod:`amft.evaluation.harness`): success per split and the task's own measures (mean and 95%
t-interval over seeds), steps to a target, the controller's terms, curves of success, mu and entropy
over steps, the trade-off frontier of the fixed-mu variants with each other variant's verdict against
it, the controller's diagnosis, and the ranking on validation splits (see docs/design.md,
'Comparisons').

Reads the run folders `amft compare` writes (`summary.json`, `progress_eval.jsonl`,
`log_history.json`); it never trains anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from amft.evaluation.harness import (Curve, ExtraColumn, Metric, interval_text, mean_ci, mean_curve, plot_curves,
                                    plot_frontier)
from amft.evaluation.harness import summarize as summarize_over_seeds
from amft.evaluation.harness import write_results as write_table
from amft.evaluation.report import LOG_HISTORY_FILE, read_progress, read_task_metrics

NOTE = ("Success within the evaluation budget (and the task's own measures, such as card recognition), "
        "mean ± 95% confidence interval over seeds (percent); "
        "steps to a target: mean over the runs that reached it, by the quick greedy evaluation; "
        "vs frontier, with intervals, and minus the reference: differences paired by seed, in points, with "
        "their 95% t-interval; "
        "min per run: wall time of the runs timed whole (a run resumed from a checkpoint that kept no clock "
        "is left out).")


@dataclass
class RunRecord:
    """One finished run of a comparison."""

    variant: str
    seed: int
    success: dict[str, float]
    steps: int
    wall_time_seconds: float | None  # None: resumed, and only the last segment was timed (see read_run)
    controller: dict[str, Any]
    curves: dict[str, Curve] = field(default_factory=dict)  # split -> quick-eval success over steps
    task_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # e.g. recognition_accuracy -> split -> value
    series: dict[str, Curve] = field(default_factory=dict)  # logged key (e.g. amft/mu) -> its values over steps


def read_run(run_dir: str, variant: str, seed: int, start: Mapping[str, float] | None = None) -> RunRecord:
    """The record of a finished run folder. ``start`` adds a step-0 point (the starting model's quick
    evaluation) to every curve."""
    with open(os.path.join(run_dir, "summary.json")) as handle:
        summary = json.load(handle)
    curves: dict[str, Curve] = {split: [(0, value)] for split, value in (start or {}).items()}
    for split, curve in read_progress(run_dir).items():
        curves.setdefault(split, []).extend(curve)
    run = summary["run"]
    # A run resumed from a checkpoint that kept no clock timed its last segment only (docs/design.md,
    # 'Checkpoints and resumption'); its time is left out rather than understated.
    timed_whole = run.get("resumed_from") is None or run.get("seconds_before_resumption") is not None
    history_path = os.path.join(run_dir, LOG_HISTORY_FILE)
    history = []
    if os.path.exists(history_path):
        with open(history_path) as handle:
            history = json.load(handle)
    return RunRecord(
        variant=variant,
        seed=seed,
        success=summary["success_rate"],
        steps=run["steps"],
        wall_time_seconds=summary["wall_time_seconds"] if timed_whole else None,
        controller=summary.get("controller", {}),
        curves=curves,
        task_metrics=read_task_metrics(summary),
        series=logged_series(history),
    )


def logged_series(history: Sequence[Mapping[str, Any]]) -> dict[str, Curve]:
    """The numbers of the Trainer's log rows (`log_history.json`) by key: key -> [(step, value)]."""
    series: dict[str, Curve] = {}
    for row in history:
        for key, value in row.items():
            if key != "step" and "step" in row and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(key, []).append((row["step"], float(value)))
    return series


def cumulative(curve: Curve) -> Curve:
    """The running sum of a per-step term over steps. A logged value is the mean over the steps since
    the previous log row (the Trainer averages its metrics over each logging window), so it counts
    once per step of its window."""
    total, previous, sums = 0.0, 0, []
    for step, value in curve:
        total += value * (step - previous)
        previous = step
        sums.append((step, total))
    return sums


def steps_to_reach(curve: Curve, target: float) -> int | None:
    """The first step at which the curve reaches ``target`` (``None`` if it never does)."""
    return next((step for step, value in curve if value >= target), None)


def final_value(curve: Curve) -> float | None:
    return curve[-1][1] if curve else None


def table_metrics(records: Sequence[RunRecord], splits: Sequence[str]) -> list[Metric]:
    """The table's measured columns: success per split, then each of the task's own measures that every
    run reports (GP-VL's recognition accuracy), per split."""
    metrics = [Metric(split, split, scale=100.0) for split in splits]
    for name in (records[0].task_metrics if records else {}):
        metrics += [Metric(f"{name}/{split}", f"{name.replace('_', ' ')} {split}", scale=100.0) for split in splits
                    if all(split in r.task_metrics.get(name, {}) for r in records)]
    return metrics


def _measured_runs(records: Sequence[RunRecord]) -> list[tuple[str, int, dict[str, float]]]:
    """(variant, seed, values for :func:`table_metrics`' keys) of each run."""
    return [(r.variant, r.seed, {**r.success, **{f"{name}/{split}": value for name, values in r.task_metrics.items()
                                                  for split, value in values.items()}}) for r in records]


def summarize(
    records: Sequence[RunRecord],
    variants: Sequence[str],
    metrics: Sequence[Metric],
    *,
    target_split: str,
    target_success: float,
    reference_variant: str | None = None,
    starting: Sequence[RunRecord] = (),
) -> list[dict[str, Any]]:
    """One row per variant: each of ``metrics`` (mean, CI), steps to the target, the controller's terms.

    Steps are counted to the first quick evaluation (greedy; one try, or a whole route on navigation
    tasks) at or above the target: ``target_success`` on ``target_split``, and, with
    ``reference_variant``, that variant's mean final quick-evaluation success on ``target_split``.
    Without quick evaluations there are no steps to count, and the rows have no steps entries.

    ``starting``: the records of the seeds' shared starting model (labelled by their ``variant``). When
    some variant has finished, its row comes first, marked ``starting_model``, with the measures, runs,
    steps and minutes only: it is where every variant began, not a variant (docs/design.md, 'Comparisons').
    """
    reference_target = None
    if reference_variant:
        finals = [final_value(r.curves.get(target_split, [])) for r in records if r.variant == reference_variant]
        finals = [v for v in finals if v is not None]
        reference_target = sum(finals) / len(finals) if finals else None
    targets = {"steps_to_target": target_success} if any(r.curves.get(target_split) for r in records) else {}
    if targets and reference_target is not None:
        targets["steps_to_reference"] = reference_target
    rows = summarize_over_seeds(_measured_runs(records), variants, metrics)
    for row in rows:
        runs = [r for r in records if r.variant == row["variant"]]
        for key, target in targets.items():
            reached = [steps_to_reach(r.curves.get(target_split, []), target) for r in runs]
            hits = [s for s in reached if s is not None]
            row[key] = {"target": target, "reached": len(hits), "mean_steps": sum(hits) / len(hits) if hits else None}
        _add_run_columns(row, runs)
        for key in CONTROLLER_COLUMNS:
            values = [r.controller.get(key) for r in runs]
            row[key] = sum(values) / len(values) if all(v is not None for v in values) else None
    if rows and starting:
        label = starting[0].variant
        row = summarize_over_seeds(_measured_runs(starting), [label], metrics)[0]
        row.update({"starting_model": True, **dict.fromkeys(targets), **dict.fromkeys(CONTROLLER_COLUMNS)})
        rows.insert(0, _add_run_columns(row, starting))
    return rows


def _add_run_columns(row: dict[str, Any], runs: Sequence[RunRecord]) -> dict[str, Any]:
    row["steps"] = max(r.steps for r in runs)
    times = [r.wall_time_seconds for r in runs if r.wall_time_seconds is not None]
    row["minutes_per_run"] = sum(times) / len(times) / 60 if times else None
    return row


CONTROLLER_COLUMNS = ("mu_final", "meta_term_total", "entropy_term_total")


def beats(better: Mapping[str, Any], worse: Mapping[str, Any], splits: Sequence[str]) -> bool:
    """Whether row ``better``'s mean is above row ``worse``'s on every split."""
    return all(better[split]["mean"] > worse[split]["mean"] for split in splits)


def beats_paired(records: Sequence[RunRecord], better: str, worse: str, splits: Sequence[str]) -> bool:
    """Whether variant ``better`` is above variant ``worse`` on every split with the interval apart: the
    t-interval of their differences paired by seed (`paired_differences`) lies above zero. One seed in
    common has no interval and decides nothing."""
    return all(cell["ci95"] is not None and cell["mean"] - cell["ci95"] > 0
               for cell in paired_differences(records, better, worse, splits).values())


def judge_against_frontier(rows: Sequence[dict[str, Any]], records: Sequence[RunRecord], frontier: Mapping[str, float],
                           splits: Sequence[str]) -> None:
    """Set each row's ``vs_frontier``: for a variant of the ``frontier`` (name -> mu) its mu, for any
    other the frontier variants that beat it on every one of ``splits`` by the means, and those of them
    that also beat it with the intervals apart, paired by seed over ``records`` (the starting model's
    among them, labelled as its row; see docs/design.md, 'Comparisons'). The means take every finished
    seed and the pairs only the seeds both finished, so the second list is cut to the first: a report
    of the runs finished so far never says "with intervals" where the means disagree."""
    points = [row["variant"] for row in rows if row["variant"] in frontier]
    by_name = {row["variant"]: row for row in rows}
    for row in rows:
        if row["variant"] in frontier:
            row["vs_frontier"] = {"mu": frontier[row["variant"]]}
        else:
            dominated = [p for p in points if beats(by_name[p], row, splits)]
            row["vs_frontier"] = {
                "dominated_by": dominated,
                "dominated_with_intervals_by": [p for p in dominated if beats_paired(records, p, row["variant"], splits)],
            }


def paired_differences(records: Sequence[RunRecord], variant: str, reference: str,
                       splits: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per split, the mean over seeds of ``variant``'s final success minus ``reference``'s, with the
    t-interval of those differences (``ci95``; None for one pair) and the number of seeds both finished
    (``pairs``; mean None for none). A seed's runs share its starting model, so the pairing takes
    that model's luck out of the comparison (docs/design.md, 'Comparisons')."""
    by_seed = {r.seed: r for r in records if r.variant == reference}
    pairs = [(r, by_seed[r.seed]) for r in records if r.variant == variant and r.seed in by_seed]
    differences = {}
    for split in splits:
        values = [run.success[split] - ref.success[split] for run, ref in pairs]
        mean, ci95 = mean_ci(values) if values else (None, None)
        differences[split] = {"mean": mean, "ci95": ci95, "pairs": len(values)}
    return differences


def compare_with_reference(rows: Sequence[dict[str, Any]], records: Sequence[RunRecord], reference: str,
                           splits: Sequence[str]) -> None:
    """Set each variant's ``vs_reference``: its `paired_differences` from ``reference`` on ``splits``
    (the starting model's row and the reference's own row get none)."""
    for row in rows:
        if not row.get("starting_model") and row["variant"] != reference:
            row["vs_reference"] = paired_differences(records, row["variant"], reference, splits)


def _vs_reference(row: Mapping[str, Any]) -> str:
    cells = row.get("vs_reference")
    if not cells:
        return "-"
    pairs = next(iter(cells.values()))["pairs"]
    if not pairs:
        return "no seed in common"
    parts = [f"{split} {interval_text(c, Metric(split, split, scale=100.0), signed=True)}" for split, c in cells.items()]
    return ", ".join(parts) + f" ({pairs} seed{'s' if pairs > 1 else ''})"


def rank_on(rows: Sequence[Mapping[str, Any]], splits: Sequence[str]) -> dict[str, Any]:
    """The variants ranked by the mean over ``splits`` of their mean final success, best first (a tie
    keeps the rows' order): ``{"splits", "ranking": [{"variant", "score"}], "best"}``. The starting
    model's row is not a candidate: the selection is among ways of training on from it."""
    ranking = sorted(({"variant": row["variant"], "score": sum(row[s]["mean"] for s in splits) / len(splits)}
                      for row in rows if not row.get("starting_model")), key=lambda entry: -entry["score"])
    return {"splits": list(splits), "ranking": ranking, "best": ranking[0]["variant"] if ranking else None}


def selection_markdown(selection: Mapping[str, Any]) -> str:
    """The ranking of :func:`rank_on` as a section of `results.md`."""
    splits = ", ".join(selection["splits"])
    lines = [f"## Selection on {splits}: best = {selection['best']}", "",
             f"Mean over {splits} of the mean final success (percent); these splits only, so the choice never "
             "sees the splits it is reported on.", ""]
    lines += [f"{i}. {entry['variant']}: {100 * entry['score']:.1f}" for i, entry in enumerate(selection["ranking"], 1)]
    return "\n".join(lines) + "\n"


def _steps(cell: Mapping[str, Any] | None, runs: int) -> str:
    if cell is None:
        return "-"
    if cell["mean_steps"] is None:
        return f"not reached (0/{runs})"
    return f"{cell['mean_steps']:.0f} ({cell['reached']}/{runs})"


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def extra_columns(rows: Sequence[Mapping[str, Any]], target_split: str, reference_variant: str | None) -> list[ExtraColumn]:
    """The comparison's columns after the success per split: steps to the targets, the verdict against the
    frontier, the paired difference from the reference variant, the controller's terms, the time per run."""
    columns: list[ExtraColumn] = []
    target = next((row["steps_to_target"]["target"] for row in rows if row.get("steps_to_target")), None)
    if target is not None:
        columns.append((f"steps to {100 * target:.0f}% {target_split}",
                        lambda row: _steps(row["steps_to_target"], row["runs"])))
    if rows and "steps_to_reference" in rows[0]:
        columns.append((f"steps to {reference_variant}'s final {target_split}",
                        lambda row: _steps(row["steps_to_reference"], row["runs"])))
    mus = frontier_mus(rows)
    if mus:
        columns.append(("vs frontier", lambda row: frontier_verdict(row["vs_frontier"], mus)))
    if any("vs_reference" in row for row in rows):
        columns.append((f"minus {reference_variant}, paired by seed (points)", _vs_reference))
    columns += [
        ("final mu", lambda row: "-" if row["mu_final"] is None else f"{row['mu_final']:.2f}"),
        ("meta term sum", lambda row: _number(row["meta_term_total"])),
        ("entropy term sum", lambda row: _number(row["entropy_term_total"])),
        ("min per run", lambda row: "-" if row["minutes_per_run"] is None else f"{row['minutes_per_run']:.1f}"),
    ]
    return columns


def frontier_mus(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The fixed-mu frontier's variants among ``rows`` (name -> mu)."""
    return {row["variant"]: row["vs_frontier"]["mu"] for row in rows if "mu" in row.get("vs_frontier", {})}


def frontier_verdict(cell: Mapping[str, Any], mus: Mapping[str, float]) -> str:
    """A variant's place against the fixed-mu frontier whose variants have the mus ``mus`` (name -> mu):
    the frontier point itself, "**on or above**", or the fixed mus above it on both frontier splits by the
    means, with those whose paired intervals clear zero in brackets."""
    if "mu" in cell:
        return f"frontier (mu={cell['mu']:g})"
    if not cell.get("dominated_by"):
        return "**on or above**"
    text = "below mu=" + ", ".join(f"{mus[name]:g}" for name in cell["dominated_by"])
    if cell.get("dominated_with_intervals_by"):
        text += " [with intervals: " + ", ".join(f"{mus[name]:g}" for name in cell["dominated_with_intervals_by"]) + "]"
    return text


def write_results(
    output_dir: str,
    rows: Sequence[Mapping[str, Any]],
    metrics: Sequence[Metric],
    *,
    target_split: str,
    reference_variant: str | None,
    settings: Mapping[str, Any],
    selection: Mapping[str, Any] | None = None,
) -> str:
    """`results.json` (rows, the study's settings and the ``selection`` of :func:`rank_on`), `results.csv`
    (flat) and `results.md` (the table, then the selection); returns the table."""
    return write_table(output_dir, rows, metrics, note=NOTE, settings=settings,
                       extra=extra_columns(rows, target_split, reference_variant),
                       details={"selection": selection} if selection else None,
                       appendix=selection_markdown(selection) if selection else "")


def _runs_by_variant(records: Sequence[RunRecord], variants: Sequence[str], curve) -> dict[str, list[Curve]]:
    return {variant: [curve(r) for r in records if r.variant == variant] for variant in variants}


def plot_comparison(records: Sequence[RunRecord], variants: Sequence[str], splits: Sequence[str], output_dir: str) -> list[str]:
    """`success_vs_step.png` (one panel per split), `mu.png` and `entropy.png`: one line per variant,
    the mean over its seeds. Returns the paths written."""
    def runs_of(curve) -> dict[str, list[Curve]]:
        return _runs_by_variant(records, variants, curve)

    return [
        plot_curves({split: runs_of(lambda r, split=split: r.curves.get(split, [])) for split in splits}, variants,
                    os.path.join(output_dir, "success_vs_step.png"), xlabel="optimizer step",
                    ylabels={splits[0]: "success (quick greedy evaluation)"}),
        plot_curves({"mu": runs_of(lambda r: r.series.get("amft/mu", []))}, variants, os.path.join(output_dir, "mu.png"),
                    xlabel="optimizer step", ylabels={"mu": "mu"}),
        plot_curves({"entropy": runs_of(lambda r: r.series.get("amft/entropy", []))}, variants,
                    os.path.join(output_dir, "entropy.png"), xlabel="optimizer step",
                    ylabels={"entropy": "policy entropy H (sampled tokens)"}),
    ]


def success_path(records: Sequence[RunRecord], x: str, y: str) -> list[tuple[int, float, float]]:
    """(step, success on ``x``, success on ``y``): the mean over the runs of their quick-evaluation
    curves, at the steps where every run evaluated both splits."""
    xs, ys = (dict(mean_curve([r.curves.get(split, []) for r in records])) for split in (x, y))
    return [(step, xs[step], ys[step]) for step in sorted(xs.keys() & ys.keys())]


#: the most variants one panel of the frontier plot shows beside the frontier and the reference points
FRONTIER_PANEL_SIZE = 6


def frontier_panels(variants: Sequence[str], methods: Mapping[str, str | None],
                    size: int = FRONTIER_PANEL_SIZE) -> list[list[str]]:
    """``variants`` cut into panels of at most ``size``, the variants of a method (``methods``: variant
    -> its method; None or missing: a method of its own) together, in the order of each method's first
    variant, and in one panel where they fit: a new panel starts when the next method's variants would
    not fit in the current one."""
    by_method: dict[Any, list[str]] = {}
    for variant in variants:
        method = methods.get(variant)
        by_method.setdefault(("variant", variant) if method is None else method, []).append(variant)
    panels: list[list[str]] = []
    for group in by_method.values():
        for start in range(0, len(group), size):
            piece = group[start:start + size]
            if panels and len(panels[-1]) + len(piece) <= size:
                panels[-1].extend(piece)
            else:
                panels.append(list(piece))
    return panels


def plot_study_frontier(records: Sequence[RunRecord], rows: Sequence[Mapping[str, Any]], frontier: Mapping[str, float],
                        x: str, y: str, path: str, *, methods: Mapping[str, str | None] | None = None,
                        reference_variant: str | None = None, panel_size: int = FRONTIER_PANEL_SIZE) -> str:
    """The fixed-mu variants of ``frontier`` (name -> mu) as the trade-off between the final success on
    splits ``x`` and ``y``, with every other variant's final point and its path over training, a few
    variants a panel (`frontier_panels` of ``panel_size``, by ``methods``: variant -> method); the starting model and the
    ``reference_variant`` are drawn in every panel, grey where the panel is not theirs. Returns ``path``."""
    frontier_rows = sorted((row for row in rows if row["variant"] in frontier), key=lambda row: frontier[row["variant"]])
    references = [row for row in rows if row.get("starting_model")
                  or (row["variant"] == reference_variant and reference_variant not in frontier)]
    others = {row["variant"]: row for row in rows if row["variant"] not in frontier and not row.get("starting_model")}
    paths = {variant: [(px, py) for _, px, py in success_path([r for r in records if r.variant == variant], x, y)]
             for variant in others}
    groups = [[others[variant] for variant in panel] for panel in frontier_panels(list(others), methods or {}, panel_size)]
    return plot_frontier(frontier_rows, groups, Metric(x, f"{x}: final success (%)", scale=100.0),
                         Metric(y, f"{y}: final success (%)", scale=100.0), path,
                         labels={variant: f"mu={mu:g}" for variant, mu in frontier.items()}, paths=paths,
                         references=references,
                         frontier_name="fixed mu (points: final, full evaluation; 95% intervals cut at 0 and 100)",
                         path_name="path over training: quick greedy evaluation (can differ from the final points)")


def plot_controller(records: Sequence[RunRecord], variants: Sequence[str], path: str) -> str:
    """The controller's diagnosis for ``variants`` (mean over seeds): mu, the running sums of its meta
    and entropy terms, the validation reward of its meta steps and, when logged, the measured dH/dmu
    and the share of validation groups that scored alike (no signal for the meta term).
    Returns ``path``."""
    def runs_of(curve) -> dict[str, list[Curve]]:
        return _runs_by_variant(records, variants, curve)

    panels = {
        "mu": runs_of(lambda r: r.series.get("amft/mu", [])),
        "meta term, running sum": runs_of(lambda r: cumulative(r.series.get("amft/meta_term", []))),
        "entropy term, running sum": runs_of(lambda r: cumulative(r.series.get("amft/entropy_term", []))),
        "validation reward": runs_of(lambda r: r.series.get("amft/val_reward", [])),
    }
    logged_by_some = {"dH/dmu": "amft/entropy_slope", "validation groups scored alike": "amft/val_frac_reward_zero_std"}
    for panel, key in logged_by_some.items():
        if any(key in r.series for r in records if r.variant in variants):
            panels[panel] = runs_of(lambda r, key=key: r.series.get(key, []))
    return plot_curves(panels, variants, path, xlabel="optimizer step",
                       ylabels={"mu": "mu", "meta term, running sum": "summed change of mu",
                                "entropy term, running sum": "summed change of mu",
                                "validation reward": "mean reward, meta steps", "dH/dmu": "measured, meta steps",
                                "validation groups scored alike": "share of groups, meta steps"})
