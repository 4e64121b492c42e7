"""Aggregation of a comparison on the study harness: confidence intervals, steps to a target, tables,
the fixed-mu frontier, the controller's diagnosis and the selection on validation splits."""

import csv
import io
import json

import pytest
import yaml
from rich.console import Console

from amft.cli.compare import Comparison, load_study
from amft.cli.options import OptionsError
from amft.evaluation.comparison import (RunRecord, beats, beats_paired, cumulative, extra_columns, frontier_panels,
                                        judge_against_frontier, logged_series, paired_differences, plot_controller,
                                        plot_study_frontier, rank_on, read_run, steps_to_reach, summarize,
                                        table_metrics, write_results)
from amft.evaluation.harness import mean_ci, mean_curve, results_markdown


def test_mean_ci_is_the_student_t_interval():
    mean, half = mean_ci([0.5, 0.7, 0.6])
    # sd = 0.1, t(0.975, df=2) = 4.302653, half = t * sd / sqrt(3)
    assert mean == pytest.approx(0.6)
    assert half == pytest.approx(4.302653 * 0.1 / 3**0.5, rel=1e-6)
    assert mean_ci([0.25]) == (0.25, None)
    with pytest.raises(ValueError):
        mean_ci([])


def test_steps_to_reach_and_mean_curve():
    curve = [(0, 0.1), (20, 0.55), (40, 0.61), (60, 0.5)]
    assert steps_to_reach(curve, 0.6) == 40
    assert steps_to_reach(curve, 0.7) is None
    assert mean_curve([[(0, 0.0), (20, 0.4)], [(0, 0.2), (20, 0.6), (40, 1.0)]]) == [(0, 0.1), (20, pytest.approx(0.5))]


def record(variant, seed, rl_only, curve):
    return RunRecord(variant=variant, seed=seed, success={"id": 0.9, "rl-only": rl_only}, steps=60,
                     wall_time_seconds=120.0, controller={"mu_final": 0.5, "meta_term_total": 0.01,
                                                          "entropy_term_total": -0.2},
                     curves={"rl-only": curve})


def test_summarize_counts_targets_and_the_reference_final(tmp_path):
    records = [
        record("sft-then-rl", 0, 0.4, [(0, 0.0), (20, 0.3), (40, 0.5)]),
        record("sft-then-rl", 1, 0.6, [(0, 0.0), (20, 0.2), (40, 0.3)]),
        record("amft", 0, 0.7, [(0, 0.0), (20, 0.45), (40, 0.7)]),
        record("amft", 1, 0.5, [(0, 0.0), (20, 0.1), (40, 0.2)]),
    ]
    metrics = table_metrics(records, ["id", "rl-only"])
    assert [m.key for m in metrics] == ["id", "rl-only"]
    rows = summarize(records, ["amft", "sft-then-rl", "absent"], metrics, target_split="rl-only",
                     target_success=0.6, reference_variant="sft-then-rl")
    assert [row["variant"] for row in rows] == ["amft", "sft-then-rl"]
    amft = rows[0]
    assert amft["rl-only"]["mean"] == pytest.approx(0.6) and amft["runs"] == 2
    assert amft["steps_to_target"] == {"target": 0.6, "reached": 1, "mean_steps": 40}
    # sft-then-rl's mean final quick success is (0.5 + 0.3) / 2 = 0.4: amft seed 0 reaches it at 20.
    assert amft["steps_to_reference"]["target"] == pytest.approx(0.4)
    assert amft["steps_to_reference"]["reached"] == 1 and amft["steps_to_reference"]["mean_steps"] == 20
    assert amft["minutes_per_run"] == pytest.approx(2.0) and amft["entropy_term_total"] == pytest.approx(-0.2)

    table = results_markdown(rows, metrics, extra_columns(rows, "rl-only", "sft-then-rl"))
    assert "| amft | 2 | 90.0 ± 0.0 | 60.0 ± 127.1 | 40 (1/2) | 20 (1/2) | 0.50 | +0.010 | -0.200 | 2.0 |" in table
    write_results(str(tmp_path), rows, metrics, target_split="rl-only", reference_variant="sft-then-rl",
                  settings={"seeds": [0, 1]})
    with open(tmp_path / "results.csv") as handle:
        lines = list(csv.DictReader(handle))
    assert [line["variant"] for line in lines] == ["amft", "sft-then-rl"]
    assert float(lines[0]["steps_to_target_mean_steps"]) == 40 and float(lines[0]["rl-only_ci95"]) == pytest.approx(1.271, abs=1e-3)
    assert json.loads((tmp_path / "results.json").read_text())["settings"] == {"seeds": [0, 1]}
    assert table in (tmp_path / "results.md").read_text()


