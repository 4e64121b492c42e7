"""The table of methods: every way of mixing imitation and RL that `AMFTTrainer` runs.

A method is one :class:`Method` entry: its balance controller, whether it places demonstrations in
the rollout groups, collects prompts whose rollouts all fail, gates groups to SFT or starts rollouts
from expert prefixes, which form of L_RL and which token weighting of L_SFT it uses, and its paper.
The trainer, the config checks, `--help`, the dry-run plan, the README's methods table and
`amft compare` all read this table, so adding a method is one entry here plus its pure functions in
`amft.algorithm`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from amft.algorithm import (
    BalanceController,
    ChordScheduleController,
    FixedMuController,
    GACController,
    MetaGradientController,
    ReliftController,
    TwoStageController,
)

if TYPE_CHECKING:
    from amft.training.config import AMFTConfig

#: Forms of L_RL the trainer computes (see `AMFTTrainer._rl_loss`).
RL_LOSSES = ("clipped", "luffy", "srft")
#: Forms of the SFT term a run may choose (`sft_loss`), and the token weighting each is.
SFT_LOSSES = {"nll": "none", "dft": "dft"}


def sft_loss_weighting(args: AMFTConfig) -> str:
    """The token weighting that the run's `sft_loss` asks for: that of a method without one of its own
    (see docs/design.md, 'The SFT term')."""
    return SFT_LOSSES[args.sft_loss]


#: Rollouts that start from an expert prefix (see docs/design.md, 'Prefix rollouts'): one hybrid rollout per
#: group (Prefix-RFT), a hint shared by the group (UFT), failed groups regrown from an anchor (BREAD).
PREFIX_ROLLOUTS = ("hybrid", "hint", "anchor")
#: Share of the run's steps during which UFT gives hints, when `uft_hint_steps` is not set (300 of 500 in UFT).
UFT_HINT_SHARE = 0.6


def uft_hint_steps(args: AMFTConfig, max_steps: int) -> int:
    """The last step at which UFT gives a hint: `uft_hint_steps`, or UFT_HINT_SHARE of the run's `max_steps`."""
    return args.uft_hint_steps if args.uft_hint_steps is not None else round(UFT_HINT_SHARE * max_steps)


def _uft_details(args: AMFTConfig) -> str:
    known = args.uft_hint_steps is not None or args.max_steps > 0
    last = f"step {uft_hint_steps(args, args.max_steps)}" if known else f"{UFT_HINT_SHARE} of the run's steps"
    return (f"hint of Binomial(min({args.uft_max_chunks}, steps), p) demonstration chunks, p cosine {args.uft_p_high} "
            f"-> {args.uft_p_low} until {last}, then no hint; hint NLL weight {args.uft_hint_coef}")


