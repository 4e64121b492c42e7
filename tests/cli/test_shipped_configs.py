"""Every study file in configs/ loads, and each of its runs resolves to valid `amft train` arguments."""

import os
import pathlib
import shutil
import subprocess

import pytest

from amft.cli.compare import Comparison, load_study
from amft.cli.options import load_dataclass, read_mapping
from amft.navigation.study import NavStudyConfig, study_runs

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("path", sorted(p for p in [*CONFIGS.glob("*.yaml"), *CONFIGS.glob("pilots/*.yaml")]
                                        if "variants" in read_mapping(str(p))), ids=lambda p: p.name)
def test_comparison_studies_resolve_every_run(path):
    study = load_study(str(path))
    # a pilot, or a tuning that chooses settings on validation splits, may try one seed
    assert len(study.seeds) >= (1 if path.parent.name == "pilots" or study.select_on else 3)
    runs = Comparison(study).plan()  # resolves every run's options
    assert len(runs) == len(study.seeds) * len(study.variants)
    for run in runs[: len(study.variants)]:
        options, task_config, args = run.arguments()
        assert args.max_steps == study.training["max_steps"] and options.task == study.training["task"]
        assert run.needs is None or run.needs.arguments()[2].method == "sft"
    assert study.target_split in study.splits


def test_the_navigation_memory_study_loads():
    path = str(CONFIGS / "mem4nav-study.yaml")
    config = load_dataclass(NavStudyConfig, read_mapping(path), path)
    assert len(config.seeds) >= 3 and config.reference in config.agents
    assert len(study_runs(config)) == len(config.seeds) * len(config.agents)


@pytest.mark.parametrize("path", sorted(p for p in CONFIGS.glob("*.yaml") if "records_dir" in read_mapping(str(p))),
                         ids=lambda p: p.name)
def test_a_study_files_run_records_are_not_ignored_by_git(path):
    """The records are there to be committed: an ignore rule for run output must not cover them."""
    root = CONFIGS.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    study = load_study(str(path))
    run = Comparison(study).plan()[0]
    record = os.path.join(study.records_dir, os.path.relpath(run.result_path, study.output_dir))
    checked = subprocess.run(["git", "check-ignore", "--no-index", "-q", record], cwd=root)
    assert checked.returncode == 1, f"{record} is ignored by git"