def test_without_quick_evaluations_the_table_has_no_steps_columns():
    records = [record(variant, seed, 0.5, []) for variant in ("sft", "amft") for seed in (0, 1)]
    metrics = table_metrics(records, ["id", "rl-only"])
    rows = summarize(records, ["sft", "amft"], metrics, target_split="rl-only", target_success=0.6,
                     reference_variant="sft")
    table = results_markdown(rows, metrics, extra_columns(rows, "rl-only", "sft"))
    assert "steps to" not in table and "not reached" not in table
    assert "| amft | 2 | 90.0 ± 0.0 | 50.0 ± 0.0 |" in table


def test_the_tasks_own_measures_become_columns_when_every_run_reports_them(tmp_path):
    runs = [record("sft", seed, 0.1, [(0, 0.0)]) for seed in (0, 1)]
    runs[0].task_metrics = {"recognition_accuracy": {"id": 1.0, "rl-only": 0.5}}
    runs[1].task_metrics = {"recognition_accuracy": {"id": 0.75}}  # rl-only missing: no column for it
    metrics = table_metrics(runs, ["id", "rl-only"])
    assert [(m.key, m.header) for m in metrics] == [("id", "id"), ("rl-only", "rl-only"),
                                                    ("recognition_accuracy/id", "recognition accuracy id")]
    rows = summarize(runs, ["sft"], metrics, target_split="rl-only", target_success=0.3)
    # mean 0.875, sd 0.1768, t(0.975, 1) = 12.706: half-width 12.706 * 0.1768 / sqrt(2) = 1.588
    assert rows[0]["recognition_accuracy/id"]["mean"] == pytest.approx(0.875)
    assert rows[0]["recognition_accuracy/id"]["ci95"] == pytest.approx(1.588, abs=1e-3)
    assert "| recognition accuracy id |" in results_markdown(rows, metrics, extra_columns(rows, "rl-only", None))
    assert table_metrics([record("sft", 0, 0.1, [])], ["id"])[-1].key == "id"  # text tasks: success only


def test_logged_series_and_the_running_sum_of_a_term_logged_as_window_means():
    history = [{"step": 2, "amft/meta_term": 0.5, "loss": 1.0, "flag": True},
               {"step": 4, "amft/meta_term": 0.25, "amft/val_reward": -1},
               {"train_runtime": 3.0}]
    series = logged_series(history)
    assert series == {"amft/meta_term": [(2, 0.5), (4, 0.25)], "loss": [(2, 1.0)], "amft/val_reward": [(4, -1.0)]}
    # Each value is the mean of its window's steps: 2 x 0.5 over steps 1-2, then 2 x 0.25 over steps 3-4.
    assert cumulative(series["amft/meta_term"]) == [(2, 1.0), (4, 1.5)]
    assert cumulative([(1, 0.1), (2, -0.3)]) == [(1, 0.1), (2, pytest.approx(-0.2))]


def success_row(variant, x, y):
    return {"variant": variant, "x": {"mean": x, "ci95": None}, "y": {"mean": y, "ci95": None}}


def test_the_controller_plot_adds_the_panels_of_measures_some_runs_logged(tmp_path, saved_figures):
    def record(variant, **series):
        base = {"amft/mu": [(5, 0.8), (10, 0.7)], "amft/meta_term": [(5, 0.01)], "amft/val_reward": [(5, 0.2)]}
        return RunRecord(variant, 0, {}, 10, None, {}, series={**base, **series})

    plot_controller([record("amft")], ["amft"], str(tmp_path / "older.png"))
    plot_controller([record("amft"), record("amft-new", **{"amft/val_frac_reward_zero_std": [(5, 0.6), (10, 0.5)]})],
                    ["amft", "amft-new"], str(tmp_path / "newer.png"))
    older, newer = ([ax.get_title() for ax in figure.axes] for figure in saved_figures)
    assert older == ["mu", "meta term, running sum", "entropy term, running sum", "validation reward"]
    assert newer == older + ["validation groups scored alike"]
    lines = saved_figures[1].axes[-1].get_lines()
    assert [(line.get_label(), list(line.get_ydata())) for line in lines] == [("amft-new", [0.6, 0.5])]


