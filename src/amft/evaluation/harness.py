"""One harness for studies (`amft compare`, `amft nav-study`): variants x seeds, each run in a
folder of its own, resumable, several at a time in fresh processes, then one results table (mean
and Student-t interval over seeds) and plots.

A run is a :class:`StudyRun`: it does its work and writes its result file last, atomically, so a
run with a result file is finished and a study started again skips it. A run may need another
one first (the seed's shared starting model of a comparison). Each run folder keeps the recipe
the study gave the run when it started, and a study whose file now asks something else of a run
refuses to count or continue it (:func:`check_recipes`). :class:`RunRecords` mirrors the small
files of finished runs into a folder that can be committed, so that a study outlives the machine
it ran on.
"""

from __future__ import annotations

import csv
import filecmp
import io
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from scipy import stats  # noqa: E402

from amft.io import atomic_copy, atomic_write_json, atomic_write_text  # noqa: E402

__all__ = [
    "Curve",
    "Metric",
    "RECIPE_FILE",
    "RunRecords",
    "RunsFailed",
    "StaleRuns",
    "StudyRun",
    "check_recipes",
    "interval_text",
    "mean_ci",
    "mean_curve",
    "plot_bars",
    "plot_curves",
    "plot_frontier",
    "results_markdown",
    "run_study",
    "summarize",
    "write_results",
]

Curve = list[tuple[int, float]]
#: the run folder's copy of what the study asked of the run (`StudyRun.recipe`), written when it starts
RECIPE_FILE = "recipe.json"


@dataclass(frozen=True)
class StudyRun(ABC):
    """One run of a study: a variant with a seed, in its own folder."""

    variant: str
    seed: int
    folder: str
    needs: StudyRun | None  # a run that must be finished first

    #: the file a run writes last; its presence means the run is finished
    result_file: ClassVar[str] = "result.json"
    #: where a run in a process of its own writes its output
    log_file: ClassVar[str] = "run.log"
    #: the run's small files besides its result file that a record keeps (its logs)
    record_files: ClassVar[tuple[str, ...]] = ()

    @property
    def label(self) -> str:
        return f"{self.variant} · seed {self.seed}"

    @property
    def result_path(self) -> str:
        return os.path.join(self.folder, self.result_file)

    @property
    def done(self) -> bool:
        return os.path.exists(self.result_path)

    @property
    def ready(self) -> bool:
        """Finished, with everything a run that needs this one reads (a model's weights, say)."""
        return self.done

    def model_files(self, folder: str) -> tuple[str, ...]:
        """The files in ``folder`` (the run's own, or its record) that a run needing this one reads (a saved
        model), the one whose presence makes the run `ready` last; a record keeps them only when the study
        asks (`RunRecords`)."""
        return ()

    @property
    def resumable(self) -> bool:
        """Unfinished, with progress that starting it again would go on from (a checkpoint, say)."""
        return False

    @property
    @abstractmethod
    def recipe(self) -> dict[str, Any]:
        """What the study asks of this run, as JSON values: everything that decides its result (its
        variant's settings, the run it starts from), nothing that only changes how it is watched."""

    @abstractmethod
    def execute(self) -> None:
        """Do the run and write its result file (atomically, last)."""

    def start(self) -> None:
        """Keep the recipe in the run folder, then do the run."""
        os.makedirs(self.folder, exist_ok=True)
        atomic_write_json(os.path.join(self.folder, RECIPE_FILE), _as_json(self.recipe))
        self.execute()


class StaleRuns(ValueError):
    """Run folders that hold runs made to another recipe than the study's (see `check_recipes`)."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(
            f"{len(problems)} run folder(s) hold runs made with other settings than the study now gives; the "
            "study would count or continue them as if made with these:\n  " + "\n  ".join(problems) + "\n"
            "Give the changed variants new names, or delete those run folders (and their records) to run them again.")
        self.problems = list(problems)


def check_recipes(runs: Sequence[StudyRun], *, finished_only: bool = False) -> int:
    """Raise :class:`StaleRuns` if a run of ``runs`` (or a run they need) that is finished, or that would
    resume (unless ``finished_only``), keeps another recipe than the run's in its folder; a run that
    would start afresh is not checked (its folder gets the new recipe). Returns how many of the checked
    runs keep none: they started before runs kept their recipes, and nothing can be checked for them."""
    problems, unchecked = [], 0
    for run in {r.folder: r for run in runs for r in (run.needs, run) if r is not None}.values():
        if not (run.done or (run.resumable and not finished_only)):
            continue
        path = os.path.join(run.folder, RECIPE_FILE)
        if not os.path.exists(path):
            unchecked += 1
            continue
        with open(path) as handle:
            kept = json.load(handle)
        changes = _differences(kept, _as_json(run.recipe))
        if changes:
            problems.append(f"{run.label} ({run.folder}): {'; '.join(changes)}")
    if problems:
        raise StaleRuns(problems)
    return unchecked


_ABSENT = object()


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from a JSON file (a value JSON has no form for, such as a date, as its
    text), so that a kept recipe and a fresh one compare equal when they are."""
    return json.loads(json.dumps(value, default=str))


