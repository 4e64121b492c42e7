"""GP-VL from the command line: its options, the demo preset, the refusal of a model that cannot read its prompts,
and a miniature run whose reports carry card recognition accuracy (see docs/design.md, 'The image variant
(GP-VL)')."""

import json
import subprocess
import sys

import pytest
import yaml

from amft.cli import main, preset_path
from amft.cli.options import OptionsError, read_command_line, read_mapping
from amft.tasks import get_task, task_config_class
from amft.tasks.general_points import GeneralPointsVisualConfig

TINY_VL_RUN = [
    "--model_name_or_path", "tiny-test-vl", "--template", "compact", "--max_steps", "3", "--amft_warmup_steps", "1",
    "--entropy_calibration_steps", "1", "--meta_period", "2", "--per_device_train_batch_size", "8",
    "--num_generations", "4", "--sft_batch_size", "4", "--meta_batch_size", "2", "--max_completion_length", "24",
    "--num_train_prompts", "32", "--num_demonstrations", "32", "--num_meta_prompts", "4", "--eval_limit", "3",
    "--eval_before_limit", "2", "--eval_max_new_tokens", "16", "--progress_eval_steps", "2",
    "--progress_eval_episodes", "2", "--save_steps", "3", "--threads", "1", "--disable_tqdm", "true",
    "--report_to", "none", "--use_cpu", "true",
]


def test_gp_vl_options_are_its_configs_fields_and_help_lists_them():
    assert task_config_class("gp-vl") is GeneralPointsVisualConfig
    result = subprocess.run([sys.executable, "-m", "amft", "train", "--task", "gp-vl", "--help"], capture_output=True,
                            text=True, check=True)
    text = " ".join(result.stdout.split())  # argparse wraps lines at the terminal width
    assert "gp-vl task options:" in text and "general-points task options:" not in text
    for option, words in (("--image_size", "Canvas of the card image, 'WIDTHxHEIGHT'"),
                          ("--completion_format", "Completion of the compact template"),
                          ("--revision_keep_last", "keep only the last K failed attempts")):
        assert f"{option} " in text and words in text
    assert "NAME one of citynav, general-points, math, virl" in text

    run, task_config, _ = read_command_line(["--task", "gp-vl", "--template", "compact", "--image_size", "256x128",
                                             "--use_cpu", "true"], "amft train", "").build()
    assert task_config.image_size == (256, 128) and get_task(run.task, config=task_config).name == "gp-vl"


def test_an_image_option_given_to_the_text_task_names_its_task(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"task": "general-points", "image_size": "128x64"}))
    with pytest.raises(OptionsError,
                       match="'image_size' is an option of task gp-vl, and the task here is general-points"):
        read_command_line(["--config", str(config)], "amft train", "")


def test_the_demo_preset_trains_the_tiny_vlm_on_compact_prompts_that_state_the_cards():
    assert read_mapping(preset_path("demo-gp-vl.yaml"))["task"] == "gp-vl"
    run, task_config, args = read_command_line([], "amft demo", "", config=preset_path("demo-gp-vl.yaml")).build()
    task = get_task(run.task, config=task_config)
    assert (task.name, run.model_name_or_path, args.method, args.use_cpu) == ("gp-vl", "tiny-gp-vl", "amft", True)
    assert task_config.image_size == (128, 64) and task_config.completion_format == "plain"
    longest = max(len(row["completion"][0]["content"]) for row in task.demonstrations(500, seed=0))
    assert longest < args.max_completion_length <= run.eval_max_new_tokens  # one character is one token


@pytest.mark.parametrize(
    ("task", "model", "message"),
    [("gp-vl", "tiny-test", "task gp-vl shows its prompts as images, and the model 'tiny-test' is a text model"),
     ("general-points", "tiny-test-vl", "the model 'tiny-test-vl' is a vision-language model, and task "
                                        "general-points has text prompts")],
)
def test_a_model_that_cannot_read_the_tasks_prompts_is_refused_before_any_work(tmp_path, capsys, task, model, message):
    output_dir = tmp_path / "run"
    assert main(["train", "--task", task, "--model_name_or_path", model, "--use_cpu", "true",
                 "--output_dir", str(output_dir)]) == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert not any(output_dir.iterdir())  # nothing generated, loaded or written
    assert main(["eval", "--task", task, "--model", model]) == 2
    assert message in " ".join(capsys.readouterr().err.split())


@pytest.mark.slow
def test_miniature_gp_vl_run_reports_recognition_accuracy_and_eval_reads_the_trained_vlm(tmp_path):
    run_dir = tmp_path / "gp-vl"
    subprocess.run([sys.executable, "-m", "amft", "train", "--task", "gp-vl", "--output_dir", str(run_dir),
                    *TINY_VL_RUN], check=True, capture_output=True, text=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    splits = {"id", "ood-rule", "ood-visual"}
    assert summary["run"]["steps"] == 3 and set(summary["success_rate"]) == splits
    assert set(summary["recognition_accuracy"]) == splits
    assert all(0.0 <= summary["splits"][s]["recognition_accuracy"] <= 1.0 for s in splits)
    assert "recognition accuracy" in (run_dir / "summary.md").read_text()
    episodes = json.loads((run_dir / "eval_results.json").read_text())
    assert [len(episodes[s]) for s in sorted(splits)] == [3, 3, 3]
    assert all(set(e["metrics"]) == {"recognition_accuracy"} for s in splits for e in episodes[s])
    # revision: an untrained model fails, so each episode spends the 5 tries of the GP-L protocol
    assert all(e["attempts"] == 5 for e in episodes["id"])
    assert (run_dir / "progress_eval.jsonl").read_text().count("\n") == 1

    out_file = tmp_path / "eval.json"
    subprocess.run([sys.executable, "-m", "amft", "eval", "--task", "gp-vl", "--template", "compact", "--model",
                    str(run_dir), "--eval_splits", "ood-visual", "--eval_limit", "2", "--eval_attempts", "1",
                    "--eval_max_new_tokens", "8", "--output_file", str(out_file)], check=True, capture_output=True,
                   text=True)
    result = json.loads(out_file.read_text())
    assert result["ood-visual"]["episodes"] == 2 and "recognition_accuracy" in result["ood-visual"]
