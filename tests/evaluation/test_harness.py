"""The study harness: finished runs are skipped, needed runs go first, parallel runs get fresh processes,
and a run made with other settings than the study's is refused."""

import dataclasses
import io
import json
import os
import signal
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import matplotlib.pyplot as plt
import pytest
from rich.console import Console

from amft.evaluation.harness import (RECIPE_FILE, Metric, RunRecords, StaleRuns, StudyRun, plot_frontier, run_study,
                                     summarize, write_results)
from amft.io import atomic_write_json


@dataclass(frozen=True)
class WritingRun(StudyRun):
    """Writes its result file, with the process id it ran in; fails when told to."""

    fail: bool = False
    setting: Any = 1

    log_file: ClassVar[str] = "work.log"

    @property
    def recipe(self) -> dict[str, Any]:
        return {"setting": self.setting, "starts_from": self.needs.recipe if self.needs is not None else None}

    def execute(self) -> None:
        if self.needs is not None:
            assert self.needs.done, "a run started before the run it needs"
        if self.fail:
            raise RuntimeError(f"{self.label} was told to fail")
        atomic_write_json(self.result_path, {"pid": os.getpid(), "value": 10 * self.seed})


def runs(tmp_path, fail=(), base=None):
    base = base or {seed: WritingRun("base", seed, str(tmp_path / "base" / f"seed{seed}"), None) for seed in (0, 1)}
    return [WritingRun(variant, seed, str(tmp_path / variant / f"seed{seed}"), base[seed], variant in fail)
            for seed in (0, 1) for variant in ("a", "b")]


def result(run):
    with open(run.result_path) as handle:
        return json.load(handle)


def test_a_finished_run_is_skipped_and_a_needed_run_goes_first(tmp_path):
    console = Console(file=io.StringIO(), width=200)
    plan = runs(tmp_path)
    assert run_study(plan[:1], console=console) == []
    assert plan[0].done and plan[0].needs.done
    first = os.stat(plan[0].result_path).st_mtime_ns
    assert run_study(plan, console=console) == []
    assert os.stat(plan[0].result_path).st_mtime_ns == first
    out = console.file.getvalue()
    assert out.count("finished earlier, skipped") == 1 and "[1/4] a · seed 0: finished earlier, skipped" in out
    assert all(run.done for run in plan)


def test_parallel_runs_each_get_a_fresh_process_and_a_failure_is_named(tmp_path):
    plan = runs(tmp_path, fail=("b",))
    failed = run_study(plan, jobs=2, console=Console(file=io.StringIO()))
    assert sorted(failed) == ["b · seed 0", "b · seed 1"]
    done = [run for run in plan if run.done]
    assert [run.label for run in done] == ["a · seed 0", "a · seed 1"]
    assert os.getpid() not in {result(run)["pid"] for run in done}
    assert "b · seed 0 was told to fail" in open(os.path.join(plan[1].folder, "work.log")).read()


@dataclass(frozen=True)
class KilledRun(WritingRun):
    """Is killed from outside, as the kernel's out-of-memory killer ends a process."""

    def execute(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_run_fails_alone_and_the_study_goes_on(tmp_path):
    base = {seed: WritingRun("base", seed, str(tmp_path / "base" / f"seed{seed}"), None) for seed in (0, 1)}
    plan = [KilledRun("a", 0, str(tmp_path / "a" / "seed0"), base[0]), *runs(tmp_path, base=base)[1:]]
    console = Console(file=io.StringIO(), width=200)
    assert run_study(plan, jobs=2, console=console) == ["a · seed 0"]
    assert [run.label for run in plan if run.done] == ["b · seed 0", "a · seed 1", "b · seed 1"]
    assert "a · seed 0: failed: killed by SIGKILL" in console.file.getvalue()


@dataclass(frozen=True)
class WaitingRun(WritingRun):
    """Finishes only once the file ``wait_for`` exists (fails after a minute without it)."""

    wait_for: str = ""

    def execute(self) -> None:
        deadline = time.monotonic() + 60
        while not os.path.exists(self.wait_for):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.wait_for} never appeared")
            time.sleep(0.05)
        super().execute()


