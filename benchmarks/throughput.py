"""A training step against its floor: what the model's arithmetic needs, and what the trainers take.

In one process, on the same model, batch and seed (the GeneralPoints setting of step_overhead.py: compact
prompts of about 60 tokens, 8 prompts x 8 completions of at most 40 new tokens, bf16 autocast):

- the steps: TRL's GRPOTrainer and AMFTTrainer (its main phase, a meta step every K = --meta-period steps)
  run from the same pre-trained weights, as `amft train` builds them; each optimizer step is timed, and so is
  each rollout batch the trainer samples (TRL's generation call: HF `generate` with its padding and
  end-of-sequence masking), with its tokens kept;
- the floor of the rollout batches of some of those steps, each timed right after its step (outside the step's
  time, so that both see the same load of the machine), bare, on a copy of the model under the same bf16
  autocast: the forwards that generation needs (the prefill of each distinct prompt once, then one
  single-token forward of the whole batch per new token but the last, fed the tokens that were sampled, with a
  KV cache), plus one training forward/backward of the batch (log-probs of the completion tokens and their
  mean, backward). The optimizer's update and the SFT and meta terms are not in the floor: what they cost
  shows in the ratios.

AMFT's mean step weighs its meta steps as one in K, whichever steps the window caught. The absolute times
depend on the machine and its load; the ratios, measured side by side, much less.

    python benchmarks/throughput.py                    # about 7 minutes with --threads 1 on 2 busy cores
    python benchmarks/throughput.py --steps 20 --pretrain-steps 50 --floor-batches 4   # a quick look
    python benchmarks/throughput.py --attn-implementation sdpa     # the same with sdpa attention (transformers' default)

The last line printed is a JSON object: AMFT's floor_s (its parts forward_floor_s and train_floor_s),
generation_s, amft_step_s, generation_over_forward_floor and step_over_floor; grpo_step_s and the same ratios of
GRPO to the floor of its own batches (without the imitation term its completions drift longer); and tokens per
second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel, TrainerCallback
from trl import GRPOTrainer

from amft.algorithm import masked_mean, token_log_probs
from step_runs import (
    AMFT_WARMUP_STEPS,
    StepTimer,
    Workload,
    add_step_arguments,
    amft_trainer,
    grpo_trainer,
    pretrained_workload,
)


@dataclass(frozen=True)
class RolloutBatch:
    """One generation call of a trainer: its duration and its tokens."""

    #: the optimizer step (1-based) that sampled it
    step: int
    #: rollouts of the training batch, not the meta step's validation rollouts
    training: bool
    seconds: float
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]

    @property
    def completion_tokens(self) -> int:
        return sum(len(ids) for ids in self.completion_ids)

    @property
    def prompt_tokens(self) -> int:
        return sum(len(ids) for ids in self.prompt_ids)


def record_rollouts(trainer: GRPOTrainer) -> list[RolloutBatch]:
    """Time each of the trainer's generation calls (TRL's `_generate_single_turn`) and keep its batch."""
    batches: list[RolloutBatch] = []
    generate = trainer._generate_single_turn

    def timed(prompt_ids, *args, **kwargs):
        started = time.perf_counter()
        completion_ids, logprobs = generate(prompt_ids, *args, **kwargs)
        seconds = time.perf_counter() - started
        batches.append(RolloutBatch(trainer.state.global_step + 1, trainer.model.training, seconds,
                                    [list(ids) for ids in prompt_ids], [list(ids) for ids in completion_ids]))
        return completion_ids, logprobs

    trainer._generate_single_turn = timed
    return batches


def padded(rows: Sequence[Sequence[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of token ids as one ``(B, T)`` tensor padded on `side`, and its 0/1 mask."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[index, span] = torch.tensor(row, dtype=torch.long)
        mask[index, span] = 1
    return ids, mask


def bf16_autocast():
    """The trainers' mixed precision on the CPU (`bf16=True`)."""
    return torch.autocast("cpu", dtype=torch.bfloat16)


