"""The image variants from the command line, GP-VL and V-IRL-VL side by side: their options, the demo presets and
their models, the refusal of a model that cannot read a task's prompts, and a miniature run of each evaluated on
every split (see docs/design.md, 'The image variant (GP-VL)' and 'V-IRL-VL')."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import yaml

from amft.cli import DEMO_PRESETS, main, preset_path
from amft.cli.options import OptionsError, read_command_line, read_mapping
from amft.cli.pipeline import check_model_fits_task
from amft.models import TINY_MODELS
from amft.tasks import get_task, task_config_class
from amft.tasks.general_points import GeneralPointsVisualConfig
from amft.tasks.virl.visual import VirlVisualConfig

#: a small synthetic city, so that generating and splitting its routes takes no time
SMALL_CITY = ["--synthetic_routes", "60", "--eval_routes", "3", "--validation_routes", "4"]
#: the settings of a miniature run both tasks share; each task adds its model and its own options
TINY_VL_RUN = [
    "--max_steps", "3", "--amft_warmup_steps", "1", "--entropy_calibration_steps", "1", "--meta_period", "2",
    "--per_device_train_batch_size", "8", "--num_generations", "4", "--sft_batch_size", "4", "--meta_batch_size", "2",
    "--max_completion_length", "24", "--num_train_prompts", "32", "--num_demonstrations", "32",
    "--num_meta_prompts", "4", "--eval_before_limit", "2", "--eval_max_new_tokens", "16", "--progress_eval_steps", "2",
    "--progress_eval_episodes", "2", "--save_steps", "3", "--threads", "1", "--disable_tqdm", "true",
    "--report_to", "none", "--use_cpu", "true",
]
GP_VL_SPLITS = ("id", "rl-only", "ood-rule", "ood-visual")
VIRL_VL_SPLITS = ("id", "ood-rule", "unseen-routes", "ood-visual")


@pytest.mark.parametrize(
    ("task", "config_class", "text_task", "options", "also_says", "build_args", "image_size"),
    [pytest.param("gp-vl", GeneralPointsVisualConfig, "general-points",
                  (("--image_size", "Canvas of the card image, 'WIDTHxHEIGHT'"),
                   ("--completion_format", "Completion of the compact template"),
                   ("--revision_keep_last", "keep only the last K failed attempts")),
                  "NAME one of citynav, general-points, math, virl",
                  ["--template", "compact", "--image_size", "256x128"], (256, 128), id="gp-vl"),
     pytest.param("virl-vl", VirlVisualConfig, "virl",
                  (("--image_size", "Canvas of the 2x2 street-view grid"),
                   ("--ood_visual_routes", "another city for the ood-visual split"),
                   ("--prompt_form", "action-space mode token"),
                   ("--eval_routes", "Routes per evaluation split")),
                  "virl-vl: those and ood-visual",  # the run's --eval_splits names its default splits
                  ["--image_size", "256x256"], (256, 256), id="virl-vl")],
)
def test_a_visual_tasks_options_are_its_configs_fields_and_help_lists_them(task, config_class, text_task, options,
                                                                           also_says, build_args, image_size):
    assert task_config_class(task) is config_class
    # argparse wraps lines at the terminal width, breaking words at hyphens: give it one wide line
    result = subprocess.run([sys.executable, "-m", "amft", "train", "--task", task, "--help"], capture_output=True,
                            text=True, check=True, env={**os.environ, "COLUMNS": "100000"})
    text = " ".join(result.stdout.split())
    assert f"{task} task options:" in text and f"{text_task} task options:" not in text
    for option, words in options:
        assert f"{option} " in text and words in text
    assert also_says in text

    run, task_config, _ = read_command_line(["--task", task, *build_args, "--use_cpu", "true"], "amft train",
                                            "").build()
    assert task_config.image_size == image_size and get_task(run.task, config=task_config).name == task


@pytest.mark.parametrize(
    ("text_task", "option", "value", "visual_task"),
    [("general-points", "image_size", "128x64", "gp-vl"), ("virl", "ood_visual_routes", "city.json", "virl-vl")],
)
def test_an_image_option_given_to_the_text_task_names_its_task(tmp_path, text_task, option, value, visual_task):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"task": text_task, option: value}))
    with pytest.raises(OptionsError,
                       match=f"'{option}' is an option of task {visual_task}, and the task here is {text_task}"):
        read_command_line(["--config", str(config)], "amft train", "")


@pytest.mark.parametrize(
    ("task", "model", "own_settings", "image_size", "image_tokens", "splits"),
    [pytest.param("gp-vl", "tiny-gp-vl", {"completion_format": "plain"}, (128, 64), 32, GP_VL_SPLITS, id="gp-vl"),
     pytest.param("virl-vl", "tiny-virl-vl", {"prompt_form": "compact"}, (128, 128), 64, VIRL_VL_SPLITS,
                  id="virl-vl")],
)
def test_the_demo_preset_trains_the_tiny_vlm_that_reads_the_tasks_canvas(task, model, own_settings, image_size,
                                                                         image_tokens, splits):
    assert DEMO_PRESETS[task] == f"demo-{task}.yaml"
    assert read_mapping(preset_path(DEMO_PRESETS[task]))["task"] == task
    run, task_config, args = read_command_line([], "amft demo", "", config=preset_path(DEMO_PRESETS[task])).build()
    visual_task = get_task(run.task, config=task_config)
    assert (visual_task.name, run.model_name_or_path, args.method, args.use_cpu) == (task, model, "amft", True)
    assert {name: getattr(task_config, name) for name in own_settings} == own_settings
    vision = TINY_MODELS[run.model_name_or_path].vision
    assert vision.image_size == task_config.image_size == image_size and vision.num_image_tokens == image_tokens
    assert visual_task.default_splits == splits
    longest = max(len(row["completion"][0]["content"]) for row in visual_task.demonstrations(500, seed=0))
    assert longest < args.max_completion_length <= run.eval_max_new_tokens  # one character is one token


@pytest.mark.parametrize(
    ("task", "model", "message"),
    [("gp-vl", "tiny-test", "task gp-vl shows its prompts as images, and the model 'tiny-test' is a text model"),
     ("general-points", "tiny-test-vl", "the model 'tiny-test-vl' is a vision-language model, and task "
                                        "general-points has text prompts"),
     ("virl-vl", "tiny-test", "task virl-vl shows its prompts as images, and the model 'tiny-test' is a text model: "
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
    refusal = (r"the model 'tiny-gp-vl' reads 128x64 images, and task gp-vl draws 1200x1200 ones: give an "
               r"--image_size a tiny model reads \(128x128, 128x64\)")
    with pytest.raises(OptionsError, match=refusal):
        check_model_fits_task("tiny-gp-vl", get_task("gp-vl"))  # the original template's canvas
    check_model_fits_task("tiny-virl-vl", get_task("gp-vl", template="compact", image_size="128x128"))


@dataclass(frozen=True)
class MiniatureRun:
    """What one task's miniature run is given and what its reports must show."""

    task: str
    model: str
    #: the task's own options, given to train and to eval
    task_args: tuple[str, ...]
    #: train-only options beyond TINY_VL_RUN
    train_args: tuple[str, ...]
    #: eval-only options beyond the split, limit and token budget both evaluations share
    eval_args: tuple[str, ...]
    splits: tuple[str, ...]
    #: the per-split metric the task adds to the common ones, in [0, 1]
    metric: str
    #: summary.json entries keyed by split
    per_split_entries: tuple[str, ...]
    summary_md_mentions: tuple[str, ...]
    #: the splits whose episodes number --eval_limit (or the routes of a small city)
    full_splits: tuple[str, ...]
    #: each episode's metrics
    episode_metrics: frozenset[str]
    #: model calls an episode of an untrained model takes before it ends in failure
    failing_attempts: int