def test_a_fixed_mu_beats_a_variant_when_it_is_above_on_both_splits_by_the_means_and_paired_by_seed():
    # Each seed lifts every variant alike (its starting model's luck): 0, +0.1 and +0.2.
    def runs(variant, x, y, seeds=(0, 1, 2), noise=(0.0, 0.0, 0.0)):
        return [RunRecord(variant, seed, {"x": x + 0.1 * seed + noise[seed], "y": y + 0.1 * seed}, 10, 1.0, {})
                for seed in seeds]

    records = [*runs("mu-0.2", 0.5, 0.7), *runs("mu-0.5", 0.6, 0.6),
               *runs("above", 0.55, 0.68),                          # between the two fixed-mu points: beaten by neither
               *runs("close", 0.45, 0.65),                          # 0.05 below mu-0.2 on both, on every seed
               *runs("noisy", 0.45, 0.65, noise=(0.2, -0.1, 0.0)),  # the same means; the x difference changes sign
               *runs("one seed", 0.2, 0.3, seeds=(0,))]
    variants = ["mu-0.2", "mu-0.5", "above", "close", "noisy", "one seed"]
    rows = summarize(records, variants, table_metrics(records, ["x", "y"]), target_split="y", target_success=0.9)
    by_name = {row["variant"]: row for row in rows}
    assert not beats(by_name["mu-0.2"], by_name["above"], ["x", "y"]) and not beats(by_name["mu-0.5"], by_name["above"], ["x", "y"])
    assert beats(by_name["mu-0.2"], by_name["close"], ["x", "y"]) and not beats(by_name["mu-0.5"], by_name["close"], ["y"])
    # Unpaired, close's interval (+-0.248 over the seeds' spread) overlaps mu-0.2's; paired, the difference is 0.05 each seed.
    assert by_name["close"]["x"]["ci95"] == pytest.approx(0.2484, abs=1e-4)
    assert beats_paired(records, "mu-0.2", "close", ["x", "y"])
    # noisy: x differences 0.05 - 0.2, 0.05 + 0.1, 0.05: mean 0.017, the interval reaches below zero.
    assert beats(by_name["mu-0.2"], by_name["noisy"], ["x", "y"]) and not beats_paired(records, "mu-0.2", "noisy", ["x"])
    assert beats_paired(records, "mu-0.2", "noisy", ["y"])
    assert not beats_paired(records, "mu-0.2", "one seed", ["x", "y"])  # one pair, no interval

    judge_against_frontier(rows, records, {"mu-0.2": 0.2, "mu-0.5": 0.5}, ["x", "y"])
    assert by_name["mu-0.2"]["vs_frontier"] == {"mu": 0.2}
    assert by_name["above"]["vs_frontier"] == {"dominated_by": [], "dominated_with_intervals_by": []}
    assert by_name["close"]["vs_frontier"] == {"dominated_by": ["mu-0.2"], "dominated_with_intervals_by": ["mu-0.2"]}
    assert by_name["noisy"]["vs_frontier"] == {"dominated_by": ["mu-0.2"], "dominated_with_intervals_by": []}
    assert by_name["one seed"]["vs_frontier"] == {"dominated_by": ["mu-0.2", "mu-0.5"], "dominated_with_intervals_by": []}


def test_the_selection_ranks_by_the_mean_over_the_chosen_splits():
    rows = [success_row("a", 0.5, 0.25), success_row("b", 0.25, 0.75), success_row("c", 0.75, 0.0)]
    selection = rank_on(rows, ["x", "y"])
    # means over x and y: a 0.375, b 0.5, c 0.375 (a tie keeps the rows' order)
    assert selection == {"splits": ["x", "y"], "best": "b", "ranking": [
        {"variant": "b", "score": 0.5}, {"variant": "a", "score": 0.375}, {"variant": "c", "score": 0.375}]}
    assert rank_on(rows, ["x"])["best"] == "c"


