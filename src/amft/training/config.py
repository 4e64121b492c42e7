"""`AMFTConfig`: TRL's `GRPOConfig` plus the fields of the SFT stream and the balance controller."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from amft.algorithm import AGGREGATIONS, ENTROPY_DIRECTIONS
from amft.training.methods import METHODS, get_method, methods_help

META_NORMALIZATIONS = ("raw", "cosine")
#: Step direction of the meta-gradient's look-ahead: plain SGD (the paper) or the optimizer's Adam step.
META_DIRECTIONS = ("sgd", "adam")


@dataclass
class AMFTConfig(GRPOConfig):
    r"""
    Configuration for [`AMFTTrainer`]: every [`~trl.GRPOConfig`] field, plus the SFT stream and the
    method that sets the balance mu in loss = (1 - mu) * L_RL + mu * L_SFT.

    Defaults of the AMFT controller follow the official AMFT configuration (mu_init, bounds,
    step sizes, K); the tiny CPU demo preset (`amft/cli/presets/`) overrides them.

    Parameters that control the balance:
        method (`str`, defaults to `"amft"`):
            An entry of the table of methods, `amft.training.methods.METHODS` (its `summary` says
            what each does; `amft train --help` lists them). Methods that place demonstrations in
            groups or collect failed prompts find a prompt's demonstration in its `demonstration`
            column, or else among the demonstration rows with the same prompt.
        mu (`float`, defaults to `0.5`):
            The constant mu of `"fixed-mu"`.
        switch_step (`int`, defaults to `300`):
            The optimizer step at which `"sft-then-rl"` switches from SFT to RL.
        chord_mu_peak / chord_mu_valley (`float`, defaults to `0.9` / `0.05`):
            The CHORD schedule's peak and final mu (the paper's values).
        chord_mu_warmup_steps / chord_mu_decay_steps (`int`, defaults to `200` / `400`):
            Steps of the CHORD schedule's linear rise and cosine decay.
        chord_phi (`bool`, defaults to `True`):
            CHORD's per-token SFT weight p(1 - p); `False` gives CHORD-mu (the schedule alone).
            CHORD-phi (a small constant mu with the weight) is `chord_mu_peak` =
            `chord_mu_valley` = 0.1 with `chord_mu_warmup_steps` = 0.
        luffy_gamma (`float`, defaults to `0.1`):
            gamma of LUFFY's policy shaping f(p) = p / (p + gamma) (the paper's value).
        srft_sft_coef / srft_rl_coef (`float`, defaults to `0.5` / `0.1`):
            SRFT's coefficients of the demonstration and positive-rollout weights.
        srft_sft_entropy_sign (`int`, defaults to `-1`):
            Sign of H in SRFT's demonstration weight exp(sign * H): -1 is the paper's Eq. 8,
            +1 what the released code reportedly does.
        relift_buffer_size (`int` or `None`, defaults to `None`):
            Hard prompts per ReLIFT SFT step; `None` uses `sft_batch_size`.
        success_reward (`float` or `None`, defaults to `None`):
            A rollout with at least this reward counts as solved (ReLIFT's "all failed");
            `amft train` sets it from the task when left `None`.
        mu_init (`float`, defaults to `0.8`):
            mu right after the SFT warm-up.
        mu_min / mu_max (`float`, defaults to `0.05` / `0.95`):
            Bounds that mu is clipped to after every update.
        meta_lr (`float`, defaults to `1e-4`):
            eta_mu, the step size of the meta term.
        entropy_lr (`float`, defaults to `5e-4`):
            eta_H, the step size of the entropy term eta_H * (H* - H).
        meta_period (`int`, defaults to `20`):
            K: the meta term is computed every K main-phase steps (separate gradients and
            validation rollouts); other steps take one combined backward pass.
        inner_lr (`float` or `None`, defaults to `None`):
            alpha, the inner step size of the one-step look-ahead in the raw meta term;
            `None` uses `learning_rate`.
        meta_normalization (`str`, defaults to `"raw"`):
            `"raw"`: m = alpha * (<g_val, g_SFT> - <g_val, g_RL>), the paper's formula.
            `"cosine"`: m = cos(g_val, g_SFT) - cos(g_val, g_RL), scale-free.
        meta_direction (`str`, defaults to `"sgd"`):
            The step the look-ahead takes. `"sgd"`: theta' = theta - alpha * g, the paper's.
            `"adam"`: the direction of the Adam optimizer's step, P * g with
            P = 1 / (sqrt(v_hat) + eps) from its second moments, so the meta term reads
            <g_val, P g_SFT> - <g_val, P g_RL> (needs an Adam-family `optim`).
        meta_signal_ema (`float`, defaults to `0.0`):
            Decay of a bias-corrected moving average of the measured meta-gradients (and of the
            measured entropy slope); mu moves by the average. `0` uses each measurement as is.
        entropy_direction (`str`, defaults to `"fixed"`):
            `"fixed"`: eta_H * (H* - H), entropy below target raises mu (Eq. 6 of the paper).
            `"measured"`: eta_H * (H* - H) * dH/dmu, with the slope dH/dmu measured on meta steps.
        amft_warmup_steps (`int`, defaults to `50`):
            W: optimizer steps of pure SFT (mu = 1) before the mixed phase.
        entropy_calibration_steps (`int`, defaults to `10`):
            N_H: in the last N_H warm-up steps, completions are sampled (without gradient) and
            their mean token entropy sets the target H*.
        use_meta_term / use_entropy_term (`bool`, defaults to `True`):
            Ablation switches for the two terms of the controller.

    Logging:
        report_to (`str` or `list[str]`, defaults to `"tensorboard"`):
            As in `TrainingArguments`, but TensorBoard by default (logs in `output_dir/runs`).

    Parameters of the side streams:
        sft_batch_size (`int`, defaults to `8`):
            Demonstrations per device per micro-step for L_SFT.
        meta_batch_size (`int`, defaults to `8`):
            Validation prompts per device per meta step; each gets `num_generations` completions.
        max_demo_prompt_length / max_demo_completion_length (`int` or `None`):
            Truncation of demonstration prompts (keep the end) and completions (keep the start).
    """

    _argument_group_name = "training options (AMFTConfig: TRL's GRPOConfig and the balance between SFT and RL)"

    report_to: None | str | list[str] = field(
        default="tensorboard",
        metadata={"help": "Where logs go: 'tensorboard' (the default here), 'wandb', 'mlflow', a list, or 'none'."},
    )
    method: str = field(default="amft", metadata={"help": f"How SFT and RL are balanced. {methods_help()}."})
    mu: float = field(default=0.5, metadata={"help": "Constant mu of 'fixed-mu'."})
    switch_step: int = field(default=300, metadata={"help": "Step at which 'sft-then-rl' switches from SFT to RL."})
    chord_mu_peak: float = field(default=0.9, metadata={"help": "Peak mu of the 'chord' schedule."})
    chord_mu_valley: float = field(default=0.05, metadata={"help": "Final mu of the 'chord' schedule."})
    chord_mu_warmup_steps: int = field(default=200, metadata={"help": "Linear rise of the 'chord' schedule, in steps."})
    chord_mu_decay_steps: int = field(default=400, metadata={"help": "Cosine decay of the 'chord' schedule, in steps."})
    chord_phi: bool = field(
        default=True, metadata={"help": "'chord': weight demonstration tokens by p(1 - p) (False: CHORD-mu, the schedule alone)."}
    )
    luffy_gamma: float = field(default=0.1, metadata={"help": "gamma of LUFFY's shaping p / (p + gamma)."})
    srft_sft_coef: float = field(default=0.5, metadata={"help": "SRFT: demonstration weight coef * exp(sign * H)."})
    srft_rl_coef: float = field(default=0.1, metadata={"help": "SRFT: positive-rollout weight coef * exp(H)."})
    srft_sft_entropy_sign: int = field(
        default=-1, metadata={"help": "SRFT: sign of H in the demonstration weight (-1: paper's Eq. 8, +1: released code)."}
    )
    relift_buffer_size: int | None = field(
        default=None, metadata={"help": "ReLIFT: hard prompts per interleaved SFT step (None: sft_batch_size)."}
    )
    success_reward: float | None = field(
        default=None, metadata={"help": "Reward at which a rollout counts as solved (ReLIFT); None: the task's."}
    )
    mu_init: float = field(default=0.8, metadata={"help": "mu right after the SFT warm-up."})
    mu_min: float = field(default=0.05, metadata={"help": "Lower bound of mu."})
    mu_max: float = field(default=0.95, metadata={"help": "Upper bound of mu."})
    meta_lr: float = field(default=1e-4, metadata={"help": "eta_mu: step size of the meta term."})
    entropy_lr: float = field(default=5e-4, metadata={"help": "eta_H: step size of the entropy term."})
    meta_period: int = field(default=20, metadata={"help": "K: compute the meta term every K main-phase steps."})
    inner_lr: float | None = field(
        default=None, metadata={"help": "alpha of the raw meta term; None uses learning_rate."}
    )
    meta_normalization: str = field(
        default="raw", metadata={"help": f"Meta term normalisation: one of {META_NORMALIZATIONS}."}
    )
    amft_warmup_steps: int = field(default=50, metadata={"help": "W: pure-SFT warm-up steps (mu = 1)."})
    entropy_calibration_steps: int = field(
        default=10, metadata={"help": "N_H: last warm-up steps whose rollout entropy sets the target H*."}
    )
    meta_direction: str = field(
        default="sgd",
        metadata={"help": f"Step direction of the meta look-ahead, one of {META_DIRECTIONS}: 'sgd' (the paper) or "
                          "'adam' (the optimizer's preconditioned step; needs an Adam-family optim)."},
    )
    meta_signal_ema: float = field(
        default=0.0,
        metadata={"help": "Decay in [0, 1) of a bias-corrected moving average of the measured meta-gradients and "
                          "entropy slopes; 0 (the paper) uses each measurement as is."},
    )
    entropy_direction: str = field(
        default="fixed",
        metadata={"help": f"Entropy term, one of {ENTROPY_DIRECTIONS}: 'fixed' (Eq. 6: entropy below target raises "
                          "mu) or 'measured' (eta_H * (H* - H) * dH/dmu, the slope measured on meta steps)."},
    )
    use_meta_term: bool = field(default=True, metadata={"help": "Ablation switch for the meta term."})
    use_entropy_term: bool = field(default=True, metadata={"help": "Ablation switch for the entropy term."})
    sft_batch_size: int = field(default=8, metadata={"help": "Demonstrations per device per micro-step."})
    meta_batch_size: int = field(default=8, metadata={"help": "Validation prompts per device per meta step."})
    max_demo_prompt_length: int | None = field(
        default=None, metadata={"help": "Truncate demonstration prompts to this many tokens (keep the end)."}
    )
    max_demo_completion_length: int | None = field(
        default=None, metadata={"help": "Truncate demonstration completions to this many tokens."}
    )

    def __post_init__(self) -> None:
        method = get_method(self.method)
        if self.meta_normalization not in META_NORMALIZATIONS:
            raise ValueError(f"meta_normalization must be one of {META_NORMALIZATIONS}, got {self.meta_normalization!r}")
        if self.meta_direction not in META_DIRECTIONS:
            raise ValueError(f"meta_direction must be one of {META_DIRECTIONS}, got {self.meta_direction!r}")
        if not 0.0 <= self.meta_signal_ema < 1.0:
            raise ValueError(f"meta_signal_ema is a decay and must be in [0, 1), got {self.meta_signal_ema}")
        if self.entropy_direction not in ENTROPY_DIRECTIONS:
            raise ValueError(f"entropy_direction must be one of {ENTROPY_DIRECTIONS}, got {self.entropy_direction!r}")
        if not 0.0 <= self.mu_min <= self.mu_max <= 1.0:
            raise ValueError(f"need 0 <= mu_min <= mu_max <= 1, got {self.mu_min}, {self.mu_max}")
        if self.meta_period < 1:
            raise ValueError(f"meta_period must be >= 1, got {self.meta_period}")
        if self.srft_sft_entropy_sign not in (-1, 1):
            raise ValueError(f"srft_sft_entropy_sign must be -1 or 1, got {self.srft_sft_entropy_sign}")
        for problem in unsupported_grpo_settings(self, method.name):
            raise ValueError(problem)
        super().__post_init__()
        optimizer = getattr(self.optim, "value", self.optim)
        if self.meta_direction == "adam" and not optimizer.startswith("adam"):
            raise ValueError(f"meta_direction='adam' reads the Adam optimizer's second moments, but optim is "
                             f"{optimizer!r}: use an Adam-family optim (e.g. adamw_torch) or meta_direction='sgd'")


def unsupported_grpo_settings(args: GRPOConfig, method: str) -> list[str]:
    """Why each GRPO setting of ``args`` that changes TRL's loss is not honoured by AMFT's L_RL for
    ``method`` (empty when every one is honoured).

    Honoured (they act in L_RL as in TRL's loss): `loss_type` among the aggregations, `epsilon`,
    `epsilon_high`, `delta`, `importance_sampling_level`, `beta` with `use_bias_correction_kl`,
    `entropy_coef`, `temperature`; and everything TRL applies while generating and scoring
    (`scale_rewards`, `reward_weights`, `mask_truncated_completions`, `num_iterations`, ...).
    See docs/design.md, "GRPO settings".
    """
    entry = METHODS[method]
    problems = []
    if args.loss_type not in AGGREGATIONS:
        problems.append(f"AMFTTrainer's L_RL supports loss_type in {AGGREGATIONS}, got {args.loss_type!r}")
    if args.top_entropy_quantile != 1.0:
        problems.append(f"top_entropy_quantile={args.top_entropy_quantile} is not implemented in AMFTTrainer's L_RL "
                        "(leave it at 1.0)")
    if args.off_policy_mask_threshold is not None:
        problems.append("off_policy_mask_threshold is not implemented in AMFTTrainer's L_RL (leave it None)")
    if args.use_adaptive_entropy:
        problems.append("use_adaptive_entropy is not supported by AMFTTrainer: its controller steers entropy")
    if args.use_vllm and args.vllm_importance_sampling_correction:
        problems.append("AMFTTrainer does not apply vLLM's importance-sampling correction yet: "
                        "set vllm_importance_sampling_correction=False to use vLLM rollouts")
    if args.router_aux_loss_coef:
        problems.append("router_aux_loss_coef (a mixture-of-experts router loss) is not added by AMFTTrainer's L_RL; "
                        "set it to 0")
    if entry.rl_loss != "clipped":
        # These methods replace rollouts by demonstrations, whose reference log-probs and ratios TRL never saw.
        if args.beta != 0.0:
            problems.append(f"method {method!r} places demonstrations in rollout groups and needs beta=0 (no KL term)")
        if args.importance_sampling_level != "token":
            problems.append(f"method {method!r} has its own L_RL; importance_sampling_level='sequence' applies to the "
                            "clipped GRPO surrogate only")
        if args.delta is not None:
            problems.append(f"method {method!r} has its own L_RL; delta applies to the clipped GRPO surrogate only")
    if entry.demonstrations_in_groups and args.multi_objective_aggregation != "sum_then_normalize":
        problems.append(f"method {method!r} recomputes group advantages from summed rewards: "
                        "multi_objective_aggregation must be 'sum_then_normalize'")
    return problems
