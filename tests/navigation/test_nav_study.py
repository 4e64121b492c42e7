"""The navigation-memory study: benchmark subsets, statistics, and a miniature end-to-end run."""

import dataclasses
import io
import json
import sys

import pytest
import yaml
from rich.console import Console

from amft.cli import main
from amft.navigation.benchmark import build_benchmark
from amft.navigation.study import NavStudyConfig, bootstrap_ci, paired_tests, run_nav_study


def quiet() -> Console:
    return Console(file=io.StringIO())


def test_benchmark_subsets_hold_what_their_names_say():
    benchmark = build_benchmark(0, "test", city_size=8, per_subset=4)
    assert {name: len(e) for name, e in benchmark.episodes.items()} == {"plain": 4, "counting": 4, "loop": 4, "long": 4}
    assert all("counting" in e.subsets for e in benchmark.episodes["counting"])
    assert all(e.path[0] == e.path[-1] for e in benchmark.episodes["loop"])
    assert all(len(e.actions) > 40 for e in benchmark.episodes["long"])
    assert all(not e.subsets for e in benchmark.episodes["plain"])
    unseen = build_benchmark(0, "unseen", city_size=8, per_subset=4)
    assert unseen.city.positions != benchmark.city.positions or unseen.city.edges != benchmark.city.edges


def test_paired_tests_and_bootstrap_on_hand_made_episodes():
    better = [{"B_TC": 100.0, "B_nDTW": 90.0}] * 8 + [{"B_TC": 0.0, "B_nDTW": 10.0}] * 2
    worse = [{"B_TC": 0.0, "B_nDTW": 50.0}] * 8 + [{"B_TC": 0.0, "B_nDTW": 10.0}] * 2
    result = paired_tests(better, worse)
    assert (result["TC_wins"], result["TC_losses"]) == (8, 0)
    assert result["mcnemar_p"] == pytest.approx(2 * 0.5**8)  # exact two-sided binomial on 8 discordant pairs
    assert result["wilcoxon_ndtw_p"] < 0.01
    assert paired_tests(worse, worse)["mcnemar_p"] == 1.0
    mean, low, high = bootstrap_ci([0.0, 100.0] * 20)
    assert mean == 50.0 and 30 < low < 50 < high < 70
    assert bootstrap_ci([100.0] * 5) == (100.0, 100.0, 100.0)


def test_a_miniature_study_writes_its_tables(tmp_path):
    config = NavStudyConfig(output_dir=str(tmp_path), seeds=[0], city_size=8, per_subset=3, train_episodes=10,
                            validation_episodes=4, reference="none",
                            agents={"full": {"memory": "full"}, "none": {"memory": "none"},
                                    "learned": {"agent": "modular", "memory": "no-long-term", "steps": 40, "warmup_steps": 20}})
    summary = run_nav_study(config, console=quiet())
    assert [row["step"] for row in summary["training"]["learned/seed0"]] == [20, 40]
    for name in ("results.md", "results.csv", "results.json", "episodes.csv", "tc_by_subset.png", "modular_training.png"):
        assert (tmp_path / name).exists()
    assert json.loads((tmp_path / "results.json").read_text())["per_episode"]["conventions"]["A"].startswith("A")
    full, none = summary["splits"]["test"]["full"], summary["splits"]["test"]["none"]
    assert full["loop"]["B_TC"][0] == 100.0 and none["loop"]["B_TC"][0] == 0.0
    rows = {row["variant"]: row for row in summary["rows"]}  # the harness's table: per seed, then over seeds
    assert rows["full"]["test/TC loop"] == {"mean": 100.0, "ci95": None} and rows["none"]["test/TC loop"]["mean"] == 0.0
    with pytest.raises(ValueError, match="reference"):
        NavStudyConfig(agents={"full": {}}, reference="none")
    with pytest.raises(ValueError, match="unknown options"):
        NavStudyConfig(agents={"none": {"memory": "none", "steps": 5}})
    with pytest.raises(ValueError, match="train_episodes: episodes a modular agent learns from, and no agent is modular"):
        NavStudyConfig(agents={"none": {"memory": "none"}}, train_episodes=10)


def test_memory_options_reach_the_memory_and_unknown_ones_are_refused(tmp_path, monkeypatch):
    pytest.importorskip("hnswlib")
    config = NavStudyConfig(output_dir=str(tmp_path), seeds=[0], city_size=8, per_subset=3, reference="exact",
                            agents={"exact": {"memory": "no-short-term"},  # loops then rest on the long-term reads
                                    "hnsw": {"memory": "no-short-term", "memory_options": {"long_term_index": "hnsw"}}})
    summary = run_nav_study(config, console=quiet())
    exact, hnsw = summary["splits"]["test"]["exact"], summary["splits"]["test"]["hnsw"]
    subsets = ("plain", "counting", "loop", "long")
    assert [hnsw[subset]["B_TC"][0] for subset in subsets] == [exact[subset]["B_TC"][0] for subset in subsets]
    monkeypatch.setitem(sys.modules, "hnswlib", None)  # the "hnsw" agent really asks for the HNSW index
    with pytest.raises(ImportError, match="hnsw"):
        run_nav_study(dataclasses.replace(config, output_dir=str(tmp_path / "again")), console=quiet())
    with pytest.raises(ValueError, match=r"memory_options.long_term_indx"):
        NavStudyConfig(agents={"none": {"memory": "none", "memory_options": {"long_term_indx": "hnsw"}}})


def write_study(tmp_path, **changes):
    study = {"output_dir": str(tmp_path / "study"), "seeds": [0, 1], "city_size": 8, "per_subset": 2,
             "reference": "none", "agents": {"full": {"memory": "full"}, "none": {"memory": "none"}}, **changes}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def test_the_study_harness_skips_finished_runs_and_reports_over_seeds(tmp_path, capsys):
    path = write_study(tmp_path)
    assert main(["nav-study", "--config", str(path)]) == 0
    runs = tmp_path / "study" / "runs"
    assert sorted(p.parent.name + "/" + p.name for p in runs.glob("*/seed*")) == [
        "full/seed0", "full/seed1", "none/seed0", "none/seed1"]
    stamp = (runs / "full" / "seed0" / "result.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["nav-study", "--config", str(path), "--seeds", "0,1,2"]) == 0
    out = capsys.readouterr().out
    assert out.count("finished earlier, skipped") == 4 and "[5/6] full · seed 2" in out
    assert (runs / "full" / "seed0" / "result.json").stat().st_mtime_ns == stamp
    results = json.loads((tmp_path / "study" / "results.json").read_text())
    full = next(row for row in results["variants"] if row["variant"] == "full")
    assert full["seeds"] == [0, 1, 2] and full["test/TC all"]["ci95"] is not None
    assert "| full | 3 |" in (tmp_path / "study" / "results.md").read_text()
    capsys.readouterr()
    assert main(["nav-study", "--config", str(path), "--variants", "full", "--report_only"]) == 0
    assert "leaves out the reference agent none: it runs too" in capsys.readouterr().out


def test_unknown_keys_of_a_navigation_study_name_the_key_the_file_and_the_agent(tmp_path, capsys):
    path = write_study(tmp_path, per_subsets=3)
    assert main(["nav-study", "--config", str(path)]) == 2
    assert f"{path}: unknown key 'per_subsets' (did you mean 'per_subset'?)" in capsys.readouterr().err
    path = write_study(tmp_path, agents={"none": {"memory": "none", "stepz": 5}})
    assert main(["nav-study", "--config", str(path)]) == 2
    assert f"{path}: agent none: unknown options ['stepz']" in capsys.readouterr().err
