"""The one loader of options: YAML configs and flags, every key checked, each option with its owner."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from amft.cli import DEMO_PRESETS, main, preset_path
from amft.cli.options import OptionsError, read_command_line, resolve


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_flags_override_the_file_and_task_options_reach_the_task_config(tmp_path):
    path = write(tmp_path, "task: general-points\ntemplate: compact\nmax_steps: 5\nlearning_rate: 1e-3\n"
                           "training_rules: [[10, 10, 10]]\nuse_cpu: true\n")
    run, task_config, args = read_command_line(["--config", path, "--max_steps", "7", "--ood_rule", "13,13,13"],
                                               "amft train", "").build()
    assert args.max_steps == 7 and args.learning_rate == 1e-3  # a YAML string '1e-3' converted as a flag would be
    assert task_config.template == "compact" and task_config.ood_rule == (13, 13, 13)
    assert task_config.training_rules == ((10, 10, 10),)  # a YAML list, as before rules were text flags
    assert run.task == "general-points"


def test_an_unknown_key_in_a_config_names_the_key_and_the_file(tmp_path):
    path = write(tmp_path, "template: compact\nmax_step: 5\n")
    with pytest.raises(OptionsError, match=rf"{path}: unknown key 'max_step' \(did you mean 'max_steps'\?\)"):
        read_command_line(["--config", path], "amft train", "")


def test_another_tasks_key_says_which_task_owns_it(tmp_path):
    path = write(tmp_path, "task: virl\ntemplate: compact\n")
    with pytest.raises(OptionsError, match=rf"{path}: 'template' is an option of task general-points, and the task "
                                           "here is virl"):
        read_command_line(["--config", path], "amft train", "")
    with pytest.raises(OptionsError, match="the command line: 'prompt_form' is an option of task virl"):
        read_command_line(["--prompt_form", "compact"], "amft train", "")


def test_the_task_flag_chooses_the_options_parsed_over_the_files_task(tmp_path):
    path = write(tmp_path, "task: general-points\nmax_steps: 5\nuse_cpu: true\n")
    run, task_config, _ = read_command_line(["--config", path, "--task", "virl", "--prompt_form", "original"],
                                            "amft train", "").build()
    assert run.task == "virl" and task_config.prompt_form == "original"


def test_bad_values_name_where_they_come_from(tmp_path):
    with pytest.raises(OptionsError, match="runs/x: template must be one of"):
        resolve({"template": "fancy", "use_cpu": True}, "runs/x")
    with pytest.raises(OptionsError, match="runs/x: argument --max_steps/--max-steps: invalid int value: 'many'"):
        resolve({"max_steps": "many", "use_cpu": True}, "runs/x")


def test_a_dry_run_from_yaml_prints_the_plan_and_creates_no_run_folder(tmp_path):
    run_dir = tmp_path / "run"
    path = write(tmp_path, f"template: compact\noutput_dir: {run_dir}\ndry_run: true\nmax_steps: 9\n"
                           "time_budget_minutes: 3\n")
    result = subprocess.run([sys.executable, "-m", "amft", "train", "--config", path, "--learning_rate", "0.25"],
                            capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"})
    assert "resolved plan (dry run, nothing loaded)" in result.stdout
    assert "9 optimizer steps or 3 minutes, whichever ends first, learning rate 0.25" in result.stdout
    assert "general-points (template=compact)" in result.stdout
    assert not run_dir.exists()


def test_the_command_reports_option_errors_without_a_traceback(tmp_path, capsys):
    path = write(tmp_path, "seedz: 3\n")
    assert main(["train", "--config", path]) == 2
    assert capsys.readouterr().err.strip() == f"amft train: error: {path}: unknown key 'seedz' (did you mean 'seed'?)"
    assert main(["demo", "--config", path]) == 2
    assert "a demo runs its preset" in capsys.readouterr().err


def test_eval_refuses_training_options_and_does_not_list_them(tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path), "--time_budget_minutes", "3"]) == 2
    assert "time_budget_minutes: options of training, not of amft eval" in capsys.readouterr().err
    # not sent to --progress_eval_steps, which is a training option too
    assert main(["eval", "--model", str(tmp_path), "--progress_eval_episodes", "8"]) == 2
    assert "progress_eval_episodes: options of training, not of amft eval" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    listed = capsys.readouterr().out
    assert "--eval_attempts" in listed and "--model " in listed
    assert "--time_budget_minutes" not in listed and "--model_name_or_path" not in listed and "--lora_r" not in listed


def test_an_option_that_would_not_act_is_refused_naming_what_it_needs(tmp_path, capsys):
    from amft.cli.arguments import RunArguments

    with pytest.raises(ValueError, match="lora_r sets the LoRA adapters, which only --use_peft true trains"):
        RunArguments(lora_r=8)
    RunArguments(lora_r=8, use_peft=True)
    with pytest.raises(ValueError, match="num_train_prompts counts generated rows, and prompt_file gives them"):
        RunArguments(prompt_file="prompts.jsonl", num_train_prompts=10)
    with pytest.raises(ValueError, match="give one of them"):
        RunArguments(benchmarks="aime24", eval_splits="id")
    with pytest.raises(ValueError, match="skip_invalid_rows applies to rows read from prompt_file, demo_file or "
                                         "meta_file, and none is given"):
        RunArguments(skip_invalid_rows=True)
    RunArguments(skip_invalid_rows=True, demo_file="demos.jsonl")
    with pytest.raises(ValueError, match="progress_eval_episodes sizes the quick evaluation, which only --progress_eval_steps"):
        RunArguments(progress_eval_episodes=8)
    RunArguments(progress_eval_episodes=8, progress_eval_steps=10)
    with pytest.raises(ValueError, match="eval_before_limit sizes the evaluation before training, which --eval_before false"):
        RunArguments(eval_before=False, eval_before_limit=8)
    with pytest.raises(OptionsError, match="completion_format='steps' shapes the compact template's completions"):
        resolve({"completion_format": "steps", "use_cpu": True}, "runs/x")
    assert main(["train", "--use_vllm_eval", "true", "--dry-run", "true", "--use_cpu", "true"]) == 2
    assert "evaluate the run folder with vLLM by `amft eval --use_vllm_eval true`" in capsys.readouterr().err
    # the validation prompts feed only the meta term
    with pytest.raises(OptionsError, match="runs/x: num_meta_prompts gives validation prompts for the meta term, "
                       "which a run of method grpo does not have"):
        resolve({"method": "grpo", "num_meta_prompts": 8, "use_cpu": True}, "runs/x")
    with pytest.raises(OptionsError, match="meta_file .* method amft with use_meta_term false does not have"):
        resolve({"meta_file": "validation.jsonl", "use_meta_term": False, "use_cpu": True}, "runs/x")
    resolve({"method": "amft", "num_meta_prompts": 8, "use_cpu": True}, "runs/x")


def test_a_demo_presets_setting_that_the_flags_switch_off_returns_to_its_default_but_the_users_own_is_refused(tmp_path):
    preset = preset_path("demo-virl-vl.yaml")  # quick evaluations of 16 episodes, 16 before training
    demo = read_command_line([], "amft demo", "", config=preset).build()[0]
    assert (demo.progress_eval_episodes, demo.eval_before_limit) == (16, 16)
    switched_off = read_command_line(["--progress_eval_steps", "0", "--eval_before", "false"], "amft demo", "",
                                     config=preset).build()[0]
    assert (switched_off.progress_eval_episodes, switched_off.eval_before_limit) == (64, 64)  # the declared defaults
    with pytest.raises(OptionsError, match="progress_eval_episodes sizes the quick evaluation"):
        read_command_line(["--progress_eval_steps", "0", "--progress_eval_episodes", "8"], "amft demo", "",
                          config=preset).build()
    # Another method on the demo: the preset's AMFT controller settings are not the user's.
    gp_preset = preset_path("demo-general-points.yaml")
    engine = read_command_line(["--method", "sft"], "amft demo", "", config=gp_preset).build()[-1]
    assert (engine.method, engine.amft_warmup_steps, engine.meta_lr) == ("sft", 50, 1e-4)  # the preset's: 450, 0.02
    with pytest.raises(OptionsError, match="mu_init=0.5 is a setting of amft"):
        read_command_line(["--method", "sft", "--mu_init", "0.5"], "amft demo", "", config=gp_preset).build()
    own_file = tmp_path / "run.yaml"
    own_file.write_text(Path(preset).read_text() + "eval_before: false\n")
    with pytest.raises(OptionsError, match="eval_before_limit sizes the evaluation before training"):
        read_command_line(["--config", str(own_file)], "amft train", "").build()


@pytest.mark.parametrize("preset", sorted(DEMO_PRESETS.values()))
def test_a_demo_preset_sets_no_option_that_it_switches_off_itself(preset):
    # `build` lets a preset's setting that the user's flags switch off return to its default; one that
    # the preset itself switches off would be dropped as quietly, so none may.
    line = read_command_line([], "amft demo", "", config=preset_path(preset))
    assert line.preset_settings_switched_off() == []