def test_paired_differences_pair_the_runs_of_a_seed():
    def record(variant, seed, id_, rl):
        return RunRecord(variant, seed, {"id": id_, "rl-only": rl}, steps=10, wall_time_seconds=1.0, controller={})

    # The reference's runs come in another order and lack seed 0; paired by position they would read otherwise.
    records = [record("a", 0, 0.5, 0.3), record("a", 1, 0.6, 0.3), record("a", 2, 0.9, 0.9),
               record("ref", 2, 0.8, 0.8), record("ref", 1, 0.4, 0.2)]
    differences = paired_differences(records, "a", "ref", ["id", "rl-only"])
    # id: seed 1 0.2, seed 2 0.1; sd 0.0707, t(0.975, 1) = 12.706: 12.706 * 0.0707 / sqrt(2).
    assert differences["id"]["mean"] == pytest.approx(0.15) and differences["id"]["ci95"] == pytest.approx(0.6353, abs=1e-4)
    assert differences["rl-only"]["mean"] == pytest.approx(0.1) and differences["id"]["pairs"] == 2
    alone = paired_differences(records[:3] + records[4:], "a", "ref", ["id"])["id"]
    assert alone == {"mean": pytest.approx(0.2), "ci95": None, "pairs": 1}
    assert paired_differences(records, "a", "missing", ["id"])["id"] == {"mean": None, "ci95": None, "pairs": 0}


# ------------------------------------------------------------------ the report of a study, from fake run folders

def test_the_time_per_run_leaves_out_a_run_that_timed_only_its_last_segment(tmp_path):
    def run(name, wall, **resumption):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps({
            "wall_time_seconds": wall, "success_rate": {"id": 0.5}, "run": {"steps": 20, **resumption}}))
        return read_run(str(folder), "sft", seed=len(name))

    whole = run("whole", 120.0)
    resumed = run("resumed", 240.0, resumed_from="ckpt/checkpoint-10", seconds_before_resumption=130.0)
    segment = run("segment-only", 9.0, resumed_from="ckpt/checkpoint-10")  # an older run: no clock in its checkpoint
    assert segment.wall_time_seconds is None and resumed.wall_time_seconds == 240.0
    metrics = table_metrics([whole], ["id"])
    rows = summarize([whole, resumed, segment], ["sft"], metrics, target_split="id", target_success=0.9)
    assert rows[0]["runs"] == 3 and rows[0]["minutes_per_run"] == pytest.approx(3.0)
    rows = summarize([segment], ["sft"], metrics, target_split="id", target_success=0.9)
    assert rows[0]["minutes_per_run"] is None
    assert results_markdown(rows, metrics, extra_columns(rows, "id", None)).splitlines()[-1].endswith("| - |")


SPLITS = ["id", "rl-only", "val-id", "val-rl-only"]
#: final success on (id, rl-only) of seeds 0 and 1 (seed 1: +0.02); the validation splits read the same
FINAL = {"mu-0.2": (0.50, 0.70), "mu-0.5": (0.60, 0.60), "mu-0.8": (0.70, 0.40), "amft": (0.62, 0.66),
         "chord": (0.30, 0.55), "sft-then-rl": (0.05, 0.10)}
VARIANTS = {"mu-0.2": {"method": "fixed-mu", "mu": 0.2}, "mu-0.5": {"method": "fixed-mu"},  # mu 0.5 by default
            "mu-0.8": {"method": "fixed-mu", "mu": 0.8}, "amft": {"method": "amft"}, "chord": {"method": "chord"},
            "sft-then-rl": {"method": "sft-then-rl"}}
BASE_STEPS = 8
TRAINING = {"model_name_or_path": "tiny-test", "eval_splits": ",".join(SPLITS), "use_cpu": True, "bf16": False,
            "max_steps": 20}


def write_run(folder, success, progress, history=()):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({
        "wall_time_seconds": 60.0, "success_rate": success, "run": {"steps": 20}, "controller": {}}))
    (folder / "progress_eval.jsonl").write_text("".join(json.dumps(row) + "\n" for row in progress))
    (folder / "log_history.json").write_text(json.dumps(list(history)))