def test_a_free_worker_starts_a_run_whose_start_is_ready_while_another_start_trains(tmp_path):
    """Seed 1's starting run waits for seed 0's first run: with two workers, that run must start beside it."""
    first = tmp_path / "a" / "seed0"
    base = {0: WritingRun("base", 0, str(tmp_path / "base" / "seed0"), None),
            1: WaitingRun("base", 1, str(tmp_path / "base" / "seed1"), None, wait_for=str(first / "result.json"))}
    plan = runs(tmp_path, base=base)
    assert plan[0].result_path == str(first / "result.json")
    assert run_study(plan, jobs=2, console=Console(file=io.StringIO())) == []
    assert all(run.done for run in plan)


def test_the_runs_of_a_failed_start_are_not_started_and_the_other_seeds_go_on(tmp_path):
    base = {seed: WritingRun("base", seed, str(tmp_path / "base" / f"seed{seed}"), None, fail=seed == 1)
            for seed in (0, 1)}
    plan = runs(tmp_path, base=base)
    console = Console(file=io.StringIO(), width=200)
    assert sorted(run_study(plan, jobs=2, console=console)) == ["a · seed 1", "b · seed 1", "base · seed 1"]
    assert [run.label for run in plan if run.done] == ["a · seed 0", "b · seed 0"]
    assert "a · seed 1: not started: base · seed 1 failed" in console.file.getvalue()


@dataclass(frozen=True)
class RunWithWeights(WritingRun):
    """Also leaves a log (kept in its record) and weights (not kept), which the runs that need it read."""

    record_files: ClassVar[tuple[str, ...]] = ("curve.jsonl",)

    @property
    def ready(self) -> bool:
        return self.done and os.path.exists(os.path.join(self.folder, "weights.bin"))

    def execute(self) -> None:
        if self.needs is not None:
            assert self.needs.ready, "a run started before the weights it needs exist"
        os.makedirs(self.folder, exist_ok=True)
        for name in ("curve.jsonl", "weights.bin"):
            with open(os.path.join(self.folder, name), "a") as handle:
                handle.write(f"{self.label}\n")
        super().execute()


def test_records_outlive_the_output_folder_and_weights_are_trained_again_when_needed(tmp_path):
    def plan(output):
        base = RunWithWeights("base", 0, str(output / "base"), None)
        return [RunWithWeights(variant, 0, str(output / variant), base) for variant in ("a", "b")]

    records = tmp_path / "records"
    first = plan(tmp_path / "machine-1")
    assert run_study(first[:1], console=Console(file=io.StringIO()),
                     records=RunRecords(str(tmp_path / "machine-1"), str(records))) == []
    assert sorted(os.listdir(records / "a")) == ["curve.jsonl", RECIPE_FILE, "result.json"]
    assert sorted(os.listdir(records / "base")) == ["curve.jsonl", RECIPE_FILE, "result.json"]

    # another machine, with the records only: a is finished; b needs the base's weights, so the
    # base is trained again first
    console = Console(file=io.StringIO(), width=200)
    second = plan(tmp_path / "machine-2")
    assert run_study(second, console=console, records=RunRecords(str(tmp_path / "machine-2"), str(records))) == []
    assert "a · seed 0: finished earlier, skipped" in console.file.getvalue()
    # ...and the study says that a's start and b's are two trainings of the base
    said = " ".join(console.file.getvalue().split())
    assert "base · seed 0 finished earlier but its saved model is gone" in said
    assert "1 finished run(s) started from the earlier training, which this one will not reproduce exactly: a · seed 0" in said
    assert result(second[0]) == result(first[0])
    assert not os.path.exists(os.path.join(second[0].folder, "weights.bin"))
    assert second[1].done and second[1].needs.ready
    assert sorted(os.listdir(records / "b")) == ["curve.jsonl", RECIPE_FILE, "result.json"]
    # the record keeps the measurement that was made last
    assert result(second[1].needs) == json.loads((records / "base" / "result.json").read_text())


