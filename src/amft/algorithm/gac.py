"""GAC: mu in closed form from running estimates of gradient noise and disagreement (see docs/design.md, 'GAC').

The mixed gradient mu g_SFT + (1 - mu) g_RL of two noisy estimates (noise variances sigma_s^2,
sigma_r^2) of a target alpha g_SFT* + (1 - alpha) g_RL* has the error
``(mu - alpha)^2 dg^2 + mu^2 sigma_s^2 + (1 - mu)^2 sigma_r^2``, minimised by
``mu* = (alpha dg^2 + sigma_r^2) / (dg^2 + sigma_s^2 + sigma_r^2)`` (:func:`gac_mu_star`).
The three quantities are not measured on gradients but on cheap per-row proxies in coefficient
space, i.e. on the scalars that multiply grad log p in each loss:

- sigma_r^2: the variance of the rollouts' sequence advantages (:func:`rollout_row_statistics`);
- sigma_s^2: the trimmed variance of the demonstrations' mean NLL (:func:`trimmed_variance`);
- dg^2: the mean squared difference of the SFT coefficient -w (w the token weight of L_SFT:
  CHORD's phi(p), or 1 for the plain NLL) and the RL coefficient -A per token, averaged per row,
  then over the rows of both streams.

The trainer turns token tensors into per-row values (the two ``*_row_statistics`` functions),
gathers them over processes, and :func:`measure_noise` makes a :class:`NoiseProxies` of them.
:class:`GACController` smooths the proxies, computes mu*, and guards it (moving average, blend
with a warm-up + cosine prior, capped change per step, bounds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .controllers import BalanceController, ControllerStats
from .methods import chord_mu

__all__ = [
    "GACController",
    "NoiseProxies",
    "demonstration_row_statistics",
    "gac_guarded_mu",
    "gac_mu_star",
    "measure_noise",
    "rollout_row_statistics",
    "moving_average_step",
    "trimmed_variance",
]

#: Keeps mu* defined when all three proxies are 0.
MU_STAR_EPS = 1e-8
#: Lower bound of sigma_s^2: a batch of identical demonstration losses is not noise-free.
SFT_VARIANCE_FLOOR = 1e-8
#: An advantage smaller than this in magnitude counts as zero (a group whose rewards are all equal).
INFORMATIVE_ADVANTAGE = 1e-6
#: What mu* reads before the first measurement: no disagreement, equal noise (mu* = 1/2).
FALLBACK_SIGMA2 = 1.0
FALLBACK_DELTA_G2 = 0.0


@dataclass(frozen=True)
class NoiseProxies:
    """One step's measurements, over the rows of all processes.

    ``informative_fraction``: the share of rollouts with a nonzero advantage (above
    ``INFORMATIVE_ADVANTAGE`` in magnitude: rollouts of groups whose rewards differ); with
    group-normalised advantages sigma_r^2 grows with it.
    """

    sigma_r2: float
    sigma_s2: float
    delta_g2: float
    informative_fraction: float


def gac_mu_star(sigma_s2: float, sigma_r2: float, delta_g2: float, alpha: float) -> float:
    """The minimiser ``(alpha dg^2 + sigma_r^2) / (dg^2 + sigma_s^2 + sigma_r^2)``.

    Without disagreement it is inverse-variance weighting (the noisier RL, the more SFT); with a
    large disagreement it tends to alpha.
    """
    return (alpha * delta_g2 + sigma_r2) / (delta_g2 + sigma_s2 + sigma_r2 + MU_STAR_EPS)


def moving_average_step(previous: float | None, value: float, beta: float) -> float:
    """A moving average step ``beta previous + (1 - beta) value``; the first value (``previous`` None)
    is taken as is, so the average starts at the first measurement and carries no bias towards 0."""
    if previous is None:
        return float(value)
    return beta * previous + (1.0 - beta) * float(value)


def gac_guarded_mu(
    previous_mu: float,
    mu_star: float,
    prior: float,
    *,
    ema_beta: float,
    blend: float,
    change_cap: float,
    mu_min: float,
    mu_max: float,
) -> tuple[float, float]:
    """``(mu_ada, mu)``: mu* smoothed towards the previous mu and clipped (``mu_ada``), blended with the
    prior as ``(1 - blend) prior + blend mu_ada``, then moved from the previous mu by at most
    ``change_cap`` and clipped to ``[mu_min, mu_max]``."""
    mu_ada = _clip(ema_beta * previous_mu + (1.0 - ema_beta) * mu_star, mu_min, mu_max)
    candidate = (1.0 - blend) * prior + blend * mu_ada
    step = _clip(candidate - previous_mu, -change_cap, change_cap)
    return mu_ada, _clip(previous_mu + step, mu_min, mu_max)


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _row_means(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of each row over its active tokens, ``(B, T) -> (B,)``; NaN for a row without one."""
    active = mask.bool()
    sums = torch.where(active, values, torch.zeros_like(values)).sum(dim=-1)
    counts = active.sum(dim=-1)
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, math.nan))


