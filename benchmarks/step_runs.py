"""What the step benchmarks (step_overhead.py, throughput.py) share: the GeneralPoints setting of the README's
measurements, the options that describe it, a shared SFT pre-training, and TRL's GRPO trainer and AMFT's trainer
built on it as `amft train` builds them, with a timer of their optimizer steps.

Each trainer gets a fresh model loaded with the pre-trained weights: the same starting point, and no forward
wrapped twice by two trainers' mixed precision.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from amft.models import build_tiny_model
from amft.tasks import get_task
from amft.tasks.base import Task
from amft.training import AMFTConfig, AMFTTrainer

#: The models the step benchmarks run on (see amft.models.TINY_MODELS).
MODELS = ("tiny-gp", "tiny-6m")
#: AMFT's SFT warm-up is not part of the comparison: the timed steps are of its main phase.
AMFT_WARMUP_STEPS = 2


def add_step_arguments(parser: argparse.ArgumentParser, *, steps: int) -> None:
    """The options of the timed runs, `steps` timed optimizer steps per trainer by default."""
    parser.add_argument("--model", choices=MODELS, default="tiny-gp", help="the tiny model, built from its config")
    parser.add_argument("--steps", type=int, default=steps, help="timed optimizer steps per trainer")
    parser.add_argument("--skip", type=int, default=5, help="first steps not timed (allocator and cache warm-up)")
    parser.add_argument("--pretrain-steps", type=int, default=200,
                        help="shared SFT steps before timing, so completions look like real ones (0: a random model, "
                             "whose completions run to the length limit)")
    parser.add_argument("--meta-period", type=int, default=20, help="K of AMFT: a meta step every K main-phase steps")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step (also demonstrations and validation "
                                                               "prompts per AMFT step)")
    parser.add_argument("--generations", type=int, default=8, help="completions per prompt")
    parser.add_argument("--max-completion-length", type=int, default=40, help="most new tokens per completion")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="of the timed runs")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the free cores)")
    parser.add_argument("--attn-implementation", choices=("sdpa", "eager"),
                        help="the models' attention kernels (default: the tiny model's own, eager): to compare them")


class StepTimer(TrainerCallback):
    """Wall-clock seconds of each optimizer step."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.durations.append(time.perf_counter() - self._started)


def engine_settings(output_dir: str, steps: int, args: argparse.Namespace) -> dict[str, Any]:
    """The TRL fields of every run: bf16 autocast on the CPU, one batch of `prompts` x `generations` per step."""
    return dict(
        output_dir=output_dir,
        use_cpu=True,
        bf16=True,
        seed=0,
        max_steps=steps,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.prompts * args.generations,
        num_generations=args.generations,
        max_completion_length=args.max_completion_length,
        gradient_checkpointing=False,
        logging_steps=10_000,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )


@dataclass
class Workload:
    """GeneralPoints (compact prompts, formula completions, canonical demonstrations) and the weights that every
    timed run starts from."""

    model_name: str
    #: None: the tiny model's own attention kernels
    attn_implementation: str | None
    task: Task
    prompts: Dataset
    demonstrations: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    tokenizer: PreTrainedTokenizerBase
    weights: dict[str, torch.Tensor]

    def fresh_model(self) -> PreTrainedModel:
        model, _ = build_tiny_model(self.model_name, seed=0, attn_implementation=self.attn_implementation)
        model.load_state_dict(self.weights)
        return model


def pretrained_workload(scratch: str, args: argparse.Namespace) -> Workload:
    """The task's rows and a model after `args.pretrain_steps` of plain SFT (batch 64, lr 1e-3)."""
    task = get_task("general-points", template="compact", completion_format="formula", demo_solution="canonical")
    prompts = Dataset.from_list(task.train_prompts(4000, seed=0))
    demonstrations = task.demonstrations(4000, seed=0)
    model, tokenizer = build_tiny_model(args.model, seed=0, attn_implementation=args.attn_implementation)
    if args.pretrain_steps:
        AMFTTrainer(
            model=model,
            reward_funcs=task.reward,
            args=AMFTConfig(
                **engine_settings(scratch, args.pretrain_steps, args) | {"learning_rate": 1e-3},
                method="sft", sft_batch_size=64,
            ),
            train_dataset=prompts,
            demo_dataset=demonstrations,
            processing_class=tokenizer,
        ).train()
    weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    return Workload(args.model, args.attn_implementation, task, prompts, demonstrations,
                    task.validation_prompts(64, seed=1), tokenizer, weights)


def grpo_trainer(
    workload: Workload, scratch: str, steps: int, args: argparse.Namespace, callbacks: list[TrainerCallback]
) -> GRPOTrainer:
    """TRL's GRPOTrainer for `steps` optimizer steps."""
    return GRPOTrainer(
        model=workload.fresh_model(),
        reward_funcs=workload.task.reward,
        args=GRPOConfig(**engine_settings(scratch, steps, args)),
        train_dataset=workload.prompts,
        processing_class=workload.tokenizer,
        callbacks=callbacks,
    )


def amft_trainer(
    workload: Workload, scratch: str, steps: int, args: argparse.Namespace, callbacks: list[TrainerCallback]
) -> AMFTTrainer:
    """AMFT (the default method) for AMFT_WARMUP_STEPS of SFT warm-up, then `steps` main-phase steps with a meta
    step every `args.meta_period`."""
    return AMFTTrainer(
        model=workload.fresh_model(),
        reward_funcs=workload.task.reward,
        args=AMFTConfig(
            **engine_settings(scratch, AMFT_WARMUP_STEPS + steps, args),
            amft_warmup_steps=AMFT_WARMUP_STEPS,
            entropy_calibration_steps=1,
            meta_period=args.meta_period,
            sft_batch_size=args.prompts,
            meta_batch_size=args.prompts,
        ),
        train_dataset=workload.prompts,
        demo_dataset=workload.demonstrations,
        meta_dataset=workload.validation,
        processing_class=workload.tokenizer,
        callbacks=callbacks,
    )
