"""Peak memory of AMFT's meta step against a GRPO step and an AMFT step without the meta term (see
docs/design.md, 'The meta-gradient').

How it is measured. Each measured step runs in a fresh process (Linux), one per kind of step, alternated and
repeated: the process builds the model and trainer and takes one or two optimizer steps first (so the
optimizer state exists, as it does for every step but the first of a run), then, right before the measured
step, resets the kernel's high-water mark of its resident memory (`/proc/self/clear_refs`) and notes its
resident memory; after the step it reads the high-water mark. The difference is the memory the step needed
at its peak. glibc's allocator keeps freed memory for reuse, which would hide part of a step's needs, so the
processes fix its mmap threshold at 64 KiB: every tensor buffer is then a mapping of its own, returned to the
system when freed, and resident memory follows the live tensors. (tracemalloc sees only Python objects, not
tensor storage; a high-water mark without the reset would include the process's set-up.)

The meta step keeps the separate gradients g_RL, g_SFT, g_H and g_val of all parameters until the last is
taken, where a plain step's backward makes one gradient: three extra gradients, in the parameters' dtype
(fp32 here), plus the activations of the validation rollouts' forward. The JSON reports the measured extra
in units of one gradient, and the arithmetic for the 7B recipe.

    python benchmarks/meta_memory.py --gradient-checkpointing   # about 6 minutes on 2 cores (the 7B recipe checkpoints)
    python benchmarks/meta_memory.py --repeats 1                # a quick look, without checkpointing

The last line printed is a JSON object: median peaks (MiB) per kind of step, their ratios to the GRPO
step, the meta step's extra in gradients, and the 7B estimate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

#: The kinds of step measured: GRPO (TRL's trainer), an AMFT step of the mixed phase without the meta term,
#: and an AMFT meta step.
KINDS = ("grpo", "amft_step", "amft_meta_step")
#: Qwen2.5-Math-7B, the AMFT paper's math model, and its recipe's 8 GPUs (configs/math-qwen2.5-math-7b.yaml).
SEVEN_B_PARAMETERS = 7.62e9
SEVEN_B_GPUS = 8
EXTRA_GRADIENTS = 3
FP32_BYTES = 4


def _kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(kind: str, args: argparse.Namespace) -> dict:
    """Build, step to the measured step, and return its peak resident memory above the level before it."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from amft.models import build_tiny_model
    from amft.tasks import get_task
    from amft.training import AMFTConfig, AMFTTrainer

    class StepPeak(TrainerCallback):
        def __init__(self, step: int) -> None:
            self.step, self.before_kib, self.peak_kib = step, 0, 0

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step + 1 == self.step:
                with open("/proc/self/clear_refs", "w") as clear:
                    clear.write("5")  # reset the high-water mark of resident memory
                self.before_kib = _kib("VmRSS")

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == self.step:
                self.peak_kib = _kib("VmHWM")

    torch.set_num_threads(args.threads)
    task = get_task("general-points", template="compact", completion_format="formula", demo_solution="canonical")
    prompts = Dataset.from_list(task.train_prompts(256, seed=0))
    model, tokenizer = build_tiny_model(args.model, seed=0)
    with tempfile.TemporaryDirectory() as scratch:
        engine = dict(
            output_dir=scratch, use_cpu=True, bf16=False, seed=0, learning_rate=1e-4,
            per_device_train_batch_size=args.prompts * args.generations, num_generations=args.generations,
            max_completion_length=args.max_completion_length, gradient_checkpointing=args.gradient_checkpointing,
            logging_steps=10_000,
            save_strategy="no", report_to="none", disable_tqdm=True,
        )
        if kind == "grpo":
            peak = StepPeak(2)
            trainer = GRPOTrainer(model=model, reward_funcs=task.reward, args=GRPOConfig(**engine, max_steps=2),
                                  train_dataset=prompts, processing_class=tokenizer, callbacks=[peak])
        else:
            # Step 1 is the SFT warm-up, step 2 the first mixed step (t = 1), step 3 the meta step (t = 2).
            peak = StepPeak(2 if kind == "amft_step" else 3)
            config = AMFTConfig(**engine, max_steps=peak.step, amft_warmup_steps=1, entropy_calibration_steps=1,
                                meta_period=2, sft_batch_size=args.prompts, meta_batch_size=args.prompts)
            trainer = AMFTTrainer(model=model, reward_funcs=task.reward, args=config, train_dataset=prompts,
                                  demo_dataset=task.demonstrations(256, seed=0),
                                  meta_dataset=task.validation_prompts(64, seed=1), processing_class=tokenizer,
                                  callbacks=[peak])
        trainer.train()
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"peak_mib": (peak.peak_kib - peak.before_kib) / 1024, "gradient_mib": parameters * FP32_BYTES / 2**20,
            "parameters": parameters}


def seven_b_estimate() -> dict:
    """The meta step's three extra fp32 gradients of the 7B recipe, whole on each GPU or sharded over 8."""
    whole_gb = EXTRA_GRADIENTS * SEVEN_B_PARAMETERS * FP32_BYTES / 1e9
    return {"parameters": SEVEN_B_PARAMETERS, "extra_gradients": EXTRA_GRADIENTS,
            "extra_gb_per_gpu_unsharded": round(whole_gb, 1),
            "extra_gb_per_gpu_sharded": round(whole_gb / SEVEN_B_GPUS, 1), "gpus": SEVEN_B_GPUS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per kind of step")
    parser.add_argument("--model", default="tiny-6m")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step (and validation prompts)")
    parser.add_argument("--generations", type=int, default=8, help="completions per prompt")
    parser.add_argument("--max-completion-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute activations in the backward pass (the 7B recipe does)")
    parser.add_argument("--kind", choices=KINDS, help=argparse.SUPPRESS)  # set in the measuring processes
    args = parser.parse_args()
    if args.kind:
        print(json.dumps(measure(args.kind, args)))
        return

    # A fixed mmap threshold: every buffer of 64 KiB or more is its own mapping, unmapped when freed.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": str(args.threads),
           "TRL_EXPERIMENTAL_SILENCE": "1"}
    forwarded = [f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items()
                 if name not in ("kind", "repeats", "gradient_checkpointing")]
    forwarded += ["--gradient-checkpointing"] if args.gradient_checkpointing else []
    runs: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    for _ in range(args.repeats):
        for kind in KINDS:
            done = subprocess.run([sys.executable, __file__, f"--kind={kind}", *forwarded], env=env, check=True,
                                  capture_output=True, text=True)
            runs[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    peaks = {kind: statistics.median(run["peak_mib"] for run in runs[kind]) for kind in KINDS}
    gradient_mib = runs["grpo"][0]["gradient_mib"]
    result = {
        **{f"{kind}_peak_mib": round(peak, 1) for kind, peak in peaks.items()},
        "amft_step_ratio": round(peaks["amft_step"] / peaks["grpo"], 3),
        "meta_step_ratio": round(peaks["amft_meta_step"] / peaks["grpo"], 3),
        "gradient_mib": round(gradient_mib, 1),
        "meta_extra_in_gradients": round((peaks["amft_meta_step"] - peaks["amft_step"]) / gradient_mib, 2),
        "model": args.model,
        "parameters": runs["grpo"][0]["parameters"],
        "batch": f"{args.prompts} prompts x {args.generations} completions, <= {args.max_completion_length} tokens, "
                 f"{args.prompts} validation prompts, fp32"
                 + (", gradient checkpointing" if args.gradient_checkpointing else ""),
        "repeats": args.repeats,
        "seven_b_meta_step": seven_b_estimate(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
