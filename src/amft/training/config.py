"""`AMFTConfig`: TRL's `GRPOConfig` plus the fields of the SFT stream and the balance controller."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from amft.algorithm import AGGREGATIONS, ENTROPY_DIRECTIONS, META_UPDATES, SINGLETON_BASELINES
from amft.defaults import changed_from_default
from amft.training.methods import (
    METHODS,
    SFT_LOSSES,
    get_method,
    methods_help,
    methods_reading,
    settings_not_read_by,
)

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
        sft_loss (`str`, defaults to `"nll"`):
            The SFT term of every method that has one (the demonstration stream, SRFT's
            demonstration term, HPT's gated demonstrations, ReLIFT's SFT steps): `"nll"`, the
            token-mean NLL, or `"dft"`, each token's NLL weighted by its detached probability
            (TRL's `SFTConfig(loss_type="dft")`). Refused for a method without an SFT term, and
            with another token weighting (CHORD's phi: set `chord_phi` false).
        luffy_gamma (`float`, defaults to `0.1`):
            gamma of LUFFY's policy shaping f(p) = p / (p + gamma) (the paper's value).
        srft_sft_coef / srft_rl_coef (`float`, defaults to `0.5` / `0.1`):
            SRFT's coefficients of the demonstration and positive-rollout weights.
        srft_sft_entropy_sign (`int`, defaults to `-1`):
            Sign of H in SRFT's demonstration weight exp(sign * H): -1 is the paper's Eq. 8,
            +1 what the released code reportedly does.
        relift_buffer_size (`int` or `None`, defaults to `None`):
            Hard prompts per ReLIFT SFT step; `None` uses `sft_batch_size`.
        hpt_gate (`int`, defaults to `0`):
            `"hpt"`: a prompt group with at most this many correct rollouts (of `num_generations`)
            leaves L_RL and the prompt's demonstration is trained with the SFT loss instead (0 is
            HPT's setting for Qwen2.5-Math-7B, 2 for Llama-3.1-8B). `"superrl"` is the gate 0.
        hpt_sft_coef (`float`, defaults to `1.0`):
            `"hpt"`, `"superrl"`: weight of the gated demonstrations' SFT loss next to L_RL.
        hpt_clip_ratio (`bool`, defaults to `False`):
            `"hpt"`, `"superrl"`: clip the RL groups' importance ratio at `epsilon` / `epsilon_high`;
            `False` (HPT's released code) trains -A * rho unclipped.
        hpt_center_advantages (`bool`, defaults to `True`):
            `"hpt"`, `"superrl"`: advantages r - group mean, without dividing by a std (HPT's released
            code): sets `scale_rewards` to `"none"`; `False` leaves `scale_rewards` as given.
        success_reward (`float` or `None`, defaults to `None`):
            A rollout with at least this reward counts as solved (ReLIFT's "all failed", HPT's
            correct rollouts); `amft train` sets it from the task when left `None`.
        prefix_high (`float`, defaults to `0.95`):
            `"prefix-rft"`: upper bound of the prefix share (of the demonstration's tokens).
        prefix_low_start / prefix_low_end (`float`, defaults to `0.95` / `0.05`):
            `"prefix-rft"`: the lower bound of the prefix share falls on a cosine from the first to the
            second over the run's steps; the share is drawn uniformly between it and `prefix_high`.
        prefix_min_len (`int`, defaults to `1`):
            `"prefix-rft"`: the fewest prefix tokens. A prefix always leaves at least one token of the
            demonstration, and one of `max_completion_length`, to generate.
        prefix_keep_fraction (`float`, defaults to `0.2`):
            `"prefix-rft"`: share of a micro-batch's prefix tokens, those of highest entropy, that keep
            their prefix advantage; the others get none.
        prefix_singleton_baseline (`str`, defaults to `"none"`):
            `"prefix-rft"`: baseline of the hybrid rollout's continuation: `"none"` (its raw reward, as
            the reference code) or `"group"` (the mean of its group's ordinary rollouts).
        uft_p_high / uft_p_low (`float`, defaults to `0.95` / `0.05`):
            `"uft"`: each demonstration chunk enters the hint with a probability that falls on a cosine
            from the first to the second at `uft_hint_steps`.
        uft_hint_steps (`int` or `None`, defaults to `None`):
            `"uft"`: the last step with hints; `None`: 0.6 of the run's steps (UFT's 300 of 500).
        uft_max_chunks (`int`, defaults to `5`):
            `"uft"`: the demonstration (all but its last step) is cut into at most this many chunks.
        uft_hint_coef (`float`, defaults to `0.001`):
            `"uft"`: weight of the NLL of the hint tokens, added to L_RL.
        bread_episodes (`int`, defaults to `10`):
            `"bread"`: the demonstration (all but its last step) is cut into at most this many episodes,
            the units of the anchor search.
        bread_min_successes (`int`, defaults to `1`):
            `"bread"`: how many of a probe group's `num_generations` rollouts must reach
            `success_reward` for its anchor to count as solving the prompt.
        gac_alpha (`float`, defaults to `0.5`):
            `"gac"`: the SFT share alpha of the target gradient; mu* tends to it when the two losses
            disagree strongly. Static (a KL-driven alpha is not implemented).
        gac_ema_beta (`float`, defaults to `0.99`):
            `"gac"`: decay of the moving averages of the proxies, and of mu* towards the previous mu.
        gac_update_freq (`int`, defaults to `10`):
            `"gac"`: the proxies are measured on the first step, then every this many steps.
        gac_trim (`float`, defaults to `0.1`):
            `"gac"`: share of the demonstration losses dropped at each end before their variance.
        gac_delta_cap_ratio (`float`, defaults to `0.0`):
            `"gac"`: caps the disagreement at this ratio times sigma_s^2 + sigma_r^2 (0: no cap).
        gac_blend (`float`, defaults to `0.5`):
            `"gac"`: weight lambda of the estimate in lambda * mu_ada + (1 - lambda) * prior (1: no prior).
        gac_prior_peak / gac_prior_valley (`float`, defaults to `0.85` / `0.15`):
            `"gac"`: peak and final value of the prior, a linear rise from 0 and a cosine decay (as CHORD's).
        gac_prior_warmup_steps / gac_prior_decay_steps (`int` or `None`, defaults to `None`):
            `"gac"`: steps of the prior's rise and decay; `None`: 0.2 of `max_steps` (rounded) for the rise
            and the rest for the decay (the reference's 200 + 800 steps, scaled to the run).
        gac_mu_change_cap (`float`, defaults to `0.01`):
            `"gac"`: the most mu moves in one step.
        gac_mu_init / gac_mu_min / gac_mu_max (`float`, defaults to `0.5` / `0.05` / `0.9`):
            `"gac"`: mu before the first step, and its bounds.
        gac_use_phi (`bool`, defaults to `True`):
            `"gac"`: CHORD's token weight p(1 - p) on L_SFT and in the SFT coefficient of the
            disagreement; `False`: the run's `sft_loss` (the plain NLL by default: the "without phi" ablation).
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
        meta_update (`str`, defaults to `"linear"`):
            `"linear"`: a meta step moves mu by meta_lr times the (averaged) meta-gradient, the
            paper's. `"normalized"`: by meta_lr times that average over the root of the same
            average of its squares, so at most meta_lr whatever the gradients' scale.
        entropy_direction (`str`, defaults to `"fixed"`):
            `"fixed"`: eta_H * (H* - H), entropy below target raises mu (Eq. 6 of the paper).
            `"measured"`: eta_H * (H* - H) * dH/dmu, with the slope dH/dmu measured on meta steps.
        amft_warmup_steps (`int`, defaults to `50`):
            W: optimizer steps of pure SFT (mu = 1) before the mixed phase.
        entropy_calibration_steps (`int`, defaults to `10`):
            N_H: in the last N_H warm-up steps, completions are sampled (without gradient) and
            their mean token entropy sets the target H*.
        use_meta_term / use_entropy_term (`bool`, defaults to `True`):
            Ablation switches for the two terms of the controller. A term switched off leaves its settings
            checked but without effect, so that an ablation differs from its method by the one switch. The
            entropy term needs a warm-up (`amft_warmup_steps` > 0), where its target H* is measured.

    Logging:
        report_to (`str` or `list[str]`, defaults to `"tensorboard"`):
            As in `TrainingArguments`, but TensorBoard by default (logs in `output_dir/runs`).

    Parameters of the side streams:
        sft_batch_size (`int`, defaults to `8`):
            Demonstrations per device per micro-step for L_SFT.
        meta_batch_size (`int`, defaults to `8`):
            Validation prompts per device per meta step; each gets `num_generations_eval` completions.
        max_demo_prompt_length / max_demo_completion_length (`int` or `None`):
            Truncation of demonstration prompts (keep the end) and completions (keep the start).

    Faults (see docs/design.md, 'Faults'):
        reward_timeout_seconds (`float` or `None`, defaults to `None`):
            The most one call of a reward function may take; past it the call is stopped and
            counts as failed. `None`: no limit.
        skip_failed_rewards (`bool`, defaults to `False`):
            A sample on which a reward function raises or runs past its limit is scored as
            missing (NaN, as a reward function's `None`) and counted in the logs
            (`faults/failed_rewards`); `False` stops the run with a message naming the sample.
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
    sft_loss: str = field(
        default="nll",
        metadata={"help": f"The SFT term, one of {tuple(SFT_LOSSES)}: 'nll' (token-mean NLL) or 'dft' (each token's "
                          "NLL weighted by its detached probability, TRL's loss_type='dft')."},
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
    hpt_gate: int = field(
        default=0,
        metadata={"help": "HPT: a group with at most this many correct rollouts is trained by SFT on its prompt's "
                          "demonstration instead of RL ('superrl' is the gate 0)."},
    )
    hpt_sft_coef: float = field(default=1.0, metadata={"help": "HPT, SuperRL: weight of the gated groups' SFT loss."})
    hpt_clip_ratio: bool = field(
        default=False,
        metadata={"help": "HPT, SuperRL: clip the RL groups' ratio at epsilon (False: unclipped, HPT's released code)."},
    )
    hpt_center_advantages: bool = field(
        default=True,
        metadata={"help": "HPT, SuperRL: advantages r - group mean, i.e. scale_rewards 'none' (HPT's released code); "
                          "False: scale_rewards as given."},
    )
    success_reward: float | None = field(
        default=None,
        metadata={"help": "Reward at which a rollout counts as solved (ReLIFT, HPT, SuperRL, BREAD); None: the task's."},
    )
    prefix_high: float = field(default=0.95, metadata={"help": "Prefix-RFT: upper bound of the prefix share."})
    prefix_low_start: float = field(
        default=0.95, metadata={"help": "Prefix-RFT: lower bound of the prefix share at the first step (cosine decay)."}
    )
    prefix_low_end: float = field(
        default=0.05, metadata={"help": "Prefix-RFT: lower bound of the prefix share at the last step."}
    )
    prefix_min_len: int = field(default=1, metadata={"help": "Prefix-RFT: the fewest prefix tokens."})
    prefix_keep_fraction: float = field(
        default=0.2, metadata={"help": "Prefix-RFT: share of prefix tokens (highest entropy) that keep their advantage."}
    )
    prefix_singleton_baseline: str = field(
        default="none",
        metadata={"help": f"Prefix-RFT: baseline of the hybrid continuation, one of {SINGLETON_BASELINES} "
                          "('none': its raw reward, as the reference code; 'group': the ordinary rollouts' mean)."},
    )
    uft_p_high: float = field(default=0.95, metadata={"help": "UFT: probability of each hint chunk at the first step."})
    uft_p_low: float = field(default=0.05, metadata={"help": "UFT: probability of each hint chunk at uft_hint_steps."})
    uft_hint_steps: int | None = field(
        default=None, metadata={"help": "UFT: the last step with hints (None: 0.6 of the run's steps)."}
    )
    uft_max_chunks: int = field(default=5, metadata={"help": "UFT: the most chunks a demonstration is cut into."})
    uft_hint_coef: float = field(default=0.001, metadata={"help": "UFT: weight of the hint tokens' NLL."})
    bread_episodes: int = field(
        default=10, metadata={"help": "BREAD: the most episodes a demonstration is cut into for the anchor search."}
    )
    bread_min_successes: int = field(
        default=1, metadata={"help": "BREAD: successful rollouts a probe group needs for its anchor to count."}
    )
    gac_alpha: float = field(default=0.5, metadata={"help": "GAC: SFT share alpha of the target gradient (static)."})
    gac_ema_beta: float = field(
        default=0.99, metadata={"help": "GAC: decay of the moving averages of the proxies and of mu*."}
    )
    gac_update_freq: int = field(default=10, metadata={"help": "GAC: measure the proxies every this many steps."})
    gac_trim: float = field(
        default=0.1, metadata={"help": "GAC: share of demonstration losses trimmed at each end for sigma_s^2."}
    )
    gac_delta_cap_ratio: float = field(
        default=0.0, metadata={"help": "GAC: cap the disagreement at ratio * (sigma_s^2 + sigma_r^2); 0: no cap."}
    )
    gac_blend: float = field(
        default=0.5, metadata={"help": "GAC: weight lambda of the estimate against the prior (1: no prior)."}
    )
    gac_prior_peak: float = field(default=0.85, metadata={"help": "GAC: peak of the prior schedule."})
    gac_prior_valley: float = field(default=0.15, metadata={"help": "GAC: final value of the prior schedule."})
    gac_prior_warmup_steps: int | None = field(
        default=None, metadata={"help": "GAC: linear rise of the prior, in steps (None: 0.2 of max_steps)."}
    )
    gac_prior_decay_steps: int | None = field(
        default=None, metadata={"help": "GAC: cosine decay of the prior, in steps (None: the rest of max_steps)."}
    )
    gac_mu_change_cap: float = field(default=0.01, metadata={"help": "GAC: the most mu moves in one step."})
    gac_mu_init: float = field(default=0.5, metadata={"help": "GAC: mu before the first step."})
    gac_mu_min: float = field(default=0.05, metadata={"help": "GAC: lower bound of mu."})
    gac_mu_max: float = field(default=0.9, metadata={"help": "GAC: upper bound of mu."})
    gac_use_phi: bool = field(
        default=True, metadata={"help": "GAC: CHORD's token weight p(1 - p) on L_SFT (False: the run's sft_loss)."}
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
    meta_update: str = field(
        default="linear",
        metadata={"help": f"How a meta step moves mu, one of {META_UPDATES}: 'linear' (meta_lr times the meta-gradient, "
                          "the paper) or 'normalized' (meta_lr times its moving average over the root mean square, so "
                          "at most meta_lr a meta step; with meta_signal_ema 0, meta_lr times its sign)."},
    )
    entropy_direction: str = field(
        default="fixed",
        metadata={"help": f"Entropy term, one of {ENTROPY_DIRECTIONS}: 'fixed' (Eq. 6: entropy below target raises "
                          "mu) or 'measured' (eta_H * (H* - H) * dH/dmu, the slope measured on meta steps)."},
    )
    use_meta_term: bool = field(default=True, metadata={"help": (
        "Ablation switch for the meta term. Off, the meta settings (meta_lr, meta_period, ...) are still checked but "
        "do not act, so that the ablation differs from its method by this one switch.")})
    use_entropy_term: bool = field(default=True, metadata={"help": (
        "Ablation switch for the entropy term. Off, entropy_lr, entropy_calibration_steps and entropy_direction are "
        "still checked but do not act. The term needs the warm-up, where its target H* is measured.")})
    sft_batch_size: int = field(default=8, metadata={"help": "Demonstrations per device per micro-step."})
    meta_batch_size: int = field(default=8, metadata={"help": "Validation prompts per device per meta step."})
    max_demo_prompt_length: int | None = field(
        default=None, metadata={"help": "Truncate demonstration prompts to this many tokens (keep the end)."}
    )
    max_demo_completion_length: int | None = field(
        default=None, metadata={"help": "Truncate demonstration completions to this many tokens."}
    )
    reward_timeout_seconds: float | None = field(
        default=None,
        metadata={"help": "The most one call of a reward function may take; a call past it fails (None: no limit)."},
    )
    skip_failed_rewards: bool = field(
        default=False,
        metadata={"help": "Score a sample on which a reward function raises or times out as missing (NaN) and go on, "
                          "counting it in the logs; False stops the run with a message naming the sample."},
    )

    def __post_init__(self) -> None:
        method = get_method(self.method)
        if self.meta_normalization not in META_NORMALIZATIONS:
            raise ValueError(f"meta_normalization must be one of {META_NORMALIZATIONS}, got {self.meta_normalization!r}")
        if self.meta_direction not in META_DIRECTIONS:
            raise ValueError(f"meta_direction must be one of {META_DIRECTIONS}, got {self.meta_direction!r}")
        if not 0.0 <= self.meta_signal_ema < 1.0:
            raise ValueError(f"meta_signal_ema is a decay and must be in [0, 1), got {self.meta_signal_ema}")
        if self.meta_update not in META_UPDATES:
            raise ValueError(f"meta_update must be one of {META_UPDATES}, got {self.meta_update!r}")
        if self.entropy_direction not in ENTROPY_DIRECTIONS:
            raise ValueError(f"entropy_direction must be one of {ENTROPY_DIRECTIONS}, got {self.entropy_direction!r}")
        if not 0.0 <= self.mu_min <= self.mu_max <= 1.0:
            raise ValueError(f"need 0 <= mu_min <= mu_max <= 1, got {self.mu_min}, {self.mu_max}")
        if self.meta_period < 1:
            raise ValueError(f"meta_period must be >= 1, got {self.meta_period}")
        if self.srft_sft_entropy_sign not in (-1, 1):
            raise ValueError(f"srft_sft_entropy_sign must be -1 or 1, got {self.srft_sft_entropy_sign}")
        self._check_method_settings(method)
        self._check_sft_loss(method)
        self._check_reward_faults(method)
        if method.sft_gate is not None:
            self._check_gate(method)
        if method.name == "gac":
            self._check_gac(method)
        if method.name == "amft" and self.use_entropy_term and self.amft_warmup_steps == 0:
            raise ValueError("amft_warmup_steps=0 leaves no warm-up to measure the target entropy H* in, so the entropy "
                             "term could not act: give use_entropy_term=False too, or a warm-up")
        for problem in prefix_rollout_problems(self, method.name):
            raise ValueError(problem)
        for problem in unsupported_grpo_settings(self, method.name):
            raise ValueError(problem)
        if method.sft_gate is not None and self.hpt_center_advantages:
            self.scale_rewards = "none"
        # TRL's configs still default the fields transformers renamed; carried over here, TRL's default
        # and the user's setting act as before, without a deprecation warning per run.
        for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                         ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
            if getattr(self, new) is None:
                setattr(self, new, getattr(self, old))
        super().__post_init__()
        self._check_rollout_cycles()
        optimizer = getattr(self.optim, "value", self.optim)
        if self.meta_direction == "adam" and not optimizer.startswith("adam"):
            raise ValueError(f"meta_direction='adam' reads the Adam optimizer's second moments, but optim is "
                             f"{optimizer!r}: use an Adam-family optim (e.g. adamw_torch) or meta_direction='sgd'")


    @property
    def steps_per_rollout_cycle(self) -> int:
        """Optimizer steps that the rollouts of one generation serve (TRL's `steps_per_generation` x
        `num_iterations` micro-batches, `steps_per_generation` a multiple of the accumulation steps): 1
        unless either is raised."""
        return self.steps_per_generation * self.num_iterations // self.gradient_accumulation_steps

    def _check_rollout_cycles(self) -> None:
        """Checked once TRL has derived `steps_per_generation` (from `generation_batch_size`, say)."""
        if self.steps_per_generation % self.gradient_accumulation_steps:
            # The controller reads the whole optimizer step when it opens (see docs/design.md, 'Gradient
            # accumulation and several processes'), so the step's rollouts must come from one generation.
            raise ValueError(f"steps_per_generation={self.steps_per_generation} must be a multiple of "
                             f"gradient_accumulation_steps={self.gradient_accumulation_steps}")
        # A checkpoint inside a rollout cycle would lose the rollouts buffered for the cycle's later
        # steps, and a run resumed from it would sample new ones (docs/design.md, 'Checkpoints and
        # resumption'); transformers also saves at max_steps.
        cycle = self.steps_per_rollout_cycle
        if cycle == 1 or self.save_strategy == "no":
            return
        where = (f"the rollouts of one generation serve {cycle} optimizer steps (steps_per_generation="
                 f"{self.steps_per_generation} x num_iterations={self.num_iterations} micro-batches), and a run "
                 "resumes exactly only from a checkpoint at the end of such a cycle")
        if self.save_strategy != "steps" or self.save_steps < 1 or self.save_steps % cycle:
            raise ValueError(f"{where}: give save_strategy='steps' with save_steps a multiple of {cycle} "
                             "(or save_strategy='no')")
        if self.max_steps > 0 and self.max_steps % cycle:
            raise ValueError(f"{where}, and the last checkpoint is saved at max_steps: give max_steps a multiple "
                             f"of {cycle}")

    def _check_method_settings(self, method) -> None:
        """A setting that only other methods read is refused when it is not at its default: the run would
        ignore it (`Method.settings`)."""
        for name in changed_from_default(self, settings_not_read_by(method.name)):
            raise ValueError(f"{name}={getattr(self, name)!r} is a setting of {', '.join(methods_reading(name))}; "
                             f"method {method.name!r} does not read it: leave it out (default "
                             f"{type(self).__dataclass_fields__[name].default!r})")

    def _check_reward_faults(self, method) -> None:
        if self.reward_timeout_seconds is not None and self.reward_timeout_seconds <= 0:
            raise ValueError(f"reward_timeout_seconds must be > 0 or None, got {self.reward_timeout_seconds}")
        if self.skip_failed_rewards and (method.sft_gate is not None or method.prefix_rollouts == "hybrid"):
            raise ValueError(f"method {method.name!r} sorts or recomputes each group from its rewards and has no rule "
                             "for a missing one: skip_failed_rewards is not supported with it")

    def _check_gac(self, method) -> None:
        if not 0.0 <= self.gac_trim < 0.5:
            raise ValueError(f"gac_trim must be in [0, 0.5), got {self.gac_trim}")
        try:
            method.controller(self)  # the controller checks the other gac_ settings
        except ValueError as error:
            raise ValueError(f"method 'gac': {error}") from None

    def _check_sft_loss(self, method) -> None:
        """`sft_loss` must name a form of the SFT term, and the method must train it (see docs/design.md,
        'The SFT term')."""
        if self.sft_loss not in SFT_LOSSES:
            raise ValueError(f"sft_loss must be one of {tuple(SFT_LOSSES)}, got {self.sft_loss!r}")
        if self.sft_loss == "nll":
            return
        if not method.trains_demonstration_tokens(self):
            raise ValueError(f"sft_loss={self.sft_loss!r} weights the SFT term, which method {method.name!r} does not "
                             "have: leave sft_loss 'nll'")
        weighting = method.sft_weighting(self)
        if weighting == "none":
            raise ValueError(f"method {method.name!r} does not apply sft_loss={self.sft_loss!r}: leave it 'nll'")
        if weighting != SFT_LOSSES[self.sft_loss]:
            raise ValueError(f"method {method.name!r} weights its SFT tokens by {weighting!r} here, and "
                             f"sft_loss={self.sft_loss!r} is another token weighting; the two are not combined: switch "
                             "the method's weighting off (chord: chord_phi false) or leave sft_loss 'nll'")

    def _check_gate(self, method) -> None:
        if self.hpt_gate < 0:
            raise ValueError(f"hpt_gate counts correct rollouts and must be >= 0, got {self.hpt_gate}")
        if method.sft_gate(self) != self.hpt_gate:
            raise ValueError(f"method {method.name!r} is HPT with the gate {method.sft_gate(self)}; for "
                             f"hpt_gate={self.hpt_gate} use method 'hpt'")
        if self.hpt_sft_coef < 0:
            raise ValueError(f"hpt_sft_coef must be >= 0, got {self.hpt_sft_coef}")


def prefix_rollout_problems(args: AMFTConfig, method: str) -> list[str]:
    """Why the `prefix_`, `uft_` and `bread_` settings of ``args`` cannot run ``method`` (empty when they can;
    see docs/design.md, 'Prefix rollouts')."""
    problems = []
    low_ends = (args.prefix_low_start, args.prefix_low_end)
    if not (0.0 <= min(low_ends) and max(low_ends) <= args.prefix_high <= 1.0):
        problems.append(f"need 0 <= prefix_low_start, prefix_low_end <= prefix_high <= 1, got {args.prefix_low_start}, "
                        f"{args.prefix_low_end}, {args.prefix_high}")
    if not 0.0 <= args.prefix_keep_fraction <= 1.0:
        problems.append(f"prefix_keep_fraction must be in [0, 1], got {args.prefix_keep_fraction}")
    if args.prefix_singleton_baseline not in SINGLETON_BASELINES:
        problems.append(f"prefix_singleton_baseline must be one of {SINGLETON_BASELINES}, "
                        f"got {args.prefix_singleton_baseline!r}")
    if args.prefix_min_len < 0:
        problems.append(f"prefix_min_len must be >= 0, got {args.prefix_min_len}")
    if not (0.0 <= args.uft_p_low <= 1.0 and 0.0 <= args.uft_p_high <= 1.0):
        problems.append(f"uft_p_high and uft_p_low are probabilities, got {args.uft_p_high}, {args.uft_p_low}")
    if args.uft_hint_steps is not None and args.uft_hint_steps < 0:
        problems.append(f"uft_hint_steps must be >= 0 or None, got {args.uft_hint_steps}")
    if args.uft_max_chunks < 1 or args.bread_episodes < 1:
        problems.append(
            f"uft_max_chunks and bread_episodes must be >= 1, got {args.uft_max_chunks}, {args.bread_episodes}"
        )
    if args.uft_hint_coef < 0:
        problems.append(f"uft_hint_coef must be >= 0, got {args.uft_hint_coef}")
    if not 1 <= args.bread_min_successes <= args.num_generations:
        problems.append(f"bread_min_successes must be in [1, num_generations={args.num_generations}], "
                        f"got {args.bread_min_successes}")
    kind = METHODS[method].prefix_rollouts
    scale = {True: "group", False: "none"}.get(args.scale_rewards, args.scale_rewards)  # GRPOConfig's spellings
    if kind == "hybrid" and scale not in ("group", "none"):
        problems.append(f"method {method!r} scales advantages within each group's sub-groups: scale_rewards must be "
                        f"'group' or 'none', got {args.scale_rewards!r}")
    if kind == "hybrid" and args.multi_objective_aggregation != "sum_then_normalize":
        problems.append(f"method {method!r} recomputes group advantages from summed rewards: "
                        "multi_objective_aggregation must be 'sum_then_normalize'")
    return problems


def unsupported_grpo_settings(args: GRPOConfig, method: str) -> list[str]:
    """Why each GRPO setting of ``args`` that changes TRL's loss is not honoured by AMFT's L_RL for
    ``method`` (empty when every one is honoured).

    Honoured (they act in L_RL as in TRL's loss): `loss_type` among the aggregations, `epsilon`,
    `epsilon_high` (not by SRFT, which has no ratio), `delta`, `importance_sampling_level`, `beta`
    with `use_bias_correction_kl`, `entropy_coef`, `temperature`, vLLM's importance-sampling correction (`vllm_importance_sampling_*`);
    and everything TRL applies while generating and scoring
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
    if entry.rl_loss == "srft" and (args.epsilon != GRPOConfig.epsilon or args.epsilon_high is not None):
        problems.append(f"method {method!r} trains its rollouts by -w * A * log p, with no ratio to clip: epsilon and "
                        "epsilon_high do not act; leave them at their defaults")
    if entry.sft_gate is not None:
        problems += _unsupported_gate_settings(args, method)
    if entry.demonstrations_in_groups and args.multi_objective_aggregation != "sum_then_normalize":
        problems.append(f"method {method!r} recomputes group advantages from summed rewards: "
                        "multi_objective_aggregation must be 'sum_then_normalize'")
    return problems


def _unsupported_gate_settings(args: GRPOConfig, method: str) -> list[str]:
    """The GRPO settings that HPT's gated loss does not honour (see docs/design.md, 'HPT')."""
    problems = []
    if args.beta != 0.0:
        problems.append(f"method {method!r} puts the demonstrations of gated groups among the rollouts and trains "
                        "without a KL term (as HPT): set beta=0")
    if not args.hpt_clip_ratio and (args.epsilon != GRPOConfig.epsilon or args.epsilon_high is not None):
        problems.append(f"method {method!r} trains its RL groups unclipped (hpt_clip_ratio false, HPT's released "
                        "code), so epsilon and epsilon_high do not act: set hpt_clip_ratio true to clip")
    if args.hpt_center_advantages and args.scale_rewards == "batch":
        problems.append(f"method {method!r} centres advantages without scaling them (hpt_center_advantages, HPT's "
                        "released code), so scale_rewards='batch' does not act: set hpt_center_advantages false")
    return problems
