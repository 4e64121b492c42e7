"""Prefix rollouts in AMFTTrainer (Prefix-RFT, UFT, BREAD) on the tiny model with GeneralPoints rows."""

import math

import pytest
import torch
from datasets import Dataset

from amft.algorithm import clipped_surrogate, token_entropy
from amft.models import build_tiny_model
from amft.tasks.general_points import GeneralPointsTask
from amft.training import METHODS, AMFTConfig, AMFTTrainer
from amft.training.trainer import rollout_batch
from trainer_probes import first_rollouts, series

TASK = GeneralPointsTask(template="compact", completion_format="formula")
# Two groups per step; most prompts have a demonstration, two (rl-only multisets) have none.
_DRAWN = TASK.train_prompts(64, seed=0)
ROWS = [row for row in _DRAWN if row["demonstration"]][:6] + [row for row in _DRAWN if not row["demonstration"]][:2]
#: a one-line demonstration of 24 characters, 24 tokens of the character tokenizer
DEMONSTRATION = "formula: (7-1)*(10-6)=24"


def make_trainer(tmp_path, method, rows=ROWS, reward=TASK.reward, **overrides):
    torch.set_num_threads(1)
    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    settings = dict(
        output_dir=str(tmp_path / "run"), use_cpu=True, bf16=False, seed=0, max_steps=2, learning_rate=1e-3,
        per_device_train_batch_size=8, num_generations=4, max_completion_length=32, logging_steps=1,
        report_to="none", save_strategy="no", gradient_checkpointing=False, disable_tqdm=True, method=method,
        **(dict(uft_hint_steps=10) if method == "uft" else {}),
        **(dict(success_reward=TASK.success_reward) if method == "bread" else {}),
    )
    settings.update(overrides)
    return AMFTTrainer(model=model, reward_funcs=reward, args=AMFTConfig(**settings),
                       train_dataset=Dataset.from_list(rows), demo_dataset=TASK.demonstrations(4, seed=0),
                       processing_class=tokenizer)




LOGGED = {
    "prefix-rft": ["prefix/low", "prefix/share", "prefix/hybrids", "prefix/num_prefix_tokens",
                   "prefix/groups_without_demo", "prefix/adv_prefix_mean", "prefix/kept_token_fraction"],
    "uft": ["uft/p_t", "uft/hint_share", "uft/hinted_groups", "uft/hint_tokens", "uft/groups_without_demo",
            "uft/hint_nll"],
    "bread": ["bread/all_fail_groups", "bread/searches", "bread/branched_groups", "bread/probe_rounds",
              "bread/groups_without_demo", "bread/extra_gen_tokens"],
}


@pytest.mark.parametrize("method", list(LOGGED))
def test_two_steps_train_and_log_the_mechanism(tmp_path, method):
    trainer = make_trainer(tmp_path, method)
    trainer.train()
    assert series(trainer, "amft/mu") == [0.0, 0.0]
    assert all(math.isfinite(loss) for loss in series(trainer, "amft/rl_loss"))
    for key in LOGGED[method]:
        values = series(trainer, key)
        assert values and all(math.isfinite(value) for value in values), key
    if method == "prefix-rft":
        assert sum(series(trainer, "prefix/hybrids")) > 0


@pytest.mark.parametrize("method", ["prefix-rft", "uft"])
def test_prefixed_rollouts_start_with_the_demonstration(tmp_path, method):
    trainer = make_trainer(tmp_path, method)
    batch, rollouts = first_rollouts(trainer)
    tokenizer, group = trainer.processing_class, trainer.num_generations
    lengths = rollouts["prefix_mask"].sum(dim=1).tolist()
    texts = list(trainer._logs["completion"])[-len(batch):]
    for row, length in enumerate(lengths):
        demonstration = batch[row]["demonstration"]
        if demonstration is None:
            assert length == 0
            continue
        if method == "prefix-rft":  # the hybrid is the last rollout of its group
            assert (length > 0) == (row % group == group - 1)
        else:  # one hint per group
            assert length == lengths[row - row % group]
        demo_ids = tokenizer(demonstration, add_special_tokens=False)["input_ids"]
        assert length <= len(demo_ids) - 1
        prefix = rollouts["completion_ids"][row, :length].tolist()
        assert prefix == demo_ids[:length] and tokenizer.eos_token_id not in prefix
        assert rollouts["prefix_mask"][row, :length].all()
        assert texts[row].startswith(demonstration[:length])  # the reward scored prefix + continuation
    assert any(lengths)
    if method == "prefix-rft":
        hybrid = rollouts["prefix_mask"].any(dim=1)
        assert (rollouts["prefix_advantages"][~hybrid] == 0).all()


