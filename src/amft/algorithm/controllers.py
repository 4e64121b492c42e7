"""Controllers of the SFT/RL balance mu in L = (1 - mu) L_RL + mu L_SFT (see docs/design.md, 'The controller').

The trainer calls ``update`` once per optimisation step, before the gradient step,
and takes that step with the returned mu.

Sign convention of the meta-gradient (see docs/design.md, 'The meta-gradient'). With g_SFT, g_RL the gradients
of the SFT and RL *losses* at theta, one SGD step with inner rate alpha gives
``theta'(mu) = theta - alpha [(1 - mu) g_RL + mu g_SFT]``, hence
``d theta'/d mu = -alpha (g_SFT - g_RL)``. The utility U is the validation reward
and g_val is the gradient of the validation policy-gradient *loss*, so
``grad U ~ -g_val`` and, to first order,
``dU/dmu = <grad U, d theta'/d mu> ~ alpha <g_val, g_SFT - g_RL>``.
mu ascends U: it grows when a step on the SFT loss helps the validation reward
more than a step on the RL loss does.

The same look-ahead gives the entropy's slope: with g_H the gradient of the policy's mean
token entropy H, ``dH/dmu = <g_H, d theta'/d mu> = -alpha <g_H, g_SFT - g_RL>``. When the
trainer looks ahead along Adam's direction it passes the preconditioned P g_SFT and P g_RL
in place of g_SFT and g_RL, and both formulas read them unchanged.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import astuple, dataclass, fields
from typing import TYPE_CHECKING, Any

from .alignment import Gradients, gradient_dots
from .methods import HardPromptBuffer, chord_mu

if TYPE_CHECKING:
    from .gac import NoiseProxies

__all__ = [
    "ENTROPY_DIRECTIONS",
    "META_UPDATES",
    "BalanceController",
    "ChordScheduleController",
    "ControllerStats",
    "ExponentialMovingAverage",
    "FixedMuController",
    "MetaAlignment",
    "MetaGradientController",
    "ReliftController",
    "TwoStageController",
    "meta_alignment_from_gradients",
]

_COSINE_EPS = 1e-12

#: How the entropy term moves mu: "fixed" (Eq. 6, entropy below target raises mu) or "measured"
#: (through the measured slope dH/dmu; see docs/design.md, 'The entropy term').
ENTROPY_DIRECTIONS = ("fixed", "measured")
#: How the meta signal moves mu: "linear" (by meta_lr times the signal, the paper) or "normalized" (by
#: meta_lr times the signal over its root mean square; see docs/design.md, 'The controller').
META_UPDATES = ("linear", "normalized")


@dataclass(frozen=True)
class MetaAlignment:
    """Scalars of one meta step: dot products with g_val and the three gradient norms, and, when the
    entropy's gradient g_H was taken, its dot products with the two step directions."""

    val_dot_sft: float
    val_dot_rl: float
    val_norm: float
    sft_norm: float
    rl_norm: float
    entropy_dot_sft: float | None = None
    entropy_dot_rl: float | None = None


@dataclass(frozen=True)
class ControllerStats:
    """What the trainer measured this step.

    ``entropy``: mean per-token entropy H of the policy over its sampled completion
    tokens (see docs/design.md, 'The entropy term'), or ``None`` when none were sampled. ``meta_alignment``: given on
    meta steps only. ``noise_proxies``: given when the controller ``needs_noise_proxies`` (GAC).
    """

    entropy: float | None = None
    meta_alignment: MetaAlignment | None = None
    noise_proxies: NoiseProxies | None = None

    def finite(self) -> tuple[ControllerStats, list[str]]:
        """These stats with each measurement that holds a non-finite number left out (as if not measured),
        and the names of those left out: a step whose loss overflowed must not carry NaN into mu."""
        kept, dropped = {}, []
        for field in fields(self):
            value = getattr(self, field.name)
            numbers = [value] if isinstance(value, float) else astuple(value) if value is not None else []
            if all(number is None or math.isfinite(number) for number in numbers):
                kept[field.name] = value
            else:
                dropped.append(field.name)
        return ControllerStats(**kept), dropped


