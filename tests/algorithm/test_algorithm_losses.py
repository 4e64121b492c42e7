"""Losses against values computed by hand on tiny tensors."""

import math

import pytest
import torch

from amft.algorithm import (
    clipped_surrogate,
    group_advantages,
    masked_mean,
    sft_loss,
    token_entropy,
    token_log_probs,
)

torch.set_num_threads(1)


def test_token_log_probs_hand_value_and_float32():
    # softmax([0, ln 3]) = [1/4, 3/4]
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]])
    targets = torch.tensor([[1, 0]])
    out = token_log_probs(logits, targets)
    assert out.shape == (1, 2)
    torch.testing.assert_close(out, torch.tensor([[math.log(0.75), math.log(0.25)]]))

    half = token_log_probs(logits.to(torch.bfloat16), targets)
    assert half.dtype == torch.float32


def test_token_log_probs_matches_log_softmax_and_gradient():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 7, (2, 3), generator=gen)
    reference = torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(token_log_probs(logits, targets), reference)
    # d log p_y / d logits = onehot(y) - softmax
    token_log_probs(logits, targets)[0, 0].backward()
    expected = torch.nn.functional.one_hot(targets[0, 0], 7).double() - torch.softmax(logits[0, 0], -1)
    torch.testing.assert_close(logits.grad[0, 0], expected.detach(), rtol=1e-5, atol=1e-6)


def test_token_entropy_uniform_is_log_v():
    logits = torch.zeros(2, 3, 5)
    out = token_entropy(logits)
    assert out.shape == (2, 3) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full((2, 3), math.log(5.0)))


def test_token_entropy_hand_value_and_masked_vocab():
    logits = torch.tensor([[[0.0, math.log(3.0), -float("inf")]]], requires_grad=True)
    out = token_entropy(logits)
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    torch.testing.assert_close(out, torch.tensor([[expected]]))
    out.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_token_entropy_of_nan_logits_is_nan():
    # An overflowed forward must not look like a certain policy (entropy 0).
    logits = torch.tensor([[[0.0, 1.0, 2.0], [float("nan"), 0.0, 0.0]]])
    out = token_entropy(logits)
    assert torch.isfinite(out[0, 0]) and torch.isnan(out[0, 1])


