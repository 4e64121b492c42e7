"""`amft compare`: every variant x every seed under one budget, resumable, then tables and plots.

A study file (YAML) names the shared settings, the variants and the seeds:

    output_dir: runs/compare
    seeds: [0, 1, 2]
    base_sft_steps: 450          # optional: all variants of a seed start from one SFT model
    target_split: rl-only
    target_success: 0.6
    reference_variant: sft-then-rl
    training: {...}              # keys of `amft train` shared by every run
    variants:
      amft: {method: amft}
      grpo: {method: grpo}

The budget is equal by construction: a variant may not override the keys in `BUDGET_KEYS`
(optimizer steps, prompts and rollouts per step, demonstrations per step).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from rich.console import Console

BUDGET_KEYS = (
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_generations",
    "sft_batch_size",
    "max_completion_length",
    "time_budget_minutes",
)
SUMMARY_FILE = "summary.json"


@dataclass
class Study:
    """A comparison: shared settings, variants (name -> overrides) and seeds."""

    output_dir: str
    seeds: list[int]
    training: dict[str, Any]
    variants: dict[str, dict[str, Any]]
    base_sft_steps: int = 0
    base: dict[str, Any] = field(default_factory=dict)
    target_split: str = "rl-only"
    target_success: float = 0.6
    reference_variant: str | None = None

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError("the study names no variants")
        if not self.seeds:
            raise ValueError("the study names no seeds")
        for name, overrides in self.variants.items():
            if not isinstance(overrides, Mapping):
                raise ValueError(f"variant {name!r}: expected a mapping of settings, got {type(overrides).__name__}")
            fixed = sorted(set(overrides) & set(BUDGET_KEYS))
            if fixed:
                raise ValueError(f"variant {name!r} overrides budget settings {fixed}: put them under 'training'")
        if self.reference_variant is not None and self.reference_variant not in self.variants:
            raise ValueError(f"reference_variant {self.reference_variant!r} is not one of the variants")

    @property
    def splits(self) -> list[str]:
        """The evaluated splits: the training settings' `eval_splits`, else the task's own."""
        from amft.cli.arguments import RunArguments
        from amft.cli.pipeline import build_task

        run = RunArguments(**{k: v for k, v in self.training.items() if k in RunArguments.__dataclass_fields__})
        return run.splits(build_task(run).default_splits)


def load_study(path: str, **overrides: Any) -> Study:
    """The study in the YAML file ``path``; ``overrides`` (not None) replace its top-level keys."""
    with open(path) as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    data.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return Study(**data)
    except TypeError as error:  # unknown or missing keys
        raise ValueError(f"{path}: {error}") from None
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def run_arguments(settings: Mapping[str, Any], *, seed: int, output_dir: str, model: str | None):
    """`amft train` arguments for one run: the settings with the seed, folder and starting model."""
    from transformers import HfArgumentParser

    from amft.cli.arguments import RunArguments
    from amft.training import AMFTConfig

    values = {**settings, "seed": seed, "model_seed": seed, "task_seed": seed, "output_dir": output_dir, "resume": True}
    if model is not None:
        values["model_name_or_path"] = model
    return HfArgumentParser((RunArguments, AMFTConfig)).parse_dict(values)


def is_complete(run_dir: str) -> bool:
    return os.path.exists(os.path.join(run_dir, SUMMARY_FILE))


class Comparison:
    """Runs a :class:`Study` (skipping finished runs) and writes its results."""

    def __init__(self, study: Study, console: Console | None = None) -> None:
        self.study = study
        self.console = console or Console()

    def run_dir(self, variant: str, seed: int) -> str:
        return os.path.join(self.study.output_dir, "runs", variant, f"seed{seed}")

    def base_dir(self, seed: int) -> str:
        return os.path.join(self.study.output_dir, "base", f"seed{seed}")

    def plan(self) -> list[tuple[str, int]]:
        # Seed-major: a study stopped half-way has every variant for its first seeds.
        return [(variant, seed) for seed in self.study.seeds for variant in self.study.variants]

    def run(self) -> list[dict[str, Any]]:
        from amft.cli.pipeline import run_training

        plan = self.plan()
        for index, (variant, seed) in enumerate(plan, start=1):
            run_dir = self.run_dir(variant, seed)
            if is_complete(run_dir):
                self.console.print(f"[{index}/{len(plan)}] {variant} · seed {seed}: finished earlier, skipped")
                continue
            model = self.ensure_base(seed)
            self.console.rule(f"[{index}/{len(plan)}] {variant} · seed {seed}")
            settings = {**self.study.training, **self.study.variants[variant]}
            try:
                run, args = run_arguments(settings, seed=seed, output_dir=run_dir, model=model)
            except ValueError as error:
                raise ValueError(f"variant {variant!r}: {error}") from None
            run_training(run, args)
        return self.report()

    def ensure_base(self, seed: int) -> str | None:
        """The seed's shared starting model (trained by SFT once), or None without one."""
        if not self.study.base_sft_steps:
            return None
        base_dir = self.base_dir(seed)
        if not is_complete(base_dir):
            from amft.cli.pipeline import run_training

            self.console.rule(f"starting model for seed {seed}: {self.study.base_sft_steps} SFT steps")
            settings = {**self.study.training, **self.study.base, "method": "sft", "max_steps": self.study.base_sft_steps}
            run, args = run_arguments(settings, seed=seed, output_dir=base_dir, model=None)
            run_training(run, args)
        return base_dir

    def base_start(self, seed: int) -> dict[str, float] | None:
        """The starting model's quick-evaluation success, as step 0 of the variants' curves."""
        from amft.evaluation.comparison import read_run

        if not self.study.base_sft_steps or not is_complete(self.base_dir(seed)):
            return None
        curves = read_run(self.base_dir(seed), "base", seed).curves
        return {split: curve[-1][1] for split, curve in curves.items() if curve and curve[-1][0] == self.study.base_sft_steps}

    def report(self) -> list[dict[str, Any]]:
        from amft.evaluation.comparison import markdown_table, plot_comparison, read_run, summarize, write_results

        study = self.study
        records = [
            read_run(self.run_dir(variant, seed), variant, seed, start=self.base_start(seed))
            for variant, seed in self.plan()
            if is_complete(self.run_dir(variant, seed))
        ]
        variants = list(study.variants)
        rows = summarize(
            records, variants, study.splits, target_split=study.target_split, target_success=study.target_success,
            reference_variant=study.reference_variant,
        )
        if not rows:
            self.console.print("No finished runs yet.")
            return rows
        settings = {key: value for key, value in vars(study).items() if key != "output_dir"}
        write_results(study.output_dir, rows, study.splits, target_split=study.target_split,
                      reference_variant=study.reference_variant, settings=settings)
        plot_comparison(records, variants, study.splits, study.output_dir)
        self.console.print(markdown_table(rows, study.splits, study.target_split, study.reference_variant))
        self.console.print(
            f"Results in {study.output_dir}: results.md, results.csv, results.json, success_vs_step.png, mu.png, entropy.png"
        )
        return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="amft compare",
        description="Train every variant of a study file with every seed under one budget, skipping runs that "
        "finished earlier (an interrupted run resumes from its last complete checkpoint), then write "
        "results.md/.csv/.json (mean and 95% confidence interval per split, steps to the target) and "
        "plots of success, mu and entropy over steps.",
    )
    p.add_argument("--config", required=True, help="The study file (YAML); see configs/compare-general-points.yaml.")
    p.add_argument("--output_dir", help="Where runs and results go (overrides the file's output_dir).")
    p.add_argument("--seeds", help="Comma-separated seeds (overrides the file's seeds).")
    p.add_argument("--variants", help="Comma-separated subset of the file's variants to run and report.")
    p.add_argument("--report_only", action="store_true", help="Only aggregate the finished runs; train nothing.")
    return p


def main(argv: list[str]) -> None:
    options = parser().parse_args(argv)
    seeds = [int(s) for s in options.seeds.split(",")] if options.seeds else None
    study = load_study(options.config, output_dir=options.output_dir, seeds=seeds)
    if options.variants:
        names = [v for v in options.variants.split(",") if v]
        unknown = [v for v in names if v not in study.variants]
        if unknown:
            raise SystemExit(f"amft compare: unknown variants {unknown}; the study has {list(study.variants)}")
        study.variants = {name: study.variants[name] for name in names}
        if study.reference_variant not in study.variants:
            study.reference_variant = None
    comparison = Comparison(study)
    if options.report_only:
        comparison.report()
    else:
        comparison.run()
