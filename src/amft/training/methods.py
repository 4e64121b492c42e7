"""The table of methods: every way of mixing imitation and RL that `AMFTTrainer` runs.

A method is one :class:`Method` entry: its balance controller, whether it places demonstrations in
the rollout groups or collects prompts whose rollouts all fail, which form of L_RL and which token
weighting of L_SFT it uses, and its paper. The trainer, the config checks, `--help`, the dry-run
plan, the README's methods table and `amft compare` all read this table, so adding a method is one
entry here plus its pure functions in `amft.algorithm`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from amft.algorithm import (
    BalanceController,
    ChordScheduleController,
    FixedMuController,
    MetaGradientController,
    ReliftController,
    TwoStageController,
)

if TYPE_CHECKING:
    from amft.training.config import AMFTConfig

#: Forms of L_RL the trainer computes (see `AMFTTrainer._rl_loss`).
RL_LOSSES = ("clipped", "luffy", "srft")
#: Token weightings of L_SFT: plain token-mean NLL, or CHORD's p(1 - p).
SFT_WEIGHTINGS = ("none", "chord-phi")


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
    #: the form of L_RL, one of RL_LOSSES
    rl_loss: str = "clipped"
    #: the token weighting of L_SFT, one of SFT_WEIGHTINGS (a callable of the config may switch it off)
    sft_weighting: Callable[[AMFTConfig], str] = lambda args: "none"
    #: the last rollout of each group whose prompt has a demonstration is replaced by it
    demonstrations_in_groups: bool = False
    #: prompts whose rollouts all fail are collected, with their demonstrations, for SFT steps
    collects_failed_prompts: bool = False

    def constant_mu(self, args: AMFTConfig) -> float | None:
        """The mu of a run that trains exactly (1 - mu) L_RL + mu L_SFT with a constant mu and the plain
        loss forms (fixed-mu, and sft and grpo at its ends), else None: such runs trace the trade-off
        frontier of a study (see docs/design.md, 'Comparisons')."""
        plain = (self.rl_loss == "clipped" and self.sft_weighting(args) == "none"
                 and not self.demonstrations_in_groups and not self.collects_failed_prompts)
        controller = self.controller(args)
        return controller.mu if plain and isinstance(controller, FixedMuController) else None

    def __post_init__(self) -> None:
        if self.rl_loss not in RL_LOSSES:
            raise ValueError(f"method {self.name!r}: rl_loss must be one of {RL_LOSSES}, got {self.rl_loss!r}")


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
    )


def _amft_details(args: AMFTConfig) -> str:
    terms = [name for name, on in (("meta", args.use_meta_term), ("entropy", args.use_entropy_term)) if on]
    return (f"warm-up {args.amft_warmup_steps} SFT steps (H* over the last {args.entropy_calibration_steps}), "
            f"mu_init {args.mu_init} in [{args.mu_min}, {args.mu_max}], terms: {', '.join(terms) or 'none'}, "
            f"meta every {args.meta_period} steps ({args.meta_normalization}, eta_mu {args.meta_lr}), "
            f"eta_H {args.entropy_lr}; look-ahead {args.meta_direction}, meta EMA {args.meta_signal_ema}, "
            f"entropy direction {args.entropy_direction}")


def _constant(mu: float) -> Callable[[AMFTConfig], BalanceController]:
    return lambda args: FixedMuController(mu)


_TABLE = (
    Method(
        name="amft",
        summary="mu steered by a meta-gradient (one-step look-ahead on validation reward) plus an entropy term, "
                "after an SFT warm-up",
        paper="AMFT, arXiv 2508.06944",
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
        controller=_constant(0.0),
        details=lambda args: "mu = 0",
    ),
    Method(
        name="sft-then-rl",
        summary="SFT for switch_step steps, then RL, in one run (optimizer and schedule carry over)",
        paper="",
        controller=lambda args: TwoStageController(args.switch_step),
        details=lambda args: f"SFT for {args.switch_step} steps, then RL",
    ),
    Method(
        name="fixed-mu",
        summary="a constant mu",
        paper="",
        controller=lambda args: FixedMuController(args.mu),
        details=lambda args: f"mu = {args.mu}",
    ),
    Method(
        name="luffy",
        summary="the demonstration takes one rollout's place in its group; its tokens get the shaped, unclipped "
                "importance term p / (p + luffy_gamma)",
        paper="LUFFY, arXiv 2504.14945",
        controller=_constant(0.0),
        details=lambda args: f"demonstrations in the rollout groups, shaping gamma {args.luffy_gamma}",
        rl_loss="luffy",
        demonstrations_in_groups=True,
    ),
    Method(
        name="srft",
        summary="demonstrations in the groups with an SFT loss weighted srft_sft_coef * exp(-H); positive "
                "rollouts weighted srft_rl_coef * exp(H)",
        paper="SRFT, arXiv 2506.19767",
        controller=_constant(0.0),
        details=lambda args: (f"demonstrations in the groups, weights {args.srft_sft_coef} "
                              f"exp({args.srft_sft_entropy_sign:+d} H) and {args.srft_rl_coef} exp(H)"),
        rl_loss="srft",
        demonstrations_in_groups=True,
    ),
    Method(
        name="chord",
        summary="a global mu schedule (linear rise to chord_mu_peak, cosine decay to chord_mu_valley) and, with "
                "chord_phi, the token weight p(1 - p) on L_SFT",
        paper="CHORD, arXiv 2508.11408",
        controller=lambda args: ChordScheduleController(
            mu_peak=args.chord_mu_peak,
            mu_valley=args.chord_mu_valley,
            warmup_steps=args.chord_mu_warmup_steps,
            decay_steps=args.chord_mu_decay_steps,
        ),
        details=lambda args: (f"mu 0 -> {args.chord_mu_peak} over {args.chord_mu_warmup_steps} steps, cosine to "
                              f"{args.chord_mu_valley} over {args.chord_mu_decay_steps}; "
                              f"phi {'on' if args.chord_phi else 'off'}"),
        sft_weighting=lambda args: "chord-phi" if args.chord_phi else "none",
    ),
    Method(
        name="relift",
        summary="RL; prompts whose rollouts all fail are collected with their demonstrations, and every "
                "relift_buffer_size of them make one SFT step",
        paper="ReLIFT, arXiv 2506.07527",
        controller=lambda args: ReliftController(args.relift_buffer_size or args.sft_batch_size),
        details=lambda args: f"SFT step every {args.relift_buffer_size or args.sft_batch_size} hard prompts",
        collects_failed_prompts=True,
    ),
)

#: name -> method, in the order the README and `--help` list them
METHODS: dict[str, Method] = {method.name: method for method in _TABLE}


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
    lines = ["| method | what sets the balance | paper |", "|---|---|---|"]
    lines += [f"| `{m.name}` | {m.summary} | {m.paper or '-'} |" for m in METHODS.values()]
    return "\n".join(lines) + "\n"
