"""Does a faster kernel learn the same? The reward trajectories of GRPO runs with each attention implementation,
against the spread that the seed alone makes.

From the same pre-trained weights (the GeneralPoints setting of step_overhead.py), AMFTTrainer's `grpo` method
runs `--steps` steps with sdpa and with eager attention, each with seeds 0 .. `--seeds` - 1. Kernels that only round
differently may change a sampled token here and there, and a run drifts apart from there as one with another
seed would; a kernel that changed the sampled distribution or the loss would move the runs further than the seeds
do. The rewards are compared as means over windows of `--window` steps.

    python benchmarks/grpo_trajectory.py --pretrain-steps 400      # 6 runs of 100 steps: about 15 minutes alone

The last line printed is a JSON object: per run the windowed rewards; per kernel the final windows of its seeds
and their mean; `kernel_gap`, the difference between the kernels' mean final windows, against `seed_spread`, the
widest range of final windows among one kernel's seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

import torch

from step_runs import Workload, add_step_arguments, engine_settings, pretrained_workload

from amft.training import AMFTConfig, AMFTTrainer

IMPLEMENTATIONS = ("sdpa", "eager")


def grpo_rewards(workload: Workload, scratch: str, args: argparse.Namespace, attention: str, seed: int) -> list[float]:
    """The mean reward of each step's rollout batch."""
    model = workload.fresh_model()
    model.set_attn_implementation(attention)
    trainer = AMFTTrainer(
        model=model,
        reward_funcs=workload.task.reward,
        args=AMFTConfig(**engine_settings(scratch, args.steps, args) | {"seed": seed, "logging_steps": 1},
                        method="grpo"),
        train_dataset=workload.prompts,
        demo_dataset=workload.demonstrations,
        processing_class=workload.tokenizer,
    )
    trainer.train()
    return [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]


def windowed(values: list[float], window: int) -> list[float]:
    return [round(statistics.mean(values[i : i + window]), 4) for i in range(0, len(values), window)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_arguments(parser, steps=100)
    parser.add_argument("--seeds", type=int, default=3, help="GRPO runs per kernel, seeds 0 .. N-1")
    parser.add_argument("--window", type=int, default=10, help="steps per averaged window of rewards")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    curves: dict[str, list[float]] = {}
    finals: dict[str, list[float]] = {attention: [] for attention in IMPLEMENTATIONS}
    with tempfile.TemporaryDirectory() as scratch:
        workload = pretrained_workload(scratch, args)
        for seed in range(args.seeds):
            for attention in IMPLEMENTATIONS:
                curve = windowed(grpo_rewards(workload, scratch, args, attention, seed), args.window)
                curves[f"{attention}-seed{seed}"] = curve
                finals[attention].append(curve[-1])
                print(f"{attention} seed {seed}: {curve}", flush=True)

    means = {attention: round(statistics.mean(values), 4) for attention, values in finals.items()}
    result = {
        "runs": curves,
        "final_windows": finals,
        "mean_final_window": means,
        "kernel_gap": round(abs(means["sdpa"] - means["eager"]), 4),
        "seed_spread": round(max(max(values) - min(values) for values in finals.values()), 4),
        "window": args.window,
        "steps": args.steps,
        "pretrain_steps": args.pretrain_steps,
        "model": args.model,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
