"""V-IRL-VL from the command line: its options, the demo preset and its model, the refusal of a model that cannot
read its images, and a miniature run evaluated on whole routes (see docs/design.md, 'V-IRL-VL')."""

import json
import subprocess
import sys

import pytest
import yaml

from amft.cli import DEMO_PRESETS, main, preset_path
from amft.cli.options import OptionsError, read_command_line
from amft.cli.pipeline import check_model_fits_task
from amft.models import TINY_MODELS
from amft.tasks import get_task, task_config_class
from amft.tasks.virl.visual import VirlVisualConfig

#: a small synthetic city, so that generating and splitting its routes takes no time
SMALL_CITY = ["--synthetic_routes", "60", "--eval_routes", "3", "--validation_routes", "4"]
TINY_VL_RUN = [
    "--model_name_or_path", "tiny-test-virl-vl", *SMALL_CITY, "--max_steps", "3", "--amft_warmup_steps", "1",
    "--entropy_calibration_steps", "1", "--meta_period", "2", "--per_device_train_batch_size", "8",
    "--num_generations", "4", "--sft_batch_size", "4", "--meta_batch_size", "2", "--max_completion_length", "24",
    "--num_train_prompts", "32", "--num_demonstrations", "32", "--num_meta_prompts", "4", "--eval_before_limit", "2",
    "--eval_temperature", "0", "--eval_max_new_tokens", "16", "--progress_eval_steps", "2",
    "--progress_eval_episodes", "2", "--save_steps", "3", "--threads", "1", "--disable_tqdm", "true",
    "--report_to", "none", "--use_cpu", "true",
]
SPLITS = {"id", "ood-rule", "unseen-routes", "ood-visual"}


def test_virl_vl_options_are_its_configs_fields_and_help_lists_them():
    assert task_config_class("virl-vl") is VirlVisualConfig
    result = subprocess.run([sys.executable, "-m", "amft", "train", "--task", "virl-vl", "--help"], capture_output=True,
                            text=True, check=True)
    text = " ".join(result.stdout.split())  # argparse wraps lines at the terminal width
    assert "virl-vl task options:" in text and "virl task options:" not in text
    for option, words in (("--image_size", "Canvas of the 2x2 street-view grid"),
                          ("--ood_visual_routes", "another city for the ood-visual split"),
                          ("--prompt_form", "action-space mode token"),
                          ("--eval_routes", "Routes per evaluation split")):
        assert f"{option} " in text and words in text
    assert "virl-vl: those and ood-visual" in text  # the run's --eval_splits names its default splits

    run, task_config, _ = read_command_line(["--task", "virl-vl", "--image_size", "256x256", "--use_cpu", "true"],
                                            "amft train", "").build()
    assert task_config.image_size == (256, 256) and get_task(run.task, config=task_config).name == "virl-vl"


def test_an_image_option_given_to_the_text_task_names_its_task(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"task": "virl", "ood_visual_routes": "city.json"}))
    with pytest.raises(OptionsError,
                       match="'ood_visual_routes' is an option of task virl-vl, and the task here is virl"):
        read_command_line(["--config", str(config)], "amft train", "")


def test_the_demo_preset_trains_the_vlm_that_reads_the_tasks_canvas():
    assert DEMO_PRESETS["virl-vl"] == "demo-virl-vl.yaml"
    run, task_config, args = read_command_line([], "amft demo", "", config=preset_path("demo-virl-vl.yaml")).build()
    task = get_task(run.task, config=task_config)
    assert (task.name, run.model_name_or_path, args.method, args.use_cpu) == ("virl-vl", "tiny-virl-vl", "amft", True)
    vision = TINY_MODELS[run.model_name_or_path].vision
    assert vision.image_size == task_config.image_size == (128, 128) and vision.num_image_tokens == 64
    assert task.default_splits == ("id", "ood-rule", "unseen-routes", "ood-visual")
    longest = max(len(row["completion"][0]["content"]) for row in task.demonstrations(500, seed=0))
    assert longest < args.max_completion_length <= run.eval_max_new_tokens  # one character is one token


