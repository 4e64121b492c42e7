"""A run killed with SIGKILL and resumed gives the same mu trajectory and final metrics as an
uninterrupted run with the same seed; so does a two-process run whose processes are all killed."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from amft.training.checkpoint import (
    COMPLETE_MARKER,
    last_complete_checkpoint,
    mark_checkpoint_incomplete,
    remove_incomplete_checkpoints,
)

ARGS = [
    "--model_name_or_path", "tiny-test", "--template", "compact", "--use_cpu", "true", "--bf16", "false",
    "--threads", "1", "--seed", "0", "--max_steps", "14", "--save_steps", "2", "--logging_steps", "1",
    "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", "--num_generations", "4",
    "--max_completion_length", "24", "--gradient_checkpointing", "false", "--report_to", "none",
    "--amft_warmup_steps", "4", "--entropy_calibration_steps", "2", "--meta_period", "3",
    "--meta_normalization", "cosine", "--meta_lr", "0.05", "--entropy_lr", "0.05",
    # 24 prompts, 4 a step: a new epoch every 6 steps, so the run resumes inside its second epoch
    "--sft_batch_size", "8", "--meta_batch_size", "2", "--num_train_prompts", "24", "--num_demonstrations", "200",
    "--num_meta_prompts", "16", "--eval_before", "false", "--eval_limit", "6", "--eval_attempts", "2",
    "--eval_max_new_tokens", "24", "--eval_splits", "id,ood-rule", "--disable_tqdm", "true",
]


def train_command(output_dir, *extra):
    return [sys.executable, "-m", "amft", "train", *ARGS, "--output_dir", str(output_dir), *extra]


def mu_trajectory(run_dir):
    with open(os.path.join(last_complete_checkpoint(str(run_dir)), "trainer_state.json")) as handle:
        history = json.load(handle)["log_history"]
    return [(row["step"], row["amft/mu"], row.get("amft/meta_term"), row.get("amft/entropy_term")) for row in history if "amft/mu" in row]


def summary(run_dir):
    with open(run_dir / "summary.json") as handle:
        payload = json.load(handle)
    return payload["success_rate"], payload["first_attempt_success_rate"], payload["controller"]


@pytest.mark.slow
def test_sigkill_and_resume_reproduce_the_uninterrupted_run(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    reference = tmp_path / "reference"
    subprocess.run(train_command(reference), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(train_command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    # Kill in the mixed phase, after the warm-up and a meta step (steps 5-7), while training is under way.
    while not (killed / "checkpoint-8" / COMPLETE_MARKER).exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "summary.json").exists()

    resumed = subprocess.run(train_command(killed, "--resume", "true"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    assert mu_trajectory(killed) == mu_trajectory(reference)
    assert len(mu_trajectory(reference)) == 14
    assert summary(killed) == summary(reference)

    # As if killed while it evaluated, after the checkpoint of its last step: resumed, it trains no step more.
    again = subprocess.run(train_command(killed, "--resume", "true"), env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((killed / "summary.json").read_text())["run"]["steps"] == 14
    assert summary(killed) == summary(reference)


def test_last_complete_checkpoint_ignores_a_half_written_one_which_the_next_save_removes(tmp_path):
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / COMPLETE_MARKER).write_text("{}")
    (tmp_path / "checkpoint-6").mkdir()  # killed while writing: no marker
    (tmp_path / "checkpoint-6" / "model.safetensors").write_text("half")
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-4")
    assert remove_incomplete_checkpoints(str(tmp_path)) == [str(tmp_path / "checkpoint-6")]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-4"]
    mark_checkpoint_incomplete(str(tmp_path / "checkpoint-4"))  # about to be rewritten
    assert last_complete_checkpoint(str(tmp_path)) is None


DISTRIBUTED_SCRIPT = pathlib.Path(__file__).with_name("distributed_amft.py")


def two_process_command(output):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # `--multi_gpu` on a machine without GPUs is Accelerate's gloo multi-process CPU launch.
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(port), str(DISTRIBUTED_SCRIPT), str(output), "16", "amft", "--save"]


def kill_with_workers(process):
    """SIGKILL to the launcher and each worker it started (the workers run in sessions of their own)."""
    workers = psutil.Process(process.pid).children(recursive=True)
    for victim in [process, *workers]:
        try:
            os.kill(victim.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
    psutil.wait_procs(workers, timeout=30)


@pytest.mark.slow
def test_two_processes_killed_and_resumed_follow_the_uninterrupted_trajectory(tmp_path):
    """Two gloo processes, 8 steps with a checkpoint every 2, killed with SIGKILL after checkpoint 4 (about
    a minute on 2 cores: three launches)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    reference = tmp_path / "reference.json"
    subprocess.run(two_process_command(reference), check=True, env=env, capture_output=True, timeout=600)

    killed = tmp_path / "killed.json"
    run_dir = pathlib.Path(f"{killed}.run")
    process = subprocess.Popen(two_process_command(killed), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    try:
        while not (run_dir / "checkpoint-4" / COMPLETE_MARKER).exists():
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        kill_with_workers(process)
    assert not killed.exists() and not (run_dir / "checkpoint-8").exists()

    resumed = subprocess.run(two_process_command(killed), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trajectory = json.loads(killed.read_text())
    expected = json.loads(reference.read_text())
    assert trajectory["processes"] == 2 and len(expected["steps"]) == 8
    assert any(row["amft/meta_gradient"] for row in expected["steps"])  # meta steps before and after the kill
    assert trajectory["steps"] == expected["steps"]