def _differences(kept: Any, wanted: Any, where: str = "") -> list[str]:
    """'key: kept -> wanted' for each leaf where two JSON values differ (dotted keys into mappings)."""
    if isinstance(kept, dict) and isinstance(wanted, dict):
        return [change for key in sorted(set(kept) | set(wanted))
                for change in _differences(kept.get(key, _ABSENT), wanted.get(key, _ABSENT), f"{where}{key}.")]
    if kept == wanted or _both_nan(kept, wanted):
        return []
    return [f"{where.rstrip('.') or 'recipe'}: {_shown(kept)} -> {_shown(wanted)}"]


def _both_nan(kept: Any, wanted: Any) -> bool:
    return all(isinstance(value, float) and math.isnan(value) for value in (kept, wanted))


def _shown(value: Any) -> str:
    return "(not given)" if value is _ABSENT else repr(value)


class RunsFailed(RuntimeError):
    """Runs of a study failed (the others went on; their results are reported)."""

    def __init__(self, labels: Sequence[str]) -> None:
        super().__init__(f"{len(labels)} run(s) failed: {', '.join(labels)}")
        self.labels = list(labels)


def _execute_in_own_process(run: StudyRun) -> None:
    """Run ``run`` in this (fresh, single-use) worker process, its output appended to its log file."""
    os.makedirs(run.folder, exist_ok=True)
    log = os.open(os.path.join(run.folder, run.log_file), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)  # the file descriptors, so progress bars and library logs go there too
    os.dup2(log, 2)
    run.start()  # an exception's traceback goes to the log, from multiprocessing, and the exit code is 1


class RunRecords:
    """The records of a study's finished runs: each run's recipe, result file and `record_files` (never
    checkpoints), copied from the study's output folder into ``records_dir`` with the same layout, where
    they can be committed. A study started again on another machine restores the records into the run
    folders that lack them, so those runs count as finished. A run that others start from is trained
    again when one of them needs it, unless its folder is one of ``with_model``: their records also keep
    the runs' `model_files` (weights, committed with the records). See docs/design.md, 'Run records'."""

    def __init__(self, output_dir: str, records_dir: str, with_model: Collection[str] = ()) -> None:
        self.output_dir, self.records_dir = output_dir, records_dir
        self.with_model = {os.path.normpath(folder) for folder in with_model}

    def folder(self, run: StudyRun) -> str:
        return os.path.join(self.records_dir, os.path.relpath(run.folder, self.output_dir))

    @staticmethod
    def _record_names(run: StudyRun) -> tuple[str, ...]:
        return (RECIPE_FILE, *run.record_files, run.result_file)  # the result file last

    def _keeps_model(self, run: StudyRun) -> bool:
        return os.path.normpath(run.folder) in self.with_model

    @staticmethod
    def _copy(names: Sequence[str], source: str, target: str) -> None:
        """Files ``names`` that ``source`` holds into folder ``target``, each atomically and in order (the
        file that marks a run finished or ready last, so a copy cut short never looks so)."""
        for name in names:
            if os.path.exists(os.path.join(source, name)):
                atomic_copy(os.path.join(source, name), os.path.join(target, name))

    def keep(self, run: StudyRun) -> None:
        """Copy a finished run's record (again only when its result changed), and its saved model when the
        record should keep one and lacks it."""
        record = self.folder(run)
        result = os.path.join(record, run.result_file)
        changed = run.done and not (os.path.exists(result) and filecmp.cmp(result, run.result_path, shallow=False))
        if self._keeps_model(run) and run.ready:
            model = run.model_files(run.folder)
            if model and (changed or not all(os.path.exists(os.path.join(record, name)) for name in model)):
                self._copy(model, run.folder, record)
        if changed:
            self._copy(self._record_names(run), run.folder, record)

    def restore(self, run: StudyRun) -> None:
        """Give an unfinished run folder the run's record, when there is one, and a run without its saved
        model the one its record keeps."""
        record = self.folder(run)
        if not run.done and os.path.exists(os.path.join(record, run.result_file)):
            self._copy(self._record_names(run), record, run.folder)
        if self._keeps_model(run) and not run.ready and os.path.isdir(record):
            self._copy(run.model_files(record), record, run.folder)

    def sync(self, runs: Sequence[StudyRun]) -> None:
        """Restore, then keep, the records of ``runs`` and of the runs they need."""
        for run in {r.folder: r for run in runs for r in (run.needs, run) if r is not None}.values():
            self.restore(run)
            self.keep(run)


