"""HPT, SuperRL and the DFT form of the SFT term in the trainer, on the single-digit sums of
test_trainer.py: a couple of steps of the tiny model each."""

import math

import pytest
import torch
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from amft.models import build_tiny_model
from amft.training import METHODS, AMFTConfig, AMFTTrainer
from amft.training.data import CompletionBatch
from trainer_probes import first_rollouts, series

PROMPTS = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a in range(10) for b in range(10)]
DEMOS = [{"prompt": row["prompt"], "completion": row["answer"]} for row in PROMPTS]


def sum_reward(prompts, completions, answer, **kwargs):
    return [1.0 if completion.strip() == expected else 0.0 for completion, expected in zip(completions, answer)]


def coin_reward(prompts, completions, **kwargs):
    """Succeeds on about half the samples of an untrained model (an even first character), so groups
    have every count of successes."""
    return [float(bool(completion) and ord(completion[0]) % 2 == 0) for completion in completions]


def make_trainer(tmp_path, reward=sum_reward, demos=DEMOS, **overrides):
    torch.set_num_threads(2)
    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    settings = dict(
        output_dir=str(tmp_path / "run"), use_cpu=True, bf16=False, seed=0, max_steps=2, learning_rate=3e-3,
        per_device_train_batch_size=32, num_generations=4, max_completion_length=4, logging_steps=1,
        report_to="none", save_strategy="no", gradient_checkpointing=False, disable_tqdm=True, sft_batch_size=16,
    )
    if overrides.get("method") in ("hpt", "superrl", "relift", "bread"):
        settings["success_reward"] = 1.0
    settings.update(overrides)
    return AMFTTrainer(model=model, reward_funcs=reward, args=AMFTConfig(**settings),
                       train_dataset=Dataset.from_list(PROMPTS), demo_dataset=demos, processing_class=tokenizer)




def test_hpt_trains_gated_groups_by_sft_and_the_others_by_rl(tmp_path):
    # Prompts 0+b..4+b have a demonstration; the others fail the gate without one and stay in RL.
    trainer = make_trainer(tmp_path, method="hpt", hpt_gate=2, reward=coin_reward, demos=DEMOS[:50])
    trainer.train()
    assert series(trainer, "amft/mu") == [0.0, 0.0]
    assert series(trainer, "amft/sft_loss") == []  # no demonstration stream
    for step in range(2):
        sft, rl = series(trainer, "hpt/sft_groups")[step], series(trainer, "hpt/rl_groups")[step]
        assert sft + rl == 8 and series(trainer, "hpt/sft_prompt_share")[step] == sft / 8
        assert sum(series(trainer, f"hpt/correct_{k}")[step] for k in range(5)) == 8
    logged = ("hpt/rl_loss", "hpt/sft_loss", "hpt/no_demo_groups", "hpt/solve_none", "hpt/solve_all", "amft/rl_loss")
    for key in logged:
        values = series(trainer, key)
        assert values and all(math.isfinite(value) for value in values), key


def test_superrl_replaces_each_failed_group_by_its_demonstration(tmp_path):
    trainer = make_trainer(tmp_path, method="superrl")
    assert trainer.args.scale_rewards == "none"  # HPT's mean-only advantages
    batch, rollouts = first_rollouts(trainer)
    group = trainer.num_generations
    # The untrained model fails every prompt: every group goes to SFT on its demonstration, in its last row.
    assert not rollouts["rl_rows"].any()
    assert rollouts["off_policy"].tolist() == [i % group == group - 1 for i in range(len(batch))]
    for row in rollouts["off_policy"].nonzero().flatten().tolist():
        ids = rollouts["completion_ids"][row][rollouts["completion_mask"][row].bool()].tolist()
        assert trainer.processing_class.decode(ids, skip_special_tokens=True) == batch[row]["answer"]
    assert rollouts["num_items_in_batch"].item() == 0  # no token is left to L_RL

    trainer.train()
    assert series(trainer, "hpt/sft_prompt_share") == [1.0, 1.0]
    assert series(trainer, "hpt/rl_loss") == []
    losses = series(trainer, "hpt/sft_loss")
    assert len(losses) == 2 and all(math.isfinite(loss) and loss > 0 for loss in losses)


def test_dft_weights_the_gated_sft_term_and_logs_the_mean_weight(tmp_path):
    losses = {}
    for form in ("nll", "dft"):
        trainer = make_trainer(tmp_path / form, method="superrl", sft_loss=form, max_steps=1)
        trainer.train()
        losses[form] = series(trainer, "hpt/sft_loss")[0]
    weights = series(trainer, "sft/mean_token_weight")
    assert len(weights) == 1 and 0.0 < weights[0] < 1.0
    # The same first batch: each token's NLL is scaled by its probability (below 1).
    assert 0.0 < losses["dft"] < losses["nll"]


