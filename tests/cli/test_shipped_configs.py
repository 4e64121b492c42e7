"""Every study file in configs/ loads, and each of its runs resolves to valid `amft train` arguments."""

import pathlib

import pytest
import yaml

from amft.cli.compare import load_study, run_arguments
from amft.navigation.study import NavStudyConfig

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("compare-*.yaml")), ids=lambda p: p.name)
def test_comparison_studies_resolve_every_run(path, tmp_path):
    study = load_study(str(path))
    assert len(study.seeds) >= 3
    for variant, overrides in study.variants.items():
        run, args = run_arguments({**study.training, **overrides}, seed=0, output_dir=str(tmp_path / variant), model=None)
        assert args.max_steps == study.training["max_steps"] and run.task == study.training["task"]
    if study.base_sft_steps:
        run_arguments({**study.training, **study.base, "method": "sft"}, seed=0, output_dir=str(tmp_path), model=None)
    assert study.target_split in study.splits


def test_the_navigation_memory_study_loads():
    values = yaml.safe_load((CONFIGS / "mem4nav-study.yaml").read_text())
    config = NavStudyConfig(**values)
    assert len(config.seeds) >= 3 and config.reference in config.agents