@dataclass(frozen=True)
class Method:
    """One method: how mu is set and which loss forms it trains with."""

    name: str
    #: what it does, in one line (shown by `--help` and the dry-run plan)
    summary: str
    #: the paper it follows ("" for the plain baselines)
    paper: str
    #: the balance controller the config describes
    controller: Callable[[AMFTConfig], BalanceController]
    #: the settings this run of the method uses, for the dry-run plan
    details: Callable[[AMFTConfig], str]
    #: where our implementation differs from the paper and its code, in one line ("" for the plain
    #: baselines; the reasons are in docs/design.md, 'Methods')
    differs: str = ""
    #: the form of L_RL, one of RL_LOSSES
    rl_loss: str = "clipped"
    #: the token weighting of every L_SFT term of a run, a key of `amft.algorithm.TOKEN_WEIGHTINGS`:
    #: the one place that decides it. A method with a weighting of its own returns it where the config
    #: switches it on, else `sft_loss_weighting(args)`; the config refuses an `sft_loss` the entry does
    #: not return.
    sft_weighting: Callable[[AMFTConfig], str] = sft_loss_weighting
    #: the last rollout of each group whose prompt has a demonstration is replaced by it
    demonstrations_in_groups: bool = False
    #: prompts whose rollouts all fail are collected, with their demonstrations, for SFT steps
    collects_failed_prompts: bool = False
    #: rollouts that start from an expert prefix, one of PREFIX_ROLLOUTS (None: all rollouts are sampled whole)
    prefix_rollouts: str | None = None
    #: HPT's gate: a group with at most this many correct rollouts leaves L_RL and its prompt's
    #: demonstration is trained with L_SFT inside L_RL's term (None: no gate)
    sft_gate: Callable[[AMFTConfig], int] | None = None
    #: the config fields that only this method (and the others that list them) reads; a run of another
    #: method refuses them at a value other than their default (`AMFTConfig`), since it would ignore them
    settings: tuple[str, ...] = ()

    def constant_mu(self, args: AMFTConfig) -> float | None:
        """The mu of a run that trains exactly (1 - mu) L_RL + mu L_SFT with a constant mu and the plain
        loss forms (fixed-mu, and sft and grpo at its ends), else None: such runs trace the trade-off
        frontier of a study (see docs/design.md, 'Comparisons')."""
        plain = (self.rl_loss == "clipped" and self.sft_weighting(args) == "none" and self.sft_gate is None
                 and not self.demonstrations_in_groups and not self.collects_failed_prompts
                 and self.prefix_rollouts is None)
        controller = self.controller(args)
        return controller.mu if plain and isinstance(controller, FixedMuController) else None

    def trains_demonstration_tokens(self, args: AMFTConfig) -> bool:
        """Whether a run has an SFT term, an NLL of demonstration tokens (the demonstration stream at a mu
        above 0, SRFT's demonstration term, HPT's gated demonstrations): what `sft_loss` acts on."""
        controller = self.controller(args)
        stream = not (isinstance(controller, FixedMuController) and controller.mu == 0.0)
        return stream or self.rl_loss == "srft" or self.sft_gate is not None

    def reads_validation_prompts(self, args: AMFTConfig) -> bool:
        """Whether a run has the meta term, the one reader of the validation prompts (`meta_dataset`)."""
        return self.controller(args).reads_validation_prompts

    def __post_init__(self) -> None:
        if self.rl_loss not in RL_LOSSES:
            raise ValueError(f"method {self.name!r}: rl_loss must be one of {RL_LOSSES}, got {self.rl_loss!r}")
        if self.prefix_rollouts not in (None, *PREFIX_ROLLOUTS):
            raise ValueError(f"method {self.name!r}: prefix_rollouts must be None or one of {PREFIX_ROLLOUTS}, "
                             f"got {self.prefix_rollouts!r}")


def _meta_gradient_controller(args: AMFTConfig) -> BalanceController:
    return MetaGradientController(
        mu_init=args.mu_init,
        mu_min=args.mu_min,
        mu_max=args.mu_max,
        meta_lr=args.meta_lr,
        entropy_lr=args.entropy_lr,
        meta_period=args.meta_period,
        inner_lr=args.learning_rate if args.inner_lr is None else args.inner_lr,
        normalization=args.meta_normalization,
        warmup_steps=args.amft_warmup_steps,
        entropy_calibration_steps=args.entropy_calibration_steps,
        use_meta=args.use_meta_term,
        use_entropy=args.use_entropy_term,
        meta_signal_ema=args.meta_signal_ema,
        entropy_direction=args.entropy_direction,
        meta_update=args.meta_update,
    )


def _amft_details(args: AMFTConfig) -> str:
    terms = [name for name, on in (("meta", args.use_meta_term), ("entropy", args.use_entropy_term)) if on]
    return (f"warm-up {args.amft_warmup_steps} SFT steps (H* over the last {args.entropy_calibration_steps}), "
            f"mu_init {args.mu_init} in [{args.mu_min}, {args.mu_max}], terms: {', '.join(terms) or 'none'}, "
            f"meta every {args.meta_period} steps ({args.meta_normalization}, eta_mu {args.meta_lr}), "
            f"eta_H {args.entropy_lr}; look-ahead {args.meta_direction}, meta EMA {args.meta_signal_ema}, "
            f"meta update {args.meta_update}, "
            f"entropy direction {args.entropy_direction}")


def _constant(mu: float) -> Callable[[AMFTConfig], BalanceController]:
    return lambda args: FixedMuController(mu)


def _gate_details(args: AMFTConfig, gate: int) -> str:
    advantages = "r - group mean" if args.hpt_center_advantages else f"scale_rewards {args.scale_rewards}"
    return (f"groups with <= {gate} of {args.num_generations} rollouts correct: SFT on the prompt's demonstration, "
            f"weight {args.hpt_sft_coef}; other groups: GRPO, advantages {advantages}, "
            f"ratio {'clipped' if args.hpt_clip_ratio else 'unclipped'}")


#: Share of max_steps that GAC's prior rises over by default; it decays over the rest (see docs/design.md, 'GAC').
GAC_PRIOR_WARMUP_SHARE = 0.2