def _exit_reason(exitcode: int) -> str:
    if exitcode >= 0:
        return f"exit code {exitcode}"
    name = signal.Signals(-exitcode).name
    return f"killed by {name}" + (" (perhaps the out-of-memory killer)" if name == "SIGKILL" else "")


def _execute_in_processes(runs: Sequence[StudyRun], workers: int, console: Console,
                          records: RunRecords | None = None) -> list[str]:
    """Each run in a fresh process of its own (nothing carries over from one run to the next, and a
    process killed from outside fails only its run), ``workers`` at a time, in order; a run whose `needs`
    is one of ``runs`` starts once that one has finished, so a free worker takes the next run that can
    start rather than wait for every needed run. A failed run is reported with its log, the runs that need
    it are not started, and the others go on. The labels of the failed runs (and of those not started)."""
    if not runs:
        return []
    console.print(f"{len(runs)} run(s), {workers} at a time; each writes {runs[0].log_file} in its run folder")
    started, failed = time.perf_counter(), []
    waiting, unfinished, broken = list(runs), {run.folder for run in runs}, set()
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch state shared with this one
    running: dict[multiprocessing.process.BaseProcess, StudyRun] = {}
    while waiting or running:
        for run in [run for run in waiting if run.needs is not None and run.needs.folder in broken]:
            waiting.remove(run)
            broken.add(run.folder)
            failed.append(run.label)
            console.print(f"[red]{run.label}: not started: {run.needs.label} failed[/red]")
        startable = [run for run in waiting if run.needs is None or run.needs.folder not in unfinished]
        for run in startable[: workers - len(running)]:
            waiting.remove(run)
            process = context.Process(target=_execute_in_own_process, args=(run,), name=run.label)
            process.start()
            running[process] = run
        if not running:  # what waits now needs a run that failed: named above, on the next pass
            continue
        multiprocessing.connection.wait([process.sentinel for process in running])
        for process in [process for process in running if not process.is_alive()]:
            run, minutes = running.pop(process), (time.perf_counter() - started) / 60
            process.join()
            exitcode = process.exitcode
            process.close()
            if exitcode == 0:
                unfinished.discard(run.folder)
                if records is not None:
                    records.keep(run)
                console.print(f"{run.label}: finished ({minutes:.1f} min into this batch)")
            else:
                broken.add(run.folder)
                failed.append(run.label)
                console.print(f"[red]{run.label}: failed: {_exit_reason(exitcode)}; "
                              f"see {os.path.join(run.folder, run.log_file)}[/red]")
    return failed


def run_study(runs: Sequence[StudyRun], jobs: int = 1, console: Console | None = None,
              records: RunRecords | None = None) -> list[str]:
    """Do the unfinished ``runs`` (a finished one is skipped), ``jobs`` at a time: 1 one after the
    other in this process (an error stops the study), more each in a fresh process of its own (the
    runs they need first). With ``records``, finished runs are restored from their records first and
    each run's record is kept as soon as it finishes. Raises :class:`StaleRuns`, before any run starts,
    when a finished or resumable run keeps another recipe. Returns the labels of the runs that failed."""
    console = console or Console()
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if records is not None:
        records.sync(runs)
    unchecked = check_recipes(runs)
    if unchecked:
        console.print(f"{unchecked} finished or resumable run(s) keep no recipe (they started before runs kept "
                      "one): not checked against the study's settings")
    todo = []
    for index, run in enumerate(runs, start=1):
        if run.done:
            console.print(f"[{index}/{len(runs)}] {run.label}: finished earlier, skipped")
        else:
            todo.append((index, run))
    _warn_of_retrained_starts(runs, [run for _, run in todo], console)
    if jobs == 1:
        for index, run in todo:
            if run.needs is not None and not run.needs.ready:
                console.rule(f"{run.needs.label} (needed by {run.label})")
                run.needs.start()
                if records is not None:
                    records.keep(run.needs)
            console.rule(f"[{index}/{len(runs)}] {run.label}")
            run.start()
            if records is not None:
                records.keep(run)
        return []
    needed = list({run.needs.folder: run.needs for _, run in todo if run.needs is not None and not run.needs.ready}.values())
    return _execute_in_processes([*needed, *(run for _, run in todo)], jobs, console, records)


