"""The `amft` command: help texts, the embedded demo preset, a miniature demo run and `amft eval`."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

from amft.cli import main, preset_path

TINY_RUN = [
    "--model_name_or_path", "tiny-test", "--max_steps", "6", "--amft_warmup_steps", "3",
    "--entropy_calibration_steps", "1", "--meta_period", "2", "--per_device_train_batch_size", "16",
    "--num_generations", "4", "--sft_batch_size", "8", "--meta_batch_size", "2", "--max_completion_length", "24",
    "--num_train_prompts", "200", "--num_demonstrations", "200", "--num_meta_prompts", "8",
    "--eval_limit", "4", "--eval_attempts", "2", "--eval_max_new_tokens", "24", "--progress_eval_steps", "3",
    "--progress_eval_episodes", "4", "--save_steps", "3", "--threads", "1", "--disable_tqdm", "true",
    "--report_to", "none",
]


def test_top_level_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "train", "eval"):
        assert command in out


@pytest.mark.parametrize("command", ["compare", "nav-study"])
def test_a_study_commands_help_explains_every_key_of_its_study_file(capsys, command):
    from dataclasses import fields

    from amft.cli.compare import Study
    from amft.navigation.study import NavStudyConfig

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for spec in fields(Study if command == "compare" else NavStudyConfig):
        if spec.init:
            assert f"{spec.name}: {' '.join(spec.metadata['help'].split())}" in text
    assert ("gac (mu in closed form" in text) == (command == "compare")


def test_unknown_command_is_an_error(capsys):
    assert main(["fly"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_train_help_explains_the_amft_options_and_the_chosen_tasks():
    result = subprocess.run([sys.executable, "-m", "amft", "train", "--help"], capture_output=True, text=True, check=True)
    text = " ".join(result.stdout.split())  # argparse wraps lines at the terminal width
    for option, words in (("--meta_period", "meta term every K"), ("--entropy_lr", "eta_H"),
                          ("--eval_attempts", "Answers (model calls) per evaluation episode"),
                          ("--eval_samples", "avg@k and pass@k"), ("--demo_fraction", "have demonstrations"),
                          ("--completion_format", "'formula' (the formula alone)")):
        assert option in text
        assert words in text
    assert "general-points task options:" in text and "--prompt_form" not in text
    assert "amft train --task NAME --help, NAME one of citynav, gp-vl, math, virl" in text

    result = subprocess.run([sys.executable, "-m", "amft", "train", "--task", "virl", "--help"], capture_output=True,
                            text=True, check=True)
    text = " ".join(result.stdout.split())
    assert "virl task options:" in text and "--prompt_form" in text and "--template" not in text


@pytest.mark.slow
def test_miniature_demo_writes_summary_plot_and_model_then_eval_reads_it(tmp_path):
    run_dir = tmp_path / "demo"
    subprocess.run([sys.executable, "-m", "amft", "demo", "--output-dir", str(run_dir), *TINY_RUN],
                   check=True, capture_output=True, text=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["success_rate"]) == {"id", "rl-only", "unseen-deals", "ood-rule"}
    assert summary["wall_time_seconds"] > 0
    assert summary["run"]["steps"] == 6
    assert (run_dir / "training_dynamics.png").stat().st_size > 10_000
    assert "| id |" in (run_dir / "summary.md").read_text()
    assert (run_dir / "progress_eval.jsonl").read_text().count("\n") == 2

    out_file = tmp_path / "eval.json"
    subprocess.run([sys.executable, "-m", "amft", "eval", "--model", str(run_dir), "--template", "compact",
                    "--eval_splits", "ood-rule", "--eval_limit", "3", "--eval_attempts", "1",
                    "--eval_max_new_tokens", "16", "--output_file", str(out_file)],
                   check=True, capture_output=True, text=True)
    result = json.loads(out_file.read_text())
    assert result["ood-rule"]["episodes"] == 3
    assert result["ood-rule"]["max_attempts"] == 1
    episodes = json.loads((tmp_path / "eval-episodes.json").read_text())["ood-rule"]
    assert [episode["index"] for episode in episodes] == [0, 1, 2]
    assert all(len(episode["completions"]) == len(episode["rewards"]) == episode["attempts"] == 1 for episode in episodes)
    assert sum(episode["success"] for episode in episodes) / 3 == result["ood-rule"]["success_rate"]


@pytest.mark.parametrize(
    ("preset", "task"),
    [("demo-general-points.yaml", "general-points"), ("demo-math.yaml", "math"), ("demo-virl.yaml", "virl")],
)
def test_demo_presets_are_packaged_and_parse(preset, task):
    from amft.cli.options import read_command_line
    from amft.tasks import get_task

    run, task_config, args = read_command_line([], "amft demo", "", config=preset_path(preset)).build()
    assert run.model_name_or_path == "tiny-gp"
    assert args.method == "amft"
    assert args.use_cpu
    assert get_task(run.task, config=task_config).name == task


@pytest.mark.slow
def test_miniature_virl_demo_reports_route_success_and_per_call_accuracy(tmp_path):
    run_dir = tmp_path / "virl"
    subprocess.run([sys.executable, "-m", "amft", "demo", "--task", "virl", "--output-dir", str(run_dir), *TINY_RUN,
                    "--synthetic_routes", "200", "--eval_routes", "10"], check=True, capture_output=True, text=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["success_rate"]) == {"id", "ood-rule", "unseen-routes"}
    assert all("call_accuracy" in split for split in summary["splits"].values())
    assert (run_dir / "progress_eval.jsonl").read_text().count("\n") == 2


@pytest.mark.slow
def test_miniature_math_demo_reports_accuracy_on_held_out_problems(tmp_path):
    run_dir = tmp_path / "math"
    budget = TINY_RUN.index("--eval_attempts")
    sampled = TINY_RUN[:budget] + TINY_RUN[budget + 2:]  # math is evaluated by samples unless given a budget
    subprocess.run([sys.executable, "-m", "amft", "demo", "--task", "math", "--output-dir", str(run_dir), *sampled],
                   check=True, capture_output=True, text=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["success_rate"]) == {"id", "longer"}
    assert summary["splits"]["id"]["problems"] == 4 and summary["splits"]["id"]["samples"] == 1
    assert "| id |" in (run_dir / "summary.md").read_text() and "| avg@k | pass@k | k |" in (run_dir / "summary.md").read_text()


def test_malformed_demonstration_file_stops_with_file_row_and_field(tmp_path):
    demo_file = tmp_path / "demos.jsonl"
    demo_file.write_text(
        '{"prompt": "[rule] J=10 Q=10 K=10 [cards] A 3 K 6 [target] 24 [answer]", "completion": " formula: (1+3)*6=24"}\n'
        '{"prompt": "[rule] J=10 Q=10 K=10 [cards] 2 3 4 6 [target] 24 [answer]", "completion": 17}\n'
    )
    result = subprocess.run([sys.executable, "-m", "amft", "train", "--demo_file", str(demo_file), "--output_dir",
                             str(tmp_path / "run"), "--use_cpu", "true", "--report_to", "none"],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert f"{demo_file}: row 2: field 'completion'" in result.stderr


@pytest.mark.parametrize(("task", "good", "missing"), [
    ("math", {"prompt": "Question: 2+3?\nAnswer:", "answer": 5}, "answer"),
    ("virl", {"prompt": "...", "action": "turn_left()", "at_intersection": True}, "at_intersection"),
    ("citynav", {"prompt": "...", "valid_actions": ["forward"]}, "valid_actions"),
])
def test_a_prompt_file_without_what_the_reward_reads_stops_with_file_row_and_field(tmp_path, task, good, missing):
    from amft.cli.arguments import RunArguments
    from amft.cli.pipeline import training_rows
    from amft.tasks import get_task
    from amft.tasks.base import DataError

    prompt_file = tmp_path / "prompts.jsonl"
    prompt_file.write_text(json.dumps(good) + "\n" + json.dumps({k: v for k, v in good.items() if k != missing}) + "\n")
    with pytest.raises(DataError, match=rf"prompts.jsonl: row 2: field '{missing}'"):
        training_rows(RunArguments(task=task, prompt_file=str(prompt_file)), get_task(task))
    # the same rows as validation prompts of the meta term
    with pytest.raises(DataError, match=rf"prompts.jsonl: row 2: field '{missing}'"):
        training_rows(RunArguments(task=task, meta_file=str(prompt_file), num_train_prompts=4, num_demonstrations=4),
                      get_task(task))


def test_a_general_points_prompt_without_a_deal_stops_with_file_and_row(tmp_path):
    from amft.cli.arguments import RunArguments
    from amft.cli.pipeline import training_rows
    from amft.tasks import get_task
    from amft.tasks.base import DataError

    prompt_file = tmp_path / "prompts.jsonl"
    prompt_file.write_text(
        '{"prompt": "[rule] J=10 Q=10 K=10 [cards] A 3 K 6 [target] 24 [answer]"}\n'  # the deal is in the prompt
        '{"prompt": "anything", "values": [1, 3, 10, 6]}\n'
        '{"prompt": "Make 24 from four cards."}\n'
        '{"prompt": "anything", "values": [1e400, 3, 10, 6]}\n'
    )
    with pytest.raises(DataError, match=r"prompts.jsonl: row 3: GeneralPoints row has no deal"):
        training_rows(RunArguments(prompt_file=str(prompt_file)), get_task("general-points"))
    rows, _, _ = training_rows(RunArguments(prompt_file=str(prompt_file), skip_invalid_rows=True, num_demonstrations=4,
                                            num_meta_prompts=4), get_task("general-points"))
    assert len(rows) == 2


def test_skip_invalid_rows_keeps_the_good_ones_and_counts_the_rest(tmp_path, caplog):
    from amft.cli.pipeline import DEMO_FIELDS, read_rows

    demo_file = tmp_path / "demos.jsonl"
    demo_file.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\nnot json\n')
    with caplog.at_level("WARNING"):
        rows = read_rows(str(demo_file), DEMO_FIELDS, skip_invalid=True)
    assert rows == [{"prompt": "a", "completion": "b"}]
    assert "skipped 2 malformed row(s)" in caplog.text


def test_the_7b_recipe_resolves_its_plan_without_a_gpu_or_downloads():
    config = pathlib.Path(__file__).parents[2] / "configs" / "math-qwen2.5-math-7b.yaml"
    result = subprocess.run([sys.executable, "-m", "amft", "train", "--config", str(config), "--dry-run"],
                            capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"})
    out = result.stdout
    for words in ("Qwen/Qwen2.5-Math-7B", "math (dataset=Elliott/Openr1-Math-46k-8192, prompt_style=chat)",
                  "vLLM (colocate mode)",
                  "x 8 completions (<= 2048 tokens)", "500 optimizer steps", "aime24,amc,math500,minerva,olympiad",
                  "mu_init 0.8 in [0.05, 0.95]"):
        assert words in out, words


def test_math_benchmark_evaluation_reports_avg_and_pass_at_k(tmp_path):
    from amft.models import build_tiny_model

    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    files = pathlib.Path(__file__).parents[1] / "tasks" / "math_files"
    out_file = tmp_path / "bench.json"
    subprocess.run([sys.executable, "-m", "amft", "eval", "--task", "math", "--model", str(tmp_path / "model"),
                    "--benchmarks", "aime24,arc-c", "--benchmark_dir", str(files), "--eval_samples", "3",
                    "--eval_max_new_tokens", "8", "--output_file", str(out_file)],
                   check=True, capture_output=True, text=True)
    result = json.loads(out_file.read_text())
    assert set(result) == {"aime24", "arc-c"}
    episodes = json.loads((tmp_path / "bench-episodes.json").read_text())
    for name, split in result.items():
        assert split["problems"] == 2 and split["samples"] == 3
        assert 0.0 <= split["avg_at_k"] <= split["pass_at_k"] <= 1.0
        problems = episodes[name]
        assert [len(problem["completions"]) for problem in problems] == [3, 3]
        assert sum(map(sum, (problem["correct"] for problem in problems))) / 6 == split["avg_at_k"]


def test_vllm_evaluation_without_vllm_says_how_to_install_it(tmp_path):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    from amft.models import build_tiny_model

    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    tokenizer.save_pretrained(tmp_path / "model")
    model.save_pretrained(tmp_path / "model")
    result = subprocess.run([sys.executable, "-m", "amft", "eval", "--task", "math", "--model", str(tmp_path / "model"),
                             "--benchmarks", "id", "--use_vllm_eval", "true"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "pip install 'amft[vllm]'" in result.stderr


def test_a_resumed_run_keeps_the_quick_evaluations_up_to_its_checkpoint(tmp_path):
    from amft.cli.pipeline import checkpoint_step, keep_progress_until

    path = tmp_path / "progress_eval.jsonl"
    path.write_text("".join(json.dumps({"step": s, "id": 0.5}) + "\n" for s in (40, 80, 120)))
    keep_progress_until(str(path), checkpoint_step(str(tmp_path / "checkpoint-80")))
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [40, 80]
    keep_progress_until(str(path), checkpoint_step(None))
    assert path.read_text() == ""


@pytest.mark.parametrize("task", ["citynav", "virl", "virl-vl", "math", "general-points", "gp-vl"])
def test_every_task_config_field_is_a_flag_with_the_configs_default(task):
    # the task config is the one owner of its options: the command line parses it, so every field is a flag
    # (listed by --help) and a run without flags builds the config's defaults
    import dataclasses

    from amft.cli.options import read_command_line
    from amft.tasks import task_config_class

    config_class = task_config_class(task)
    line = read_command_line(["--task", task, "--use_cpu", "true"], "amft train", "")
    for field in dataclasses.fields(config_class):
        assert line.values[field.name] == field.default, field.name
    _, task_config, _ = line.build()
    assert task_config == config_class()


def test_a_resumed_run_counts_the_time_and_keeps_the_budget_spent_before_its_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    quick_eval = {"--progress_eval_steps", "--progress_eval_episodes"}
    without_quick_eval = [arg for flag, value in zip(TINY_RUN[::2], TINY_RUN[1::2]) if flag not in quick_eval
                          for arg in (flag, value)]
    train = ["train", "--output_dir", str(run_dir), *without_quick_eval, "--use_cpu", "true", "--bf16", "false",
             "--eval_splits", "id", "--time_budget_minutes", "30"]
    assert main([*train, "--max_steps", "3"]) == 0
    state_file = run_dir / "checkpoint-3" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    clocks = state["stateful_callbacks"]
    # The run's clock started before the model was loaded, the budget's with training.
    assert 0 < clocks["TimeBudgetCallback"]["args"]["spent_before"] < clocks["RunClock"]["args"]["spent_before"]

    # As if the 6-step run had been killed after step 3, in a segment that took 1000 s and all of the budget.
    clocks["RunClock"]["args"]["spent_before"] = 1000.0
    clocks["TimeBudgetCallback"]["args"]["spent_before"] = 30 * 60.0
    state_file.write_text(json.dumps(state))
    assert main([*train, "--max_steps", "6", "--resume", "true"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run"]["resumed_from"].endswith("checkpoint-3") and summary["run"]["seconds_before_resumption"] == 1000.0
    assert summary["run"]["steps"] == 3  # the budget was spent: the resumed run trains no step, and evaluates
    assert 1000 < summary["wall_time_seconds"] < 1000 + 600