def _sft_coefficient(sft_weights: Tensor | None, mask: Tensor) -> Tensor:
    # The factor of grad log p in the SFT loss: minus the token weight, -1 for the plain NLL.
    if sft_weights is None:
        return -torch.ones(mask.shape, dtype=torch.float64, device=mask.device)
    return -sft_weights.detach().double()


def rollout_row_statistics(mask: Tensor, advantages: Tensor, sft_weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per rollout row: ``(advantage, disagreement)``, each ``(B,)``, NaN for a row without active tokens.

    ``advantage`` is the row's mean advantage over its active tokens (``advantages`` is ``(B,)`` or
    ``(B, T)``). ``disagreement`` is the row's mean of ``(c_s - c_r)^2`` with the RL coefficient
    c_r = -A and the SFT coefficient c_s = -w, ``sft_weights`` w being the weights L_SFT would give
    the sampled tokens (``(B, T)``; None: the plain NLL, w = 1).
    """
    advantages = advantages.detach().double()
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    advantages = advantages.expand(mask.shape)
    disagreement = (_sft_coefficient(sft_weights, mask) + advantages) ** 2
    return _row_means(advantages, mask), _row_means(disagreement, mask)


def demonstration_row_statistics(
    token_logps: Tensor, mask: Tensor, sft_weights: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Per demonstration row: ``(nll, disagreement)``, each ``(B,)``, NaN for a row without active tokens.

    ``nll`` is the row's mean token NLL (unweighted); ``disagreement`` the row's mean of ``c_s^2``
    with c_s = -w as in :func:`rollout_row_statistics` (the RL coefficient of a demonstration is 0).
    """
    nll = -token_logps.detach().double()
    return _row_means(nll, mask), _row_means(_sft_coefficient(sft_weights, mask) ** 2, mask)


def trimmed_variance(values: Tensor, trim: float) -> float:
    """Population variance of ``values`` after dropping the ``floor(trim * N)`` smallest and largest,
    floored at ``SFT_VARIANCE_FLOOR``. Fewer than 4 values, or nothing to drop, are used as they are."""
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    values = values.flatten().double()
    if values.numel() == 0:
        raise ValueError("trimmed_variance needs at least one value")
    dropped = math.floor(trim * values.numel())
    if values.numel() >= 4 and dropped > 0:
        values = values.sort().values[dropped : values.numel() - dropped]
    return max(values.var(unbiased=False).item(), SFT_VARIANCE_FLOOR)