def test_entropy_excludes_prefix_tokens(tmp_path):
    trainer = make_trainer(tmp_path, "prefix-rft")
    _, rollouts = first_rollouts(trainer)
    entropy = trainer._global_mean(trainer._rollout_forward(trainer.model, rollouts).entropy_totals())
    batch = rollout_batch(rollouts)
    with torch.no_grad():
        entropies = token_entropy(trainer._completion_logits(trainer.model, batch) / trainer.temperature)
    sampled = batch.completion_mask.bool() & ~rollouts["prefix_mask"]
    assert entropy == pytest.approx(entropies[sampled].mean().item(), rel=1e-5)
    assert entropy != pytest.approx(entropies[batch.completion_mask.bool()].mean().item(), rel=1e-5)


def hand_made_rollouts(advantage=1.0):
    """One row: 3 prefix tokens with p = [0.5, 0.25, 1.0] and 2 continuation tokens."""
    logps = torch.tensor([[math.log(0.5), math.log(0.25), 0.0, math.log(0.5), math.log(0.5)]], requires_grad=True)
    rollouts = {"prefix_mask": torch.tensor([[True, True, True, False, False]]),
                "advantages": torch.tensor([advantage])}
    return logps, rollouts, torch.ones(1, 5, dtype=torch.long)


@pytest.mark.parametrize("method", ["uft", "bread"])
def test_uft_and_bread_train_continuations_only(tmp_path, method):
    trainer = make_trainer(tmp_path, method)
    logps, rollouts, mask = hand_made_rollouts()
    rl_mask, advantages, extra = trainer._prefix_rl_terms(rollouts, logps, torch.zeros(1, 5), mask)
    assert rl_mask.tolist() == [[0, 0, 0, 1, 1]]
    loss = clipped_surrogate(logps, logps.detach(), advantages, rl_mask) + extra
    loss.backward()
    # grpo aggregation: -A / 2 on each continuation token; the hint tokens only by the NLL term.
    hint_grad = -0.001 / 3 if method == "uft" else 0.0
    assert logps.grad.tolist()[0] == pytest.approx([hint_grad] * 3 + [-0.5, -0.5], abs=1e-9)
    assert extra.item() == pytest.approx(0.000693147 if method == "uft" else 0.0, abs=1e-9)


def test_prefix_rft_keeps_the_prefix_advantage_on_high_entropy_prefix_tokens(tmp_path):
    trainer = make_trainer(tmp_path, "prefix-rft")
    rollouts = {"prefix_mask": torch.tensor([[True] * 5 + [False] * 2]), "advantages": torch.tensor([1.0]),
                "prefix_advantages": torch.tensor([2 / 3])}
    entropies = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.7, 0.2, 0.2]])
    mask = torch.ones(1, 7, dtype=torch.long)
    rl_mask, advantages, extra = trainer._prefix_rl_terms(rollouts, torch.zeros(1, 7), entropies, mask)
    assert rl_mask.tolist() == mask.tolist() and extra.item() == 0.0
    assert advantages[0].tolist() == pytest.approx([0, 2 / 3, 0, 0, 0, 1, 1])
    assert trainer._metrics["train"]["prefix/kept_token_fraction"] == [pytest.approx(0.2)]


def half_demonstration_reward(completions, **kwargs):
    """Solved when the completion starts with the first 12 characters of the demonstration."""
    return [1.0 if completion.startswith(DEMONSTRATION[:12]) else 0.0 for completion in completions]


