"""Rollouts from vLLM: TRL's importance-sampling correction reaches AMFT's L_RL, the demonstrations placed in
groups take none, and expert prefix tokens (no sampling log-probability) none per token (see docs/design.md,
'GRPO settings').

vLLM is not installed here. A stand-in takes the place of TRL's vLLM backend: it samples with the tiny model
and reports each token's log-probability off by a known amount, as a sampler whose numerics differ from the
trainer's would; everything after it (TRL's ratio, AMFT's placement of demonstrations and prefixes, the
loss) is the real code.
"""

import copy
import math

import pytest
import torch
from datasets import Dataset

from amft.models import build_tiny_model
from amft.training import AMFTConfig, AMFTTrainer

PROMPTS = [{"prompt": f"{a}+{b}=", "answer": str(a + b), "demonstration": f"{a}+{b} is {a + b}"}
           for a in range(4) for b in range(4)]
DEMOS = [{"prompt": row["prompt"], "completion": row["demonstration"]} for row in PROMPTS]
#: The sampler's log-probability minus the trainer's, by token position: the ratios exp(-offset) are 4.48
#: (clamped to C_max = 3 or masked), 0.37 and 1.65.
OFFSETS = (-1.5, 1.0, -0.5)


def digit_share_reward(prompts, completions, **kwargs):
    return [sum(c.isdigit() for c in completion) / max(len(completion), 1) for completion in completions]


class StandInSampler:
    """TRL's vLLM backend as the trainer calls it (colocate: one completion per prompt)."""

    def __init__(self, trainer):
        self.trainer = trainer

    def sync_weights(self):
        pass

    @torch.no_grad()
    def generate(self, prompts, images, num_generations, profiler=None):
        trainer = self.trainer
        generator = torch.Generator().manual_seed(0)
        completions, logprobs = [], []
        for prompt_ids in prompts:
            sequence, new, new_logprobs = torch.tensor([prompt_ids]), [], []
            for position in range(trainer.max_completion_length):
                logits = trainer.model(input_ids=sequence).logits[0, -1].float() / trainer.temperature
                log_probs = torch.log_softmax(logits, dim=-1)
                token = int(torch.multinomial(log_probs.exp(), 1, generator=generator))
                new.append(token)
                new_logprobs.append([log_probs[token].item() + OFFSETS[position % len(OFFSETS)]])
                if token == trainer.processing_class.eos_token_id:
                    break
                sequence = torch.cat([sequence, torch.tensor([[token]])], dim=1)
            completions.append(new)
            logprobs.append(new_logprobs)
        return prompts, completions, logprobs, None


def vllm_trainer(tmp_path, method, mode, meta_dataset=None, **overrides):
    torch.set_num_threads(1)
    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    settings = dict(
        output_dir=str(tmp_path / "run"), use_cpu=True, bf16=False, seed=0, max_steps=1, learning_rate=1e-3,
        per_device_train_batch_size=8, num_generations=4, max_completion_length=8, logging_steps=1,
        report_to="none", save_strategy="no", gradient_checkpointing=False, disable_tqdm=True, method=method,
        vllm_importance_sampling_mode=mode,
        **(dict(prefix_low_start=0.5, prefix_low_end=0.5, prefix_high=0.5) if method == "prefix-rft" else {}),
    )
    trainer = AMFTTrainer(model=model, reward_funcs=digit_share_reward, args=AMFTConfig(**settings | overrides),
                          train_dataset=Dataset.from_list(PROMPTS), demo_dataset=DEMOS, meta_dataset=meta_dataset,
                          processing_class=tokenizer)
    # What GRPOTrainer sets up for use_vllm, with the stand-in as the backend.
    trainer.use_vllm, trainer.vllm_generation, trainer._last_loaded_step = True, StandInSampler(trainer), -1
    return trainer


def scored_rollouts(trainer):
    trainer.model.train()
    trainer._plan = trainer._plan_step()
    return trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))


def trl_ratio(old, sampling, mask, mode, clip_min=None, clip_max=3.0):
    """TRL 1.16's importance-sampling ratio of vLLM rollouts, as `_generate_and_score_completions` computes it."""
    difference = torch.nan_to_num((old - sampling) * mask, nan=0.0)
    if mode.startswith("sequence"):
        difference = difference.sum(dim=-1, keepdim=True)
    ratio = torch.exp(difference)
    if mode.endswith("truncate"):
        return torch.clamp(ratio, min=clip_min, max=clip_max)
    low, high = -math.inf if clip_min is None else clip_min, math.inf if clip_max is None else clip_max
    return ratio.masked_fill((ratio < low) | (ratio > high), 0.0)