def measure_noise(
    rollout_advantages: Tensor,
    rollout_disagreements: Tensor,
    demonstration_nlls: Tensor,
    demonstration_disagreements: Tensor,
    *,
    trim: float,
) -> NoiseProxies | None:
    """The :class:`NoiseProxies` of one step from the per-row values of the two ``*_row_statistics``
    functions (rows of all processes; NaN rows are dropped). None when either stream has no row.

    sigma_r^2 is the population variance of the rollout advantages, sigma_s^2 the trimmed variance
    of the demonstration NLLs, dg^2 the plain mean of the disagreements over the rows of both streams.
    """
    advantages = rollout_advantages[~rollout_advantages.isnan()].double()
    nlls = demonstration_nlls[~demonstration_nlls.isnan()].double()
    if advantages.numel() == 0 or nlls.numel() == 0:
        return None
    disagreements = torch.cat([rollout_disagreements.flatten(), demonstration_disagreements.flatten()]).double()
    return NoiseProxies(
        sigma_r2=advantages.var(unbiased=False).item(),
        sigma_s2=trimmed_variance(nlls, trim),
        delta_g2=disagreements[~disagreements.isnan()].mean().item(),
        informative_fraction=(advantages.abs() > INFORMATIVE_ADVANTAGE).double().mean().item(),
    )