def gac_prior_steps(args: AMFTConfig) -> tuple[int, int]:
    """The rise and decay steps of GAC's prior: the configured ones, or shares of `max_steps`."""
    warmup, decay = args.gac_prior_warmup_steps, args.gac_prior_decay_steps
    if (warmup is None or decay is None) and args.max_steps <= 0:
        raise ValueError("gac_prior_warmup_steps and gac_prior_decay_steps default to shares of max_steps, which is "
                         "not set: set max_steps, or both")
    if warmup is None:
        warmup = int(GAC_PRIOR_WARMUP_SHARE * args.max_steps + 0.5)
    if decay is None:
        decay = max(args.max_steps - warmup, 0)
    return warmup, decay


def _gac_controller(args: AMFTConfig) -> BalanceController:
    warmup, decay = gac_prior_steps(args)
    return GACController(
        alpha=args.gac_alpha,
        ema_beta=args.gac_ema_beta,
        mu_change_cap=args.gac_mu_change_cap,
        blend=args.gac_blend,
        update_freq=args.gac_update_freq,
        mu_init=args.gac_mu_init,
        mu_min=args.gac_mu_min,
        mu_max=args.gac_mu_max,
        delta_cap_ratio=args.gac_delta_cap_ratio,
        prior_peak=args.gac_prior_peak,
        prior_valley=args.gac_prior_valley,
        prior_warmup_steps=warmup,
        prior_decay_steps=decay,
    )


def _gac_details(args: AMFTConfig) -> str:
    warmup, decay = gac_prior_steps(args)
    return (f"mu* with alpha {args.gac_alpha} from proxies measured every {args.gac_update_freq} steps (trim "
            f"{args.gac_trim}, disagreement cap {args.gac_delta_cap_ratio or 'off'}), averaged with decay "
            f"{args.gac_ema_beta}; weight {args.gac_blend} against a prior 0 -> {args.gac_prior_peak} over {warmup} "
            f"steps, cosine to {args.gac_prior_valley} over {decay}; |change| <= {args.gac_mu_change_cap} per step, "
            f"mu from {args.gac_mu_init} in [{args.gac_mu_min}, {args.gac_mu_max}]; "
            f"phi {'on' if args.gac_use_phi else 'off'}")


#: HPT's settings; superrl reads them too (its gate is fixed at 0, and a run refuses another `hpt_gate`)
HPT_SETTINGS = ("hpt_gate", "hpt_sft_coef", "hpt_clip_ratio", "hpt_center_advantages", "success_reward")

