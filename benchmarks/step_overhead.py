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
import json
import statistics
import tempfile

import torch

from step_runs import AMFT_WARMUP_STEPS, StepTimer, add_step_arguments, amft_trainer, grpo_trainer, pretrained_workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_arguments(parser, steps=60)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        workload = pretrained_workload(scratch, args)
        total = args.steps + args.skip
        grpo_timer, amft_timer = StepTimer(), StepTimer()
        grpo_trainer(workload, scratch, total, args, [grpo_timer]).train()
        amft_trainer(workload, scratch, total, args, [amft_timer]).train()

    grpo_times = grpo_timer.durations[args.skip :]
    amft_times = amft_timer.durations[AMFT_WARMUP_STEPS + args.skip :]
    meta_steps = sum(1 for t in range(args.skip + 1, total + 1) if t % args.meta_period == 0)
    result = {
        "grpo_mean_step_s": round(statistics.mean(grpo_times), 4),
        "amft_mean_step_s": round(statistics.mean(amft_times), 4),
        "ratio": round(statistics.mean(amft_times) / statistics.mean(grpo_times), 3),
        "timed_steps": len(amft_times),
        "amft_meta_steps_timed": meta_steps,
        "meta_period": args.meta_period,
        "model": args.model,
        "batch": f"{args.prompts} prompts x {args.generations} completions, <= {args.max_completion_length} tokens",
        "threads": args.threads,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