def _warn_of_retrained_starts(runs: Sequence[StudyRun], todo: Sequence[StudyRun], console: Console) -> None:
    """Name the finished runs whose starting run is trained again for ``todo`` (it finished, but what they read
    from it, its weights, is gone): the runs of one seed would then start from two trainings of it, which differ
    (training again on another machine is not bit-exact; docs/design.md, 'Run records')."""
    again = {run.needs.folder: run.needs for run in todo
             if run.needs is not None and run.needs.done and not run.needs.ready}
    for start in again.values():
        earlier = [run.label for run in runs if run.done and run.needs is not None and run.needs.folder == start.folder]
        if earlier:
            console.print(f"[yellow]{start.label} finished earlier but its saved model is gone, so it is trained again; "
                          f"{len(earlier)} finished run(s) started from the earlier training, which this one will not "
                          f"reproduce exactly: {', '.join(earlier)}. To keep one start per seed, delete their run "
                          f"folders (and records) to train them again, or let the records keep the starting models' "
                          f"weights (a comparison's `record_starting_models`).[/yellow]")


# --------------------------------------------------------------------------- the results table


@dataclass(frozen=True)
class Metric:
    """A column of the results table: ``key`` in each run's metrics, shown as ``scale`` x value."""

    key: str
    header: str
    scale: float = 1.0
    digits: int = 1


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


def summarize(results: Sequence[tuple[str, int, Mapping[str, float]]], variants: Sequence[str],
              metrics: Sequence[Metric]) -> list[dict[str, Any]]:
    """One row per variant with finished runs: ``runs``, ``seeds`` and, per metric, the mean and the
    95% t-interval's half-width over seeds. ``results``: (variant, seed, metrics) of each run."""
    rows = []
    for variant in variants:
        runs = [(seed, values) for name, seed, values in results if name == variant]
        if not runs:
            continue
        row: dict[str, Any] = {"variant": variant, "seeds": [seed for seed, _ in runs], "runs": len(runs)}
        for metric in metrics:
            mean, half = mean_ci([values[metric.key] for _, values in runs])
            row[metric.key] = {"mean": mean, "ci95": half}
        rows.append(row)
    return rows


def interval_text(value: Mapping[str, Any], metric: Metric, *, signed: bool = False) -> str:
    """``value``'s mean (with its sign when ``signed``, for a difference) and, when it has one, its
    interval's half-width, scaled as ``metric`` says: "12.5 ± 3.1"."""
    mean = f"{metric.scale * value['mean']:{'+' if signed else ''}.{metric.digits}f}"
    return mean if value["ci95"] is None else f"{mean} ± {metric.scale * value['ci95']:.{metric.digits}f}"


ExtraColumn = tuple[str, Callable[[Mapping[str, Any]], str]]  # (header, row -> cell text)


def results_markdown(rows: Sequence[Mapping[str, Any]], metrics: Sequence[Metric],
                     extra: Sequence[ExtraColumn] = ()) -> str:
    """The table: variant, runs, each metric as mean ± half-width, then the ``extra`` columns."""
    header = ["variant", "runs", *(m.header for m in metrics), *(name for name, _ in extra)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["variant"], str(row["runs"]), *(interval_text(row[m.key], m) for m in metrics),
                 *(cell(row) for _, cell in extra)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _flat(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{name}_"))
        elif isinstance(value, (list, tuple)):
            flat[name] = " ".join(map(str, value))
        else:
            flat[name] = "" if value is None else value
    return flat


def write_results(output_dir: str, rows: Sequence[Mapping[str, Any]], metrics: Sequence[Metric], *,
                  note: str, settings: Mapping[str, Any], extra: Sequence[ExtraColumn] = (),
                  details: Mapping[str, Any] | None = None, appendix: str = "") -> str:
    """`results.json` (the rows, the study's settings and ``details``), `results.csv` (one flat line
    per variant) and `results.md` (``note``, the table, ``appendix``). Returns the table."""
    table = results_markdown(rows, metrics, extra)
    atomic_write_json(os.path.join(output_dir, "results.json"),
                      {"settings": dict(settings), "variants": list(rows), **(details or {})})
    flat = [_flat(row) for row in rows]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(key for line in flat for key in line)))
    writer.writeheader()
    writer.writerows(flat)
    atomic_write_text(os.path.join(output_dir, "results.csv"), text.getvalue())
    atomic_write_text(os.path.join(output_dir, "results.md"), f"{note}\n\n{table}" + (f"\n{appendix}" if appendix else ""))
    return table


