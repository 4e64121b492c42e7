"""Faults of a long run (see docs/design.md, 'Faults'): reward functions that raise or hang are reported by
sample and either stop the run or score the sample as missing; an optimizer step whose loss or gradient is
not finite is skipped. Resumption after SIGKILL is in `test_resume.py`."""

import math
import time

import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback

from amft.algorithm import group_advantages
from amft.cli.options import read_command_line
from amft.models import build_tiny_model
from amft.training import AMFTConfig, AMFTTrainer
from amft.training.faults import GuardedReward, RewardFailure, RewardTimeout, time_limit

PROMPTS = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a in range(10) for b in range(10)]
DEMOS = [{"prompt": row["prompt"], "completion": row["answer"]} for row in PROMPTS]
BASE = dict(use_cpu=True, bf16=False, seed=0, learning_rate=1e-2, per_device_train_batch_size=8, num_generations=4,
            max_completion_length=4, report_to="none", save_strategy="no", gradient_checkpointing=False,
            disable_tqdm=True, logging_steps=1)


def spin(seconds):
    """Python code that runs for ``seconds`` (a limit interrupts Python code, see `time_limit`)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def digits_reward(prompts, completions, **kwargs):
    """Raises on the prompt "3+4=", spins for a minute on "5+5=", and scores the share of digits otherwise."""
    scores = []
    for prompt, completion in zip(prompts, completions):
        if prompt == "3+4=":
            raise ZeroDivisionError("the verifier divided by zero")
        if prompt == "5+5=":
            try:
                spin(60)
            except Exception:  # a reward function's own guard must not swallow the time limit
                pass
        scores.append(sum(c.isdigit() for c in completion) / max(len(completion), 1))
    return scores


def make_trainer(tmp_path, rows, **settings):
    torch.set_num_threads(1)
    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    args = AMFTConfig(**BASE | settings, output_dir=str(tmp_path / "run"))
    return AMFTTrainer(model=model, reward_funcs=digits_reward, args=args, train_dataset=Dataset.from_list(rows),
                       demo_dataset=DEMOS, processing_class=tokenizer)


# ------------------------------------------------------------------------------------------------
# Reward functions that raise or hang
# ------------------------------------------------------------------------------------------------
def test_time_limit_stops_python_code_and_leaves_a_block_that_ends_in_time_alone():
    started = time.monotonic()
    with pytest.raises(RewardTimeout):
        with time_limit(0.2):
            spin(30)
    assert time.monotonic() - started < 10
    with time_limit(0.2):
        spin(0.01)
    spin(0.4)  # past the limit of the block that ended: nothing is raised later


def test_a_failing_sample_stops_the_run_with_its_index_and_prompt():
    guarded = GuardedReward(digits_reward, timeout_seconds=None, skip_failures=False)
    with pytest.raises(RewardFailure, match=r"'digits_reward' raised ZeroDivisionError: the verifier divided by zero "
                                            r"on sample 2 of the 4 .*prompt: '3\+4='.*skip_failed_rewards"):
        guarded(prompts=["1+1=", "2+2=", "3+4=", "6+1="], completions=["2", "4", "7", "7"])


def test_failing_and_hanging_samples_are_scored_as_missing_when_asked():
    guarded = GuardedReward(digits_reward, timeout_seconds=0.5, skip_failures=True)
    scores = guarded(prompts=["1+1=", "3+4=", "5+5=", "6+1="], completions=["2", "x7", "10", "7z"],
                     answer=["2", "7", "10", "7"])
    assert scores == [1.0, None, None, 0.5]
    assert guarded.take_failures() == 2 and guarded.take_failures() == 0


def test_a_batch_that_scores_in_time_is_scored_in_one_call():
    calls = []

    def counting_reward(prompts, completions, **kwargs):
        calls.append(len(prompts))
        return [1.0] * len(prompts)

    assert GuardedReward(counting_reward, timeout_seconds=5, skip_failures=True)(["a", "b"], ["c", "d"]) == [1.0, 1.0]
    assert calls == [2]


def test_missing_rewards_are_left_out_of_the_group_statistics():
    # As TRL: group 1's mean and unbiased std over its three scored rewards (1, 0, 0.5: mean 0.5, std 0.5);
    # a missing reward's advantage is 0; a group with one scored reward has std 0.
    rewards = torch.tensor([1.0, float("nan"), 0.0, 0.5, float("nan"), 2.0, float("nan"), float("nan")])
    advantages = group_advantages(rewards, 4, eps=0.0)
    assert advantages.tolist() == pytest.approx([1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert group_advantages(rewards, 4, scale="none").tolist() == pytest.approx([0.5, 0, -0.5, 0, 0, 0, 0, 0])


def test_a_run_that_skips_failed_rewards_trains_on_the_rest_and_counts_them(tmp_path):
    rows = [row for row in PROMPTS if row["prompt"] in ("1+1=", "3+4=")]  # one group each per step
    trainer = make_trainer(tmp_path, rows, method="grpo", max_steps=1, skip_failed_rewards=True,
                           reward_timeout_seconds=5)
    trainer.model.train()
    trainer._plan = trainer._plan_step()
    batch = next(iter(trainer.get_train_dataloader()))
    rollouts = trainer._generate_and_score_completions(batch)
    failed = torch.tensor([row["prompt"] == "3+4=" for row in batch])
    assert failed.any() and (~failed).any()
    assert (rollouts["advantages"][failed] == 0).all()  # TRL: no reward, no signal
    assert trainer._metrics["train"]["faults/failed_rewards"] == [float(failed.sum())]
    trainer.train()
    logged = trainer.state.log_history[0]
    assert logged["faults/failed_rewards"] == 4.0 and math.isfinite(logged["loss"])


def test_a_run_that_does_not_skip_stops_at_the_first_failed_reward(tmp_path):
    rows = [row for row in PROMPTS if row["prompt"] in ("1+1=", "3+4=")]
    trainer = make_trainer(tmp_path, rows, method="grpo", max_steps=1)
    with pytest.raises(RewardFailure, match="3\\+4="):
        trainer.train()


@pytest.mark.parametrize(("settings", "message"), [
    ({"reward_timeout_seconds": 0}, "reward_timeout_seconds"),
    ({"method": "hpt", "skip_failed_rewards": True}, "skip_failed_rewards"),
    ({"method": "prefix-rft", "skip_failed_rewards": True}, "skip_failed_rewards"),
])
def test_fault_settings_it_cannot_honour_are_refused(tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        AMFTConfig(**BASE | settings, output_dir=str(tmp_path))


def test_an_async_reward_function_refuses_the_fault_settings(tmp_path):
    async def async_reward(prompts, completions, **kwargs):
        return [0.0] * len(prompts)

    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    with pytest.raises(ValueError, match="synchronous"):
        AMFTTrainer(model=model, reward_funcs=async_reward, demo_dataset=DEMOS, processing_class=tokenizer,
                    args=AMFTConfig(**BASE, output_dir=str(tmp_path), method="grpo", skip_failed_rewards=True),
                    train_dataset=Dataset.from_list(PROMPTS))


def test_the_fault_options_are_flags_of_amft_train():
    flags = ["--use_cpu", "true", "--skip_failed_rewards", "true", "--reward_timeout_seconds", "30"]
    *_, args = read_command_line(flags, "amft train", "").build()
    assert args.skip_failed_rewards is True and args.reward_timeout_seconds == 30.0


# ------------------------------------------------------------------------------------------------
# Non-finite steps
# ------------------------------------------------------------------------------------------------
class Snapshots(TrainerCallback):
    """The parameters after each optimizer step."""

    def __init__(self):
        self.parameters = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.parameters.append([p.detach().clone() for p in model.parameters()])


def poison_second_step(trainer, where):
    """NaN in the logits (the loss) or in one parameter's gradient, on the second optimizer step only."""
    model = trainer.model
    if where == "loss":
        def hook(module, inputs, output):
            if trainer.state.global_step == 1:
                output.logits = output.logits * float("nan")
            return output

        model.register_forward_hook(hook)
    else:
        weight = next(p for p in model.parameters() if p.requires_grad)
        weight.register_hook(lambda grad: grad * float("nan") if trainer.state.global_step == 1 else grad)


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_a_step_with_a_non_finite_loss_or_gradient_is_skipped_and_counted(tmp_path, where):
    trainer = make_trainer(tmp_path, PROMPTS, method="sft", max_steps=3, sft_batch_size=8, optim="adamw_torch")
    snapshots = Snapshots()
    trainer.add_callback(snapshots)
    initial = [p.detach().clone() for p in trainer.model.parameters()]
    poison_second_step(trainer, where)
    trainer.train()
    first, second, third = snapshots.parameters
    assert any(not torch.equal(p, q) for p, q in zip(first, initial))
    assert all(torch.equal(p, q) for p, q in zip(second, first))  # the skipped step moved nothing
    assert any(not torch.equal(p, q) for p, q in zip(third, second))
    assert all(torch.isfinite(p).all() for p in third)
    optimizer_steps = {int(state["step"]) for state in trainer.optimizer.state.values()}
    assert optimizer_steps == {2}  # Adam's moments and step count skipped it too
    assert [row["faults/skipped_step"] for row in trainer.state.log_history if "faults/skipped_step" in row] \
        == [0.0, 1.0, 0.0]
    assert trainer._step_skip.skipped_steps == 1


def test_a_non_finite_step_leaves_the_controller_finite(tmp_path):
    # AMFT without the meta term: the warm-up's last step measures H*, then the poisoned step's H is NaN.
    trainer = make_trainer(tmp_path, PROMPTS, method="amft", max_steps=3, sft_batch_size=8, amft_warmup_steps=1,
                           entropy_calibration_steps=1, use_meta_term=False)

    def poison_training_forwards(module, inputs, output):  # sampling (without gradient) stays finite
        if trainer.state.global_step == 1 and torch.is_grad_enabled():
            output.logits = output.logits * float("nan")
        return output

    trainer.model.register_forward_hook(poison_training_forwards)
    trainer.train()
    rows = [row for row in trainer.state.log_history if "amft/mu" in row]
    assert [row["faults/dropped_measurements"] for row in rows] == [0.0, 1.0, 0.0]
    assert [row["faults/skipped_step"] for row in rows] == [0.0, 1.0, 0.0]
    assert all(math.isfinite(row["amft/mu"]) for row in rows) and rows[1]["amft/mu"] == 0.8
    assert rows[2]["amft/entropy_term"] != 0.0  # the next step's H acts again