def meta_alignment_from_gradients(
    g_val: Gradients,
    g_sft: Gradients,
    g_rl: Gradients,
    *,
    g_entropy: Gradients | None = None,
    sharded: bool = False,
    group=None,
) -> MetaAlignment:
    """Compute the :class:`MetaAlignment` of the gradients (one all-reduce when sharded).

    ``g_sft`` and ``g_rl`` are the step directions of the look-ahead: the gradients themselves for
    SGD, the preconditioned gradients for Adam. With ``g_entropy`` (the gradient of H) the
    alignment also holds <g_H, g_SFT> and <g_H, g_RL>.
    """
    pairs = [(g_val, g_sft), (g_val, g_rl), (g_val, g_val), (g_sft, g_sft), (g_rl, g_rl)]
    if g_entropy is not None:
        pairs += [(g_entropy, g_sft), (g_entropy, g_rl)]
    dots = gradient_dots(pairs, sharded=sharded, group=group).tolist()
    val_dot_sft, val_dot_rl, val_sq, sft_sq, rl_sq = dots[:5]
    entropy_dot_sft, entropy_dot_rl = dots[5:] if g_entropy is not None else (None, None)
    return MetaAlignment(
        val_dot_sft=val_dot_sft,
        val_dot_rl=val_dot_rl,
        val_norm=math.sqrt(val_sq),
        sft_norm=math.sqrt(sft_sq),
        rl_norm=math.sqrt(rl_sq),
        entropy_dot_sft=entropy_dot_sft,
        entropy_dot_rl=entropy_dot_rl,
    )


