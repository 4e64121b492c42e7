"""The GPU check run by scripts/gpu-check.sh: AMFT in bf16 on a small Qwen2 built into a local folder, timed.

`build` writes a randomly initialised Qwen2 with amft's character tokenizer into a folder (the GPU machine
reaches no hub). `train` loads it by path as `amft train` does and runs AMFT on GeneralPoints-L (compact
template) for a few steps: the SFT warm-up, then mixed steps with a meta step every `meta_period`. It prints,
and writes as JSON, the seconds and peak GPU memory of each optimizer step by kind (sft, mixed, meta) and mu
after each step. Started by `accelerate launch`, the same `train` runs on what the launch config sets up
(FSDP2 in gpu-check.sh).

`--device cpu` takes a smaller model and fewer steps through the same path on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import statistics
import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import torch
from datasets import Dataset
from torch.distributed.tensor import DTensor
from transformers import PrinterCallback, TrainerCallback

from amft.algorithm import BalanceController
from amft.io import atomic_write_json
from amft.models import TINY_MODELS, TinyModelSpec, build_tiny_model, load_model
from amft.tasks import get_task
from amft.training import AMFTConfig, AMFTTrainer

PACKAGES = ("torch", "transformers", "trl", "accelerate", "datasets")


@dataclass(frozen=True)
class Profile:
    """The model and the run of one device: `warmup_steps` of SFT, then `max_steps - warmup_steps` main-phase
    steps, every `meta_period`-th a meta step.

    A random model answers with illegal characters only, every reward is the same and every gradient of
    L_RL and of the validation loss is zero: the warm-up is long enough, at a high learning rate, for the
    model to write formulas whose rewards differ, so that the meta steps measure something.
    """

    model_name: str
    prompts_per_step: int
    generations: int
    sft_batch_size: int
    max_completion_length: int
    max_steps: int
    warmup_steps: int
    meta_period: int
    learning_rate: float


# ~154M parameters with the 99-token vocabulary: big enough that the GPU's time goes to the model, and with
# transformers' sdpa kernels, which a GPU runs faster than the eager ones of the CPU-sized tiny models.
GPU_MODEL_NAME = "gpu-check-150m"
GPU_MODEL = TinyModelSpec(hidden_size=1024, num_layers=12, num_heads=16, intermediate_size=2816,
                          attn_implementation="sdpa")

PROFILES: dict[str, Profile] = {
    # 30 main-phase steps: 6 meta steps and 24 mixed ones.
    "cuda": Profile(GPU_MODEL_NAME, prompts_per_step=8, generations=8, sft_batch_size=32, max_completion_length=40,
                    max_steps=70, warmup_steps=40, meta_period=5, learning_rate=5e-4),
    # 6 main-phase steps: 2 meta steps, in under a minute on one CPU thread.
    "cpu": Profile("tiny-gp", prompts_per_step=2, generations=4, sft_batch_size=8, max_completion_length=24,
                   max_steps=46, warmup_steps=40, meta_period=3, learning_rate=1e-3),
}


def register_gpu_model() -> None:
    # A named shape, so that the model is built by amft's own `build_tiny_model`.
    TINY_MODELS.setdefault(GPU_MODEL_NAME, GPU_MODEL)


class StepRecorder(TrainerCallback):
    """Each optimizer step's kind, wall-clock seconds (after the GPU finished its work), peak GPU memory and
    the mu it ended with. The kind is read from the controller before the step, as the trainer plans it."""

    def __init__(self, controller: BalanceController, cuda: bool) -> None:
        self.controller = controller
        self.cuda = cuda
        self.steps: list[dict[str, Any]] = []
        self._kind = ""
        self._started = 0.0

    def _synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):
        self._kind = "sft" if self.controller.in_warmup else "meta" if self.controller.is_meta_step() else "mixed"
        self._synchronize()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._synchronize()
        self.steps.append({
            "step": state.global_step,
            "kind": self._kind,
            "seconds": time.perf_counter() - self._started,
            "peak_memory_bytes": torch.cuda.max_memory_allocated() if self.cuda else None,
            "mu": self.controller.mu,
            "meta_gradient": self.controller.last_terms.get("meta_gradient") if self._kind == "meta" else None,
        })


def summarize_steps(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Per kind of step: how many, their mean and median seconds, their peak memory in GiB."""
    kinds: dict[str, Any] = {}
    for kind in ("sft", "mixed", "meta"):
        chosen = [step for step in steps if step["kind"] == kind]
        if not chosen:
            continue
        seconds = [step["seconds"] for step in chosen]
        peaks = [step["peak_memory_bytes"] for step in chosen if step["peak_memory_bytes"] is not None]
        kinds[kind] = {
            "steps": len(chosen),
            "mean_seconds": statistics.fmean(seconds),
            "median_seconds": statistics.median(seconds),
            "peak_memory_gib": max(peaks) / 2**30 if peaks else None,
        }
    return kinds


def package_versions() -> dict[str, str]:
    return {name: version(name) for name in PACKAGES}


def build(model_dir: str, profile: Profile) -> None:
    """The profile's model, randomly initialised (seed 0), saved with its tokenizer into `model_dir`."""
    model, tokenizer = build_tiny_model(profile.model_name, seed=0)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"built {profile.model_name} ({parameters / 1e6:.1f}M parameters) into {model_dir}")