def test_a_run_made_with_other_settings_than_the_studys_is_refused_before_anything_runs(tmp_path):
    console = Console(file=io.StringIO(), width=300)
    plan = runs(tmp_path)
    assert run_study(plan[:2], console=console) == []  # a and b of seed 0, and the seed's base
    # the study file changes variant b's setting, and the base's (which every run of seed 0 starts from)
    changed = [dataclasses.replace(run, setting=2) if run.variant == "b" else run for run in plan]
    with pytest.raises(StaleRuns, match=r"1 run folder\(s\).*\n  b · seed 0 \(.*\): setting: 1 -> 2\n"):
        run_study(changed, console=console)
    assert not changed[2].done  # nothing ran
    base = dataclasses.replace(plan[0].needs, setting={"lr": 2})
    with pytest.raises(StaleRuns) as error:
        run_study([dataclasses.replace(run, needs=base) for run in plan[:2]], console=console)
    assert error.value.problems == [f"base · seed 0 ({base.folder}): setting: 1 -> {{'lr': 2}}",
                                    f"a · seed 0 ({plan[0].folder}): starts_from.setting: 1 -> {{'lr': 2}}",
                                    f"b · seed 0 ({plan[1].folder}): starts_from.setting: 1 -> {{'lr': 2}}"]
    # a run that finished before runs kept their recipes is not checked, and the study says so
    os.remove(os.path.join(plan[1].folder, RECIPE_FILE))
    assert run_study(changed, console=console) == []
    assert "1 finished or resumable run(s) keep no recipe" in console.file.getvalue()
    assert all(run.done for run in changed)


@dataclass(frozen=True)
class ResumableRun(WritingRun):
    """Leaves progress (a checkpoint) and stops, when told to fail; its next start goes on from it."""

    @property
    def resumable(self) -> bool:
        return not self.done and os.path.exists(os.path.join(self.folder, "checkpoint"))

    def execute(self) -> None:
        open(os.path.join(self.folder, "checkpoint"), "w").close()
        super().execute()


def test_a_run_that_would_resume_is_checked_and_one_that_starts_afresh_takes_the_new_recipe(tmp_path):
    console = Console(file=io.StringIO(), width=300)
    crashed = ResumableRun("a", 0, str(tmp_path / "a"), None, fail=True)
    with pytest.raises(RuntimeError):
        run_study([crashed], console=console)  # killed after its first checkpoint
    with pytest.raises(StaleRuns, match=r"a · seed 0 .*: setting: 1 -> 2"):
        run_study([dataclasses.replace(crashed, fail=False, setting=2)], console=console)
    os.remove(os.path.join(crashed.folder, "checkpoint"))  # nothing to go on from: the run starts afresh
    assert run_study([dataclasses.replace(crashed, fail=False, setting=2)], console=console) == []
    assert json.loads((tmp_path / "a" / RECIPE_FILE).read_text())["setting"] == 2


def test_recipes_compare_as_their_json_reads_back(tmp_path):
    import datetime

    run = WritingRun("a", 0, str(tmp_path / "a"), None, setting={"eps": float("nan"), "day": datetime.date(2026, 12, 1),
                                                                  "sizes": (1, 2)})
    assert run_study([run], console=Console(file=io.StringIO())) == []
    assert json.loads((tmp_path / "a" / RECIPE_FILE).read_text())["setting"]["day"] == "2026-12-01"
    assert run_study([run], console=Console(file=io.StringIO())) == []  # the same recipe: skipped, not refused


def test_the_table_is_the_mean_and_t_interval_over_seeds(tmp_path):
    metrics = [Metric("score", "score %", scale=100.0)]
    rows = summarize([("a", 0, {"score": 0.5}), ("a", 1, {"score": 0.7}), ("a", 2, {"score": 0.6}),
                      ("b", 0, {"score": 0.25})], ["b", "a", "c"], metrics)
    assert [row["variant"] for row in rows] == ["b", "a"]
    table = write_results(str(tmp_path), rows, metrics, note="Scores.", settings={"seeds": [0, 1, 2]},
                          extra=[("seeds", lambda row: ",".join(map(str, row["seeds"])))])
    # sd 0.1, t(0.975, df=2) = 4.302653: half-width 4.302653 * 0.1 / sqrt(3) = 0.2484
    assert "| a | 3 | 60.0 ± 24.8 | 0,1,2 |" in table and "| b | 1 | 25.0 | 0 |" in table
    assert (tmp_path / "results.md").read_text() == f"Scores.\n\n{table}"
    assert "score_mean,score_ci95" in (tmp_path / "results.csv").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["settings"] == {"seeds": [0, 1, 2]}