# --------------------------------------------------------------------------- plots


def mean_curve(curves: Sequence[Curve]) -> Curve:
    """Mean over runs at the steps all of them logged."""
    if not curves:
        return []
    shared = set.intersection(*(set(step for step, _ in curve) for curve in curves))
    by_step = [dict(curve) for curve in curves]
    return [(step, sum(c[step] for c in by_step) / len(by_step)) for step in sorted(shared)]


def _styles(variants: Sequence[str]) -> dict[str, dict[str, Any]]:
    colors = plt.get_cmap("tab20")
    return {variant: dict(color=colors(i % 20), linestyle="-" if i < 10 else "--") for i, variant in enumerate(variants)}


def plot_curves(panels: Mapping[str, Mapping[str, Sequence[Curve]]], variants: Sequence[str], path: str, *,
                xlabel: str, ylabels: Mapping[str, str]) -> str:
    """One panel per entry of ``panels`` (title -> variant -> its runs' curves), one line per variant:
    the mean over its runs. Returns ``path``."""
    styles = _styles(variants)
    fig, axes = plt.subplots(1, len(panels), figsize=(max(7.0, 4.8 * len(panels)), 3.8), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for variant in variants:
            curve = mean_curve([c for c in curves.get(variant, []) if c])
            if curve:
                ax.plot(*zip(*curve), label=variant, **styles[variant])
        ax.set(title=title, xlabel=xlabel, ylabel=ylabels.get(title, ""))
        ax.grid(alpha=0.3)
    drawn = [ax for ax in axes[0] if ax.get_legend_handles_labels()[0]]
    if drawn:  # a panel with no runs' curves yet (a study just started) gets no empty legend
        drawn[-1].legend(fontsize=7, loc="best")
    return _save(fig, path)


def plot_bars(rows: Sequence[Mapping[str, Any]], panels: Mapping[str, Sequence[Metric]], path: str, *,
              ylabel: str, ylim: tuple[float, float] | None = None) -> str:
    """One panel per entry of ``panels`` (title -> metrics on its x axis), a bar per variant and
    metric: the mean over seeds with its t-interval. Returns ``path``."""
    styles = _styles([row["variant"] for row in rows])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False, sharey=True)
    width = 0.8 / max(len(rows), 1)
    for ax, (title, metrics) in zip(axes[0], panels.items()):
        for i, row in enumerate(rows):
            means = [m.scale * row[m.key]["mean"] for m in metrics]
            errors = [m.scale * (row[m.key]["ci95"] or 0.0) for m in metrics]
            ax.bar([x + i * width for x in range(len(metrics))], means, width, yerr=errors, capsize=2,
                   label=row["variant"], color=styles[row["variant"]]["color"])
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(metrics))], [m.header for m in metrics])
        ax.set_title(title)
        if ylim:
            ax.set_ylim(*ylim)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    return _save(fig, path)


_MARKERS = "s^Dv<>Pp*hX"


