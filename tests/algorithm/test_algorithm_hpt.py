"""HPT's gate and gated losses on hand-made tensors, against values computed by hand."""

import math

import pytest
import torch

from amft.algorithm import clipped_surrogate, gate_groups, gated_group_losses

torch.set_num_threads(1)

UNCLIPPED = dict(epsilon_low=math.inf, epsilon_high=math.inf)


def worked_example():
    """Two groups of 4 rollouts with 2 tokens each. Group 1 fails every rollout; its last row holds the
    prompt's demonstration, whose tokens have p = 0.5 and 0.25. Group 2 (rewards 1, 0, 0, 1) has ratio 1
    everywhere except the first token of its first rollout (ratio 1.5)."""
    rewards = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    logps = torch.full((8, 2), math.log(0.3), dtype=torch.float64)
    logps[3] = torch.tensor([0.5, 0.25], dtype=torch.float64).log()
    logps.requires_grad_(True)
    old = logps.detach().clone()
    old[4, 0] -= math.log(1.5)
    # mean-only advantages of group 2; group 1's would be 0 and must not matter
    advantages = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.5, -0.5, -0.5, 0.5], dtype=torch.float64)
    mask = torch.ones(8, 2)
    sft_rows = torch.tensor([False, False, False, True, False, False, False, False])
    return rewards, logps, old, advantages, mask, sft_rows


def test_worked_example_gate_zero_slices_the_failed_group_out_of_l_rl():
    rewards, logps, old, advantages, mask, sft_rows = worked_example()
    gate = gate_groups(rewards, 4, success_threshold=1.0, gate=0, has_demonstration=torch.tensor([True, True]))
    assert gate.correct.tolist() == [0, 2]
    assert gate.to_sft.tolist() == [True, False]  # group 2's demonstration is not used
    rl_rows = gate.rl_rows(4)
    assert rl_rows.tolist() == [False] * 4 + [True] * 4

    rl_loss, demo_loss = gated_group_losses(logps, old, advantages, mask, rl_rows, sft_rows, **UNCLIPPED)
    assert demo_loss.item() == pytest.approx((math.log(2) + math.log(4)) / 2)  # 1.039721
    # first rollout: (-0.5 * 1.5 - 0.5) / 2 = -0.625; the others 0.5, 0.5, -0.5; mean over the 4 kept rows
    assert rl_loss.item() == pytest.approx(-0.03125)
    total = rl_loss + 1.0 * demo_loss
    assert total.item() == pytest.approx(1.008471, abs=1e-6)

    total.backward()
    assert torch.equal(logps.grad[:3], torch.zeros(3, 2, dtype=torch.float64))  # group 1's rollouts
    torch.testing.assert_close(logps.grad[3], torch.tensor([-0.5, -0.5], dtype=torch.float64))  # d NLL / d logp / 2 tokens


def test_clipping_and_masking_instead_of_slicing_give_other_values():
    rewards, logps, old, advantages, mask, sft_rows = worked_example()
    rl_rows = torch.tensor([False] * 4 + [True] * 4)
    clipped, _ = gated_group_losses(logps, old, advantages, mask, rl_rows, sft_rows, epsilon_low=0.2, epsilon_high=0.2)
    assert clipped.item() == pytest.approx(-0.0125)  # the ratio 1.5 clipped at 1.2
    # Only masking group 1 keeps its 4 rows in the grpo mean: half the value.
    masked = clipped_surrogate(logps, old, advantages, mask * rl_rows.unsqueeze(-1), **UNCLIPPED)
    assert masked.item() == pytest.approx(-0.015625)


def test_a_larger_gate_also_sends_group_two_to_sft():
    rewards, *_ = worked_example()
    gate = gate_groups(rewards, 4, success_threshold=1.0, gate=2, has_demonstration=torch.tensor([True, True]))
    assert gate.to_sft.tolist() == [True, True]
    assert gate.rl_rows(4).tolist() == [False] * 8


def test_a_failing_group_without_a_demonstration_stays_in_rl_and_is_counted():
    rewards = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    gate = gate_groups(rewards, 4, success_threshold=1.0, gate=0, has_demonstration=torch.tensor([False, True, True]))
    assert gate.to_sft.tolist() == [False, False, False]
    assert gate.no_demonstration.tolist() == [True, False, False]
    metrics = gate.metrics(4)
    assert metrics["sft_prompt_share"] == 0.0 and metrics["no_demo_groups"] == 1.0
    assert metrics["rl_groups"] == 3.0 and metrics["sft_groups"] == 0.0
    assert metrics["solve_none"] == 1.0 and metrics["solve_all"] == 1.0
    assert [metrics[f"correct_{k}"] for k in range(5)] == [1.0, 0.0, 1.0, 0.0, 1.0]


def test_rewards_count_as_correct_from_the_success_threshold_on():
    rewards = torch.tensor([0.5, 0.9, 0.2, 0.1])
    gate = gate_groups(rewards, 4, success_threshold=0.9, gate=0, has_demonstration=torch.tensor([True]))
    assert gate.correct.tolist() == [1] and not gate.to_sft.item()


@pytest.mark.parametrize("sft_groups", [[False, False], [True, True]])
def test_an_empty_term_is_a_zero_that_still_backpropagates(sft_groups):
    _, logps, old, advantages, mask, _ = worked_example()
    to_sft = torch.tensor(sft_groups).repeat_interleave(4)
    sft_rows = to_sft & (torch.arange(8) % 4 == 3)
    rl_loss, demo_loss = gated_group_losses(logps, old, advantages, mask, ~to_sft, sft_rows, **UNCLIPPED)
    empty = demo_loss if not any(sft_groups) else rl_loss
    assert empty.item() == 0.0 and empty.requires_grad
    (rl_loss + demo_loss).backward()
    assert torch.isfinite(logps.grad).all()


def test_token_weights_reach_the_sft_term():
    rewards, logps, old, advantages, mask, sft_rows = worked_example()
    rl_rows = torch.tensor([False] * 4 + [True] * 4)
    weights = logps.detach().exp()  # DFT's weight: p
    _, demo_loss = gated_group_losses(logps, old, advantages, mask, rl_rows, sft_rows, sft_token_weights=weights, **UNCLIPPED)
    assert demo_loss.item() == pytest.approx((0.5 * math.log(2) + 0.25 * math.log(4)) / 2)


def test_gate_checks_its_arguments():
    with pytest.raises(ValueError, match="gate"):
        gate_groups(torch.zeros(4), 4, 1.0, gate=-1, has_demonstration=torch.tensor([True]))
    with pytest.raises(ValueError, match="has_demonstration"):
        gate_groups(torch.zeros(8), 4, 1.0, gate=0, has_demonstration=torch.tensor([True]))