MINIATURE_RUNS = [
    pytest.param(MiniatureRun(
        task="gp-vl", model="tiny-test-vl", task_args=("--template", "compact"), train_args=("--eval_limit", "3"),
        eval_args=("--eval_attempts", "1"), splits=GP_VL_SPLITS, metric="recognition_accuracy",
        per_split_entries=("success_rate", "initial_success_rate", "recognition_accuracy"),
        summary_md_mentions=("recognition accuracy", "| ood-visual |"), full_splits=GP_VL_SPLITS,
        episode_metrics=frozenset({"recognition_accuracy"}),
        failing_attempts=5,  # revision: the 5 tries of the GP-L protocol
    ), id="gp-vl"),
    pytest.param(MiniatureRun(
        task="virl-vl", model="tiny-test-virl-vl", task_args=tuple(SMALL_CITY), train_args=("--eval_temperature", "0"),
        eval_args=(), splits=VIRL_VL_SPLITS, metric="call_accuracy",
        per_split_entries=("success_rate", "initial_success_rate"), summary_md_mentions=("| ood-visual |",),
        full_splits=("id", "unseen-routes", "ood-visual"), episode_metrics=frozenset(),
        failing_attempts=3,  # a model this young fails its first position: two tries, then the call the route ends at
    ), id="virl-vl"),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", MINIATURE_RUNS)
def test_miniature_run_walks_every_split_and_eval_reads_the_trained_vlm(tmp_path, case):
    run_dir = tmp_path / case.task
    subprocess.run([sys.executable, "-m", "amft", "train", "--task", case.task, "--output_dir", str(run_dir),
                    "--model_name_or_path", case.model, *case.task_args, *case.train_args, *TINY_VL_RUN], check=True,
                   capture_output=True, text=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run"]["steps"] == 3 and summary["run"]["model"] == case.model
    assert all(set(summary[entry]) == set(case.splits) for entry in case.per_split_entries)
    assert all(0.0 <= summary["splits"][s][case.metric] <= 1.0 for s in case.splits)
    summary_md = (run_dir / "summary.md").read_text()
    assert all(words in summary_md for words in case.summary_md_mentions)
    assert (run_dir / "training_dynamics.png").stat().st_size > 0
    episodes = json.loads((run_dir / "eval_results.json").read_text())
    assert [len(episodes[s]) for s in case.full_splits] == [3] * len(case.full_splits)
    assert all(set(e["metrics"]) == case.episode_metrics for s in case.splits for e in episodes[s])
    assert all(e["attempts"] == case.failing_attempts and not e["success"] for s in case.splits for e in episodes[s])
    progress = [json.loads(line) for line in (run_dir / "progress_eval.jsonl").read_text().splitlines()]
    assert [row["step"] for row in progress] == [2] and set(progress[0]) == {"step", *case.splits}

    out_file = tmp_path / "eval.json"
    subprocess.run([sys.executable, "-m", "amft", "eval", "--task", case.task, *case.task_args, *case.eval_args,
                    "--model", str(run_dir), "--eval_splits", "ood-visual", "--eval_limit", "2",
                    "--eval_max_new_tokens", "8", "--output_file", str(out_file)], check=True, capture_output=True,
                   text=True)
    result = json.loads(out_file.read_text())
    assert result["ood-visual"]["episodes"] == 2 and case.metric in result["ood-visual"]