def test_masked_mean_value_normalizer_and_all_masked():
    values = torch.tensor([[1.0, 2.0, float("nan")], [float("inf"), 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [0, 1, 0]])
    torch.testing.assert_close(masked_mean(values, mask), torch.tensor(8.0 / 3.0))
    torch.testing.assert_close(masked_mean(values, mask, normalizer=4.0), torch.tensor(2.0))

    leaf = torch.tensor([[1.0, 2.0]], requires_grad=True)
    out = masked_mean(leaf, torch.zeros(1, 2))
    assert out.item() == 0.0
    out.backward()
    torch.testing.assert_close(leaf.grad, torch.zeros(1, 2))


def test_sft_loss_plain_weighted_and_empty():
    logps = torch.tensor([[-1.0, -2.0], [-3.0, -4.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    torch.testing.assert_close(sft_loss(logps, mask), torch.tensor(2.0))

    weights = torch.tensor([[0.5, 1.0], [2.0, 7.0]], requires_grad=True)
    loss = sft_loss(logps, mask, token_weights=weights)
    torch.testing.assert_close(loss, torch.tensor(8.5 / 3.0))
    loss.backward()
    assert weights.grad is None
    torch.testing.assert_close(logps.grad, torch.tensor([[-0.5, -1.0], [-2.0, 0.0]]) / 3.0)

    empty = sft_loss(logps, torch.zeros(2, 2))
    assert empty.item() == 0.0 and not torch.isnan(empty)
    torch.testing.assert_close(sft_loss(logps, mask, normalizer=6.0), torch.tensor(1.0))


REWARDS = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
CENTERED = torch.tensor([0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5])


def test_group_advantages_group_scale_uses_unbiased_group_std():
    # group 1: squared deviations sum to 0.75 -> var 0.75 / 3 -> std 0.5
    # group 2: squared deviations sum to 1   -> std sqrt(1 / 3)
    std = torch.tensor([0.5] * 4 + [math.sqrt(1.0 / 3.0)] * 4)
    torch.testing.assert_close(group_advantages(REWARDS, 4), CENTERED / (std + 1e-4))


def test_group_advantages_batch_scale_uses_batch_std():
    # batch mean 3/8; squared deviations 3 (5/8)^2 + 5 (3/8)^2 = 15/8 -> var 15/56
    std = math.sqrt(15.0 / 56.0)
    torch.testing.assert_close(group_advantages(REWARDS, 4, scale="batch"), CENTERED / (std + 1e-4))


def test_group_advantages_none_scale_and_degenerate_groups():
    torch.testing.assert_close(group_advantages(REWARDS, 4, scale="none"), CENTERED)
    torch.testing.assert_close(group_advantages(torch.ones(4), 2), torch.zeros(4))
    torch.testing.assert_close(group_advantages(torch.tensor([1.0, 0.0]), 1), torch.zeros(2))


def test_group_advantages_errors():
    with pytest.raises(ValueError, match="group, batch, none"):
        group_advantages(REWARDS, 4, scale="whatever")
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(REWARDS, 3)


# per-token losses: seq 0 -> [-1.2, -0.5, -1.0] (sum -2.7), seq 1 -> [0.8, 1.5] (sum 2.3)
@pytest.mark.parametrize(
    ("aggregation", "kwargs", "expected"),
    [
        ("grpo", {}, (-2.7 / 3 + 2.3 / 2) / 2),
        ("bnpo", {}, -0.4 / 5),
        ("dr_grpo", {"max_completion_length": 4}, -0.4 / 8),
        ("dapo", {}, -0.4 / 5),
        ("dapo", {"normalizer": 10.0}, -0.4 / 10),
    ],
)
def test_clipped_surrogate_aggregations(aggregation, kwargs, expected, surrogate_inputs):
    logps, old, advantages, mask = surrogate_inputs
    loss = clipped_surrogate(logps, old, advantages, mask, aggregation=aggregation, **kwargs)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_clipped_surrogate_clipping_zeroes_gradient_on_both_sides(surrogate_inputs):
    logps, old, advantages, mask = surrogate_inputs
    clipped_surrogate(logps, old, advantages, mask, aggregation="grpo").backward()
    # unclipped tokens: d/dlogp (-rho A) = -rho A, then / tokens-in-sequence / B
    expected = torch.tensor([[0.0, -0.5 / 3 / 2, -1.0 / 3 / 2], [0.0, 1.5 / 2 / 2, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(logps.grad, expected)


def test_clipped_surrogate_asymmetric_epsilons_and_token_advantages(surrogate_inputs):
    logps, old, advantages, mask = surrogate_inputs
    # range [0.4, 1.2]: rho = 1.5 with A > 0 is still clipped, rho = 0.5 with A < 0 no longer is
    loss = clipped_surrogate(logps, old, advantages, mask, epsilon_low=0.6, epsilon_high=0.2, aggregation="bnpo")
    assert loss.item() == pytest.approx((-1.2 - 0.5 - 1.0 + 0.5 + 1.5) / 5)
    per_token = advantages.unsqueeze(-1).expand(2, 3)
    same = clipped_surrogate(logps, old, per_token, mask, aggregation="bnpo")
    assert same.item() == pytest.approx(clipped_surrogate(logps, old, advantages, mask, aggregation="bnpo").item())


def test_clipped_surrogate_with_detached_old_is_policy_gradient():
    logps = torch.tensor([[-0.3, -1.2], [-0.7, -2.0]], requires_grad=True)
    advantages = torch.tensor([2.0, -1.0])
    mask = torch.tensor([[1, 1], [1, 0]])
    loss = clipped_surrogate(logps, logps.detach(), advantages, mask, aggregation="grpo")
    loss.backward()
    expected = torch.tensor([[-2.0 / 2 / 2, -2.0 / 2 / 2], [1.0 / 1 / 2, 0.0]])
    torch.testing.assert_close(logps.grad, expected)


def test_clipped_surrogate_errors(surrogate_inputs):
    logps, old, advantages, mask = surrogate_inputs
    with pytest.raises(ValueError, match="grpo, bnpo, dr_grpo, dapo"):
        clipped_surrogate(logps, old, advantages, mask, aggregation="sum")
    with pytest.raises(ValueError, match="max_completion_length"):
        clipped_surrogate(logps, old, advantages, mask, aggregation="dr_grpo")