def plot_frontier(frontier: Sequence[Mapping[str, Any]], groups: Sequence[Sequence[Mapping[str, Any]]], x: Metric,
                  y: Metric, path: str, *, labels: Mapping[str, str] | None = None,
                  paths: Mapping[str, Sequence[tuple[float, float]]] | None = None,
                  references: Sequence[Mapping[str, Any]] = (), bounds: tuple[float, float] = (0.0, 1.0),
                  frontier_name: str = "frontier", path_name: str = "path over training") -> str:
    """A trade-off plot of two metrics, one panel per entry of ``groups`` (small multiples, so that a
    study of many variants stays readable): in every panel the ``frontier`` rows (in their order) as
    points joined by a line and the ``references`` not of the panel as grey points; the panel's own
    rows each as a point of its own marker and colour, named in the panel's legend only (labels beside
    points crowd where methods end close together). Every point is the mean with its t-interval in
    both directions, cut at ``bounds`` (the metrics' possible range, raw); the frontier's and the
    references' points are labelled beside them (``labels``: variant -> text, default the variant),
    and so are the panel's own in the legend. ``paths`` (variant -> its (x, y)
    values in step order) draws a row's way to its point, thin, with an arrow at its end. What every
    panel shows is named once, in the figure's legend below the panels. Values are raw (scaled by each
    metric's ``scale``). Returns ``path``."""
    labels = labels or {}
    groups = [list(group) for group in groups if group] or [[]]
    # strong colours, distinct within a panel of up to nine; tab10's grey (7) is left to the references
    colors = [plt.get_cmap("tab10")(i) for i in (0, 1, 2, 3, 4, 5, 6, 8, 9)]
    columns = min(len(groups), 2)
    fig, axes = plt.subplots(-(-len(groups) // columns), columns, squeeze=False, layout="constrained",
                             figsize=(6.0 * columns, 5.0 * -(-len(groups) // columns) + 0.8))

    def interval(row: Mapping[str, Any], metric: Metric) -> tuple[float, float, float]:
        """The scaled mean and its distances down and up to the interval's ends, cut at ``bounds``."""
        mean, half = row[metric.key]["mean"], row[metric.key]["ci95"] or 0.0
        low, high = max(mean - half, bounds[0]), min(mean + half, bounds[1])
        return metric.scale * mean, metric.scale * (mean - low), metric.scale * (high - mean)

    def draw(ax, rows: Sequence[Mapping[str, Any]], color: Any, labelled: bool = True, **style: Any) -> Any:
        (xs, x_down, x_up), (ys, y_down, y_up) = (zip(*(interval(row, m) for row in rows)) for m in (x, y))
        handle = ax.errorbar(xs, ys, xerr=[x_down, x_up], yerr=[y_down, y_up], color=color, capsize=2, **style)
        for row, px, py in zip(rows, xs, ys) if labelled else ():
            ax.annotate(labels.get(row["variant"], row["variant"]), (px, py), xytext=(5, 4),
                        textcoords="offset points", fontsize=7, color=color)
        return handle

    shared: dict[str, Any] = {}  # legend entry -> handle, for what every panel shows
    trail_style = dict(linewidth=0.7, marker=".", markersize=3)
    for ax, group in zip(axes.flat, groups):
        if frontier:
            shared[frontier_name] = draw(ax, frontier, "black", marker="o", markersize=5, linewidth=1.2)
        for row in references:
            if all(row["variant"] != own["variant"] for own in group):
                shared[f"{labels.get(row['variant'], row['variant'])} (grey)"] = draw(
                    ax, [row], "grey", marker="o", markersize=6, linestyle="none")
        own = []
        for i, row in enumerate(group):
            color = colors[i % len(colors)]
            trail = [(x.scale * px, y.scale * py) for px, py in (paths or {}).get(row["variant"], [])]
            if len(trail) > 1:
                (shared[path_name],) = ax.plot(*zip(*trail), color=color, alpha=0.8, **trail_style)
                ax.annotate("", xy=trail[-1], xytext=trail[-2], arrowprops=dict(arrowstyle="->", color=color, lw=0.7))
            handle = draw(ax, [row], color, labelled=False, marker=_MARKERS[i % len(_MARKERS)], markersize=7,
                          linestyle="none")
            own.append((handle, labels.get(row["variant"], row["variant"])))
        margin = 0.03 * (bounds[1] - bounds[0])
        ax.set_xlim(x.scale * (bounds[0] - margin), x.scale * (bounds[1] + margin))
        ax.set_ylim(y.scale * (bounds[0] - margin), y.scale * (bounds[1] + margin))
        ax.set(xlabel=x.header, ylabel=y.header)
        ax.grid(alpha=0.3)
        if own:
            ax.legend(*zip(*own), fontsize=7, loc="best")
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    if path_name in shared:  # the paths are drawn in each variant's colour; the legend names them in grey
        (shared[path_name],) = axes.flat[0].plot([], [], color="grey", **trail_style)
    if shared:
        fig.legend(list(shared.values()), list(shared), loc="outside lower center", ncols=2, fontsize=8)
    return _save(fig, path)


def _save(fig, path: str) -> str:
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