def test_the_frontier_plot_draws_points_intervals_cut_at_the_bounds_and_paths_a_group_a_panel(tmp_path, saved_figures):
    def row(variant, x, y, ci=0.02):
        return {"variant": variant, "x": {"mean": x, "ci95": ci}, "y": {"mean": y, "ci95": ci}}

    frontier = [row("low", 0.5, 0.7), row("mid", 0.6, 0.6), row("high", 0.7, 0.4)]
    start, reference = row("start", 0.1, 0.1), row("ref", 0.4, 0.3)
    groups = [[row("method", 0.62, 0.66), row("one seed", 0.3, 0.5, ci=None)], [reference, row("wide", 0.9, 0.05, ci=0.2)]]
    path = plot_frontier(frontier, groups, Metric("x", "x (%)", scale=100.0), Metric("y", "y (%)", scale=100.0),
                         str(tmp_path / "frontier.png"), labels={"low": "mu=0.2", "mid": "mu=0.5", "high": "mu=0.8"},
                         paths={"method": [(0.2, 0.1), (0.5, 0.4), (0.6, 0.62)]}, references=[start, reference])
    assert path == str(tmp_path / "frontier.png")
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    (figure,) = saved_figures
    first, second = figure.axes
    # Scaled to percent: in each panel the frontier joined in its order, the references not of the panel,
    # then the panel's own points, each with its interval both ways.
    assert [c.lines[0].get_xydata().tolist() for c in first.containers] == [
        [[50, 70], [60, 60], [70, 40]], [[10, 10]], [[40, 30]], [[62, 66]], [[30, 50]]]
    assert [c.lines[0].get_xydata().tolist() for c in second.containers] == [
        [[50, 70], [60, 60], [70, 40]], [[10, 10]], [[40, 30]], [[90, 5]]]
    x_bars, y_bars = (segments.get_segments() for segments in first.containers[0].lines[2])
    assert x_bars[0].tolist() == [[48, 70], [52, 70]] and y_bars[2].tolist() == [[70, 38], [70, 42]]
    assert {segment.tolist()[0][0] for segment in first.containers[4].lines[2][0].get_segments()} == {30}  # no interval
    # An interval past the metric's range is cut there: 0.05 +- 0.2 is drawn from 0 to 25.
    (x_bar,), (y_bar,) = (segments.get_segments() for segments in second.containers[3].lines[2])
    assert y_bar.tolist() == [[90, 0], [90, 25]] and x_bar.tolist() == [[70, 5], [100, 5]]
    # The reference in its own panel takes the panel's first colour; in the other one it is grey.
    assert second.containers[2].lines[0].get_color() == plt.get_cmap("tab10")(0)
    assert first.containers[2].lines[0].get_color() == "grey"
    trail = [line for line in first.get_lines() if line.get_xydata().tolist() == [[20, 10], [50, 40], [60, 62]]]
    assert len(trail) == 1  # the method's way to its point
    # Labelled beside their points: the frontier and the references; each panel's legend names its own
    # variants, and what every panel shows is named once, below them.
    assert [t.get_text() for t in first.texts if t.get_text()] == ["mu=0.2", "mu=0.5", "mu=0.8", "start", "ref"]
    assert [t.get_text() for t in first.get_legend().get_texts()] == ["method", "one seed"]
    assert [t.get_text() for t in second.get_legend().get_texts()] == ["ref", "wide"]
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["frontier", "start (grey)", "ref (grey)", "path over training"]
    assert (first.get_xlabel(), first.get_ylabel()) == ("x (%)", "y (%)")
    assert first.get_xlim() == (-3, 103) and second.get_ylim() == (-3, 103)
