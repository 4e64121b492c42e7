"""Step-time overhead of AMFT against plain GRPO (target ratio <= 1.10 with K = 20; see docs/design.md,
'The meta-gradient').

Both trainers run in this one process on the same tiny model (the same initial weights, a
short shared SFT pre-training so completions look like real ones), the same prompts, batch,
generation settings and seed. AMFT is timed in its main phase, meta steps included; the
first steps of each run are discarded as warm-up of the allocator and caches.

    python benchmarks/step_overhead.py            # about 6 minutes on 2 cores
    python benchmarks/step_overhead.py --steps 20 --pretrain-steps 50   # a quick look

The last line printed is a JSON object with both mean step times and "ratio".
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time

import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from amft.models import build_tiny_model
from amft.tasks import get_task
from amft.training import AMFTConfig, AMFTTrainer


class StepTimer(TrainerCallback):
    def __init__(self) -> None:
        self.durations: list[float] = []
        self._started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.durations.append(time.perf_counter() - self._started)


def engine_settings(output_dir: str, steps: int, args: argparse.Namespace) -> dict:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="timed optimizer steps per trainer")
    parser.add_argument("--skip", type=int, default=5, help="first steps not timed")
    parser.add_argument("--pretrain-steps", type=int, default=200, help="shared SFT steps before timing")
    parser.add_argument("--meta-period", type=int, default=20, help="K of AMFT")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("--generations", type=int, default=8, help="completions per prompt")
    parser.add_argument("--max-completion-length", type=int, default=40)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    task = get_task("general-points", template="compact", completion_format="formula", demo_solution="canonical")
    prompts = Dataset.from_list(task.train_prompts(4000, seed=0))
    demos = task.demonstrations(4000, seed=0)
    validation = task.validation_prompts(64, seed=1)
    model, tokenizer = build_tiny_model("tiny-gp", seed=0)

    with tempfile.TemporaryDirectory() as scratch:
        # Shared pre-training: plain SFT.
        pretrain = AMFTTrainer(
            model=model,
            reward_funcs=task.reward,
            args=AMFTConfig(
                **engine_settings(scratch, args.pretrain_steps, args) | {"learning_rate": 1e-3},
                method="sft", sft_batch_size=64,
            ),
            train_dataset=prompts,
            demo_dataset=demos,
            processing_class=tokenizer,
        )
        pretrain.train()
        start_weights = copy.deepcopy(pretrain.model.state_dict())

        total = args.steps + args.skip
        grpo_timer, amft_timer = StepTimer(), StepTimer()
        model.load_state_dict(start_weights)
        GRPOTrainer(
            model=model,
            reward_funcs=task.reward,
            args=GRPOConfig(**engine_settings(scratch, total, args)),
            train_dataset=prompts,
            processing_class=tokenizer,
            callbacks=[grpo_timer],
        ).train()

        model.load_state_dict(start_weights)
        warmup = 2  # AMFT's SFT warm-up is not part of the comparison: time its main phase only
        amft = AMFTTrainer(
            model=model,
            reward_funcs=task.reward,
            args=AMFTConfig(
                **engine_settings(scratch, warmup + total, args),
                amft_warmup_steps=warmup,
                entropy_calibration_steps=1,
                meta_period=args.meta_period,
                sft_batch_size=args.prompts,
                meta_batch_size=args.prompts,
            ),
            train_dataset=prompts,
            demo_dataset=demos,
            meta_dataset=validation,
            processing_class=tokenizer,
            callbacks=[amft_timer],
        )
        amft.train()

    grpo_times = grpo_timer.durations[args.skip :]
    amft_times = amft_timer.durations[warmup + args.skip :]
    meta_steps = sum(1 for t in range(args.skip + 1, total + 1) if t % args.meta_period == 0)
    result = {
        "grpo_mean_step_s": round(statistics.mean(grpo_times), 4),
        "amft_mean_step_s": round(statistics.mean(amft_times), 4),
        "ratio": round(statistics.mean(amft_times) / statistics.mean(grpo_times), 3),
        "timed_steps": len(amft_times),
        "amft_meta_steps_timed": meta_steps,
        "meta_period": args.meta_period,
        "batch": f"{args.prompts} prompts x {args.generations} completions, <= {args.max_completion_length} tokens",
        "threads": args.threads,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