_TABLE = (
    Method(
        name="amft",
        settings=("mu_init", "mu_min", "mu_max", "meta_lr", "entropy_lr", "meta_period", "inner_lr",
                  "meta_normalization", "amft_warmup_steps", "entropy_calibration_steps", "meta_direction",
                  "meta_signal_ema", "meta_update", "entropy_direction", "use_meta_term", "use_entropy_term",
                  "meta_batch_size"),
        summary="mu steered by a meta-gradient (one-step look-ahead on validation reward) plus an entropy term, "
                "after an SFT warm-up",
        paper="AMFT, arXiv 2508.06944",
        differs="Eq. 6's sign where the prose disagrees; settings from the official configuration (its code does not run); the options beyond the paper are off by default",
        controller=_meta_gradient_controller,
        details=_amft_details,
    ),
    Method(
        name="sft",
        summary="imitation only (mu = 1)",
        paper="",
        controller=_constant(1.0),
        details=lambda args: "mu = 1",
    ),
    Method(
        name="grpo",
        summary="RL only (mu = 0)",
        paper="GRPO, arXiv 2402.03300",
        differs="TRL's GRPO loss, checked against GRPOTrainer; a setting we do not honour is refused",
        controller=_constant(0.0),
        details=lambda args: "mu = 0",
    ),
    Method(
        name="sft-then-rl",
        settings=("switch_step",),
        summary="SFT for switch_step steps, then RL, in one run (optimizer and schedule carry over)",
        paper="",
        controller=lambda args: TwoStageController(args.switch_step),
        details=lambda args: f"SFT for {args.switch_step} steps, then RL",
    ),
    Method(
        name="fixed-mu",
        settings=("mu",),
        summary="a constant mu",
        paper="",
        controller=lambda args: FixedMuController(args.mu),
        details=lambda args: f"mu = {args.mu}",
    ),
    Method(
        name="luffy",
        settings=("luffy_gamma",),
        summary="the demonstration takes one rollout's place in its group; its tokens get the shaped, unclipped "
                "importance term p / (p + luffy_gamma)",
        paper="LUFFY, arXiv 2504.14945",
        differs="the demonstration takes one of the G rollout places, so the sampling budget stays that of GRPO",
        controller=_constant(0.0),
        details=lambda args: f"demonstrations in the rollout groups, shaping gamma {args.luffy_gamma}",
        rl_loss="luffy",
        demonstrations_in_groups=True,
    ),
    Method(
        name="srft",
        settings=("srft_sft_coef", "srft_rl_coef", "srft_sft_entropy_sign"),
        summary="demonstrations in the groups with an SFT loss weighted srft_sft_coef * exp(-H); positive "
                "rollouts weighted srft_rl_coef * exp(H)",
        paper="SRFT, arXiv 2506.19767",
        differs="the sign of the entropy in the SFT weight is a flag: the paper's Eq. 8 by default, as a reading of the code differs",
        controller=_constant(0.0),
        details=lambda args: (f"demonstrations in the groups, weights {args.srft_sft_coef} "
                              f"exp({args.srft_sft_entropy_sign:+d} H) and {args.srft_rl_coef} exp(H)"),
        rl_loss="srft",
        demonstrations_in_groups=True,
    ),
    Method(
        name="chord",
        settings=("chord_mu_peak", "chord_mu_valley", "chord_mu_warmup_steps", "chord_mu_decay_steps", "chord_phi"),
        summary="a global mu schedule (linear rise to chord_mu_peak, cosine decay to chord_mu_valley) and, with "
                "chord_phi, the token weight p(1 - p) on L_SFT",
        paper="CHORD, arXiv 2508.11408",
        differs="none known; CHORD-phi is the schedule with peak = valley and no rise",
        controller=lambda args: ChordScheduleController(
            mu_peak=args.chord_mu_peak,
            mu_valley=args.chord_mu_valley,
            warmup_steps=args.chord_mu_warmup_steps,
            decay_steps=args.chord_mu_decay_steps,
        ),
        details=lambda args: (f"mu 0 -> {args.chord_mu_peak} over {args.chord_mu_warmup_steps} steps, cosine to "
                              f"{args.chord_mu_valley} over {args.chord_mu_decay_steps}; "
                              f"phi {'on' if args.chord_phi else 'off'}"),
        sft_weighting=lambda args: "chord-phi" if args.chord_phi else sft_loss_weighting(args),
    ),
    Method(
        name="relift",
        settings=("relift_buffer_size", "success_reward"),
        summary="RL; prompts whose rollouts all fail are collected with their demonstrations, and every "
                "relift_buffer_size of them make one SFT step",
        paper="ReLIFT, arXiv 2506.07527",
        differs="failed prompts without a demonstration are skipped; the buffer is saved with checkpoints",
        controller=lambda args: ReliftController(args.relift_buffer_size or args.sft_batch_size),
        details=lambda args: f"SFT step every {args.relift_buffer_size or args.sft_batch_size} hard prompts",
        collects_failed_prompts=True,
    ),
    Method(
        name="prefix-rft",
        settings=("prefix_high", "prefix_low_start", "prefix_low_end", "prefix_min_len", "prefix_keep_fraction",
                  "prefix_singleton_baseline"),
        summary="one rollout per group continues an expert prefix, a share of the demonstration drawn between "
                "a cosine-decaying bound and prefix_high; only its prefix_keep_fraction highest-entropy prefix "
                "tokens keep their prefix advantage",
        paper="Prefix-RFT, arXiv 2507.01679",
        differs="its run configuration was not released: defaults from its code; the run's loss_type and scale_rewards apply",
        controller=_constant(0.0),
        details=lambda args: (f"the last rollout of each group with a demonstration continues a prefix of share "
                              f"U(low, {args.prefix_high}), low cosine {args.prefix_low_start} -> "
                              f"{args.prefix_low_end} over the run, prefix_min_len {args.prefix_min_len}; prefix "
                              f"tokens trained on the top {args.prefix_keep_fraction} by entropy; singleton "
                              f"baseline {args.prefix_singleton_baseline}"),
        prefix_rollouts="hybrid",
    ),
    Method(
        name="uft",
        settings=("uft_p_high", "uft_p_low", "uft_hint_steps", "uft_max_chunks", "uft_hint_coef"),
        summary="all rollouts of a prompt continue one hint, the first chunks of its demonstration (a binomial "
                "count whose probability decays on a cosine until uft_hint_steps); L_RL on the continuations "
                "plus uft_hint_coef times the NLL of the hints",
        paper="UFT, arXiv 2505.16984",
        differs="objective read from its code; its ablation modes are not offered; the KL on continuations is not clamped",
        controller=_constant(0.0),
        details=_uft_details,
        prefix_rollouts="hint",
    ),
    Method(
        name="bread",
        settings=("bread_episodes", "bread_min_successes", "success_reward"),
        summary="a group whose rollouts all fail is regrown from the shortest run of its demonstration's episodes "
                "(binary search) from which the policy succeeds; L_RL on the continuations",
        paper="BREAD, arXiv 2506.17211",
        differs="no code released: a reconstruction from the paper's abstract (binary search over demonstration episodes), without its anchor memory",
        controller=_constant(0.0),
        details=lambda args: (f"all-failed groups search up to {args.bread_episodes} demonstration episodes for an "
                              f"anchor from which {args.bread_min_successes} of num_generations rollouts succeed"),
        prefix_rollouts="anchor",
    ),
    Method(
        name="hpt",
        settings=HPT_SETTINGS,
        summary="per prompt group: at most hpt_gate correct rollouts send the group to SFT on the prompt's "
                "demonstration (weight hpt_sft_coef), otherwise GRPO on it (unclipped, mean-centred advantages)",
        paper="HPT, arXiv 2509.04419",
        differs="the released code's hard count gate; its padded-length RL normalisation, third band and soft mode are not reproduced",
        controller=_constant(0.0),
        details=lambda args: _gate_details(args, args.hpt_gate),
        sft_gate=lambda args: args.hpt_gate,
    ),
    Method(
        name="superrl",
        settings=HPT_SETTINGS,
        summary="hpt with gate 0: a group none of whose rollouts is correct is replaced by SFT on the prompt's "
                "demonstration",
        paper="SuperRL, arXiv 2506.01096",
        differs="its trigger (every reward zero) read as no rollout reaching success_reward, as HPT counts",
        controller=_constant(0.0),
        details=lambda args: _gate_details(args, 0),
        sft_gate=lambda args: 0,
    ),
    Method(
        name="gac",
        settings=("gac_alpha", "gac_ema_beta", "gac_update_freq", "gac_trim", "gac_delta_cap_ratio", "gac_blend",
                  "gac_prior_peak", "gac_prior_valley", "gac_prior_warmup_steps", "gac_prior_decay_steps",
                  "gac_mu_change_cap", "gac_mu_init", "gac_mu_min", "gac_mu_max", "gac_use_phi"),
        summary="mu in closed form from running estimates of the RL and SFT gradient noise and of their "
                "disagreement, blended with a warm-up + cosine prior and moved at most gac_mu_change_cap per step; "
                "with gac_use_phi, the token weight p(1 - p) on L_SFT",
        paper="GAC, arXiv 2605.26184",
        differs="the released controller's proxies, without z-normalisation or a KL-driven alpha; the prior scaled to max_steps",
        controller=_gac_controller,
        details=_gac_details,
        sft_weighting=lambda args: "chord-phi" if args.gac_use_phi else sft_loss_weighting(args),
    ),
)

#: name -> method, in the order the README and `--help` list them
METHODS: dict[str, Method] = {method.name: method for method in _TABLE}


def methods_reading(setting: str) -> list[str]:
    """The methods whose entry lists ``setting`` among its own settings (empty for a setting every method reads)."""
    return [method.name for method in METHODS.values() if setting in method.settings]


def settings_not_read_by(name: str) -> list[str]:
    """The settings that other methods' entries list and method ``name``'s does not: a run of it ignores them."""
    return sorted({setting for entry in METHODS.values() for setting in entry.settings} - set(get_method(name).settings))


def get_method(name: str) -> Method:
    """The method called ``name``; a ValueError lists the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {name!r}") from None


def methods_help() -> str:
    """One line per method, for `--help`."""
    return "; ".join(f"'{m.name}': {m.summary}" for m in METHODS.values())


def methods_markdown() -> str:
    """The README's methods table: one row per method, from this table."""
    lines = ["| method | what sets the balance | paper | where ours differs |", "|---|---|---|---|"]
    lines += [f"| `{m.name}` | {m.summary} | {m.paper or '-'} | {m.differs or '-'} |" for m in METHODS.values()]
    return "\n".join(lines) + "\n"
