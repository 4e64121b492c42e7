"""Token-level losses shared by AMFT and the baselines (see docs/design.md, 'The RL loss').

All functions take plain tensors: ``(B, T)`` per-token values with a ``(B, T)``
0/1 mask marking the tokens that count (completion or demonstration tokens).
Masking uses ``torch.where`` rather than multiplication, so that values at
padding positions (which may be ``inf`` or ``nan``) can never leak into a loss.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "AGGREGATIONS",
    "ADVANTAGE_SCALES",
    "IMPORTANCE_SAMPLING_LEVELS",
    "clipped_surrogate",
    "corrected_for_sampling",
    "importance_log_ratio",
    "kl_to_reference",
    "group_advantages",
    "masked_mean",
    "sft_loss",
    "token_entropy",
    "token_log_probs",
]

AGGREGATIONS = ("grpo", "bnpo", "dr_grpo", "dapo")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")
ADVANTAGE_SCALES = ("group", "batch", "none")


def token_log_probs(logits: Tensor, targets: Tensor) -> Tensor:
    """Log-probability of each target token: ``(B, T, V), (B, T) -> (B, T)``, float32.

    Computed as ``logit[target] - logsumexp(logits)`` so that no ``(B, T, V)``
    log-softmax tensor is materialised (it would be kept for backward).
    """
    logits = logits.float()
    picked = logits.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def token_entropy(logits: Tensor) -> Tensor:
    """Entropy of the softmax at each position: ``(B, T, V) -> (B, T)``, float32."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    # Logits set to -inf (e.g. banned tokens) give p = 0 and log p = -inf; 0 * -inf
    # would be NaN in the value and in the gradient, so those terms are zeroed first.
    # NaN logits stay NaN: an overflowed forward must not read as a certain policy.
    log_p = torch.where(torch.isneginf(log_p), torch.zeros_like(log_p), log_p)
    return -(log_p.exp() * log_p).sum(dim=-1)


def masked_mean(values: Tensor, mask: Tensor, normalizer: float | Tensor | None = None) -> Tensor:
    """``sum(values[mask]) / normalizer`` as a 0-dim tensor.

    ``normalizer`` defaults to the number of active tokens clamped at 1, so a batch
    with no active token (e.g. a micro-batch without demonstrations) gives 0, not NaN.
    An explicit normalizer (e.g. the global token count under gradient
    accumulation) is used as given and must be positive.
    """
    active = mask.bool()
    total = torch.where(active, values, torch.zeros_like(values)).sum()
    if normalizer is None:
        normalizer = active.sum().clamp(min=1)
    return total / normalizer


def sft_loss(
    token_logps: Tensor,
    mask: Tensor,
    token_weights: Tensor | None = None,
    normalizer: float | Tensor | None = None,
) -> Tensor:
    """Demonstration NLL: masked mean of ``-log p`` over the demonstration tokens.

    ``token_weights`` (e.g. CHORD's ``p(1-p)``) multiply each token's NLL and are
    detached: they reweight tokens but are not themselves optimised.
    """
    nll = -token_logps
    if token_weights is not None:
        nll = nll * token_weights.detach()
    return masked_mean(nll, mask, normalizer)


def group_advantages(rewards: Tensor, group_size: int, scale: str = "group", eps: float = 1e-4) -> Tensor:
    """Group-normalised advantages ``(r - group mean) / (std + eps)`` for rewards ``(N,)``.

    ``rewards`` holds consecutive groups of ``group_size`` completions of the same
    prompt. ``scale`` picks the std: ``"group"`` (each group's), ``"batch"`` (the
    whole batch's) or ``"none"`` (no division, as in TRL). As in TRL's GRPO, the std
    is the unbiased one (Bessel correction), and a std over a single element counts as
    0 instead of NaN. A NaN reward is missing (a completion no reward function could
    score): as in TRL, it is left out of the means and stds and its advantage is 0.
    """
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; valid: {', '.join(ADVANTAGE_SCALES)}")
    _check_groups(rewards, group_size)
    rewards = rewards.float()
    grouped = rewards.view(-1, group_size)
    centered = (grouped - grouped.nanmean(dim=1, keepdim=True)).reshape(-1)
    if scale == "none":
        return centered.nan_to_num(nan=0.0)
    std = _nan_std(grouped, dim=1).repeat_interleave(group_size) if scale == "group" else _nan_std(rewards, dim=0)
    return (centered / (std + eps)).nan_to_num(nan=0.0)


