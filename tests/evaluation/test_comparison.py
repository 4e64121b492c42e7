"""Aggregation of a comparison on the study harness: confidence intervals, steps to a target, tables."""

import csv
import json

import pytest

from amft.evaluation.comparison import RunRecord, markdown_table, steps_to_reach, summarize, write_results
from amft.evaluation.harness import mean_ci, mean_curve


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
    rows = summarize(records, ["amft", "sft-then-rl", "absent"], ["id", "rl-only"], target_split="rl-only",
                     target_success=0.6, reference_variant="sft-then-rl")
    assert [row["variant"] for row in rows] == ["amft", "sft-then-rl"]
    amft = rows[0]
    assert amft["rl-only"]["mean"] == pytest.approx(0.6) and amft["runs"] == 2
    assert amft["steps_to_target"] == {"target": 0.6, "reached": 1, "mean_steps": 40}
    # sft-then-rl's mean final quick success is (0.5 + 0.3) / 2 = 0.4: amft seed 0 reaches it at 20.
    assert amft["steps_to_reference"]["target"] == pytest.approx(0.4)
    assert amft["steps_to_reference"]["reached"] == 1 and amft["steps_to_reference"]["mean_steps"] == 20
    assert amft["minutes_per_run"] == pytest.approx(2.0) and amft["entropy_term_total"] == pytest.approx(-0.2)

    table = markdown_table(rows, ["id", "rl-only"], "rl-only", "sft-then-rl")
    assert "| amft | 2 | 90.0 ± 0.0 | 60.0 ± 127.1 | 40 (1/2) | 20 (1/2) | 0.50 | +0.010 | -0.200 | 2.0 |" in table
    write_results(str(tmp_path), rows, ["id", "rl-only"], target_split="rl-only", reference_variant="sft-then-rl",
                  settings={"seeds": [0, 1]})
    with open(tmp_path / "results.csv") as handle:
        lines = list(csv.DictReader(handle))
    assert [line["variant"] for line in lines] == ["amft", "sft-then-rl"]
    assert float(lines[0]["steps_to_target_mean_steps"]) == 40 and float(lines[0]["rl-only_ci95"]) == pytest.approx(1.271, abs=1e-3)
    assert json.loads((tmp_path / "results.json").read_text())["settings"] == {"seeds": [0, 1]}
    assert table in (tmp_path / "results.md").read_text()