@pytest.mark.parametrize("mode", ["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"])
def test_grpo_trains_on_trls_ratio(tmp_path, mode):
    trainer = vllm_trainer(tmp_path, "grpo", mode)
    rollouts = scored_rollouts(trainer)
    mask = rollouts["completion_mask"]
    expected = trl_ratio(rollouts["old_per_token_logps"], rollouts["sampling_per_token_logps"], mask, mode)
    torch.testing.assert_close(rollouts["importance_sampling_ratio"], expected)
    correction = trainer._sampling_correction(rollouts, mask.size(1))
    assert correction is rollouts["importance_sampling_ratio"]
    if mode == "token_truncate":
        ratios = correction[mask.bool()]
        assert (ratios == 3.0).any() and (ratios < 1.0).any()  # the stand-in's offsets reach the ratio
    trainer.train()
    logged = trainer.state.log_history[0]
    assert math.isfinite(logged["amft/rl_loss"]) and "sampling/importance_sampling_ratio/mean" in logged


@pytest.mark.parametrize("method", ["luffy", "srft"])
@pytest.mark.parametrize("mode", ["token_truncate", "sequence_mask"])
def test_demonstrations_in_groups_take_no_correction(tmp_path, method, mode):
    trainer = vllm_trainer(tmp_path, method, mode)
    rollouts = scored_rollouts(trainer)
    off_policy, width = rollouts["off_policy"], rollouts["completion_mask"].size(1)
    assert off_policy.any() and (~off_policy).any()
    correction = trainer._sampling_correction(rollouts, width)
    assert correction.size(1) == (1 if mode.startswith("sequence") else width)
    assert (correction[off_policy] == 1.0).all()
    # The sampled rows keep TRL's ratio (computed before the demonstrations replaced their rows).
    sampled = rollouts["importance_sampling_ratio"][~off_policy]
    torch.testing.assert_close(correction[~off_policy][:, : sampled.size(1)], sampled)
    assert (sampled != 1.0).any()


@pytest.mark.parametrize("mode", ["token_truncate", "sequence_truncate"])
def test_expert_prefix_tokens_take_no_correction_of_their_own(tmp_path, mode):
    # Prefix tokens were written by the demonstration, not sampled: their sampling log-probability is NaN,
    # which TRL's ratio counts as no mismatch. Per sequence, the row's one ratio is its continuation's.
    trainer = vllm_trainer(tmp_path, "prefix-rft", mode)
    rollouts = scored_rollouts(trainer)
    prefix, mask = rollouts["prefix_mask"], rollouts["completion_mask"]
    assert prefix.any()
    assert rollouts["sampling_per_token_logps"][prefix].isnan().all()
    ratio = trainer._sampling_correction(rollouts, mask.size(1))
    continuation = mask.bool() & ~prefix
    expected = trl_ratio(rollouts["old_per_token_logps"], rollouts["sampling_per_token_logps"], continuation, mode)
    torch.testing.assert_close(ratio, expected)
    if mode == "token_truncate":
        assert (ratio[prefix] == 1.0).all()
    loss = trainer._rl_loss(trainer._rollout_forward(trainer.model, rollouts), rollouts)
    assert torch.isfinite(loss)


def test_the_validation_gradient_takes_the_correction(tmp_path):
    """g_val's policy-gradient loss on vLLM rollouts of the validation prompts weighs each token by TRL's ratio:
    with the ratio pi/pi_old = 1 of fresh rollouts, each token's loss is -A * IS, a mean per sequence, then over
    sequences."""
    trainer = vllm_trainer(tmp_path, "amft", "token_truncate", meta_dataset=PROMPTS)
    rows = copy.deepcopy(trainer.meta_stream).next_batch()  # the rows `_validation_loss` draws next
    trainer.model.eval()
    rollouts = trainer._generate_and_score_completions(
        [dict(row) for row in rows for _ in range(trainer.num_generations_eval)]
    )
    trainer.model.train()
    mask, ratio = rollouts["completion_mask"], rollouts["importance_sampling_ratio"]
    assert (ratio[mask.bool()] != 1.0).any()
    per_token = -rollouts["advantages"].unsqueeze(-1) * ratio * mask
    expected = (per_token.sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)).mean()
    loss = trainer._validation_loss(trainer.model)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