def write_study_with_runs(tmp_path, **changes):
    study = {"output_dir": str(tmp_path / "study"), "seeds": [0, 1], "base_sft_steps": BASE_STEPS,
             "frontier": {"x": "id", "y": "rl-only"}, "select_on": ["val-id", "val-rl-only"],
             "training": TRAINING, "variants": VARIANTS, **changes}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    for seed in (0, 1):
        write_run(tmp_path / "study" / "base" / f"seed{seed}", dict.fromkeys(SPLITS, 0.1 + 0.02 * seed),
                  [{"step": BASE_STEPS, **dict.fromkeys(SPLITS, 0.1), "rl-only": 0.05}])
        for variant, (x, y) in FINAL.items():
            x, y = x + 0.02 * seed, y + 0.02 * seed
            history = [{"step": step, "amft/mu": 0.8 - 0.01 * step, "amft/meta_term": -0.002, "amft/entropy_term": 0.001,
                        "amft/val_reward": 0.1 * seed, "amft/entropy_slope": -0.5, "amft/entropy": 1.5} for step in (5, 10, 15, 20)]
            write_run(tmp_path / "study" / "runs" / variant / f"seed{seed}",
                      {"id": x, "rl-only": y, "val-id": x, "val-rl-only": y},
                      [{"step": 10, "id": x / 2, "rl-only": y / 2, "val-id": x / 2, "val-rl-only": y / 2},
                       {"step": 20, "id": x - 0.05, "rl-only": y - 0.05, "val-id": x, "val-rl-only": y}],
                      history)
    return path


