"""The correction of vLLM rollouts (TRL's truncated or masked importance-sampling ratio) in every form of L_RL,
against values computed by hand (see docs/design.md, 'GRPO settings')."""

import math

import pytest
import torch

from amft.algorithm import clipped_surrogate, gated_group_losses, luffy_surrogate, srft_rl_loss

torch.set_num_threads(1)

#: Per-token weights (seq 0: one clamped at C_max = 3, one masked to 0; the padding's 7 must not count) and
#: per-sequence weights (seq 1 masked out), as TRL's modes produce them.
PER_TOKEN = torch.tensor([[3.0, 0.5, 0.0], [2.0, 0.25, 7.0]], dtype=torch.float64)
PER_SEQUENCE = torch.tensor([[2.0], [0.0]], dtype=torch.float64)
# Clipped per-token losses of the fixture: seq 0 (A = +1) -1.2, -0.5, -1.0; seq 1 (A = -1) 0.8, 1.5.
SEQ0_CORRECTED = (-1.2 * 3.0 - 0.5 * 0.5 - 1.0 * 0.0) / 3
SEQ1_CORRECTED = (0.8 * 2.0 + 1.5 * 0.25) / 2


@pytest.mark.parametrize(
    ("correction", "expected"),
    [
        (None, ((-1.2 - 0.5 - 1.0) / 3 + (0.8 + 1.5) / 2) / 2),
        (PER_TOKEN, (SEQ0_CORRECTED + SEQ1_CORRECTED) / 2),
        (PER_SEQUENCE, (2.0 * (-1.2 - 0.5 - 1.0) / 3 + 0.0) / 2),
    ],
)
def test_clipped_surrogate_weights_each_tokens_clipped_loss(surrogate_inputs, correction, expected):
    logps, old, advantages, mask = surrogate_inputs
    loss = clipped_surrogate(logps, old, advantages, mask, sampling_correction=correction)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_the_correction_is_a_weight_not_a_variable(surrogate_inputs):
    logps, old, advantages, mask = surrogate_inputs
    correction = PER_TOKEN.clone().requires_grad_(True)
    clipped_surrogate(logps, old, advantages, mask, sampling_correction=correction).backward()
    assert correction.grad is None
    # seq 1, token 0 (rho 0.5 clipped low): no gradient, whatever its weight; token 1: -(-1) * rho * 0.25,
    # over 2 tokens and 2 sequences.
    assert logps.grad[1, :2].tolist() == pytest.approx([0.0, 1.5 * 0.25 / 4], abs=1e-12)


def test_the_kl_term_is_not_corrected(surrogate_inputs):
    # As in TRL: the ratio multiplies the policy term; beta * KL is added afterwards.
    logps, old, advantages, mask = surrogate_inputs
    reference = logps.detach() + torch.tensor([[0.3, -0.2, 0.1], [0.5, 0.0, 0.0]], dtype=torch.float64)

    def loss(correction, beta):
        return clipped_surrogate(logps, old, advantages, mask, kl_beta=beta, ref_token_logps=reference,
                                 sampling_correction=correction).item()

    kl_part = loss(None, 0.4) - loss(None, 0.0)
    assert kl_part > 0
    assert loss(PER_TOKEN, 0.4) - loss(PER_TOKEN, 0.0) == pytest.approx(kl_part, abs=1e-12)


def test_luffy_corrects_its_rollouts_and_not_its_demonstrations(surrogate_inputs):
    logps, old, advantages, mask = surrogate_inputs
    off_policy = torch.tensor([False, True])  # seq 1 is a demonstration: p = 0.5, 1.5 with A = -1
    demonstration = (0.5 / 0.6 + 1.5 / 1.6) / 2
    loss = luffy_surrogate(logps, old, advantages, mask, off_policy, gamma=0.1, sampling_correction=PER_TOKEN)
    assert loss.item() == pytest.approx((SEQ0_CORRECTED + demonstration) / 2, abs=1e-12)


def test_srft_weights_the_rollout_likelihood_term(surrogate_inputs):
    logps, _, advantages, mask = surrogate_inputs
    log = [math.log(r) for r in (1.5, 0.5, 1.0, 0.5, 1.5)]
    # -w * A * logp with w = 0.5 for A > 0, then times the correction.
    seq0 = -0.5 * (log[0] * 3.0 + log[1] * 0.5 + log[2] * 0.0) / 3
    seq1 = (log[3] * 2.0 + log[4] * 0.25) / 2
    loss = srft_rl_loss(logps, advantages, mask, positive_weight=0.5, sampling_correction=PER_TOKEN)
    assert loss.item() == pytest.approx((seq0 + seq1) / 2, abs=1e-12)


def test_hpt_corrects_the_rows_left_to_rl_only(surrogate_inputs):
    logps, old, advantages, mask = surrogate_inputs
    rl_loss, sft = gated_group_losses(logps, old, advantages, mask, torch.tensor([True, False]),
                                      torch.tensor([False, True]), sampling_correction=PER_TOKEN)
    assert rl_loss.item() == pytest.approx(SEQ0_CORRECTED, abs=1e-12)
    assert sft.item() == pytest.approx(-(math.log(0.5) + math.log(1.5)) / 2, abs=1e-12)
