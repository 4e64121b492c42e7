"""`AMFTTrainer`: TRL's GRPOTrainer with an SFT stream, the mixed loss and a balance controller.

One optimizer step, top to bottom. The Trainer's own `training_step` runs every micro-step
(so gradient accumulation, mixed precision and every backend scale and reduce the loss exactly
as they do for TRL's trainers); this class decides what the step is and what its loss is:
  1. `_prepare_inputs`, when a step opens, asks the controller what the step will be. A pure SFT
     step (the warm-up, or a planned mu of 1) takes no rollouts. Otherwise TRL generates and
     scores completions for the RL prompts (group advantages); methods of the table that place
     demonstrations in the groups, collect failed prompts or gate groups to SFT do so here.
  2. `compute_loss`: L_RL over the rollouts (the method's form of it) and the entropy H; L_SFT on
     a demonstration batch. On meta steps (every K main-phase steps) the gradients g_RL, g_SFT,
     the entropy's g_H and the validation policy gradient g_val are taken separately and the
     controller's meta term (and its measured entropy slope) reads their alignment.
  3. The controller updates mu BEFORE the gradient step; the returned loss
     (1 - mu) L_RL + mu L_SFT, divided by the accumulation steps as TRL's GRPO loss is, is what
     the Trainer differentiates.

With gradient accumulation the controller reads the whole optimizer step when it opens: TRL buffers
the step's rollouts, the step's demonstration batches are drawn then, and the later micro-batches get
early forwards (see docs/design.md, "The training step").
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from accelerate.utils import DistributedType
from transformers import PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin, TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import rotate_checkpoints
from trl import GRPOTrainer
from trl.trainer.utils import is_async_callable

from amft.algorithm import (
    BalanceController,
    ControllerStats,
    GroupGate,
    NoiseProxies,
    adam_preconditioned,
    all_failed_groups,
    clipped_surrogate,
    demonstration_row_statistics,
    gate_groups,
    gated_group_losses,
    group_advantages,
    kl_to_reference,
    luffy_surrogate,
    masked_mean,
    measure_noise,
    meta_alignment_from_gradients,
    rollout_row_statistics,
    sft_loss,
    sft_token_weights,
    srft_rl_loss,
    srft_weights,
    token_entropy,
    token_log_probs,
)
from amft.io import atomic_write_json
from amft.training.checkpoint import (
    AMFT_STATE_FILE,
    mark_checkpoint_complete,
    mark_checkpoint_incomplete,
    remove_incomplete_checkpoints,
    restored_settings,
    saved_weight_shapes,
    settings_resumption_would_not_apply,
)
from amft.training.config import AMFTConfig
from amft.training.data import (
    IMAGE_INPUT_KEYS,
    CompletionBatch,
    EpochRepeatSampler,
    RowStream,
    replace_completions,
    tokenize_demonstrations,
)
from amft.training.faults import GuardedReward, NonFiniteStepSkip
from amft.training.generation import shared_prefill
from amft.training.methods import get_method
from amft.training.prefix_rollouts import PrefixRolloutMixin
from amft.training.sharded_gradients import (
    check_meta_step_backend,
    fsdp2_shards,
    local_shard,
    separate_gradients,
)


logger = logging.getLogger(__name__)


def rollout_batch(rollouts: dict[str, Any]) -> CompletionBatch:
    """The token layout of TRL's scored rollouts, with their image inputs."""
    return CompletionBatch(
        rollouts["prompt_ids"], rollouts["prompt_mask"], rollouts["completion_ids"], rollouts["completion_mask"],
        {key: rollouts[key] for key in IMAGE_INPUT_KEYS if rollouts.get(key) is not None},
    )


def prompt_key(prompt: Any) -> str:
    """A hashable key of a prompt (a string or a list of chat messages)."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


@dataclass(frozen=True)
class StepPlan:
    """What an optimizer step does, decided when it opens."""

    #: pure SFT: no rollouts (the warm-up, or a planned mu of 1)
    sft_only: bool
    #: a demonstration batch is needed (any mu but a planned 0)
    uses_demonstrations: bool
    #: the controller's meta term is measured on this step
    is_meta_step: bool


def masked_totals(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(sum of `values` over `mask`, count of `mask`): partial sums of a token mean."""
    return torch.stack([(values * mask).sum(), mask.sum().float()])


@dataclass(frozen=True)
class RolloutForward:
    """The policy on a micro-batch of rollouts, each ``(B, T)``."""

    #: token entropies and log-probs of the completions (with their graph)
    entropies: torch.Tensor
    logps: torch.Tensor
    #: the tokens L_RL reads
    mask: torch.Tensor
    #: the tokens the policy sampled, which H reads
    sampled: torch.Tensor

    def entropy_totals(self) -> torch.Tensor:
        return masked_totals(self.entropies.detach(), self.sampled)