def test_the_report_draws_the_frontier_judges_against_it_and_selects_on_validation(tmp_path):
    path = write_study_with_runs(tmp_path)
    study = load_study(str(path))
    assert study.frontier_mu == {"mu-0.2": 0.2, "mu-0.5": 0.5, "mu-0.8": 0.8}
    # sft and grpo are mu = 1 and mu = 0, the frontier's ends; luffy's mu is 0 too, but its loss is not the plain mix.
    study.variants.update(sft={"method": "sft"}, grpo={"method": "grpo"}, luffy={"method": "luffy"},
                          chord_phi={"method": "chord", "chord_mu_peak": 0.1, "chord_mu_valley": 0.1,
                                     "chord_mu_warmup_steps": 0, "chord_phi": True})
    assert study.frontier_mu == {"grpo": 0.0, "mu-0.2": 0.2, "mu-0.5": 0.5, "mu-0.8": 0.8, "sft": 1.0}
    study.variants = dict(VARIANTS)
    console = Console(file=io.StringIO(), width=300)
    rows = Comparison(study, console).report()
    out_dir = tmp_path / "study"
    for plot in ("frontier.png", "controller.png", "success_vs_step.png"):
        assert (out_dir / plot).stat().st_size > 10_000

    # The first row is the seeds' starting model, measured like a run, but neither a target nor a candidate.
    start = rows[0]
    assert start["variant"] == f"starting model ({BASE_STEPS} SFT steps)" and start["starting_model"]
    assert start["runs"] == 2 and start["id"]["mean"] == pytest.approx(0.11)
    assert start["steps_to_target"] is None and start["mu_final"] is None
    assert [row["variant"] for row in rows[1:]] == list(VARIANTS)
    verdicts = {row["variant"]: row["vs_frontier"] for row in rows}
    assert verdicts[start["variant"]]["dominated_with_intervals_by"] == ["mu-0.2", "mu-0.5", "mu-0.8"]
    assert verdicts["mu-0.5"] == {"mu": 0.5}
    assert verdicts["amft"] == {"dominated_by": [], "dominated_with_intervals_by": []}
    # Two seeds 0.02 apart: unpaired, each t-interval is 12.706 * 0.01 = 0.127 either side, wider than chord's gap
    # to mu=0.2 on rl-only; but every run of seed 1 gains the same 0.02, so paired by seed the differences do not vary.
    assert verdicts["chord"] == {"dominated_by": ["mu-0.2", "mu-0.5"], "dominated_with_intervals_by": ["mu-0.2", "mu-0.5"]}
    assert verdicts["sft-then-rl"]["dominated_with_intervals_by"] == ["mu-0.2", "mu-0.5", "mu-0.8"]
    table = (out_dir / "results.md").read_text()
    assert "| vs frontier |" in table and "| **on or above** |" in table and "| frontier (mu=0.2) |" in table
    assert "| below mu=0.2, 0.5 [with intervals: 0.2, 0.5] |" in table
    start_line = table.splitlines()[4]  # after the note and the header: no steps to the target, no controller terms
    assert start_line.startswith(f"| starting model ({BASE_STEPS} SFT steps) | 2 | 11.0 ± 12.7 |")
    assert "| 11.0 ± 12.7 | - | below mu=" in start_line and start_line.endswith("| - | - | - | 1.0 |")
    assert "| below mu=0.2, 0.5, 0.8 [with intervals: 0.2, 0.5, 0.8] |" in table

    # val-id and val-rl-only read as id and rl-only: amft's mean (0.63 + 0.67) / 2 = 0.65 is the best.
    assert "## Selection on val-id, val-rl-only: best = amft" in table
    results = json.loads((out_dir / "results.json").read_text())
    assert results["selection"]["best"] == "amft" and results["selection"]["splits"] == ["val-id", "val-rl-only"]
    assert results["selection"]["ranking"][0] == {"variant": "amft", "score": pytest.approx(0.65)}
    assert [row["vs_frontier"] for row in results["variants"][1:]] == [verdicts[v] for v in VARIANTS]
    assert all(entry["variant"] in VARIANTS for entry in results["selection"]["ranking"])
    printed = console.file.getvalue()
    assert "best = amft" in printed and "frontier.png" in printed and "controller.png" in printed
    assert all("vs_reference" not in row for row in rows) and "| minus " not in table  # the study names no reference

    # With a reference, each variant's differences from it on the frontier's splits, paired by seed: every
    # seed adds 0.02 to both runs, so amft - sft-then-rl is 0.57 and 0.56 on both seeds, no spread.
    study.reference_variant = "sft-then-rl"
    rows = Comparison(study, console).report()
    amft = next(row for row in rows if row["variant"] == "amft")
    assert amft["vs_reference"]["id"] == {"mean": pytest.approx(0.57), "ci95": pytest.approx(0.0, abs=1e-9), "pairs": 2}
    assert "vs_reference" not in rows[0] and "vs_reference" not in rows[-1]  # the starting model, the reference
    table = (out_dir / "results.md").read_text()
    assert "| minus sft-then-rl, paired by seed (points) |" in table
    assert "| id +57.0 ± 0.0, rl-only +56.0 ± 0.0 (2 seeds) |" in table

    # A study reported with one fixed-mu variant left (`--variants`) has no frontier, and says so.
    study.variants = {name: VARIANTS[name] for name in ("mu-0.2", "chord")}
    (out_dir / "frontier.png").unlink()
    (out_dir / "controller.png").unlink()
    rows = Comparison(study, console).report()
    assert "No frontier yet" in console.file.getvalue() and "vs_frontier" not in rows[0]
    assert "Finished so far" not in console.file.getvalue()  # every run of these two variants is done

    # A run not finished yet: the report says how much of the study its table covers.
    (out_dir / "runs" / "chord" / "seed1" / "summary.json").unlink()
    Comparison(study, console).report()
    assert "Finished so far: 3 of 4 runs, 2 of 2 starting models; the table covers those." in console.file.getvalue()
    assert not (out_dir / "frontier.png").exists() and not (out_dir / "controller.png").exists()


