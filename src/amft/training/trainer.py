"""`AMFTTrainer`: TRL's GRPOTrainer with an SFT stream, the mixed loss and a balance controller.

One optimizer step, top to bottom (see `training_step`):
  1. warm-up (mu = 1): an SFT step; in the last N_H warm-up steps also sample completions
     for the RL prompts, without gradient, to measure the target entropy H*.
  2. mixed phase: TRL generates and scores completions for the RL prompts (group advantages);
     a demonstration batch gives L_SFT; the RL forward gives L_RL and the entropy H.
     Every K steps the gradients g_SFT, g_RL and the validation policy gradient g_val are
     taken separately and the controller's meta term reads their alignment.
  3. the controller updates mu BEFORE the gradient step, and the step uses the new mu:
     one backward of (1 - mu) L_RL + mu L_SFT, or on meta steps the same gradient assembled
     from g_RL and g_SFT without another backward pass.

With gradient accumulation the controller reads the first micro-batch of each optimizer step
(with one micro-batch per step, the default on CPU, that is the whole step).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from transformers.trainer_utils import rotate_checkpoints
from trl import GRPOTrainer

from amft.algorithm import (
    BalanceController,
    ChordScheduleController,
    ControllerStats,
    FixedMuController,
    MetaGradientController,
    ReliftController,
    TwoStageController,
    all_failed_groups,
    chord_phi,
    clipped_surrogate,
    combine_gradients,
    group_advantages,
    luffy_surrogate,
    masked_mean,
    meta_alignment_from_gradients,
    sft_loss,
    srft_rl_loss,
    srft_weights,
    token_entropy,
    token_log_probs,
)
from amft.training.checkpoint import AMFT_STATE_FILE, atomic_write_json, mark_checkpoint_complete
from amft.training.config import IN_GROUP_METHODS, AMFTConfig
from amft.training.data import CompletionBatch, RowStream, replace_completions, tokenize_demonstrations


def controller_from_config(args: AMFTConfig) -> BalanceController:
    """The balance controller of the config's method."""
    # LUFFY and SRFT put the demonstrations inside L_RL's groups, so their mu is 0.
    constant_mu = {"sft": 1.0, "grpo": 0.0, "fixed-mu": args.mu, "luffy": 0.0, "srft": 0.0}
    if args.method in constant_mu:
        return FixedMuController(constant_mu[args.method])
    if args.method == "sft-then-rl":
        return TwoStageController(args.switch_step)
    if args.method == "relift":
        return ReliftController(args.relift_buffer_size or args.sft_batch_size)
    if args.method == "chord":
        return ChordScheduleController(
            mu_peak=args.chord_mu_peak,
            mu_valley=args.chord_mu_valley,
            warmup_steps=args.chord_mu_warmup_steps,
            decay_steps=args.chord_mu_decay_steps,
        )
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
    )


def rollout_batch(rollouts: dict[str, Any]) -> CompletionBatch:
    """The token layout of TRL's scored rollouts."""
    return CompletionBatch(
        rollouts["prompt_ids"], rollouts["prompt_mask"], rollouts["completion_ids"], rollouts["completion_mask"]
    )


