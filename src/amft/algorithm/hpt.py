"""HPT's gate between RL and SFT, per prompt group (see docs/design.md, 'HPT').

HPT (arXiv 2509.04419) samples a group of rollouts per prompt as GRPO does. A group in which at
most ``gate`` rollouts succeed leaves L_RL, and the prompt's demonstration is trained with the
SFT loss instead; every other group is trained with the clipped surrogate. SuperRL
(arXiv 2506.01096) is the same rule with ``gate = 0``: SFT exactly when no rollout succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .losses import _check_groups, clipped_surrogate, masked_mean, sft_loss

__all__ = ["GroupGate", "gate_groups", "gated_group_losses"]


@dataclass(frozen=True)
class GroupGate:
    """The gate's decision for each prompt group of a batch; every tensor is ``(P,)``."""

    #: rollouts of the group whose reward reaches the success threshold
    correct: Tensor
    #: the group leaves L_RL and its prompt's demonstration is trained with SFT
    to_sft: Tensor
    #: the group fails the gate but its prompt has no demonstration, so it stays in L_RL
    no_demonstration: Tensor

    def rl_rows(self, group_size: int) -> Tensor:
        """``(P * group_size,)`` bool: the rollouts that L_RL trains on (those of groups kept for RL)."""
        return (~self.to_sft).repeat_interleave(group_size)

    def metrics(self, group_size: int) -> dict[str, float]:
        """Per-step counts of the groups: switched to SFT, kept for RL, failing the gate without a
        demonstration, solved by none or all rollouts, and how many have k correct rollouts."""
        groups = max(self.correct.numel(), 1)
        values = {
            "sft_prompt_share": self.to_sft.sum().item() / groups,
            "sft_groups": float(self.to_sft.sum().item()),
            "rl_groups": float((~self.to_sft).sum().item()),
            "no_demo_groups": float(self.no_demonstration.sum().item()),
            "solve_none": float((self.correct == 0).sum().item()),
            "solve_all": float((self.correct == group_size).sum().item()),
        }
        values.update({f"correct_{k}": float((self.correct == k).sum().item()) for k in range(group_size + 1)})
        return values


def gate_groups(
    rewards: Tensor, group_size: int, success_threshold: float, gate: int, has_demonstration: Tensor
) -> GroupGate:
    """HPT's gate over consecutive groups of ``group_size`` rollout rewards ``(N,)``.

    A group with at most ``gate`` rollouts whose reward reaches ``success_threshold`` goes to
    SFT when its prompt has a demonstration (``has_demonstration``, ``(N / group_size,)`` bool);
    without one it stays in RL, where it is counted in ``no_demonstration``.
    """
    _check_groups(rewards, group_size)
    if gate < 0:
        raise ValueError(f"gate counts correct rollouts and must be >= 0, got {gate}")
    correct = (rewards.view(-1, group_size) >= success_threshold).sum(dim=1)
    if has_demonstration.shape != correct.shape:
        raise ValueError(f"has_demonstration must have shape {tuple(correct.shape)}, got {tuple(has_demonstration.shape)}")
    fails_gate = correct <= gate
    has_demonstration = has_demonstration.to(device=correct.device, dtype=torch.bool)
    return GroupGate(correct=correct, to_sft=fails_gate & has_demonstration, no_demonstration=fails_gate & ~has_demonstration)


def gated_group_losses(
    token_logps: Tensor,
    old_token_logps: Tensor,
    advantages: Tensor,
    mask: Tensor,
    rl_rows: Tensor,
    sft_rows: Tensor,
    *,
    sft_token_weights: Tensor | None = None,
    sft_normalizer: float | Tensor | None = None,
    sampling_correction: Tensor | None = None,
    **surrogate,
) -> tuple[Tensor, Tensor]:
    """``(L_RL, L_SFT)`` of a batch whose rows the gate has split, each a 0-dim tensor.

    L_RL is :func:`~amft.algorithm.losses.clipped_surrogate`, with the scalar settings ``surrogate``
    (epsilons, aggregation, its length or normaliser), over the rows ``rl_rows`` (``(B,)`` bool)
    only: the other rows are sliced out, not masked, because the ``grpo`` aggregation averages
    over rows and a masked row would still count. L_SFT is
    :func:`~amft.algorithm.losses.sft_loss` over the tokens of the demonstration rows ``sft_rows``.
    ``sampling_correction`` (per row, see :func:`~amft.algorithm.losses.clipped_surrogate`) weights
    L_RL's rows only. Rows in neither (the rollouts of groups sent to SFT) get no gradient. A term with no row is a
    zero that stays in the graph, so a micro-batch without RL or SFT rows still backpropagates.
    """
    active = mask.bool()
    nothing = masked_mean(token_logps, torch.zeros_like(active))
    rl_rows, sft_rows = rl_rows.bool(), sft_rows.bool()
    rl_loss = nothing
    if rl_rows.any():
        per_row = (token_logps, old_token_logps, advantages, active)
        correction = None if sampling_correction is None else sampling_correction[rl_rows]
        rl_loss = clipped_surrogate(
            *(tensor[rl_rows] for tensor in per_row), sampling_correction=correction, **surrogate
        )
    demonstrations = active & sft_rows.unsqueeze(-1)
    sft = sft_loss(token_logps, demonstrations, sft_token_weights, sft_normalizer) if sft_rows.any() else nothing
    return rl_loss, sft