@pytest.mark.parametrize(
    ("task", "model", "message"),
    [("virl-vl", "tiny-test", "task virl-vl shows its prompts as images, and the model 'tiny-test' is a text model: "
                              "use a vision-language model (tiny-test-virl-vl, tiny-virl-vl, or"),
     ("virl-vl", "tiny-gp-vl", "the model 'tiny-gp-vl' reads 128x64 images, and task virl-vl draws 128x128 ones: use "
                               "tiny-test-virl-vl, tiny-virl-vl"),
     ("virl", "tiny-virl-vl", "the model 'tiny-virl-vl' is a vision-language model, and task virl has text prompts: "
                              "use a text model (tiny-gp, tiny-6m, or a Hugging Face causal LM), or the task's image "
                              "variant (gp-vl for general-points, virl-vl for virl)")],
)
def test_a_model_that_cannot_read_the_tasks_prompts_is_refused_before_any_work(tmp_path, capsys, task, model, message):
    output_dir = tmp_path / "run"
    assert main(["train", "--task", task, "--model_name_or_path", model, "--use_cpu", "true",
                 "--output_dir", str(output_dir)]) == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert not any(output_dir.iterdir())  # nothing generated, loaded or written
    assert main(["eval", "--task", task, "--model", model]) == 2
    assert message in " ".join(capsys.readouterr().err.split())


def test_a_tiny_vlm_is_refused_for_a_canvas_it_does_not_read():
    with pytest.raises(OptionsError, match=r"the model 'tiny-gp-vl' reads 128x64 images, and task gp-vl draws "
                                           r"1200x1200 ones: give an --image_size a tiny model reads \(128x128, 128x64\)"):
        check_model_fits_task("tiny-gp-vl", get_task("gp-vl"))  # the original template's canvas
    check_model_fits_task("tiny-virl-vl", get_task("gp-vl", template="compact", image_size="128x128"))


@pytest.mark.slow
def test_miniature_virl_vl_run_walks_every_split_and_eval_reads_the_trained_vlm(tmp_path):
    run_dir = tmp_path / "virl-vl"
    subprocess.run([sys.executable, "-m", "amft", "train", "--task", "virl-vl", "--output_dir", str(run_dir),
                    *TINY_VL_RUN], check=True, capture_output=True, text=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run"]["steps"] == 3 and summary["run"]["model"] == "tiny-test-virl-vl"
    assert set(summary["success_rate"]) == set(summary["initial_success_rate"]) == SPLITS
    assert all(0.0 <= summary["splits"][s]["call_accuracy"] <= 1.0 for s in SPLITS)
    assert "| ood-visual |" in (run_dir / "summary.md").read_text()
    assert (run_dir / "training_dynamics.png").stat().st_size > 0
    episodes = json.loads((run_dir / "eval_results.json").read_text())
    assert [len(episodes[s]) for s in ("id", "unseen-routes", "ood-visual")] == [3, 3, 3]
    # a model this young fails its first position: two tries, then the call the route ends at
    assert all(e["attempts"] == 3 and not e["success"] for s in SPLITS for e in episodes[s])
    progress = [json.loads(line) for line in (run_dir / "progress_eval.jsonl").read_text().splitlines()]
    assert [row["step"] for row in progress] == [2] and set(progress[0]) == {"step", *SPLITS}

    out_file = tmp_path / "eval.json"
    subprocess.run([sys.executable, "-m", "amft", "eval", "--task", "virl-vl", *SMALL_CITY, "--model", str(run_dir),
                    "--eval_splits", "ood-visual", "--eval_limit", "2", "--eval_max_new_tokens", "8",
                    "--output_file", str(out_file)], check=True, capture_output=True, text=True)
    result = json.loads(out_file.read_text())
    assert result["ood-visual"]["episodes"] == 2 and "call_accuracy" in result["ood-visual"]