def train(model_dir: str, profile: Profile, device: str, label: str, out_dir: str, work_dir: str) -> dict[str, Any]:
    """AMFT on the model in `model_dir`; returns the report, written to `out_dir/gpu-check-<label>.json`."""
    model, tokenizer = load_model(model_dir)
    parameters = sum(p.numel() for p in model.parameters())
    task = get_task("general-points", template="compact", completion_format="formula", demo_solution="canonical")
    args = AMFTConfig(
        output_dir=work_dir,
        use_cpu=device == "cpu",
        bf16=True,
        seed=0,
        max_steps=profile.max_steps,
        learning_rate=profile.learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=profile.warmup_steps // 4,
        per_device_train_batch_size=profile.prompts_per_step * profile.generations,
        num_generations=profile.generations,
        max_completion_length=profile.max_completion_length,
        temperature=1.0,
        beta=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        method="amft",
        sft_batch_size=profile.sft_batch_size,
        amft_warmup_steps=profile.warmup_steps,
        entropy_calibration_steps=min(5, profile.warmup_steps),
        meta_period=profile.meta_period,
        meta_batch_size=profile.prompts_per_step,
        meta_normalization="cosine",
        meta_lr=0.02,
        entropy_lr=0.05,
    )
    prompt_count = profile.max_steps * max(profile.prompts_per_step, profile.sft_batch_size)
    trainer = AMFTTrainer(
        model=model,
        reward_funcs=task.reward,
        args=args,
        train_dataset=Dataset.from_list(task.train_prompts(prompt_count, seed=0)),
        demo_dataset=task.demonstrations(prompt_count, seed=0),
        meta_dataset=task.validation_prompts(64, seed=1),
        processing_class=tokenizer,
    )
    recorder = StepRecorder(trainer.controller, cuda=device == "cuda")
    trainer.add_callback(recorder)
    trainer.remove_callback(PrinterCallback)  # every step's metrics go to the JSON report instead
    started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - started

    accelerator = trainer.accelerator
    report = {
        "label": label,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "distributed_type": str(accelerator.distributed_type),
        "mixed_precision": accelerator.mixed_precision,
        "processes": accelerator.num_processes,
        "fsdp2_shards": all(isinstance(p, DTensor) for p in trainer.model.parameters()),
        "parameters": parameters,
        "trained_parameter_dtype": str(next(trainer.model.parameters()).dtype),
        "profile": dataclasses.asdict(profile),
        "versions": package_versions(),
        "train_seconds": train_seconds,
        "by_kind": summarize_steps(recorder.steps),
        "mu": [step["mu"] for step in recorder.steps],
        "meta_steps": [step["step"] for step in recorder.steps if step["kind"] == "meta"],
        "steps": recorder.steps,
        "log_history": trainer.state.log_history,
    }
    peaks = [kind["peak_memory_gib"] for kind in report["by_kind"].values() if kind["peak_memory_gib"] is not None]
    report["peak_memory_gib"] = max(peaks, default=None)
    if accelerator.is_main_process:
        os.makedirs(out_dir, exist_ok=True)
        atomic_write_json(os.path.join(out_dir, f"gpu-check-{label}.json"), report)
        print_report(report)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"\n== {report['label']}: {report['device']}, {report['distributed_type']}, "
          f"{report['processes']} process(es), mixed precision {report['mixed_precision']}, "
          f"FSDP2 shards: {report['fsdp2_shards']}, "
          f"{report['parameters'] / 1e6:.1f}M parameters ({report['trained_parameter_dtype']})")
    for kind, numbers in report["by_kind"].items():
        memory = "" if numbers["peak_memory_gib"] is None else f", peak {numbers['peak_memory_gib']:.2f} GiB"
        print(f"  {kind:5s} {numbers['steps']:3d} steps: mean {numbers['mean_seconds']:.3f} s, "
              f"median {numbers['median_seconds']:.3f} s{memory}")
    print(f"  training {report['train_seconds']:.1f} s; peak memory "
          + ("n/a" if report["peak_memory_gib"] is None else f"{report['peak_memory_gib']:.2f} GiB"))
    main_phase = [step for step in report["steps"] if step["kind"] != "sft"]
    print(f"  mu after each main-phase step (from step {main_phase[0]['step'] if main_phase else '-'}): "
          + " ".join(f"{step['mu']:.4f}" for step in main_phase))
    print("  meta gradient at steps " + ", ".join(
        f"{step['step']}: {step['meta_gradient']:+.4g}" for step in main_phase if step["kind"] == "meta"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("build", "train", "summary"),
                        help="build the model; train on it; summary: print the reports found in --out")
    parser.add_argument("--model-dir", help="folder the model is built into and loaded from (build, train)")
    parser.add_argument("--device", choices=tuple(PROFILES), default="cuda",
                        help="; ".join(f"{name}: {profile.model_name}, {profile.max_steps} steps"
                                       for name, profile in PROFILES.items()))
    parser.add_argument("--label", default="plain", help="names the run in the output and its JSON file")
    parser.add_argument("--out", default="runs/gpu-check", help="folder of the JSON reports")
    parser.add_argument("--work-dir", default=None, help="the trainer's output_dir (default: <model-dir>-<label>)")
    options = parser.parse_args()
    if options.command == "summary":
        for path in sorted(glob.glob(os.path.join(options.out, "gpu-check-*.json"))):
            with open(path) as handle:
                print_report(json.load(handle))
        return
    if options.model_dir is None:
        parser.error(f"{options.command} needs --model-dir")
    if options.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU is visible; use --device cpu for the CPU check")
    register_gpu_model()
    profile = PROFILES[options.device]
    if options.command == "build":
        build(options.model_dir, profile)
    else:
        work_dir = options.work_dir or f"{options.model_dir.rstrip('/')}-{options.label}"
        train(options.model_dir, profile, options.device, options.label, options.out, work_dir)


if __name__ == "__main__":
    main()
