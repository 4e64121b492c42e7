"""scripts/gpu-check.sh and its Python part, on the CPU: the shell scripts parse, and a four-step run of
`scripts/gpu_check.py` classifies each step as the controller plans it and writes its report."""

import dataclasses
import json
import pathlib
import subprocess

import pytest

SCRIPTS = pathlib.Path(__file__).parents[1] / "scripts"


@pytest.mark.parametrize("script", ["gpu-check.sh", "gpu-wheels.sh"])
def test_shell_scripts_parse(script):
    subprocess.run(["bash", "-n", str(SCRIPTS / script)], check=True)


def test_cpu_run_reports_each_kind_of_step(tmp_path, load_script):
    gpu_check = load_script("gpu_check")
    # 2 warm-up steps, then main-phase steps t = 1, 2, 3: t = 2 (global step 4) is the meta step.
    profile = dataclasses.replace(
        gpu_check.PROFILES["cpu"], model_name="tiny-test", prompts_per_step=2, generations=2, sft_batch_size=2,
        max_completion_length=8, max_steps=5, warmup_steps=2, meta_period=2,
    )
    model_dir = str(tmp_path / "model")
    gpu_check.build(model_dir, profile)
    report = gpu_check.train(model_dir, profile, "cpu", "plain", str(tmp_path / "out"), str(tmp_path / "run"))

    assert [step["kind"] for step in report["steps"]] == ["sft", "sft", "mixed", "meta", "mixed"]
    assert report["meta_steps"] == [4]
    assert {kind: numbers["steps"] for kind, numbers in report["by_kind"].items()} == {"sft": 2, "mixed": 2, "meta": 1}
    assert report["mu"][:2] == [1.0, 1.0] and len(report["mu"]) == 5
    assert report["steps"][3]["meta_gradient"] is not None
    assert report["peak_memory_gib"] is None and report["fsdp2_shards"] is False
    written = json.loads((tmp_path / "out" / "gpu-check-plain.json").read_text())
    assert written["mu"] == report["mu"]