def test_the_study_frontier_plot_shows_each_variant_once_beside_the_frontier_and_the_references(tmp_path, saved_figures):
    def runs(variant, x, y):
        return [RunRecord(variant, seed, {"id": x + 0.1 * seed, "rl-only": y}, 10, 1.0, {}) for seed in (0, 1)]

    finals = {"start": (0.2, 0.1), "mu-0.2": (0.5, 0.7), "mu-0.8": (0.7, 0.4), "two-stage": (0.4, 0.3),
              "amft": (0.6, 0.6), "amft-other": (0.6, 0.5), "luffy": (0.3, 0.2)}
    records = [run for variant, (x, y) in finals.items() for run in runs(variant, x, y)]
    rows = summarize(records, list(finals), table_metrics(records, ["id", "rl-only"]), target_split="rl-only",
                     target_success=0.9)
    rows[0]["starting_model"] = True  # first, as the report puts it
    methods = {"mu-0.2": "fixed-mu", "mu-0.8": "fixed-mu", "two-stage": "sft-then-rl", "amft": "amft",
               "amft-other": "amft", "luffy": "luffy"}
    frontier = {"mu-0.2": 0.2, "mu-0.8": 0.8}

    def panels(reference, size=6):
        saved_figures.clear()
        plot_study_frontier(records, rows, frontier, "id", "rl-only", str(tmp_path / "frontier.png"), methods=methods,
                            reference_variant=reference, panel_size=size)
        (figure,) = saved_figures
        return [([t.get_text() for t in ax.get_legend().get_texts()], [t.get_text() for t in ax.texts if t.get_text()])
                for ax in figure.axes if ax.get_visible()]

    # 3 variants, the panel size is 6: one panel, the frontier and the starting model beside them.
    ((own, labels),) = panels("two-stage")
    assert own == ["two-stage", "amft", "amft-other", "luffy"] and labels == ["mu=0.2", "mu=0.8", "start"]
    # Two a panel: the reference drawn grey wherever the panel is not its own; amft's two forms together.
    assert panels("two-stage", size=2) == [
        (["two-stage"], ["mu=0.2", "mu=0.8", "start"]),
        (["amft", "amft-other"], ["mu=0.2", "mu=0.8", "start", "two-stage"]),
        (["luffy"], ["mu=0.2", "mu=0.8", "start", "two-stage"])]
    # A reference that is a frontier point is drawn once, on the frontier.
    assert [labels for _, labels in panels("mu-0.2", size=2)][0] == ["mu=0.2", "mu=0.8", "start"]


def test_frontier_panels_keep_a_methods_variants_together_up_to_the_panel_size():
    methods = {"a1": "a", "b": "b", "a2": "a", "c1": "c", "c2": "c", "c3": "c", "d": None}
    # a2 joins a1, in the order of each method's first variant.
    assert frontier_panels(list(methods), methods, size=3) == [["a1", "a2", "b"], ["c1", "c2", "c3"], ["d"]]
    assert frontier_panels(list(methods), methods, size=4) == [["a1", "a2", "b"], ["c1", "c2", "c3", "d"]]
    # A method with more variants than a panel holds fills panels of its own in order.
    assert frontier_panels(["b", "c1", "c2", "c3"], methods, size=2) == [["b"], ["c1", "c2"], ["c3"]]
    # Variants without a known method are each a method of their own: they fill a panel one by one.
    assert frontier_panels(["b", "x", "y", "z"], {"b": "b"}, size=3) == [["b", "x", "y"], ["z"]]


@pytest.mark.parametrize("changes, message", [
    ({"frontier": {"x": "id", "y": "ood-rule"}}, r"frontier: 'ood-rule' not evaluated; the evaluated splits are id, "),
    ({"frontier": {"x": "id"}}, r"frontier: expected \{x: SPLIT, y: SPLIT\}"),
    ({"frontier": {"x": "id", "y": "id"}}, r"frontier: x and y are both 'id'"),
    ({"variants": {"mu-0.2": VARIANTS["mu-0.2"], "amft": VARIANTS["amft"]}},
     r"frontier: needs at least 2 variants with a constant mu \(fixed-mu, sft, grpo\), the study has 1"),
    ({"select_on": ["val-id", "val-ood"]}, r"select_on: 'val-ood' not evaluated"),
    ({"select_on": "val-id"}, r"select_on: expected a list of splits"),
])
def test_the_frontier_and_the_selection_must_name_evaluated_splits(tmp_path, changes, message):
    path = tmp_path / "study.yaml"
    study = {"output_dir": str(tmp_path / "study"), "seeds": [0], "frontier": {"x": "id", "y": "rl-only"},
             "training": TRAINING, "variants": VARIANTS, **changes}
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(OptionsError, match=rf"{path}: {message}"):
        load_study(str(path))