def test_dft_in_the_trainer_matches_trls_dft_loss(tmp_path):
    """TRL's SFTTrainer with loss_type='dft' and AMFTTrainer's L_SFT with `sft_loss='dft'` (mu 1): one value
    and gradient on the same demonstrations, from two copies of the same model."""
    torch.set_num_threads(2)
    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    args = SFTConfig(output_dir=str(tmp_path / "trl"), loss_type="dft", use_cpu=True, bf16=False, report_to="none")
    trl_trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(DEMOS[:8]), processing_class=tokenizer)
    batch = trl_trainer.data_collator([trl_trainer.train_dataset[i] for i in range(8)])
    trl_trainer.model.train()
    trl_loss = trl_trainer.compute_loss(trl_trainer.model, dict(batch))

    # The same tokens as amft lays out demonstrations: prompt left-padded, completion right-padded.
    prompts, completions = [], []
    for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
        length, start = int(mask.sum()), int((labels != -100).nonzero()[0])
        prompts.append(ids[:start].tolist())
        completions.append(ids[start:length].tolist())
    pad = tokenizer.pad_token_id
    width, completion_width = max(map(len, prompts)), max(map(len, completions))
    demonstrations = CompletionBatch(
        torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts]),
        torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts]),
        torch.tensor([ids + [pad] * (completion_width - len(ids)) for ids in completions]),
        torch.tensor([[1] * len(ids) + [0] * (completion_width - len(ids)) for ids in completions]),
    )
    trainer = make_trainer(tmp_path / "amft", method="fixed-mu", mu=1.0, sft_loss="dft")
    trainer.model.train()
    ours, _ = trainer._sft_forward(trainer.model, demonstrations)

    assert ours.item() == pytest.approx(trl_loss.item(), rel=1e-5)
    trl_head, our_head = list(trl_trainer.model.parameters())[-1], list(trainer.model.parameters())[-1]
    (trl_grad,), (our_grad,) = torch.autograd.grad(trl_loss, trl_head), torch.autograd.grad(ours, our_head)
    torch.testing.assert_close(our_grad, trl_grad)
    plain = make_trainer(tmp_path / "nll", method="fixed-mu", mu=1.0)
    assert not torch.allclose(ours, plain._sft_forward(plain.model, demonstrations)[0])  # it is not the plain NLL


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "grpo", "sft_loss": "dft"}, "does not have"),
        ({"method": "luffy", "sft_loss": "dft"}, "does not have"),
        ({"method": "chord", "sft_loss": "dft"}, "chord_phi false"),
        ({"method": "fixed-mu", "sft_loss": "otr"}, "sft_loss must be one of"),
        ({"method": "superrl", "hpt_gate": 2}, "use method 'hpt'"),
        ({"method": "hpt", "hpt_gate": -1}, "hpt_gate"),
        ({"method": "hpt", "epsilon": 0.1}, "hpt_clip_ratio true"),
        ({"method": "hpt", "beta": 0.1}, "beta=0"),
        ({"method": "hpt", "scale_rewards": "batch"}, "hpt_center_advantages false"),
        ({"method": "srft", "epsilon_high": 0.28}, "no ratio to clip"),
        ({"method": "srft", "epsilon": 0.1}, "no ratio to clip"),
        ({"method": "amft", "amft_warmup_steps": 0}, "leaves no warm-up to measure the target entropy"),
        ({"method": "amft", "success_reward": 3.0}, "success_reward=3.0 is a setting of relift, bread, hpt, superrl; method .amft. does not read it"),
    ],
)
def test_config_refuses_what_the_gate_and_the_sft_term_do_not_honour(tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        AMFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **settings)


def test_config_accepts_what_they_honour(tmp_path):
    for settings in ({"method": "chord", "sft_loss": "dft", "chord_phi": False}, {"method": "srft", "sft_loss": "dft"},
                     {"method": "hpt", "hpt_clip_ratio": True, "epsilon": 0.1}):
        AMFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **settings)
    kept = AMFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", method="hpt",
                      hpt_center_advantages=False, scale_rewards="batch")
    assert kept.scale_rewards == "batch"


def test_gated_and_dft_runs_are_not_on_the_constant_mu_frontier(tmp_path):
    config = AMFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", method="hpt")
    assert METHODS["hpt"].constant_mu(config) is None and METHODS["superrl"].constant_mu(config) is None
    dft = AMFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", method="fixed-mu", sft_loss="dft")
    assert METHODS["fixed-mu"].sft_weighting(dft) == "dft" and METHODS["fixed-mu"].constant_mu(dft) is None
