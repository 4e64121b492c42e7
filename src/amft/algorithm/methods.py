"""Math and state of the baselines that mix SFT and RL differently from AMFT (see docs/design.md, 'Methods').

- CHORD (arXiv 2508.11408): a scheduled mu (:func:`chord_mu`) and the token weight
  p(1 - p) on the SFT loss (:func:`chord_phi`).
- LUFFY (arXiv 2504.14945): demonstrations placed in the rollout groups, trained with
  a shaped, unclipped importance term (:func:`luffy_surrogate`).
- SRFT (arXiv 2506.19767): entropy-aware weights (:func:`srft_weights`) and a
  likelihood term on self-rollouts (:func:`srft_rl_loss`).
- ReLIFT (arXiv 2506.07527): prompts whose rollouts all fail (:func:`all_failed_groups`)
  are collected (:class:`HardPromptBuffer`) for an interleaved SFT step.
- DFT (arXiv 2508.05629): the token weight p on the SFT loss (:func:`dft_weight`), one of the
  token weightings of L_SFT (:data:`TOKEN_WEIGHTINGS`).

Their mu controllers (SFT->RL, CHORD-mu) are in :mod:`.controllers`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .losses import (
    _aggregate_token_losses,
    _check_aggregation,
    _check_groups,
    _clipped_token_losses,
    corrected_for_sampling,
)

__all__ = [
    "TOKEN_WEIGHTINGS",
    "HardPromptBuffer",
    "all_failed_groups",
    "chord_mu",
    "chord_phi",
    "dft_weight",
    "sft_token_weights",
    "luffy_surrogate",
    "srft_rl_loss",
    "srft_weights",
]


def chord_mu(step: int, *, mu_peak: float, mu_valley: float, warmup_steps: int, decay_steps: int) -> float:
    """CHORD's mu at ``step`` (counted from 0).

    Linear rise from 0 at step 0 to ``mu_peak`` at step ``warmup_steps``, cosine decay
    from ``mu_peak`` to ``mu_valley`` over the next ``decay_steps`` steps, then
    ``mu_valley``. With ``decay_steps = 0``, mu drops to ``mu_valley`` at ``warmup_steps``.
    """
    for name, value in (("mu_peak", mu_peak), ("mu_valley", mu_valley)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    if warmup_steps < 0 or decay_steps < 0:
        raise ValueError(f"warmup_steps and decay_steps must be >= 0, got {warmup_steps} and {decay_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return mu_peak * step / warmup_steps
    decayed = step - warmup_steps
    if decayed >= decay_steps:
        return float(mu_valley)
    cosine = 0.5 * (1.0 + math.cos(math.pi * decayed / decay_steps))
    return mu_valley + (mu_peak - mu_valley) * cosine


def chord_phi(token_logps: Tensor) -> Tensor:
    """CHORD's per-token SFT weight ``p (1 - p)`` with ``p = exp(logp)``, detached.

    Pass it as ``token_weights`` to :func:`~amft.algorithm.losses.sft_loss`: it
    down-weights the expert tokens the policy is already sure of (p near 1) and those
    it finds implausible (p near 0). No gradient flows through the weight.
    """
    p = token_logps.detach().exp()
    return p * (1.0 - p)


def dft_weight(token_logps: Tensor) -> Tensor:
    """DFT's per-token SFT weight ``p = exp(logp)``, detached.

    With it, each demonstration token's NLL is ``-p log p`` with the gradient ``-p grad(log p)``:
    tokens the policy finds unlikely are pushed less than by the plain NLL. As TRL's
    ``SFTConfig(loss_type="dft")``, the weighted NLL is then averaged over the tokens.
    """
    return token_logps.detach().exp()


#: The token weightings of L_SFT: name -> the detached weights of the tokens' log-probs (None: plain NLL).
TOKEN_WEIGHTINGS: dict[str, Callable[[Tensor], Tensor] | None] = {"none": None, "chord-phi": chord_phi, "dft": dft_weight}


def sft_token_weights(weighting: str, token_logps: Tensor) -> Tensor | None:
    """The ``token_weights`` of :func:`~amft.algorithm.losses.sft_loss` for the token weighting
    ``weighting`` (a key of :data:`TOKEN_WEIGHTINGS`): None for the plain NLL."""
    if weighting not in TOKEN_WEIGHTINGS:
        raise ValueError(f"token weighting must be one of {tuple(TOKEN_WEIGHTINGS)}, got {weighting!r}")
    weigh = TOKEN_WEIGHTINGS[weighting]
    return None if weigh is None else weigh(token_logps)


def luffy_surrogate(
    token_logps: Tensor,
    old_token_logps: Tensor,
    advantages: Tensor,
    mask: Tensor,
    off_policy: Tensor,
    *,
    gamma: float = 0.1,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    aggregation: str = "grpo",
    max_completion_length: int | None = None,
    normalizer: float | Tensor | None = None,
    sampling_correction: Tensor | None = None,
) -> Tensor:
    """LUFFY's mixed-policy surrogate over rollouts and demonstrations, as a 0-dim tensor.

    ``off_policy`` (``(B,)`` bool) marks the rows that are demonstrations placed in a
    rollout group. On-policy rows get exactly the per-token clipped surrogate of
    :func:`~amft.algorithm.losses.clipped_surrogate`. Off-policy rows take the
    behaviour probability as 1 (their ``old_token_logps`` are ignored), pass the
    importance term ``p = exp(logp)`` through ``f(p) = p / (p + gamma)`` and are not
    clipped: per token ``-f(p) * A``, with gradient ``-A * gamma / (p + gamma)^2 * grad p``,
    which amplifies the expert tokens the policy finds unlikely. All rows are then
    aggregated together as in ``clipped_surrogate``.

    ``advantages`` (``(B,)`` or ``(B, T)``) are
    :func:`~amft.algorithm.losses.group_advantages` of the mixed groups, demonstrations
    included: a demonstration gets a large advantage exactly when the policy's own
    rollouts of its prompt fail.

    ``sampling_correction`` (TRL's ratio of vLLM rollouts, see
    :func:`~amft.algorithm.losses.clipped_surrogate`) weights the on-policy rows only: the
    demonstrations were not sampled.
    """
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    _check_aggregation(aggregation, max_completion_length)
    if off_policy.shape != token_logps.shape[:1]:
        raise ValueError(f"off_policy must have shape ({token_logps.size(0)},), got {tuple(off_policy.shape)}")
    active = mask.bool()
    off_rows = off_policy.bool().unsqueeze(-1)
    on_policy = _clipped_token_losses(
        token_logps, old_token_logps, advantages, active & ~off_rows, epsilon_low, epsilon_high
    )
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    # As in the clipped term: a zero log-prob wherever the shaped term is not used keeps
    # exp() finite, so padding cannot put inf/NaN into the gradient.
    p = torch.exp(torch.where(active & off_rows, token_logps, torch.zeros_like(token_logps)))
    off_policy_losses = -(p / (p + gamma)) * advantages
    on_policy = corrected_for_sampling(on_policy, sampling_correction)
    per_token = torch.where(off_rows, off_policy_losses, on_policy)
    return _aggregate_token_losses(per_token, active, aggregation, max_completion_length, normalizer)


def srft_weights(
    entropy: float, *, sft_coef: float = 0.5, rl_coef: float = 0.1, sft_entropy_sign: int = -1
) -> tuple[float, float]:
    """SRFT's entropy-aware weights ``(w_sft, w_rl_positive)`` for the policy entropy H.

    ``w_sft = sft_coef * exp(sft_entropy_sign * H)`` weights the SFT loss on the
    demonstrations; ``w_rl_positive = rl_coef * exp(H)`` weights the positive
    self-rollouts (``positive_weight`` of :func:`srft_rl_loss`). Both are plain floats,
    i.e. the paper's stop-gradient. ``sft_entropy_sign = -1`` is the paper's Eq. 8; the
    released code reportedly uses +1 (unverified), hence the flag (see docs/design.md, 'SRFT').
    """
    if sft_entropy_sign not in (-1, 1):
        raise ValueError(f"sft_entropy_sign must be -1 or 1, got {sft_entropy_sign}")
    entropy = float(entropy)
    return sft_coef * math.exp(sft_entropy_sign * entropy), rl_coef * math.exp(entropy)


def srft_rl_loss(
    token_logps: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    positive_weight: float,
    aggregation: str = "grpo",
    max_completion_length: int | None = None,
    normalizer: float | Tensor | None = None,
    sampling_correction: Tensor | None = None,
) -> Tensor:
    """SRFT's RL term on on-policy self-rollouts, as a 0-dim tensor.

    Per token ``-w * A * logp``, with ``w = positive_weight`` where ``A > 0`` and
    ``w = 1`` elsewhere: the negative samples' likelihood is minimised at full weight.
    ``advantages`` is ``(B,)`` or ``(B, T)``. Aggregated, and weighted by ``sampling_correction``,
    as in :func:`~amft.algorithm.losses.clipped_surrogate`.
    """
    _check_aggregation(aggregation, max_completion_length)
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    weighted = torch.where(advantages > 0, positive_weight * advantages, advantages)
    per_token = corrected_for_sampling(-weighted * token_logps, sampling_correction)
    return _aggregate_token_losses(per_token, mask.bool(), aggregation, max_completion_length, normalizer)


def all_failed_groups(rewards: Tensor, group_size: int, success_threshold: float) -> list[int]:
    """Indices of the prompt groups in which no rollout's reward reaches ``success_threshold``.

    ``rewards`` (``(N,)``) holds consecutive groups of ``group_size`` rollouts, as in
    :func:`~amft.algorithm.losses.group_advantages`. These are ReLIFT's hard prompts:
    RL gets no signal from them.
    """
    _check_groups(rewards, group_size)
    failed = (rewards.view(-1, group_size) < success_threshold).all(dim=1)
    return failed.nonzero().flatten().tolist()


class HardPromptBuffer:
    """ReLIFT's buffer of hard prompts with their demonstrations, for the interleaved SFT step.

    Rows are plain JSON-serialisable dicts, kept in insertion order. Once ``capacity``
    rows are held the buffer is ``full``, and rows added before the next :meth:`drain`
    are dropped: each SFT step trains on exactly one buffer, and a dropped prompt that
    still fails can be collected again later.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._rows: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def full(self) -> bool:
        """Whether ``capacity`` rows are held (time for the SFT step)."""
        return len(self._rows) >= self.capacity

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` (copied) up to capacity; the rest are dropped."""
        room = self.capacity - len(self._rows)
        self._rows.extend(dict(row) for row in rows[:room])

    def drain(self) -> list[dict[str, Any]]:
        """Return all held rows, oldest first, and empty the buffer."""
        rows, self._rows = self._rows, []
        return rows

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state from which ``load_state_dict`` resumes exactly."""
        return {"rows": [dict(row) for row in self._rows]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by ``state_dict`` of a buffer with the same capacity."""
        rows = [dict(row) for row in state["rows"]]
        if len(rows) > self.capacity:
            raise ValueError(f"state holds {len(rows)} rows, more than the capacity {self.capacity}")
        self._rows = rows