def generation_forwards_seconds(model: PreTrainedModel, batch: RolloutBatch, pad_id: int, group: int) -> float:
    """The forwards that sampling this batch needs, bare: the prefill of each distinct prompt once (a group's
    `group` rows share their prompt), left-padded and with positions counted from each row's first token as
    `generate` counts them, its KV cache repeated for the group's rows; then one forward of the whole batch per
    new token but the last, fed the sampled tokens."""
    prompt_ids, mask = padded(batch.prompt_ids, pad_id, "left")
    completion_ids, _ = padded(batch.completion_ids, pad_id, "right")
    if not torch.equal(prompt_ids, prompt_ids[::group].repeat_interleave(group, dim=0)):
        raise ValueError(f"the batch's rows are not groups of {group} rows with one prompt")
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    ones = torch.ones((prompt_ids.size(0), 1), dtype=torch.long)
    with torch.no_grad(), bf16_autocast():
        started = time.perf_counter()
        cache = DynamicCache(config=model.config)
        model(input_ids=prompt_ids[::group], attention_mask=mask[::group], position_ids=positions[::group],
              cache=cache, use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(group)
        position = positions[:, -1:]
        for index in range(completion_ids.size(1) - 1):
            mask, position = torch.cat([mask, ones], dim=1), position + 1
            model(input_ids=completion_ids[:, index : index + 1], attention_mask=mask, position_ids=position,
                  cache=cache, use_cache=True, logits_to_keep=1)
        return time.perf_counter() - started


def training_pass_seconds(model: PreTrainedModel, batch: RolloutBatch, pad_id: int) -> float:
    """One training forward/backward of the batch, bare: the completion tokens' log-probs, their mean, backward."""
    prompt_ids, prompt_mask = padded(batch.prompt_ids, pad_id, "left")
    completion_ids, completion_mask = padded(batch.completion_ids, pad_id, "right")
    started = time.perf_counter()
    with bf16_autocast():
        logits = model(input_ids=torch.cat([prompt_ids, completion_ids], dim=1),
                       attention_mask=torch.cat([prompt_mask, completion_mask], dim=1),
                       logits_to_keep=completion_ids.size(1) + 1).logits[:, :-1, :]
    masked_mean(token_log_probs(logits, completion_ids), completion_mask).backward()
    seconds = time.perf_counter() - started
    model.zero_grad(set_to_none=True)
    return seconds


class FloorTimer(TrainerCallback):
    """Times the floor of the rollout batch of each of `steps`, right after that step and outside its timing (on a
    model of its own), so that the floor and the steps are measured under the same load of the machine."""

    def __init__(self, model: PreTrainedModel, rollouts: list[RolloutBatch], steps: set[int], pad_id: int,
                 group: int) -> None:
        self.model, self.rollouts, self.steps, self.pad_id, self.group = model, rollouts, steps, pad_id, group
        self.batches: list[RolloutBatch] = []
        self.forwards: list[float] = []
        self.training: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step not in self.steps:
            return
        batch = next(b for b in reversed(self.rollouts) if b.training and b.step == state.global_step)
        if not self.batches:  # allocator and cache warm-up
            generation_forwards_seconds(self.model, batch, self.pad_id, self.group)
            training_pass_seconds(self.model, batch, self.pad_id)
        self.batches.append(batch)
        self.forwards.append(generation_forwards_seconds(self.model, batch, self.pad_id, self.group))
        self.training.append(training_pass_seconds(self.model, batch, self.pad_id))

    @property
    def seconds(self) -> float:
        return statistics.mean(self.forwards) + statistics.mean(self.training)

    def generation_over_forwards(self) -> float:
        """The trainer's generation of the floored batches over their bare forwards."""
        return sum(b.seconds for b in self.batches) / sum(self.forwards)


def evenly_spaced(first: int, last: int, count: int) -> set[int]:
    """`count` steps spread evenly from `first` to `last`, both included."""
    if count >= last - first + 1:
        return set(range(first, last + 1))
    return {first + round(i * (last - first) / max(count - 1, 1)) for i in range(count)}


def mean_step(durations: list[float], is_meta: list[bool], meta_period: int) -> tuple[float, float, float | None]:
    """(mean step with meta steps weighed one in `meta_period`, mean plain step, mean meta step or None)."""
    plain = statistics.mean(d for d, meta in zip(durations, is_meta) if not meta)
    metas = [d for d, meta in zip(durations, is_meta) if meta]
    if not metas:
        return plain, plain, None
    meta = statistics.mean(metas)
    return ((meta_period - 1) * plain + meta) / meta_period, plain, meta


def tokens_per_second(batches: list[RolloutBatch], seconds: float) -> float:
    return round(sum(b.completion_tokens for b in batches) / seconds, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_arguments(parser, steps=40)
    parser.add_argument("--floor-batches", type=int, default=10,
                        help="timed steps of each run, evenly spaced, after which the floor of their rollout batch "
                             "is timed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    total = args.skip + args.steps
    with tempfile.TemporaryDirectory() as scratch:
        workload: Workload = pretrained_workload(scratch, args)
        pad_id = workload.tokenizer.pad_token_id

        def timed_run(build, warmup: int) -> tuple[GRPOTrainer, StepTimer, list[RolloutBatch], FloorTimer]:
            steps = StepTimer()
            trainer = build(workload, scratch, total, args, [steps])
            rollouts = record_rollouts(trainer)
            floor_steps = evenly_spaced(warmup + args.skip + 1, warmup + total, args.floor_batches)
            floor = FloorTimer(workload.fresh_model(), rollouts, floor_steps, pad_id, args.generations)
            trainer.add_callback(floor)  # after the step timer: a step's time ends before its floor is timed
            trainer.train()
            return trainer, steps, rollouts, floor

        _, grpo_timer, grpo_rollouts, grpo_floor = timed_run(grpo_trainer, 0)
        amft, amft_timer, amft_rollouts, amft_floor = timed_run(amft_trainer, AMFT_WARMUP_STEPS)

    grpo_step = statistics.mean(grpo_timer.durations[args.skip :])
    grpo_batches = [b for b in grpo_rollouts if b.training and b.step > args.skip]
    amft_times = amft_timer.durations[AMFT_WARMUP_STEPS + args.skip :]
    amft_batches = [b for b in amft_rollouts if b.training and b.step > AMFT_WARMUP_STEPS + args.skip]
    is_meta = [amft.controller.is_meta_step(t) for t in range(args.skip + 1, total + 1)]
    amft_step, amft_plain_step, amft_meta_step = mean_step(amft_times, is_meta, args.meta_period)

    result = {
        "floor_s": round(amft_floor.seconds, 4),
        "forward_floor_s": round(statistics.mean(amft_floor.forwards), 4),
        "train_floor_s": round(statistics.mean(amft_floor.training), 4),
        "generation_s": round(statistics.mean(b.seconds for b in amft_batches), 4),
        "amft_step_s": round(amft_step, 4),
        "amft_plain_step_s": round(amft_plain_step, 4),
        "amft_meta_step_s": None if amft_meta_step is None else round(amft_meta_step, 4),
        "grpo_step_s": round(grpo_step, 4),
        "generation_over_forward_floor": round(amft_floor.generation_over_forwards(), 3),
        "step_over_floor": round(amft_step / amft_floor.seconds, 3),
        "amft_over_grpo": round(amft_step / grpo_step, 3),
        # GRPO's batches drift apart from AMFT's (no imitation term): its ratios are to the floor of its own batches
        "grpo_floor_s": round(grpo_floor.seconds, 4),
        "grpo_generation_s": round(statistics.mean(b.seconds for b in grpo_batches), 4),
        "grpo_generation_over_forward_floor": round(grpo_floor.generation_over_forwards(), 3),
        "grpo_step_over_floor": round(grpo_step / grpo_floor.seconds, 3),
        # sampled completion tokens per second: in generation, in its bare forwards, and per training step
        "generation_tokens_per_s": tokens_per_second(amft_batches, sum(b.seconds for b in amft_batches)),
        "forward_floor_tokens_per_s": tokens_per_second(amft_floor.batches, sum(amft_floor.forwards)),
        "amft_tokens_per_s": round(statistics.mean(b.completion_tokens for b in amft_batches) / amft_step, 1),
        "grpo_tokens_per_s": round(statistics.mean(b.completion_tokens for b in grpo_batches) / grpo_step, 1),
        "mean_prompt_tokens": round(statistics.mean(b.prompt_tokens / len(b.prompt_ids) for b in amft_batches), 1),
        "mean_completion_tokens": round(
            statistics.mean(b.completion_tokens / len(b.completion_ids) for b in amft_batches), 1),
        "grpo_mean_completion_tokens": round(
            statistics.mean(b.completion_tokens / len(b.completion_ids) for b in grpo_batches), 1),
        "mean_decode_forwards": round(statistics.mean(max(map(len, b.completion_ids)) - 1 for b in amft_batches), 1),
        "timed_steps": len(amft_times),
        "amft_meta_steps_timed": sum(is_meta),
        "floor_batches": len(amft_floor.batches),
        "meta_period": args.meta_period,
        "model": args.model,
        "attn_implementation": amft.model.config._attn_implementation,
        "parameters": sum(p.numel() for p in amft.model.parameters()),
        "batch": f"{args.prompts} prompts x {args.generations} completions, <= {args.max_completion_length} tokens, "
                 "bf16 autocast",
        "threads": args.threads,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