def test_bread_branches_failed_groups_from_the_shortest_solving_anchor(tmp_path):
    rows = [{**row, "demonstration": DEMONSTRATION} for row in ROWS[:2]]
    trainer = make_trainer(tmp_path, "bread", rows=rows, reward=half_demonstration_reward, success_reward=1.0)
    _, rollouts = first_rollouts(trainer)
    metrics = {key: values[-1] for key, values in trainer._metrics["train"].items() if key.startswith("bread/")}
    # 23 units (tokens but the last) in 10 episodes: episode e ends at round(2.3 e) tokens. The search probes
    # 6 (14 tokens, solved), 3 (7), 4 (9), 5 (12, solved): anchor 5 of 10, found in 4 rounds.
    assert metrics["bread/all_fail_groups"] == 2 and metrics["bread/branched_groups"] == 2
    assert metrics["bread/probe_rounds"] == 4 and metrics["bread/anchor_share"] == 0.5
    assert rollouts["prefix_mask"].sum(dim=1).tolist() == [12] * 8
    assert (rollouts["completion_ids"][:, :12] == rollouts["completion_ids"][0, :12]).all()
    assert (rollouts["advantages"] == 0).all()  # every branched rollout solves it


@pytest.mark.parametrize(("method", "keys"), [("prefix-rft", ["prefix/ratio_mean", "prefix/share"]),
                                               ("uft", ["uft/hint_share", "uft/hint_tokens"])])
def test_resume_draws_the_same_prefixes(tmp_path, method, keys):
    checkpoints = dict(save_strategy="steps", save_steps=1)
    reference = make_trainer(tmp_path / "reference", method, **checkpoints)
    reference.train()
    resumed = make_trainer(tmp_path / "resumed", method, **checkpoints)
    resumed.train(resume_from_checkpoint=str(tmp_path / "reference" / "run" / "checkpoint-1"))
    for key in keys:
        step_two = [row[key] for row in resumed.state.log_history if row.get("step") == 2 and key in row]
        assert step_two and step_two == series(reference, key)[-1:]


def test_demonstrations_are_cut_at_steps_or_else_at_tokens(tmp_path):
    trainer = make_trainer(tmp_path, "uft")
    prompt = ROWS[0]["prompt"]
    steps = trainer._prefix_demonstration({"prompt": prompt, "demonstration": "ab\ncd\nef"}, with_units=True)
    assert steps.unit_ends == [3, 6]  # after "ab\n" and "ab\ncd\n"; never inside the last step
    line = trainer._prefix_demonstration({"prompt": prompt, "demonstration": DEMONSTRATION}, with_units=True)
    assert line.unit_ends == list(range(1, 24))  # one step: token-level cuts, never the last token
    assert trainer._prefix_demonstration({"prompt": prompt, "demonstration": "x"}, with_units=True) is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "prefix-rft", "scale_rewards": "batch"}, "scale_rewards"),
        ({"method": "prefix-rft", "prefix_low_start": 0.99}, "prefix_high"),
        ({"prefix_keep_fraction": 1.5}, "prefix_keep_fraction"),
        ({"prefix_singleton_baseline": "batch"}, "prefix_singleton_baseline"),
        ({"uft_p_high": 1.2}, "uft_p_high"),
        ({"uft_max_chunks": 0}, "uft_max_chunks"),
        ({"bread_min_successes": 5, "num_generations": 4, "per_device_train_batch_size": 8}, "bread_min_successes"),
    ],
)
def test_config_refuses_prefix_settings_it_cannot_run(tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        AMFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **settings)


def test_bread_needs_a_success_reward(tmp_path):
    with pytest.raises(ValueError, match="success_reward"):
        make_trainer(tmp_path, "bread", success_reward=None)


def test_prefix_methods_are_not_on_the_constant_mu_frontier(tmp_path):
    config = AMFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert all(METHODS[name].constant_mu(config) is None for name in LOGGED)
    assert METHODS["grpo"].constant_mu(config) == 0.0