class ExponentialMovingAverage:
    """Bias-corrected exponential moving average of a scalar signal, as Adam's first moment.

    After x_1, ..., x_n the value is ``(1 - d) * sum_i d^(n - i) x_i / (1 - d^n)`` with decay d;
    ``d = 0`` gives the latest x as is. The value is ``None`` before the first x.
    """

    def __init__(self, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"the decay of a moving average must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self._biased = 0.0
        self._count = 0

    @property
    def value(self) -> float | None:
        """The bias-corrected average, or None before the first update."""
        if self._count == 0:
            return None
        return self._biased / (1.0 - self.decay**self._count)

    def update(self, x: float) -> float:
        """Fold in one measurement and return the new average."""
        self._biased = self.decay * self._biased + (1.0 - self.decay) * float(x)
        self._count += 1
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"biased": self._biased, "count": self._count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._biased = float(state["biased"])
        self._count = int(state["count"])


def _check_mu(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


class BalanceController(ABC):
    """Base class: holds mu and exposes the hooks the trainer queries every step.

    The defaults describe a controller with no warm-up, no meta steps and no need
    for entropy rollouts.
    """

    def __init__(self, mu: float) -> None:
        self._mu = _check_mu("mu", mu)
        # Running sums of the two terms: how much of mu's movement came from each.
        self._meta_term_total = 0.0
        self._entropy_term_total = 0.0
        self._last_terms = self._terms(entropy=None)

    @property
    def mu(self) -> float:
        """The mu of the latest update (the one the current gradient step uses)."""
        return self._mu

    @property
    def last_terms(self) -> dict[str, float | None]:
        """Terms of the latest update, for logging: mu, meta_term, meta_gradient,
        entropy_term, entropy, target_entropy, and the running sums meta_term_total and entropy_term_total.
        ``MetaGradientController`` adds its measured entropy slope and moving averages (None when absent),
        ``GACController`` its ``gac/...`` terms (a key with a slash is logged under its own name)."""
        return dict(self._last_terms)

    @property
    def in_warmup(self) -> bool:
        """Whether the next update is a warm-up (pure SFT) step."""
        return False

    @property
    def needs_entropy_sample(self) -> bool:
        """Whether the next update needs H from rollouts sampled for that purpose."""
        return False

    @property
    def reads_validation_prompts(self) -> bool:
        """Whether it has a meta term, the one reader of the validation prompts."""
        return False

    @property
    def needs_noise_proxies(self) -> bool:
        """Whether the next update reads the gradient-noise proxies of its step (GAC's refresh steps)."""
        return False

    def is_meta_step(self, step: int | None = None) -> bool:
        """Whether main-phase step ``step`` (default: the next update's) is a meta step."""
        return False

    def planned_mu(self) -> float | None:
        """The mu the next update will return when it does not depend on measurements (a schedule),
        else None. A planned 1 lets the trainer skip rollouts, a planned 0 the demonstrations."""
        return None

    @abstractmethod
    def update(self, stats: ControllerStats | None = None) -> float:
        """Advance one step with this step's measurements and return the new mu."""

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state (floats, ints, None) from which ``load_state_dict`` resumes exactly."""
        return {
            "mu": self._mu,
            "last_terms": dict(self._last_terms),
            "meta_term_total": self._meta_term_total,
            "entropy_term_total": self._entropy_term_total,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by ``state_dict`` of a controller built with the same arguments."""
        self._mu = float(state["mu"])
        self._last_terms = dict(state["last_terms"])
        self._meta_term_total = float(state["meta_term_total"])
        self._entropy_term_total = float(state["entropy_term_total"])

    def _terms(
        self,
        entropy: float | None,
        meta_gradient: float = 0.0,
        meta_term: float = 0.0,
        entropy_term: float = 0.0,
        target_entropy: float | None = None,
    ) -> dict[str, float | None]:
        return {
            "mu": self._mu,
            "meta_term": meta_term,
            "meta_gradient": meta_gradient,
            "entropy_term": entropy_term,
            "entropy": entropy,
            "target_entropy": target_entropy,
            "meta_term_total": self._meta_term_total,
            "entropy_term_total": self._entropy_term_total,
        }


class FixedMuController(BalanceController):
    """Constant mu (the fixed-mu baseline; mu = 1 is SFT, mu = 0 is RL)."""

    def planned_mu(self) -> float:
        return self._mu

    def update(self, stats: ControllerStats | None = None) -> float:
        self._last_terms = self._terms(entropy=stats.entropy if stats else None)
        return self._mu


class MetaGradientController(BalanceController):
    """AMFT's controller (Eq. 6 of the paper; see docs/design.md, 'The controller').

    Warm-up: the first ``warmup_steps`` (W) updates return mu = 1 (pure SFT). The
    entropies passed during the last ``entropy_calibration_steps`` (N_H) of them are
    averaged into the target H* (``target_entropy``), set at the end of the W-th
    update. The first main-phase update starts from ``mu_init``.

    Main phase, per update:
    ``mu <- clip(mu + meta_lr * m + entropy_lr * (H* - H) * s, mu_min, mu_max)``, where
    m is the meta-gradient on meta steps and 0 otherwise:
    ``m = inner_lr * (<g_val, g_SFT> - <g_val, g_RL>)`` (``normalization="raw"``) or
    ``m = cos(g_val, g_SFT) - cos(g_val, g_RL)`` (``"cosine"``, alpha absorbed in
    ``meta_lr``). The entropy term is 0 when H or H* is unknown. With
    ``entropy_direction="fixed"`` (the paper), s = 1: entropy below target raises mu (Eq. 6,
    not the paper's prose). With ``"measured"``, s is the latest measured slope
    ``dH/dmu = -inner_lr * (<g_H, g_SFT> - <g_H, g_RL>)`` (0 before the first meta step), which
    descends (H - H*)^2 / 2 in mu.

    ``meta_signal_ema`` d > 0 replaces m (and the slope s) by the bias-corrected moving average
    of their measurements with decay d; 0 (the paper) uses each measurement as is.
    ``meta_update="normalized"`` divides that signal by the root of the same average of m^2, so
    a meta step moves mu by at most ``meta_lr`` whatever the scale of m (with d = 0: by
    ``meta_lr * sign(m)``); ``"linear"`` (the paper) moves it by ``meta_lr`` times the signal.

    Step indexing: main-phase updates are numbered t = 1, 2, ...; update t is a meta
    step iff ``t % meta_period == 0`` (so the first is t = K). The trainer asks
    ``is_meta_step()`` before update t to know whether to compute g_SFT, g_RL and
    g_val, and passes the resulting ``meta_alignment`` to that update only.
    ``use_meta`` / ``use_entropy`` switch the two terms off for ablations; with
    ``use_meta=False`` there are no meta steps, with ``use_entropy=False`` no
    entropy rollouts are requested.
    """

    def __init__(
        self,
        mu_init: float = 0.8,
        mu_min: float = 0.05,
        mu_max: float = 0.95,
        meta_lr: float = 1e-4,
        entropy_lr: float = 5e-4,
        meta_period: int = 20,
        inner_lr: float = 1e-6,
        normalization: str = "raw",
        warmup_steps: int = 50,
        entropy_calibration_steps: int = 10,
        use_meta: bool = True,
        use_entropy: bool = True,
        meta_signal_ema: float = 0.0,
        entropy_direction: str = "fixed",
        meta_update: str = "linear",
    ) -> None:
        self.mu_min = _check_mu("mu_min", mu_min)
        self.mu_max = _check_mu("mu_max", mu_max)
        if self.mu_min > self.mu_max:
            raise ValueError(f"mu_min ({mu_min}) must not exceed mu_max ({mu_max})")
        self.mu_init = _check_mu("mu_init", mu_init)
        if normalization not in ("raw", "cosine"):
            raise ValueError(f"unknown normalization {normalization!r}; valid: raw, cosine")
        if meta_period < 1:
            raise ValueError(f"meta_period must be >= 1, got {meta_period}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if entropy_calibration_steps < 1:
            raise ValueError(f"entropy_calibration_steps must be >= 1, got {entropy_calibration_steps}")
        if entropy_direction not in ENTROPY_DIRECTIONS:
            raise ValueError(f"unknown entropy_direction {entropy_direction!r}; valid: {', '.join(ENTROPY_DIRECTIONS)}")
        if meta_update not in META_UPDATES:
            raise ValueError(f"unknown meta_update {meta_update!r}; valid: {', '.join(META_UPDATES)}")
        if entropy_direction == "measured" and not use_meta:
            raise ValueError(
                "entropy_direction='measured' reads dH/dmu on meta steps, and use_meta=False (use_meta_term) has none"
            )
        self.meta_lr = float(meta_lr)
        self.entropy_lr = float(entropy_lr)
        self.meta_period = int(meta_period)
        self.inner_lr = float(inner_lr)
        self.normalization = normalization
        self.warmup_steps = int(warmup_steps)
        self.entropy_calibration_steps = int(entropy_calibration_steps)
        self.use_meta = bool(use_meta)
        self.use_entropy = bool(use_entropy)
        self.entropy_direction = entropy_direction
        self.meta_update = meta_update
        self._meta_gradient_average = ExponentialMovingAverage(meta_signal_ema)
        self._meta_square_average = ExponentialMovingAverage(meta_signal_ema)
        self._entropy_slope_average = ExponentialMovingAverage(meta_signal_ema)

        self._warmup_done = 0
        self._main_steps = 0
        self._entropy_sum = 0.0
        self._entropy_count = 0
        self._target_entropy: float | None = None
        super().__init__(1.0 if self.warmup_steps > 0 else self._clip(self.mu_init))

    @property
    def target_entropy(self) -> float | None:
        """H*, known once warm-up has ended (``None`` if no entropy was measured)."""
        return self._target_entropy

    @property
    def meta_signal_ema(self) -> float:
        """Decay of the moving averages of m and of the entropy slope (0: each measurement as is)."""
        return self._meta_gradient_average.decay

    @property
    def entropy_slope(self) -> float:
        """The slope s that ``entropy_direction="measured"`` uses: the latest measured dH/dmu
        (averaged when ``meta_signal_ema`` > 0), 0 before the first measurement."""
        slope = self._entropy_slope_average.value
        return 0.0 if slope is None else slope

    @property
    def main_steps(self) -> int:
        """Number of main-phase updates done so far (the next one is ``main_steps + 1``)."""
        return self._main_steps

    @property
    def in_warmup(self) -> bool:
        """Whether the next update is one of the first ``warmup_steps`` updates (mu = 1)."""
        return self._warmup_done < self.warmup_steps

    @property
    def reads_validation_prompts(self) -> bool:
        return self.use_meta

    @property
    def needs_entropy_sample(self) -> bool:
        """True when the next update is one of the last N_H warm-up steps (for H*)."""
        if not (self.use_entropy and self.in_warmup):
            return False
        return self._warmup_done + 1 > self.warmup_steps - self.entropy_calibration_steps

    def is_meta_step(self, step: int | None = None) -> bool:
        """Whether main-phase update ``step`` (t >= 1; default: the next update's t) is a meta step.

        Always false during warm-up when ``step`` is omitted, and when ``use_meta`` is off.
        """
        if step is None:
            if self.in_warmup:
                return False
            step = self._main_steps + 1
        return self.use_meta and step >= 1 and step % self.meta_period == 0

    def update(self, stats: ControllerStats | None = None) -> float:
        stats = stats or ControllerStats()
        if self.in_warmup:
            self._warmup_update(stats)
        else:
            self._main_update(stats)
        return self._mu

    def _warmup_update(self, stats: ControllerStats) -> None:
        if stats.meta_alignment is not None:
            raise ValueError("meta_alignment given during warm-up, which has no meta steps")
        if self.needs_entropy_sample and stats.entropy is not None:
            self._entropy_sum += float(stats.entropy)
            self._entropy_count += 1
        self._warmup_done += 1
        if not self.in_warmup and self._entropy_count > 0:
            self._target_entropy = self._entropy_sum / self._entropy_count
        self._mu = 1.0
        self._last_terms = self._terms(entropy=stats.entropy, target_entropy=self._target_entropy)

    def _main_update(self, stats: ControllerStats) -> None:
        meta_step = self.is_meta_step()
        if stats.meta_alignment is not None and not meta_step:
            raise ValueError(
                f"meta_alignment given on main-phase step {self._main_steps + 1}, which is not a meta step "
                f"(meta_period={self.meta_period}, use_meta={self.use_meta})"
            )
        meta_gradient = meta_average = meta_signal = 0.0
        entropy_slope = None
        smoothing = self.meta_signal_ema > 0.0
        if meta_step and stats.meta_alignment is not None:
            meta_gradient = self._meta_gradient(stats.meta_alignment)
            meta_signal = meta_average = self._meta_gradient_average.update(meta_gradient)
            mean_square = self._meta_square_average.update(meta_gradient**2)
            if self.meta_update == "normalized":
                meta_signal = meta_average / math.sqrt(mean_square) if mean_square > 0.0 else 0.0
            entropy_slope = self._entropy_slope_of(stats.meta_alignment)
            if entropy_slope is not None:
                self._entropy_slope_average.update(entropy_slope)
        entropy_term = 0.0
        if self.use_entropy and stats.entropy is not None and self._target_entropy is not None:
            direction = self.entropy_slope if self.entropy_direction == "measured" else 1.0
            entropy_term = self.entropy_lr * (self._target_entropy - float(stats.entropy)) * direction
        meta_term = self.meta_lr * meta_signal
        base = self._mu if self._main_steps > 0 else self._clip(self.mu_init)
        self._mu = self._clip(base + meta_term + entropy_term)
        self._main_steps += 1
        self._meta_term_total += meta_term
        self._entropy_term_total += entropy_term
        self._last_terms = self._terms(
            entropy=stats.entropy,
            meta_gradient=meta_gradient,
            meta_term=meta_term,
            entropy_term=entropy_term,
            target_entropy=self._target_entropy,
        )
        measured = meta_step and stats.meta_alignment is not None
        self._last_terms.update(
            entropy_slope=entropy_slope,
            meta_gradient_ema=meta_average if smoothing and measured else None,
            entropy_slope_ema=self.entropy_slope if smoothing and entropy_slope is not None else None,
        )

    def _entropy_slope_of(self, alignment: MetaAlignment) -> float | None:
        # The slope is a physical dH/dmu, so it keeps alpha under either normalisation of m.
        if alignment.entropy_dot_sft is None or alignment.entropy_dot_rl is None:
            return None
        return -self.inner_lr * (alignment.entropy_dot_sft - alignment.entropy_dot_rl)

    def _meta_gradient(self, alignment: MetaAlignment) -> float:
        if self.normalization == "raw":
            return self.inner_lr * (alignment.val_dot_sft - alignment.val_dot_rl)
        cos_sft = alignment.val_dot_sft / max(alignment.val_norm * alignment.sft_norm, _COSINE_EPS)
        cos_rl = alignment.val_dot_rl / max(alignment.val_norm * alignment.rl_norm, _COSINE_EPS)
        return cos_sft - cos_rl

    def _clip(self, mu: float) -> float:
        return min(max(mu, self.mu_min), self.mu_max)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(
            warmup_done=self._warmup_done,
            main_steps=self._main_steps,
            entropy_sum=self._entropy_sum,
            entropy_count=self._entropy_count,
            target_entropy=self._target_entropy,
            meta_gradient_average=self._meta_gradient_average.state_dict(),
            meta_square_average=self._meta_square_average.state_dict(),
            entropy_slope_average=self._entropy_slope_average.state_dict(),
        )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._warmup_done = int(state["warmup_done"])
        self._main_steps = int(state["main_steps"])
        self._entropy_sum = float(state["entropy_sum"])
        self._entropy_count = int(state["entropy_count"])
        target = state["target_entropy"]
        self._target_entropy = None if target is None else float(target)
        # Checkpoints written before the moving averages existed resume with empty ones, which is
        # what their runs (no averaging, fixed entropy direction) had.
        empty = {"biased": 0.0, "count": 0}
        self._meta_gradient_average.load_state_dict(state.get("meta_gradient_average", empty))
        self._meta_square_average.load_state_dict(state.get("meta_square_average", empty))
        self._entropy_slope_average.load_state_dict(state.get("entropy_slope_average", empty))


class _ScheduledController(BalanceController):
    """A controller whose mu depends only on how many updates it has made."""

    def __init__(self, mu: float) -> None:
        self._steps = 0
        super().__init__(mu)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(steps=self._steps)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._steps = int(state["steps"])


class TwoStageController(_ScheduledController):
    """SFT, then RL, in one run (the SFT->RL baseline): mu = 1 for the first
    ``switch_step`` updates, then mu = 0.

    The SFT stage reports ``in_warmup`` so that the trainer samples no rollouts during
    it. Unlike two separate runs, the optimiser state and learning-rate schedule carry
    over the switch.
    """

    def __init__(self, switch_step: int) -> None:
        if switch_step < 0:
            raise ValueError(f"switch_step must be >= 0, got {switch_step}")
        self.switch_step = int(switch_step)
        super().__init__(1.0 if self.switch_step > 0 else 0.0)

    @property
    def in_warmup(self) -> bool:
        """Whether the next update is one of the first ``switch_step`` (mu = 1)."""
        return self._steps < self.switch_step

    def planned_mu(self) -> float:
        return 1.0 if self.in_warmup else 0.0

    def update(self, stats: ControllerStats | None = None) -> float:
        self._mu = 1.0 if self.in_warmup else 0.0
        self._steps += 1
        self._last_terms = self._terms(entropy=stats.entropy if stats else None)
        return self._mu


class ChordScheduleController(_ScheduledController):
    """CHORD-mu: mu follows the schedule :func:`~amft.algorithm.methods.chord_mu`.

    Update t = 1, 2, ... returns ``chord_mu(t - 1)``: the schedule's step counts the
    updates done before this one, so the first update has mu = 0. CHORD's mu warm-up is
    a ramp, not pure SFT: ``in_warmup`` stays false and RL runs from the first update.
    """

    def __init__(self, mu_peak: float, mu_valley: float, warmup_steps: int, decay_steps: int) -> None:
        self.mu_peak = float(mu_peak)
        self.mu_valley = float(mu_valley)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = int(decay_steps)
        # chord_mu also validates the arguments.
        super().__init__(self._scheduled(0))

    def planned_mu(self) -> float:
        return self._scheduled(self._steps)

    def update(self, stats: ControllerStats | None = None) -> float:
        self._mu = self._scheduled(self._steps)
        self._steps += 1
        self._last_terms = self._terms(entropy=stats.entropy if stats else None)
        return self._mu

    def _scheduled(self, step: int) -> float:
        return chord_mu(
            step,
            mu_peak=self.mu_peak,
            mu_valley=self.mu_valley,
            warmup_steps=self.warmup_steps,
            decay_steps=self.decay_steps,
        )


class ReliftController(BalanceController):
    """ReLIFT: RL (mu = 0) until the buffer of hard prompts is full, then one SFT step (mu = 1) on it.

    The trainer calls :meth:`collect` after each RL step's update with the demonstrations of
    the prompts whose rollouts all failed, and :meth:`drain` on the SFT step to get the rows
    to train on. The buffer is part of the state, so a resumed run keeps what it had collected.
    """

    def __init__(self, buffer_size: int) -> None:
        self.buffer = HardPromptBuffer(buffer_size)
        self._sft_steps = 0
        super().__init__(0.0)

    def planned_mu(self) -> float:
        return 1.0 if self.buffer.full else 0.0

    def update(self, stats: ControllerStats | None = None) -> float:
        self._mu = self.planned_mu()
        self._sft_steps += int(self._mu == 1.0)
        self._last_terms = self._terms(entropy=stats.entropy if stats else None)
        return self._mu

    @property
    def sft_steps(self) -> int:
        """How many interleaved SFT steps have been taken."""
        return self._sft_steps

    def collect(self, rows: list[dict[str, Any]]) -> None:
        """Add demonstration rows (``prompt``, ``completion``) of hard prompts."""
        self.buffer.add(rows)

    def drain(self) -> list[dict[str, Any]]:
        """The collected rows, oldest first; empties the buffer."""
        return self.buffer.drain()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(buffer=self.buffer.state_dict(), sft_steps=self._sft_steps)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.buffer.load_state_dict(state["buffer"])
        self._sft_steps = int(state["sft_steps"])