class AMFTTrainer(PrefixRolloutMixin, GRPOTrainer):
    """GRPO plus imitation in one stage, with mu steered by a controller.

    Args:
        model: a model or a name/path, as for `GRPOTrainer`.
        reward_funcs: reward function(s), as for `GRPOTrainer`.
        args: an [`AMFTConfig`]; its `method` names an entry of `amft.training.methods.METHODS`.
        train_dataset: RL prompts (a `prompt` column plus whatever the reward functions read).
        demo_dataset: demonstrations, rows with `prompt` and `completion` (plain text). Methods that
            place demonstrations in groups or collect failed prompts also look up a prompt's
            demonstration here when its row has no `demonstration` column.
        meta_dataset: held-out validation prompts for the meta term, same columns as
            `train_dataset`; required when the controller uses the meta term.
        controller: a ready controller; by default the one the method's entry builds from `args`.
        Other keyword arguments go to `GRPOTrainer`.
    """

    def __init__(
        self,
        model: str | PreTrainedModel,
        reward_funcs: Callable | list[Callable],
        args: AMFTConfig,
        train_dataset: Any,
        demo_dataset: Sequence[dict[str, Any]],
        meta_dataset: Sequence[dict[str, Any]] | None = None,
        processing_class: PreTrainedTokenizerBase | ProcessorMixin | None = None,
        callbacks: list[TrainerCallback] | None = None,
        controller: BalanceController | None = None,
        **kwargs: Any,
    ) -> None:
        # TRL's rollouts call model methods that transformers renamed; the warnings name nothing a user
        # can change (docs/design.md, 'Options and configuration files'). Once for the process: a filter
        # set and unset around each rollout would make every other warning repeat.
        warnings.filterwarnings("ignore", category=FutureWarning, message="`(is_gradient_checkpointing|"
                                "gradient_checkpointing_enable|gradient_checkpointing_disable)` is deprecated")
        super().__init__(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            **kwargs,
        )
        if self.aux_loss_enabled:
            raise ValueError("AMFTTrainer's L_RL does not add the mixture-of-experts router loss: "
                             "set router_aux_loss_coef=0")
        self.method = get_method(args.method)
        self.controller = controller if controller is not None else self.method.controller(args)
        shard = dict(process_index=self.accelerator.process_index, num_processes=self.accelerator.num_processes)
        self.demo_stream = RowStream(list(demo_dataset), batch_size=args.sft_batch_size, seed=args.seed, **shard)
        needs_meta = self.controller.reads_validation_prompts
        if needs_meta and not meta_dataset:
            raise ValueError("the meta term needs validation prompts: pass meta_dataset (or set use_meta_term=False)")
        if needs_meta:  # see docs/design.md, 'Gradient accumulation and several processes'
            state = self.accelerator.state
            check_meta_step_backend(
                state.distributed_type, fsdp_plugin=getattr(state, "fsdp_plugin", None),
                deepspeed_plugin=state.deepspeed_plugin, tensor_parallel_size=self.get_tp_size(),
                context_parallel_size=self.get_cp_size(),
            )
            fsdp2_shards(self.model)  # a model sharded at load time; one Accelerate shards is checked at meta steps
        self.meta_stream = (
            RowStream(list(meta_dataset), batch_size=args.meta_batch_size, seed=args.seed + 1, **shard)
            if meta_dataset
            else None
        )
        self._demonstration_of = {prompt_key(row["prompt"]): row["completion"] for row in demo_dataset}
        if (self.method.collects_failed_prompts or self.method.sft_gate is not None) and args.success_reward is None:
            raise ValueError(f"{self.method.name} needs success_reward: the reward at which a rollout counts as solved")
        if self.method.collects_failed_prompts:
            if self.accelerator.num_processes > 1:
                # Each process would fill its own buffer and reach its SFT step at a different time.
                raise ValueError(f"method {self.method.name!r} runs in a single process for now")
        self._plan: StepPlan | None = None
        self._scored_rewards: torch.Tensor | None = None
        self._hard_prompt_rows: list[dict[str, Any]] = []
        # What the step that opened holds for its later micro-batches (see docs/design.md, 'Gradient
        # accumulation and several processes'): their rollouts, the demonstration batches still to train
        # on and L_SFT's divisor; H and its shares' divisor; the rollouts' detached token log-probs and masks.
        self._other_micro_batches: list[dict[str, Any]] = []
        self._step_demonstrations: list[CompletionBatch] = []
        self._demonstration_normalizer: torch.Tensor | None = None
        self._step_entropy: float | None = None
        self._entropy_normalizer: torch.Tensor | None = None
        self._rollout_tokens: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._init_prefix_rollouts()
        self._guard_rewards(args)
        # Under DeepSpeed the engine takes the optimizer step inside the backward pass: there is none to skip.
        self._step_skip = None if self.is_deepspeed_enabled else NonFiniteStepSkip(
            lambda flag: self.accelerator.reduce(flag, reduction="sum"), self._metrics["train"]
        )
        if self._step_skip is not None:
            self.add_callback(self._step_skip)

    # ----------------------------------------------------------------------------------------------
    # One micro-step: the plan, then the loss the Trainer differentiates
    # ----------------------------------------------------------------------------------------------
    def _prepare_inputs(self, generation_batch):
        if not self.model.training:  # evaluation: TRL's own path
            return super()._prepare_inputs(generation_batch)
        if self._step % self.current_gradient_accumulation_steps == 0:
            self._plan = self._plan_step()
        if self._plan.sft_only:
            return {"prompt_rows": generation_batch}  # kept for the entropy sample of the warm-up's end
        return super()._prepare_inputs(generation_batch)

    def _plan_step(self) -> StepPlan:
        # A planned mu of 1 is plain SFT (no rollouts), a planned 0 plain RL (no demonstrations).
        planned_mu = self.controller.planned_mu()
        sft_only = self.controller.in_warmup or planned_mu == 1.0
        return StepPlan(
            sft_only=sft_only,
            uses_demonstrations=planned_mu != 0.0,
            is_meta_step=not sft_only and self.controller.is_meta_step(),
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if return_outputs:
            raise ValueError("AMFTTrainer does not return outputs")
        accumulation = self.current_gradient_accumulation_steps
        opens_step = self._step % accumulation == 0
        if self._plan.sft_only:
            loss = self._sft_step_loss(model, inputs["prompt_rows"], accumulation, opens_step)
        else:
            loss = self._mixed_step_loss(model, inputs, accumulation, opens_step)
        if self._hard_prompt_rows:
            # Collected after this step's mu was set, so the step that found them stays an RL step.
            self.controller.collect(self._hard_prompt_rows)
            self._hard_prompt_rows = []
        # As TRL's GRPO loss: already divided for gradient accumulation (`loss_is_scaled_for_ga`).
        return loss / accumulation

    def _sft_step_loss(self, model, prompt_rows, accumulation: int, opens_step: bool) -> torch.Tensor:
        """Pure SFT (mu = 1): the warm-up, or a planned mu of 1. In the last N_H warm-up steps,
        completions are also sampled, without gradient, to measure the target entropy H*."""
        if opens_step:
            entropy = None
            if self.controller.needs_entropy_sample:
                batch = rollout_batch(self._generate_and_score_completions(prompt_rows))
                with torch.no_grad():
                    logits = self._completion_logits(model, batch) / self.temperature
                    entropy = self._mean_over_processes(token_entropy(logits), batch.completion_mask)
            self._update_controller(ControllerStats(entropy=entropy))
            self._open_demonstrations(accumulation, self.controller.drain() if self.method.collects_failed_prompts else None)
        loss, _ = self._sft_forward(model, self._step_demonstrations.pop(0))
        self._metrics["train"]["amft/sft_loss"].append(loss.item())
        return loss

    def _mixed_step_loss(self, model, rollouts: dict[str, Any], accumulation: int, opens_step: bool) -> torch.Tensor:
        uses_demonstrations = self._plan.uses_demonstrations
        if opens_step:
            if uses_demonstrations:
                self._open_demonstrations(accumulation)
            self._other_micro_batches = self._later_micro_batches(accumulation)
        forward = self._rollout_forward(model, rollouts)
        if opens_step:
            self._step_entropy = self._entropy_of_step(model, forward)
        rl_loss = self._rl_loss(forward, rollouts, self._step_entropy)
        demonstrations = None
        if uses_demonstrations:
            batch = self._step_demonstrations.pop(0)
            demo_loss, demo_logps = self._sft_forward(model, batch)
            demonstrations = (demo_logps, batch.completion_mask)
        else:
            demo_loss = torch.zeros((), device=rl_loss.device)
        if opens_step:
            noise = self._noise_proxies(model, rollouts, demonstrations) if self.controller.needs_noise_proxies else None
            alignment = self._meta_alignment(model, forward, rl_loss, demo_loss) if self._plan.is_meta_step else None
            mu = self._update_controller(
                ControllerStats(entropy=self._step_entropy, meta_alignment=alignment, noise_proxies=noise)
            )
            self._other_micro_batches = []
        else:
            mu = self.controller.mu
        if uses_demonstrations:
            self._metrics["train"]["amft/sft_loss"].append(demo_loss.item())
        self._metrics["train"]["amft/rl_loss"].append(rl_loss.item())
        return (1.0 - mu) * rl_loss + mu * demo_loss

    # ----------------------------------------------------------------------------------------------
    # The whole optimizer step: what the controller reads when a step opens
    # ----------------------------------------------------------------------------------------------
    def _later_micro_batches(self, accumulation: int) -> list[dict[str, Any]]:
        """The rollouts of this optimizer step's other micro-batches: TRL generated the whole step at once
        and buffers it (`steps_per_generation` is a multiple of the accumulation steps, see AMFTConfig)."""
        if accumulation == 1:
            return []
        first = self._step % self.args.steps_per_generation
        return list(self._buffered_inputs[first + 1 : first + accumulation])

    def _open_demonstrations(self, accumulation: int, rows: list[dict[str, Any]] | None = None) -> None:
        """Tokenize this optimizer step's demonstration micro-batches: `rows` dealt over them (a micro-batch
        left empty takes the stream's next batch), or the stream's next batch for each; and the token count
        that makes L_SFT a token mean over the whole step, all micro-batches and processes."""
        if rows is None:
            batches = [self.demo_stream.next_batch() for _ in range(accumulation)]
        else:
            batches = [rows[i::accumulation] or self.demo_stream.next_batch() for i in range(accumulation)]
        self._step_demonstrations = [
            tokenize_demonstrations(
                batch, self.processing_class, self.args.max_demo_prompt_length, self.args.max_demo_completion_length
            ).to(self.accelerator.device)
            for batch in batches
        ]
        tokens = sum(batch.completion_mask.sum() for batch in self._step_demonstrations)
        self._demonstration_normalizer = self._step_normalizer(tokens, accumulation)

    def _step_normalizer(self, local_tokens: torch.Tensor, accumulation: int) -> torch.Tensor | None:
        """The divisor that makes a token mean run over the whole step: each micro-batch's loss is divided by
        the accumulation steps and its gradient averaged over processes, so each divides its token sum by
        (the step's global token count / (processes x accumulation steps)). None: one process, one micro-batch."""
        processes = self.accelerator.num_processes
        if processes == 1 and accumulation == 1:
            return None
        total = self.accelerator.reduce(local_tokens.float(), reduction="sum") if processes > 1 else local_tokens.float()
        return (total / (processes * accumulation)).clamp(min=1.0)

    def _entropy_of_step(self, model, forward: RolloutForward) -> float:
        """H of the whole step: the mean token entropy of the sampled completions of all its micro-batches and
        processes (the later micro-batches by forwards without gradient). Also sets the divisor of each
        micro-batch's differentiable share of H (`_entropy_normalizer`)."""
        totals = forward.entropy_totals()
        self._rollout_tokens = [(forward.logps.detach(), forward.sampled)]
        for rollouts in self._other_micro_batches:
            with torch.no_grad(), self._unlogged():
                later = self._rollout_forward(model, rollouts)
            totals = totals + later.entropy_totals()
            self._rollout_tokens.append((later.logps, later.sampled))
        accumulation = 1 + len(self._other_micro_batches)
        self._entropy_normalizer = self._step_normalizer(totals[1], accumulation) if accumulation > 1 else None
        return self._global_mean(totals)

    @contextmanager
    def _unlogged(self) -> Iterator[None]:
        """Forwards of a later micro-batch taken early, for the controller: their metrics are logged when the
        micro-batch's own step runs."""
        metrics, self._metrics["train"] = self._metrics["train"], defaultdict(list)
        try:
            yield
        finally:
            self._metrics["train"] = metrics

    def _entropy_share(self, forward: RolloutForward) -> torch.Tensor:
        """This micro-batch's differentiable share of H: its sampled tokens' entropies over the step's global
        count per process and micro-batch; the shares' gradients, accumulated as the Trainer accumulates the
        mixed loss (summed over micro-batches over their number, averaged over processes), are H's gradient."""
        normalizer = self._entropy_normalizer
        if normalizer is None:
            normalizer = self._shared_normalizer(forward.sampled)
        return masked_mean(forward.entropies, forward.sampled, normalizer=normalizer)

    def _step_terms(self, model, forward: RolloutForward, rl_loss: torch.Tensor, demo_loss: torch.Tensor):
        """(L_RL, L_SFT, H's share) of each micro-batch of the step, as the Trainer will differentiate them: this
        micro-batch's, then each later one's from a fresh forward, one at a time."""
        yield rl_loss, demo_loss, self._entropy_share(forward)
        for index, rollouts in enumerate(self._other_micro_batches, start=1):
            with self._unlogged():
                later = self._rollout_forward(model, rollouts)
                later_rl_loss = self._rl_loss(later, rollouts, self._step_entropy)
                later_demo_loss = (
                    self._sft_forward(model, self._step_demonstrations[index - 1])[0]
                    if self._plan.uses_demonstrations
                    else torch.zeros((), device=later_rl_loss.device)
                )
            yield later_rl_loss, later_demo_loss, self._entropy_share(later)

    def _meta_alignment(self, model, forward: RolloutForward, rl_loss: torch.Tensor, demo_loss: torch.Tensor):
        """The alignment of g_val and of the entropy's g_H with the step directions of g_SFT and g_RL, each the
        gradient of the whole step (all its micro-batches) averaged over processes (see docs/design.md, 'The
        meta-gradient' and 'Gradient accumulation and several processes').

        With the whole parameters on every process (one process, DDP, ZeRO-1/2) the separate gradients are
        taken with `autograd.grad`, which fires no data-parallel hook, and averaged by hand. On FSDP2 shards
        each is taken by a backward pass, which FSDP2 reduce-scatters (averaged over processes) into the
        shards' `.grad`; this process keeps its shard of each, and the inner products are sums of
        shard-local products, all-reduced once; `.grad` is then as before the passes, so the Trainer's
        backward of the mixed loss gives the step's gradient exactly as on any other step. Either way this
        micro-batch's graph is kept for that backward.
        """
        network = self.accelerator.unwrap_model(model)
        shards = fsdp2_shards(network)
        if shards is None:
            params = [p for p in network.parameters() if p.requires_grad]
            separate = nullcontext(partial(torch.autograd.grad, inputs=params, allow_unused=True))
        else:
            params, group = shards
            separate = separate_gradients(network, params, gradient_sync_after=self._micro_step_syncs_gradients())
        with separate as gradient_of:
            g_rl, g_sft, g_entropy = self._step_gradients(gradient_of, self._step_terms(model, forward, rl_loss, demo_loss))
            g_val = gradient_of(self._validation_loss(network))
        if shards is None:
            average = self._average_over_processes
            g_rl, g_sft, g_entropy, g_val = average(g_rl), average(g_sft), average(g_entropy), average(g_val)
        if self.args.meta_direction == "adam":
            g_sft, g_rl = self._adam_step_directions(params, g_sft, g_rl)
        sharding = {} if shards is None else dict(sharded=True, group=group)
        return meta_alignment_from_gradients(g_val, g_sft, g_rl, g_entropy=g_entropy, **sharding)

    @staticmethod
    def _step_gradients(gradient_of: Callable, step_terms) -> list[list[torch.Tensor | None]]:
        """[g_RL, g_SFT, g_H] of the step: each term's gradient summed over the micro-batches (in place, one
        gradient at a time) and divided by their number, as the Trainer accumulates the mixed loss."""
        totals: list[list[torch.Tensor | None] | None] = [None, None, None]
        micro_batches = 0
        for terms in step_terms:
            micro_batches += 1
            for index, term in enumerate(terms):
                gradient = list(gradient_of(term, retain_graph=True))
                if totals[index] is None:
                    totals[index] = gradient
                    continue
                for position, (total, part) in enumerate(zip(totals[index], gradient)):
                    if total is None:
                        totals[index][position] = part
                    elif part is not None:
                        total.add_(part)
        if micro_batches > 1:
            for gradient in totals:
                for g in gradient:
                    if g is not None:
                        g.div_(micro_batches)
        return totals

    def _micro_step_syncs_gradients(self) -> bool:
        """Whether this micro-step reduces its gradients over processes: the Trainer defers the reduction
        (`no_sync`) on every micro-batch of an accumulated step but the last, unless Accelerate syncs each batch."""
        syncs_each_batch = self.accelerator.gradient_state.plugin_kwargs.get("sync_each_batch", False)
        return self.accelerator.sync_gradients or syncs_each_batch

    def _adam_step_directions(
        self, params: list[torch.Tensor], *grads: Sequence[torch.Tensor | None]
    ) -> list[list[torch.Tensor | None]]:
        """Each gradient preconditioned by the optimizer's current second moments, in `params` order.

        A parameter the optimizer has not stepped yet keeps P = 1 (see docs/design.md, 'The meta-gradient').
        """
        optimizer = getattr(self.optimizer, "optimizer", self.optimizer)  # accelerate wraps the torch optimizer
        group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
        if any(id(p) not in group_of for p in params):
            raise ValueError("meta_direction='adam' needs every trainable parameter in the optimizer")
        groups = [group_of[id(p)] for p in params]
        states = [optimizer.state.get(p, {}) for p in params]
        is_adam = all("betas" in group and "eps" in group for group in groups) and all(
            "exp_avg_sq" in state for state in states if state
        )
        if not is_adam or (self.state.global_step > 0 and not any(states)):
            raise ValueError(
                "meta_direction='adam' reads exp_avg_sq, betas and eps of a torch Adam/AdamW optimizer, which "
                f"{type(optimizer).__name__} does not keep: use such an optimizer or meta_direction='sgd'"
            )
        settings = {(float(group["betas"][1]), float(group["eps"])) for group in groups}
        if len(settings) != 1:
            raise ValueError(f"meta_direction='adam' needs one beta2 and eps for all parameters, got {sorted(settings)}")
        ((beta2, eps),) = settings
        # With amsgrad the step divides by the running maximum of the second moments.
        second_moments = [
            local_shard(state.get("max_exp_avg_sq" if group.get("amsgrad") else "exp_avg_sq"))
            for group, state in zip(groups, states)
        ]
        steps = [float(state["step"]) if state else 0.0 for state in states]
        return [adam_preconditioned(g, second_moments, steps, beta2=beta2, eps=eps) for g in grads]

    # ----------------------------------------------------------------------------------------------
    # Rollouts: LUFFY and SRFT place demonstrations in the groups, ReLIFT collects hard prompts
    # ----------------------------------------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        self._scored_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._log_reward_failures()
        return self._scored_rewards

    def _local_rewards(self, count: int) -> torch.Tensor:
        """The weighted rewards of this process's ``count`` rollouts: TRL gathers those of all processes,
        and this process's rows are its slice."""
        start = self.accelerator.process_index * count
        return self._weighted_rewards(self._scored_rewards[start : start + count])

    def _weighted_rewards(self, per_function: torch.Tensor) -> torch.Tensor:
        """Each row's rewards ``(N, functions)`` summed with the reward weights, as TRL sums them: a missing
        (NaN) reward counts for nothing, and a row that every function left missing stays NaN."""
        weighted = (per_function * self.reward_weights.to(per_function.device)).nansum(dim=1)
        return torch.where(per_function.isnan().all(dim=1), torch.full_like(weighted, float("nan")), weighted)

    def _guard_rewards(self, args: AMFTConfig) -> None:
        """Each reward function reports its failures per sample, under the run's time limit (see docs/design.md,
        'Faults'); reward models are TRL's to run."""
        guarded = []
        for function in self.reward_funcs:
            if isinstance(function, torch.nn.Module):
                guarded.append(function)
            elif is_async_callable(function):
                if args.reward_timeout_seconds is not None or args.skip_failed_rewards:
                    raise ValueError("reward_timeout_seconds and skip_failed_rewards apply to synchronous reward "
                                     "functions; this run has an async one")
                guarded.append(function)
            else:
                guarded.append(GuardedReward(function, args.reward_timeout_seconds, args.skip_failed_rewards))
        self.reward_funcs = guarded

    def _log_reward_failures(self) -> None:
        """How many samples were scored as missing since the last count, over all processes (collective)."""
        guarded = [function for function in self.reward_funcs if isinstance(function, GuardedReward)]
        failures = sum(function.take_failures() for function in guarded)
        total = self.accelerator.reduce(torch.tensor(float(failures), device=self.accelerator.device), reduction="sum")
        self._metrics["train"]["faults/failed_rewards"].append(total.item())

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self._step_skip is not None:
            self._step_skip.record_loss(loss)
        return loss

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        # See docs/design.md, 'Faster generation'.
        generate = partial(super()._generate_single_turn, prompt_ids, images, multimodal_fields, num_generations,
                           has_tool_images)
        if not self._prefills_each_group_once(images, multimodal_fields, num_generations):
            return generate()
        with shared_prefill(self.accelerator.unwrap_model(self.model_wrapped), group=num_generations):
            return generate()

    def _prefills_each_group_once(self, images, multimodal_fields, num_generations: int) -> bool:
        """Whether rollouts go through transformers' `generate` with one process's whole model (no collective in its
        forwards, which must then run as often on every process), on text prompts, without a cache of its own."""
        whole_model = self.accelerator.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU,
                                                              DistributedType.MULTI_GPU)
        return (num_generations > 1 and whole_model and not self.use_vllm and images is None and not multimodal_fields
                and not self.args.use_transformers_continuous_batching and not self.args.use_transformers_paged
                and self.args.cache_implementation is None)

    def _generate_and_score_completions(self, inputs):
        rollouts = super()._generate_and_score_completions(inputs)
        uses_groups = (self.method.demonstrations_in_groups or self.method.collects_failed_prompts
                       or self.method.sft_gate is not None)
        if not (self.model.training and uses_groups):  # validation and evaluation rollouts stay as sampled
            return rollouts
        group = self.num_generations
        if len(inputs) % group:
            raise ValueError(
                f"{self.args.method} needs whole rollout groups on each process: {len(inputs)} local rollouts "
                f"are not a multiple of num_generations={group}"
            )
        rewards = self._local_rewards(len(inputs))
        if self.method.sft_gate is not None:
            return self._gate_groups(inputs, rollouts, rewards)
        if self.method.collects_failed_prompts:
            failed = all_failed_groups(rewards, group, self.args.success_reward)
            for first in (index * group for index in failed):
                demonstration = self._demonstration_for(inputs[first])
                if demonstration is not None:
                    self._hard_prompt_rows.append({"prompt": inputs[first]["prompt"], "completion": demonstration})
            return rollouts
        return self._place_demonstrations(inputs, rollouts, rewards)

    def _demonstration_for(self, row: dict[str, Any]) -> str | None:
        demonstration = row.get("demonstration")
        return demonstration if demonstration else self._demonstration_of.get(prompt_key(row["prompt"]))

    def _place_demonstrations(
        self, inputs: list[dict[str, Any]], rollouts: dict[str, Any], rewards: torch.Tensor
    ) -> dict[str, Any]:
        """The last rollout of each group whose prompt has a demonstration becomes that demonstration
        (scored by the same reward functions); advantages are recomputed over the mixed groups."""
        group = self.num_generations
        rows, texts = [], []
        for first in range(0, len(inputs), group):
            demonstration = self._demonstration_for(inputs[first])
            if demonstration is not None:
                rows.append(first + group - 1)
                texts.append(demonstration)
        off_policy = torch.zeros(len(inputs), dtype=torch.bool, device=rewards.device)
        if rows:
            token_ids = self._demonstration_tokens(texts)
            rollouts = replace_completions(rollouts, rows, token_ids, self._tokenizer.pad_token_id)
            rewards = rewards.clone()
            rewards[rows] = self._score_locally([inputs[row] for row in rows], texts, token_ids).to(rewards.device)
            off_policy[rows] = True
        rollouts["advantages"] = group_advantages(rewards, group, scale=self.scale_rewards)
        rollouts["off_policy"] = off_policy
        tokens = rollouts["completion_mask"].sum().float()
        rollouts["num_items_in_batch"] = self.accelerator.gather(tokens.unsqueeze(0)).sum()
        self._metrics["train"]["demonstrations_in_groups"].append(float(len(rows)))
        self._log_reward_failures()  # of the demonstrations just scored
        return rollouts

    def _demonstration_tokens(self, texts: list[str]) -> list[list[int]]:
        """Demonstrations as completion rows: their tokens and the end-of-sequence token, cut to
        `max_completion_length`."""
        tokenizer = self._tokenizer
        return [
            (tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])[: self.max_completion_length]
            for text in texts
        ]

    def _gate_groups(self, inputs: list[dict[str, Any]], rollouts: dict[str, Any], rewards: torch.Tensor) -> dict[str, Any]:
        """HPT's gate (see docs/design.md, 'HPT'): each group with at most the method's gate of correct
        rollouts whose prompt has a demonstration leaves L_RL (`rl_rows`), and its last rollout becomes
        that demonstration, trained with L_SFT (`off_policy`)."""
        group = self.num_generations
        demonstrations = [self._demonstration_for(inputs[first]) for first in range(0, len(inputs), group)]
        has_demonstration = torch.tensor([text is not None for text in demonstrations], device=rewards.device)
        gate = gate_groups(rewards, group, self.args.success_reward, self.method.sft_gate(self.args), has_demonstration)
        sft_groups = gate.to_sft.nonzero().flatten().tolist()
        rows = [index * group + group - 1 for index in sft_groups]
        if rows:
            token_ids = self._demonstration_tokens([demonstrations[index] for index in sft_groups])
            rollouts = replace_completions(rollouts, rows, token_ids, self._tokenizer.pad_token_id)
        rollouts["off_policy"] = torch.zeros(len(inputs), dtype=torch.bool, device=rewards.device)
        rollouts["off_policy"][rows] = True
        rollouts["rl_rows"] = gate.rl_rows(group)
        rl_tokens = (rollouts["completion_mask"] * rollouts["rl_rows"].unsqueeze(-1)).sum().float()
        rollouts["num_items_in_batch"] = self.accelerator.gather(rl_tokens.unsqueeze(0)).sum()
        decisions = torch.stack([gate.correct, gate.to_sft.long(), gate.no_demonstration.long()], dim=1)
        correct, to_sft, no_demonstration = self.accelerator.gather(decisions).unbind(dim=1)
        for key, value in GroupGate(correct, to_sft.bool(), no_demonstration.bool()).metrics(group).items():
            self._metrics["train"][f"hpt/{key}"].append(value)
        return rollouts

    def _score_locally(self, rows: list[dict[str, Any]], completions: list[str], token_ids: list[list[int]]) -> torch.Tensor:
        """Weighted reward of completions for rows on this process only (no gathering)."""
        columns = {key: [row.get(key) for row in rows] for key in rows[0] if key not in ("prompt", "completion")}
        scores = []
        for reward_func in self.reward_funcs:
            if not callable(reward_func) or isinstance(reward_func, torch.nn.Module):
                raise ValueError(f"{self.args.method} scores demonstrations with reward functions, not reward models")
            output = reward_func(
                prompts=[row["prompt"] for row in rows], completions=completions, completion_ids=token_ids,
                trainer_state=self.state, **columns,
            )
            scores.append([float("nan") if value is None else float(value) for value in output])
        return self._weighted_rewards(torch.tensor(scores, dtype=torch.float32).T)

    # ----------------------------------------------------------------------------------------------
    # Losses
    # ----------------------------------------------------------------------------------------------
    def _completion_logits(self, model, batch: CompletionBatch) -> torch.Tensor:
        input_ids = torch.cat([batch.prompt_ids, batch.completion_ids], dim=1)
        attention_mask = torch.cat([batch.prompt_mask, batch.completion_mask], dim=1)
        completion_length = batch.completion_ids.size(1)
        # The logit at position i predicts token i + 1, so the completion's logits start one earlier.
        logits = model(
            input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=completion_length + 1, **batch.image_inputs
        ).logits
        return logits[:, :-1, :]

    def _sft_forward(self, model, batch: CompletionBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """L_SFT of one of the step's demonstration micro-batches (`_open_demonstrations`): the NLL of the
        completions' tokens, a token mean over the whole step; and the detached token log-probs."""
        logps = token_log_probs(self._completion_logits(model, batch), batch.completion_ids)
        weights = self._sft_token_weights(logps, batch.completion_mask)
        loss = sft_loss(logps, batch.completion_mask, token_weights=weights, normalizer=self._demonstration_normalizer)
        return loss, logps.detach()

    def _sft_token_weights(self, logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """The detached token weights of an L_SFT term over `mask`'s tokens, as the method's entry
        decides them (None: the plain NLL; see docs/design.md, 'The SFT term'); their mean is logged."""
        weights = sft_token_weights(self.method.sft_weighting(self.args), logps)
        if weights is not None and mask.any():
            self._metrics["train"]["sft/mean_token_weight"].append(masked_mean(weights, mask).item())
        return weights

    def _shared_normalizer(self, mask: torch.Tensor) -> torch.Tensor | None:
        """The token count that makes a token mean global: gradients are averaged over processes, so
        each process divides by the global count over the number of processes (None: one process)."""
        if self.accelerator.num_processes == 1:
            return None
        total = self.accelerator.reduce(mask.sum().float(), reduction="sum")
        return (total / self.accelerator.num_processes).clamp(min=1.0)

    def _rollout_forward(self, model, rollouts: dict[str, Any]) -> RolloutForward:
        """The policy's token entropies and log-probs on a micro-batch of rollouts, and which tokens L_RL and
        H read: H reads the sampled completions' tokens (demonstrations placed in the groups and expert
        prefixes excluded)."""
        batch = rollout_batch(rollouts)
        logits = self._completion_logits(model, batch) / self.temperature
        mask = batch.completion_mask
        if "tool_mask" in rollouts:
            mask = mask * rollouts["tool_mask"]
        off_policy = rollouts.get("off_policy")
        sampled = mask if off_policy is None else mask * (~off_policy).unsqueeze(-1)
        if "prefix_mask" in rollouts:  # expert prefixes were not sampled (see docs/design.md, 'Prefix rollouts')
            sampled = sampled * ~rollouts["prefix_mask"]
        return RolloutForward(token_entropy(logits), token_log_probs(logits, batch.completion_ids), mask, sampled)

    def _rl_loss(self, forward: RolloutForward, rollouts: dict[str, Any], entropy: float | None = None) -> torch.Tensor:
        """L_RL over a micro-batch of rollouts (the method's form of it). `entropy` is the step's H, which
        SRFT's weights read (None: this micro-batch's, over all processes)."""
        entropies, logps, mask, sampled = forward.entropies, forward.logps, forward.mask, forward.sampled
        off_policy = rollouts.get("off_policy")
        old_logps = rollouts.get("old_per_token_logps")
        old_logps = logps.detach() if old_logps is None else old_logps
        aggregation = dict(
            aggregation=self.loss_type,
            max_completion_length=self.max_completion_length,
            normalizer=self._dapo_normalizer(rollouts) if self.loss_type == "dapo" else None,
        )
        clipping = dict(epsilon_low=self.epsilon_low, epsilon_high=self.epsilon_high)
        correction = self._sampling_correction(rollouts, mask.size(1))
        if self.method.rl_loss == "luffy":
            loss = luffy_surrogate(
                logps, old_logps, rollouts["advantages"], mask, off_policy, gamma=self.args.luffy_gamma,
                sampling_correction=correction, **clipping, **aggregation,
            )
        elif self.method.rl_loss == "srft":
            demo_weight, positive_weight = srft_weights(
                self._mean_over_processes(entropies.detach(), sampled) if entropy is None else entropy,
                sft_coef=self.args.srft_sft_coef,
                rl_coef=self.args.srft_rl_coef,
                sft_entropy_sign=self.args.srft_sft_entropy_sign,
            )
            demonstrations = mask * off_policy.unsqueeze(-1)
            loss = srft_rl_loss(
                logps, rollouts["advantages"], sampled, positive_weight=positive_weight, sampling_correction=correction,
                **aggregation,
            )
            if demonstrations.any():
                loss = loss + demo_weight * sft_loss(logps, demonstrations, self._sft_token_weights(logps, demonstrations))
            self._metrics["train"]["srft/demo_weight"].append(demo_weight)
            self._metrics["train"]["srft/positive_weight"].append(positive_weight)
        elif self.method.sft_gate is not None:
            loss = self._gated_loss(logps, old_logps, rollouts, mask, clipping, aggregation)
            sampled = sampled * rollouts["rl_rows"].unsqueeze(-1)  # the gated groups' rollouts leave the bonus too
        else:
            reference = rollouts.get("ref_per_token_logps")
            mask, advantages, prefix_loss = self._prefix_rl_terms(rollouts, logps, entropies, mask)
            loss = clipped_surrogate(
                logps, old_logps, advantages, mask, **clipping, **aggregation,
                importance_sampling_level=self.importance_sampling_level, delta=self.args.delta,
                kl_beta=self.beta, ref_token_logps=reference, kl_importance_correction=self.args.use_bias_correction_kl,
                sampling_correction=correction,
            ) + prefix_loss
            if self.beta:
                self._metrics["train"]["kl"].append(
                    self._mean_over_processes(kl_to_reference(logps.detach(), reference, mask), mask)
                )
        if self.entropy_coef:
            loss = loss - self.entropy_coef * masked_mean(entropies, sampled)
        return loss

    def _sampling_correction(self, rollouts: dict[str, Any], width: int) -> torch.Tensor | None:
        """TRL's correction of vLLM rollouts for L_RL, or None without it: the ratio pi_old / pi_sampler that TRL
        computed while scoring, truncated or masked as `vllm_importance_sampling_mode` says, per token ``(B, T)``
        or per sequence ``(B, 1)``. Demonstrations placed in the groups were not sampled: their rows take 1
        (see docs/design.md, 'GRPO settings')."""
        if not (self.use_vllm and self.vllm_importance_sampling_correction):
            return None
        ratio = rollouts["importance_sampling_ratio"]
        off_policy = rollouts.get("off_policy")
        if off_policy is None:
            return ratio
        if not self.vllm_importance_sampling_mode.startswith("sequence"):
            # A demonstration longer than the sampled completions widened the rows.
            ratio = torch.nn.functional.pad(ratio, (0, width - ratio.size(1)), value=1.0)
        return torch.where(off_policy.unsqueeze(-1), torch.ones_like(ratio), ratio)

    def _gated_loss(self, logps, old_logps, rollouts: dict[str, Any], mask, clipping: dict, aggregation: dict) -> torch.Tensor:
        """HPT's L_RL term: GRPO over the groups the gate kept plus `hpt_sft_coef` times L_SFT over the
        demonstrations of the groups it sent to SFT (see docs/design.md, 'HPT')."""
        if not self.args.hpt_clip_ratio:
            clipping = dict(epsilon_low=float("inf"), epsilon_high=float("inf"))
        rl_rows, demonstration_rows = rollouts["rl_rows"], rollouts["off_policy"]
        demonstrations = mask * demonstration_rows.unsqueeze(-1)
        rl_loss, demo_loss = gated_group_losses(
            logps, old_logps, rollouts["advantages"], mask, rl_rows, demonstration_rows,
            sft_token_weights=self._sft_token_weights(logps, demonstrations),
            sft_normalizer=self._shared_normalizer(demonstrations),
            sampling_correction=self._sampling_correction(rollouts, mask.size(1)),
            importance_sampling_level=self.importance_sampling_level, delta=self.args.delta, **clipping, **aggregation,
        )
        for key, loss, rows in (("hpt/rl_loss", rl_loss, rl_rows), ("hpt/sft_loss", demo_loss, demonstration_rows)):
            if rows.any():
                self._metrics["train"][key].append(loss.item())
        return rl_loss + self.args.hpt_sft_coef * demo_loss

    def _mean_over_processes(self, values: torch.Tensor, mask: torch.Tensor) -> float:
        return self._global_mean(masked_totals(values, mask))

    def _global_mean(self, totals: torch.Tensor) -> float:
        """The mean over all processes of (sum, count) pairs summed over processes."""
        totals = self.accelerator.reduce(totals, reduction="sum")
        return (totals[0] / totals[1].clamp(min=1.0)).item()

    def _dapo_normalizer(self, rollouts: dict[str, Any]) -> torch.Tensor:
        # Active tokens of one micro-batch, averaged over processes: the loss of every micro-batch is
        # then divided by the accumulation steps like the other loss types.
        tokens = rollouts["num_items_in_batch"].clamp(min=1.0)
        return tokens / self.accelerator.num_processes / self.args.steps_per_generation

    def _validation_loss(self, model) -> torch.Tensor:
        """The loss whose gradient is g_val: the policy-gradient loss on fresh rollouts for held-out prompts.

        Descending this loss ascends the validation reward, so g_val ~ -grad U (see docs/design.md,
        'The meta-gradient').
        """
        rows = self.meta_stream.next_batch()
        repeated = [dict(row) for row in rows for _ in range(self.num_generations_eval)]
        was_training = self.model.training
        self.model.eval()  # TRL then normalises the groups with num_generations_eval
        try:
            rollouts = self._generate_and_score_completions(repeated)
        finally:
            self.model.train(was_training)
        # The share of validation groups whose rollouts all scored alike: their advantages are 0, so
        # they add nothing to g_val (docs/design.md, 'The meta-gradient').
        for measured, logged in (("reward", "amft/val_reward"), ("frac_reward_zero_std", "amft/val_frac_reward_zero_std")):
            if self._metrics["eval"].get(measured):
                self._metrics["train"][logged].append(self._metrics["eval"][measured][-1])
        self._metrics["eval"].clear()  # these rollouts are the controller's, not an evaluation
        batch = rollout_batch(rollouts)
        logps = token_log_probs(self._completion_logits(model, batch) / self.temperature, batch.completion_ids)
        correction = self._sampling_correction(rollouts, batch.completion_mask.size(1))
        return clipped_surrogate(logps, logps.detach(), rollouts["advantages"], batch.completion_mask,
                                 sampling_correction=correction)

    def _average_over_processes(self, grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        if self.accelerator.num_processes == 1:
            return list(grads)
        return [None if g is None else self.accelerator.reduce(g, reduction="mean") for g in grads]

    def _noise_proxies(
        self, model, rollouts: dict[str, Any], first_demonstrations: tuple[torch.Tensor, torch.Tensor] | None
    ) -> NoiseProxies | None:
        """GAC's proxies of this step over all its micro-batches and processes (see docs/design.md, 'GAC'),
        from the token log-probs of the rollouts (`_entropy_of_step` kept them) and of the demonstrations:
        `first_demonstrations` (log-probs, mask) of the first micro-batch, the later ones' by forwards without
        gradient. None when the step has no demonstrations."""
        if first_demonstrations is None:
            return None
        weighting = self.method.sft_weighting(self.args)
        demonstrations = [first_demonstrations]
        for batch in self._step_demonstrations:  # the later micro-batches' (the first one's is taken)
            with torch.no_grad(), self._unlogged():
                demonstrations.append((self._sft_forward(model, batch)[1], batch.completion_mask))
        rollout_rows = [
            rollout_row_statistics(mask, micro_batch["advantages"], sft_token_weights(weighting, logps))
            for (logps, mask), micro_batch in zip(self._rollout_tokens, [rollouts, *self._other_micro_batches])
        ]
        demonstration_rows = [
            demonstration_row_statistics(logps, mask, sft_token_weights(weighting, logps)) for logps, mask in demonstrations
        ]
        advantages, rollout_disagreements = (torch.cat(column) for column in zip(*rollout_rows))
        nlls, demo_disagreements = (torch.cat(column) for column in zip(*demonstration_rows))
        # Per-row values, NaN for rows without tokens; every process holds as many rows as the others.
        gathered = [self.accelerator.gather(rows) for rows in (advantages, rollout_disagreements, nlls, demo_disagreements)]
        return measure_noise(*gathered, trim=self.args.gac_trim)

    def _update_controller(self, stats: ControllerStats) -> float:
        """The controller's update with this step's measurements, less any that is not finite (see
        docs/design.md, 'Faults'): counted in `faults/dropped_measurements`; returns the new mu."""
        stats, dropped = stats.finite()
        if dropped:
            logger.warning("step %d: the controller's %s is not finite and is left out of its update",
                           self.state.global_step + 1, " and ".join(dropped))
        self._metrics["train"]["faults/dropped_measurements"].append(float(len(dropped)))
        mu = self.controller.update(stats)
        self._log_controller()
        return mu

    def _log_controller(self) -> None:
        # Terms of the method's own (named "method/...") keep their name; the shared ones go under amft/.
        for key, value in self.controller.last_terms.items():
            if value is not None:
                self._metrics["train"][key if "/" in key else f"amft/{key}"].append(float(value))

    # ----------------------------------------------------------------------------------------------
    # Checkpoints: controller and stream positions beside the Trainer's own state
    # ----------------------------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial) -> None:
        run_dir = self._get_output_dir(trial=trial)
        checkpoint_dir = os.path.join(run_dir, f"checkpoint-{self.state.global_step}")
        if self.args.should_save:  # a folder being rewritten is not complete until its marker is written again
            mark_checkpoint_incomplete(checkpoint_dir)
        # The Trainer saves each callback's state by updating an entry it expects to exist; a checkpoint
        # resumed from may keep no entry for a callback added since (a clock, a time budget).
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, ExportableState):
                self.state.stateful_callbacks.setdefault(type(callback).__name__, callback.state())
        # Rotation must not delete the last complete checkpoint before this one is marked complete.
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        self.accelerator.wait_for_everyone()  # every process's files (its RNG state) are written
        if self.args.should_save:
            atomic_write_json(os.path.join(checkpoint_dir, AMFT_STATE_FILE), self._amft_state())
            mark_checkpoint_complete(checkpoint_dir)
            # Folders left incomplete by a killed run cannot be resumed from; rotation would count them.
            remove_incomplete_checkpoints(run_dir)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
            )

    def _get_train_sampler(self, dataset=None) -> EpochRepeatSampler:
        # TRL's sampler, whose order a resumed run finds again in any epoch (see `EpochRepeatSampler`)
        sampler = super()._get_train_sampler(dataset)
        return EpochRepeatSampler(sampler.data_source, sampler.mini_repeat_count, batch_size=sampler.batch_size,
                                  repeat_count=sampler.repeat_count, shuffle=sampler.shuffle, seed=sampler.seed)

    def _run_epoch(self, *args, **kwargs) -> None:
        # A run resumed from the checkpoint of its last step (killed while it evaluated), or with its time
        # budget spent, has nothing left to train; the Trainer would take one more step before it checks.
        if self.state.global_step >= self.state.max_steps or self.control.should_training_stop:
            self.control.should_training_stop = True
            return
        super()._run_epoch(*args, **kwargs)

    def _amft_state(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "demo_stream": self.demo_stream.state_dict(),
            "meta_stream": self.meta_stream.state_dict() if self.meta_stream else None,
            "settings": restored_settings(self.args),
        }

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        # The Trainer loads a checkpoint's weights by the names and layouts they were saved in, but
        # save_pretrained writes some models (the vision-language ones) in their original form; loaded
        # as saved, nothing would match and only a warning would say so (docs/design.md,
        # 'Checkpoints and resumption').
        target = self.model if model is None else model
        saved = saved_weight_shapes(resume_from_checkpoint)
        own = {name: list(tensor.shape) for name, tensor in target.state_dict().items()}
        if (self.is_fsdp_enabled or not isinstance(target, PreTrainedModel) or saved is None
                or all(own.get(name) == shape for name, shape in saved.items())):
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        logger.info("%s holds weights in their original form; loading them as from_pretrained does", resume_from_checkpoint)
        dtypes = {parameter.dtype for parameter in target.parameters()}
        reloaded, info = type(target).from_pretrained(
            resume_from_checkpoint, config=target.config, dtype=dtypes.pop() if len(dtypes) == 1 else torch.float32,
            device_map="cpu", attn_implementation="eager", output_loading_info=True,
        )
        problems = {kind: sorted(map(str, info[kind])) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")
                    if info.get(kind)}
        if problems:
            raise ValueError(f"{resume_from_checkpoint} does not hold this model's weights: {problems}")
        target.load_state_dict(reloaded.state_dict(), strict=True)
        del reloaded

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        if checkpoint is None:
            super()._load_optimizer_and_scheduler(checkpoint)
            return
        path = os.path.join(checkpoint, AMFT_STATE_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing: {checkpoint} is not a complete AMFT checkpoint")
        with open(path) as handle:
            state = json.load(handle)
        changed = settings_resumption_would_not_apply(state.get("settings", {}), self.args)
        if changed:
            raise ValueError(f"{checkpoint} puts back its own values of settings this run changes, so the new "
                             f"values would not act ({'; '.join(changed)}): resume with the checkpoint's values, "
                             "or train from the start in another output_dir")
        super()._load_optimizer_and_scheduler(checkpoint)
        self.controller.load_state_dict(state["controller"])
        self.demo_stream.load_state_dict(state["demo_stream"])
        if self.meta_stream is not None and state["meta_stream"] is not None:
            self.meta_stream.load_state_dict(state["meta_stream"])