def _nan_std(values: Tensor, dim: int) -> Tensor:
    """The unbiased std along ``dim`` of the values that are not NaN; 0 over fewer than two."""
    present = ~values.isnan()
    count = present.sum(dim=dim, keepdim=True)
    deviations = torch.where(present, values - values.nanmean(dim=dim, keepdim=True), torch.zeros_like(values))
    variance = deviations.square().sum(dim=dim, keepdim=True) / (count - 1).clamp(min=1)
    return variance.sqrt().squeeze(dim)


def _check_groups(rewards: Tensor, group_size: int) -> None:
    """Raise ``ValueError`` unless ``rewards`` is 1-D and splits into groups of ``group_size``."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D, got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"{rewards.numel()} rewards cannot be split into groups of {group_size}")


def clipped_surrogate(
    token_logps: Tensor,
    old_token_logps: Tensor,
    advantages: Tensor,
    mask: Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    aggregation: str = "grpo",
    max_completion_length: int | None = None,
    normalizer: float | Tensor | None = None,
    *,
    importance_sampling_level: str = "token",
    delta: float | None = None,
    kl_beta: float = 0.0,
    ref_token_logps: Tensor | None = None,
    kl_importance_correction: bool = True,
    sampling_correction: Tensor | None = None,
) -> Tensor:
    """GRPO-family clipped surrogate loss, as a 0-dim tensor.

    Per token: ``-min(rho * A, clip(rho, 1 - epsilon_low, 1 + epsilon_high) * A)``
    with ``rho = exp(logp - old_logp)``. ``advantages`` is ``(B,)`` (one per
    sequence) or ``(B, T)``. Aggregation over the active tokens, as in TRL:

    - ``"grpo"``: mean over each sequence's tokens, then mean over sequences;
    - ``"bnpo"``: sum / number of active tokens in this batch;
    - ``"dr_grpo"``: sum / (B * max_completion_length); requires ``max_completion_length``;
    - ``"dapo"``: sum / ``normalizer``, the active-token count of the global
      accumulated batch (default: this batch's active-token count).

    ``max_completion_length`` and ``normalizer`` are ignored by the aggregations
    that do not use them.

    The settings of TRL's GRPO loss, with TRL's meaning:

    - ``importance_sampling_level="sequence"`` (GSPO): rho is one ratio per sequence,
      ``exp(mean over its active tokens of (logp - old_logp))``;
    - ``delta``: two-sided clipping, the unclipped ratio is capped at ``delta``;
    - ``kl_beta > 0``: adds ``kl_beta * KL`` per token, the k3 estimator of
      :func:`kl_to_reference` against ``ref_token_logps``, multiplied by the (unclipped)
      ratio when ``kl_importance_correction`` (TRL's ``use_bias_correction_kl``);
    - ``sampling_correction``: per-token ``(B, T)`` or per-sequence ``(B, 1)`` weights of the sampler's
      mismatch, TRL's ``importance_sampling_ratio`` of vLLM rollouts (pi_old / pi_sampler, truncated or
      masked by ``vllm_importance_sampling_mode``); they multiply each token's clipped loss, not the KL
      term, and are not differentiated (see docs/design.md, 'GRPO settings').

    The plain policy-gradient loss (used for the validation gradient g_val, see
    docs/design.md, 'The meta-gradient') is this function with
    ``old_token_logps = token_logps.detach()``: then ``rho = 1``, clipping is inactive and
    the gradient is ``-A * grad(log p)``, aggregated as above.
    """
    _check_aggregation(aggregation, max_completion_length)
    if kl_beta and ref_token_logps is None:
        raise ValueError("kl_beta > 0 needs ref_token_logps")
    active = mask.bool()
    log_ratio = importance_log_ratio(token_logps, old_token_logps, active, importance_sampling_level)
    per_token = _clipped_losses(log_ratio, advantages, epsilon_low, epsilon_high, delta).expand_as(token_logps)
    per_token = corrected_for_sampling(per_token, sampling_correction)
    if kl_beta:
        kl = kl_to_reference(token_logps, ref_token_logps, active)
        if kl_importance_correction:
            kl = kl * torch.exp(log_ratio)
        per_token = per_token + kl_beta * kl
    return _aggregate_token_losses(per_token, active, aggregation, max_completion_length, normalizer)


def importance_log_ratio(token_logps: Tensor, old_token_logps: Tensor, mask: Tensor, level: str = "token") -> Tensor:
    """log(pi / pi_old): per token ``(B, T)``, or per sequence ``(B, 1)`` (GSPO: the mean over the
    sequence's active tokens). Zero at inactive positions, so padding cannot reach ``exp()``."""
    if level not in IMPORTANCE_SAMPLING_LEVELS:
        raise ValueError(f"importance_sampling_level must be one of {IMPORTANCE_SAMPLING_LEVELS}, got {level!r}")
    active = mask.bool()
    log_ratio = torch.where(active, token_logps - old_token_logps, torch.zeros_like(token_logps))
    if level == "token":
        return log_ratio
    return (log_ratio.sum(dim=-1) / active.sum(dim=-1).clamp(min=1)).unsqueeze(-1)


def corrected_for_sampling(per_token: Tensor, sampling_correction: Tensor | None) -> Tensor:
    """``(B, T)`` per-token losses times the detached ``sampling_correction`` (``(B, T)`` or ``(B, 1)``;
    None: unchanged), as TRL corrects the policy term of vLLM rollouts."""
    if sampling_correction is None:
        return per_token
    return per_token * sampling_correction.detach()


def kl_to_reference(token_logps: Tensor, ref_token_logps: Tensor, mask: Tensor) -> Tensor:
    """Per-token KL(pi || pi_ref) by TRL's k3 estimator ``exp(r) - r - 1`` with ``r = ref_logp - logp``
    (never negative), zero at inactive positions."""
    diff = torch.where(mask.bool(), ref_token_logps - token_logps, torch.zeros_like(token_logps))
    return torch.exp(diff) - diff - 1.0


def _check_aggregation(aggregation: str, max_completion_length: int | None) -> None:
    """Raise ``ValueError`` unless ``aggregation`` is known and has the arguments it needs."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; valid: {', '.join(AGGREGATIONS)}")
    if aggregation == "dr_grpo" and max_completion_length is None:
        raise ValueError("aggregation 'dr_grpo' requires max_completion_length")


def _clipped_token_losses(
    token_logps: Tensor,
    old_token_logps: Tensor,
    advantages: Tensor,
    active: Tensor,
    epsilon_low: float,
    epsilon_high: float,
) -> Tensor:
    """Per-token ``-min(rho * A, clip(rho, 1 - epsilon_low, 1 + epsilon_high) * A)``, ``(B, T)``.

    At inactive positions rho is 1, so no inf/NaN arises there; the caller masks them out.
    """
    log_ratio = importance_log_ratio(token_logps, old_token_logps, active)
    return _clipped_losses(log_ratio, advantages, epsilon_low, epsilon_high, None)


def _clipped_losses(
    log_ratio: Tensor, advantages: Tensor, epsilon_low: float, epsilon_high: float, delta: float | None
) -> Tensor:
    """``-min(rho * A, clip(rho, 1 - epsilon_low, 1 + epsilon_high) * A)`` with ``rho = exp(log_ratio)``
    capped at ``delta`` when given (TRL's two-sided clipping); broadcasts ``(B,)`` advantages."""
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    ratio = torch.exp(log_ratio)
    clipped_ratio = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
    if delta is not None:
        ratio = torch.clamp(ratio, max=delta)
    return -torch.min(ratio * advantages, clipped_ratio * advantages)


def _aggregate_token_losses(
    per_token: Tensor,
    active: Tensor,
    aggregation: str,
    max_completion_length: int | None,
    normalizer: float | Tensor | None,
) -> Tensor:
    """Reduce ``(B, T)`` per-token losses over the ``active`` tokens as ``aggregation`` says
    (see :func:`clipped_surrogate`); call :func:`_check_aggregation` first."""
    per_token = torch.where(active, per_token, torch.zeros_like(per_token))
    if aggregation == "grpo":
        per_sequence = per_token.sum(dim=-1) / active.sum(dim=-1).clamp(min=1)
        return per_sequence.mean()
    if aggregation == "bnpo":
        return masked_mean(per_token, active)
    if aggregation == "dr_grpo":
        return per_token.sum() / (per_token.size(0) * max_completion_length)
    return masked_mean(per_token, active, normalizer)