def prompt_key(prompt: Any) -> str:
    """A hashable key of a prompt (a string or a list of chat messages)."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


class AMFTTrainer(GRPOTrainer):
    """GRPO plus imitation in one stage, with mu steered by a controller.

    Args:
        model: a model or a name/path, as for `GRPOTrainer`.
        reward_funcs: reward function(s), as for `GRPOTrainer`.
        args: an [`AMFTConfig`].
        train_dataset: RL prompts (a `prompt` column plus whatever the reward functions read).
        demo_dataset: demonstrations, rows with `prompt` and `completion` (plain text). LUFFY, SRFT
            and ReLIFT also look up a prompt's demonstration here when its row has no
            `demonstration` column.
        meta_dataset: held-out validation prompts for the meta term, same columns as
            `train_dataset`; required when the controller uses the meta term.
        controller: a ready controller; by default the one `args` describes.
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
        processing_class: PreTrainedTokenizerBase | None = None,
        callbacks: list[TrainerCallback] | None = None,
        controller: BalanceController | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            **kwargs,
        )
        self.controller = controller if controller is not None else controller_from_config(args)
        shard = dict(process_index=self.accelerator.process_index, num_processes=self.accelerator.num_processes)
        self.demo_stream = RowStream(list(demo_dataset), batch_size=args.sft_batch_size, seed=args.seed, **shard)
        needs_meta = isinstance(self.controller, MetaGradientController) and self.controller.use_meta
        if needs_meta and not meta_dataset:
            raise ValueError("the meta term needs validation prompts: pass meta_dataset (or set use_meta_term=False)")
        self.meta_stream = (
            RowStream(list(meta_dataset), batch_size=args.meta_batch_size, seed=args.seed + 1, **shard)
            if meta_dataset
            else None
        )
        self._demonstration_of = {prompt_key(row["prompt"]): row["completion"] for row in demo_dataset}
        if isinstance(self.controller, ReliftController):
            if args.success_reward is None:
                raise ValueError("ReLIFT needs success_reward: the reward at which a rollout counts as solved")
            if self.accelerator.num_processes > 1:
                # Each process would fill its own buffer and reach its SFT step at a different time.
                raise ValueError("method 'relift' runs in a single process for now")
        self._scored_rewards: torch.Tensor | None = None
        self._hard_prompt_rows: list[dict[str, Any]] = []
        self._relift_rows: list[list[dict[str, Any]]] = []

    # ----------------------------------------------------------------------------------------------
    # One micro-step
    # ----------------------------------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        started = time.perf_counter()
        model.train()
        accumulation = self.current_gradient_accumulation_steps
        opens_step = self._step % accumulation == 0
        # A planned mu of 1 is plain SFT (no rollouts), a planned 0 plain RL (no demonstrations).
        planned_mu = self._step_mu(opens_step)
        if self.controller.in_warmup or planned_mu == 1.0:
            loss = self._sft_micro_step(model, inputs, accumulation, opens_step)
        else:
            loss = self._mixed_micro_step(model, inputs, accumulation, opens_step, uses_demonstrations=planned_mu != 0.0)
        if isinstance(self.controller, ReliftController) and self._hard_prompt_rows:
            # Collected after this step's update, so the step that found them stays an RL step.
            self.controller.collect(self._hard_prompt_rows)
            self._hard_prompt_rows = []
        self._step += 1
        self._current_train_step_time += time.perf_counter() - started
        if self._step % accumulation == 0:
            self._metrics["train"]["step_time"].append(self._current_train_step_time)
            self._current_train_step_time = 0.0
        return loss.detach()

    def _sft_micro_step(self, model, inputs, accumulation: int, opens_step: bool) -> torch.Tensor:
        """Pure SFT (mu = 1): the warm-up, or a constant mu of 1. In the last N_H warm-up steps,
        completions are also sampled, without gradient, to measure the target entropy H*."""
        if opens_step:
            entropy = None
            if self.controller.needs_entropy_sample:
                batch = rollout_batch(self._generate_and_score_completions(inputs))
                with torch.no_grad():
                    logits = self._completion_logits(model, batch) / self.temperature
                    entropy = self._mean_over_processes(token_entropy(logits), batch.completion_mask)
            self.controller.update(ControllerStats(entropy=entropy))
            self._log_controller()
            if isinstance(self.controller, ReliftController):
                rows = self.controller.drain()
                self._relift_rows = [rows[i::accumulation] for i in range(accumulation)]
        rows = self._relift_rows.pop(0) if self._relift_rows else None
        loss = self._sft_forward(model, rows)
        self.accelerator.backward(loss / accumulation)
        self._metrics["train"]["amft/sft_loss"].append(loss.item())
        return loss

    def _step_mu(self, opens_step: bool) -> float | None:
        """The mu this micro-step will use when it is known before measuring anything (a schedule)."""
        return self.controller.planned_mu() if opens_step else self.controller.mu

    def _mixed_micro_step(
        self, model, inputs, accumulation: int, opens_step: bool, uses_demonstrations: bool
    ) -> torch.Tensor:
        rollouts = self._prepare_inputs(inputs)
        is_meta_step = opens_step and self.controller.is_meta_step()
        if is_meta_step:
            # Separate gradients, taken on the unwrapped model so no data-parallel hook fires
            # half-way; they are averaged over processes by hand.
            network = self.accelerator.unwrap_model(model)
            params = [p for p in network.parameters() if p.requires_grad]
            rl_loss, entropy = self._rl_forward(network, rollouts)
            demo_loss = self._sft_forward(network)
            g_rl = self._average_over_processes(torch.autograd.grad(rl_loss, params, allow_unused=True))
            g_sft = self._average_over_processes(torch.autograd.grad(demo_loss, params, allow_unused=True))
            g_val = self._average_over_processes(self._validation_gradient(network, params))
            alignment = meta_alignment_from_gradients(g_val, g_sft, g_rl)
            mu = self.controller.update(ControllerStats(entropy=entropy, meta_alignment=alignment))
            for param, grad in zip(params, combine_gradients(g_rl, g_sft, mu)):
                if grad is None:
                    continue
                grad = grad / accumulation
                param.grad = grad if param.grad is None else param.grad + grad
            loss = ((1.0 - mu) * rl_loss + mu * demo_loss).detach()
        else:
            rl_loss, entropy = self._rl_forward(model, rollouts)
            demo_loss = self._sft_forward(model) if uses_demonstrations else torch.zeros((), device=rl_loss.device)
            mu = self.controller.update(ControllerStats(entropy=entropy)) if opens_step else self.controller.mu
            loss = (1.0 - mu) * rl_loss + mu * demo_loss
            self.accelerator.backward(loss / accumulation)
        if opens_step:
            self._log_controller()
        if uses_demonstrations:
            self._metrics["train"]["amft/sft_loss"].append(demo_loss.item())
        self._metrics["train"]["amft/rl_loss"].append(rl_loss.item())
        return loss

    # ----------------------------------------------------------------------------------------------
    # Rollouts: LUFFY and SRFT place demonstrations in the groups, ReLIFT collects hard prompts
    # ----------------------------------------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        self._scored_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._scored_rewards

    def _generate_and_score_completions(self, inputs):
        rollouts = super()._generate_and_score_completions(inputs)
        uses_groups = self.args.method in IN_GROUP_METHODS or isinstance(self.controller, ReliftController)
        if not (self.model.training and uses_groups):  # validation and evaluation rollouts stay as sampled
            return rollouts
        group = self.num_generations
        if len(inputs) % group:
            raise ValueError(
                f"{self.args.method} needs whole rollout groups on each process: {len(inputs)} local rollouts "
                f"are not a multiple of num_generations={group}"
            )
        # TRL gathers the rewards of all processes; this process's rows are its slice.
        start = self.accelerator.process_index * len(inputs)
        scored = self._scored_rewards[start : start + len(inputs)]
        rewards = (scored * self.reward_weights.to(scored.device)).nansum(dim=1)
        if isinstance(self.controller, ReliftController):
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
            tokenizer = self.processing_class
            token_ids = [
                (tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])[
                    : self.max_completion_length
                ]
                for text in texts
            ]
            rollouts = replace_completions(rollouts, rows, token_ids, tokenizer.pad_token_id)
            rewards = rewards.clone()
            rewards[rows] = self._score_locally([inputs[row] for row in rows], texts, token_ids).to(rewards.device)
            off_policy[rows] = True
        rollouts["advantages"] = group_advantages(rewards, group, scale=self.scale_rewards)
        rollouts["off_policy"] = off_policy
        tokens = rollouts["completion_mask"].sum().float()
        rollouts["num_items_in_batch"] = self.accelerator.gather(tokens.unsqueeze(0)).sum()
        self._metrics["train"]["demonstrations_in_groups"].append(float(len(rows)))
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
        per_func = torch.tensor(scores, dtype=torch.float32).T
        return (per_func * self.reward_weights.cpu()).nansum(dim=1)

    # ----------------------------------------------------------------------------------------------
    # Losses
    # ----------------------------------------------------------------------------------------------
    def _completion_logits(self, model, batch: CompletionBatch) -> torch.Tensor:
        input_ids = torch.cat([batch.prompt_ids, batch.completion_ids], dim=1)
        attention_mask = torch.cat([batch.prompt_mask, batch.completion_mask], dim=1)
        completion_length = batch.completion_ids.size(1)
        # The logit at position i predicts token i + 1, so the completion's logits start one earlier.
        logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=completion_length + 1).logits
        return logits[:, :-1, :]

    def _sft_forward(self, model, rows: Sequence[dict[str, Any]] | None = None) -> torch.Tensor:
        """L_SFT on `rows` or the next demonstration batch: token-mean NLL of the completions."""
        batch = tokenize_demonstrations(
            rows or self.demo_stream.next_batch(),
            self.processing_class,
            self.args.max_demo_prompt_length,
            self.args.max_demo_completion_length,
        ).to(self.accelerator.device)
        logps = token_log_probs(self._completion_logits(model, batch), batch.completion_ids)
        # CHORD-phi down-weights demonstration tokens the policy is already sure of or finds implausible.
        weights = chord_phi(logps) if self.args.method == "chord" and self.args.chord_phi else None
        return sft_loss(logps, batch.completion_mask, token_weights=weights, normalizer=self._shared_normalizer(batch.completion_mask))

    def _shared_normalizer(self, mask: torch.Tensor) -> torch.Tensor | None:
        """The token count that makes a token mean global: gradients are averaged over processes, so
        each process divides by the global count over the number of processes (None: one process)."""
        if self.accelerator.num_processes == 1:
            return None
        total = self.accelerator.reduce(mask.sum().float(), reduction="sum")
        return (total / self.accelerator.num_processes).clamp(min=1.0)

    def _rl_forward(self, model, rollouts: dict[str, Any]) -> tuple[torch.Tensor, float]:
        """L_RL over the rollouts (the method's form of it) and H, the mean token entropy of the
        sampled completions over all processes (demonstrations placed in the groups excluded)."""
        batch = rollout_batch(rollouts)
        logits = self._completion_logits(model, batch) / self.temperature
        mask = batch.completion_mask
        entropies = token_entropy(logits)
        logps = token_log_probs(logits, batch.completion_ids)
        off_policy = rollouts.get("off_policy")
        sampled = mask if off_policy is None else mask * (~off_policy).unsqueeze(-1)
        entropy = self._mean_over_processes(entropies.detach(), sampled)
        old_logps = rollouts.get("old_per_token_logps")
        old_logps = logps.detach() if old_logps is None else old_logps
        aggregation = dict(
            aggregation=self.loss_type,
            max_completion_length=self.max_completion_length,
            normalizer=self._dapo_normalizer(rollouts) if self.loss_type == "dapo" else None,
        )
        clipping = dict(epsilon_low=self.epsilon_low, epsilon_high=self.epsilon_high)
        if self.args.method == "luffy":
            loss = luffy_surrogate(
                logps, old_logps, rollouts["advantages"], mask, off_policy, gamma=self.args.luffy_gamma,
                **clipping, **aggregation,
            )
        elif self.args.method == "srft":
            demo_weight, positive_weight = srft_weights(
                entropy,
                sft_coef=self.args.srft_sft_coef,
                rl_coef=self.args.srft_rl_coef,
                sft_entropy_sign=self.args.srft_sft_entropy_sign,
            )
            demonstrations = mask * off_policy.unsqueeze(-1)
            loss = srft_rl_loss(logps, rollouts["advantages"], sampled, positive_weight=positive_weight, **aggregation)
            if demonstrations.any():
                loss = loss + demo_weight * sft_loss(logps, demonstrations)
            self._metrics["train"]["srft/demo_weight"].append(demo_weight)
            self._metrics["train"]["srft/positive_weight"].append(positive_weight)
        else:
            loss = clipped_surrogate(logps, old_logps, rollouts["advantages"], mask, **clipping, **aggregation)
        if self.entropy_coef:
            loss = loss - self.entropy_coef * masked_mean(entropies, sampled)
        return loss, entropy

    def _mean_over_processes(self, values: torch.Tensor, mask: torch.Tensor) -> float:
        totals = self.accelerator.reduce(torch.stack([(values * mask).sum(), mask.sum().float()]), reduction="sum")
        return (totals[0] / totals[1].clamp(min=1.0)).item()

    def _dapo_normalizer(self, rollouts: dict[str, Any]) -> torch.Tensor:
        # Active tokens of one micro-batch, averaged over processes: the loss of every micro-batch is
        # then divided by the accumulation steps like the other loss types.
        tokens = rollouts["num_items_in_batch"].clamp(min=1.0)
        return tokens / self.accelerator.num_processes / self.args.steps_per_generation

    def _validation_gradient(self, model, params: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """g_val: gradient of the policy-gradient loss on fresh rollouts for held-out prompts (D2).

        Descending this loss ascends the validation reward, so g_val ~ -grad U.
        """
        rows = self.meta_stream.next_batch()
        repeated = [dict(row) for row in rows for _ in range(self.num_generations_eval)]
        was_training = self.model.training
        self.model.eval()  # TRL then normalises the groups with num_generations_eval
        try:
            rollouts = self._generate_and_score_completions(repeated)
        finally:
            self.model.train(was_training)
        val_rewards = self._metrics["eval"].get("reward", [])
        if val_rewards:
            self._metrics["train"]["amft/val_reward"].append(val_rewards[-1])
        self._metrics["eval"].clear()  # these rollouts are the controller's, not an evaluation
        batch = rollout_batch(rollouts)
        logps = token_log_probs(self._completion_logits(model, batch) / self.temperature, batch.completion_ids)
        val_loss = clipped_surrogate(logps, logps.detach(), rollouts["advantages"], batch.completion_mask)
        return list(torch.autograd.grad(val_loss, params, allow_unused=True))

    def _average_over_processes(self, grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        if self.accelerator.num_processes == 1:
            return list(grads)
        return [None if g is None else self.accelerator.reduce(g, reduction="mean") for g in grads]

    def _log_controller(self) -> None:
        for key, value in self.controller.last_terms.items():
            if value is not None:
                self._metrics["train"][f"amft/{key}"].append(float(value))

    # ----------------------------------------------------------------------------------------------
    # Checkpoints: controller and stream positions beside the Trainer's own state
    # ----------------------------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial) -> None:
        # Rotation must not delete the last complete checkpoint before this one is marked complete.
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        run_dir = self._get_output_dir(trial=trial)
        checkpoint_dir = os.path.join(run_dir, f"checkpoint-{self.state.global_step}")
        if self.args.should_save:
            atomic_write_json(os.path.join(checkpoint_dir, AMFT_STATE_FILE), self._amft_state())
            mark_checkpoint_complete(checkpoint_dir)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
            )

    def _amft_state(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "demo_stream": self.demo_stream.state_dict(),
            "meta_stream": self.meta_stream.state_dict() if self.meta_stream else None,
        }

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, AMFT_STATE_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing: {checkpoint} is not a complete AMFT checkpoint")
        with open(path) as handle:
            state = json.load(handle)
        self.controller.load_state_dict(state["controller"])
        self.demo_stream.load_state_dict(state["demo_stream"])
        if self.meta_stream is not None and state["meta_stream"] is not None:
            self.meta_stream.load_state_dict(state["meta_stream"])