class GACController(BalanceController):
    """GAC's controller (see docs/design.md, 'GAC').

    Update t = 0, 1, ... (counted from 0, like the prior's step):

    1. **Refresh.** When a refresh is due (``needs_noise_proxies``: the first update, then
       ``update_freq`` updates after the previous refresh) and ``stats.noise_proxies`` is given,
       each proxy's moving average (decay ``ema_beta``, started at its first value) takes it in.
       Proxies passed when no refresh is due are ignored.
    2. **mu*** from the averages (1, 1 and 0 before the first refresh), the disagreement capped
       at ``delta_cap_ratio`` (sigma_s^2 + sigma_r^2) when that ratio is positive.
    3. **Guards** (:func:`gac_guarded_mu`): averaged with the previous mu, blended with the prior
       ``chord_mu(t, prior_peak, prior_valley, prior_warmup_steps, prior_decay_steps)``
       (``blend`` 1: no prior), moved by at most ``mu_change_cap``, clipped to ``[mu_min, mu_max]``.

    mu depends on measurements, so nothing is planned; with ``0 < mu_min`` and ``mu_max < 1`` every
    step trains both losses.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.5,
        ema_beta: float = 0.99,
        mu_change_cap: float = 0.01,
        blend: float = 0.5,
        update_freq: int = 10,
        mu_init: float = 0.5,
        mu_min: float = 0.05,
        mu_max: float = 0.9,
        delta_cap_ratio: float = 0.0,
        prior_peak: float = 0.85,
        prior_valley: float = 0.15,
        prior_warmup_steps: int = 200,
        prior_decay_steps: int = 800,
    ) -> None:
        for name, value in (("alpha", alpha), ("blend", blend), ("mu_init", mu_init), ("mu_min", mu_min),
                            ("mu_max", mu_max), ("prior_peak", prior_peak), ("prior_valley", prior_valley)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if mu_min > mu_max:
            raise ValueError(f"mu_min ({mu_min}) must not exceed mu_max ({mu_max})")
        if not 0.0 <= ema_beta < 1.0:
            raise ValueError(f"ema_beta is a decay and must be in [0, 1), got {ema_beta}")
        if mu_change_cap <= 0.0:
            raise ValueError(f"mu_change_cap must be > 0, got {mu_change_cap}")
        if update_freq < 1:
            raise ValueError(f"update_freq must be >= 1, got {update_freq}")
        if delta_cap_ratio < 0.0:
            raise ValueError(f"delta_cap_ratio must be >= 0 (0: no cap), got {delta_cap_ratio}")
        if prior_warmup_steps < 0 or prior_decay_steps < 0:
            raise ValueError(f"prior_warmup_steps and prior_decay_steps must be >= 0, "
                             f"got {prior_warmup_steps} and {prior_decay_steps}")
        self.alpha = float(alpha)
        self.ema_beta = float(ema_beta)
        self.mu_change_cap = float(mu_change_cap)
        self.blend = float(blend)
        self.update_freq = int(update_freq)
        self.mu_min = float(mu_min)
        self.mu_max = float(mu_max)
        self.delta_cap_ratio = float(delta_cap_ratio)
        self.prior_peak = float(prior_peak)
        self.prior_valley = float(prior_valley)
        self.prior_warmup_steps = int(prior_warmup_steps)
        self.prior_decay_steps = int(prior_decay_steps)
        self._steps = 0
        self._last_refresh: int | None = None
        self._sigma_s2: float | None = None
        self._sigma_r2: float | None = None
        self._delta_g2: float | None = None
        super().__init__(_clip(float(mu_init), self.mu_min, self.mu_max))

    @property
    def needs_noise_proxies(self) -> bool:
        """Whether the next update refreshes the moving averages (so the trainer should measure)."""
        return self._last_refresh is None or self._steps - self._last_refresh >= self.update_freq

    def prior(self, step: int) -> float:
        """The schedule prior at update ``step`` (counted from 0)."""
        return chord_mu(step, mu_peak=self.prior_peak, mu_valley=self.prior_valley,
                        warmup_steps=self.prior_warmup_steps, decay_steps=self.prior_decay_steps)

    def update(self, stats: ControllerStats | None = None) -> float:
        stats = stats or ControllerStats()
        measured = stats.noise_proxies
        refreshed = self.needs_noise_proxies and measured is not None
        if refreshed:
            self._sigma_s2 = moving_average_step(self._sigma_s2, measured.sigma_s2, self.ema_beta)
            self._sigma_r2 = moving_average_step(self._sigma_r2, measured.sigma_r2, self.ema_beta)
            self._delta_g2 = moving_average_step(self._delta_g2, measured.delta_g2, self.ema_beta)
            self._last_refresh = self._steps
        sigma_s2 = FALLBACK_SIGMA2 if self._sigma_s2 is None else self._sigma_s2
        sigma_r2 = FALLBACK_SIGMA2 if self._sigma_r2 is None else self._sigma_r2
        delta_g2 = FALLBACK_DELTA_G2 if self._delta_g2 is None else self._delta_g2
        delta_capped = min(delta_g2, self.delta_cap_ratio * (sigma_s2 + sigma_r2)) if self.delta_cap_ratio else delta_g2
        mu_star = gac_mu_star(sigma_s2, sigma_r2, delta_capped, self.alpha)
        prior = self.prior(self._steps)
        mu_ada, self._mu = gac_guarded_mu(
            self._mu, mu_star, prior, ema_beta=self.ema_beta, blend=self.blend, change_cap=self.mu_change_cap,
            mu_min=self.mu_min, mu_max=self.mu_max,
        )
        self._steps += 1
        self._last_terms = self._terms(entropy=stats.entropy)
        self._last_terms.update({
            "gac/mu/raw": mu_star,
            "gac/mu/ada": mu_ada,
            "gac/mu/prior": prior,
            "gac/mu/value": self._mu,
            "gac/mu/sigma_s2": sigma_s2,
            "gac/mu/sigma_r2": sigma_r2,
            "gac/mu/delta_g2": delta_g2,
            "gac/mu/delta_g2_capped": delta_capped,
            "gac/mu/alpha": self.alpha,
            "gac/mu/blend_weight": self.blend,
            "gac/stats_refreshed": float(refreshed),
            "gac/informative_rollout_fraction": measured.informative_fraction if refreshed else None,
        })
        return self._mu

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(steps=self._steps, last_refresh=self._last_refresh, sigma_s2=self._sigma_s2,
                     sigma_r2=self._sigma_r2, delta_g2=self._delta_g2)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._steps = int(state["steps"])
        self._last_refresh = None if state["last_refresh"] is None else int(state["last_refresh"])
        for name in ("sigma_s2", "sigma_r2", "delta_g2"):
            setattr(self, f"_{name}", None if state[name] is None else float(state[name]))
