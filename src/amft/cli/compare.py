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

With ``--jobs N`` the runs go N at a time, each in a fresh process of its own that writes its
output to ``train.log`` in its run folder; the seeds' starting models are trained first.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
import traceback
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from amft.cli.options import OptionsError, check_keys, check_run_keys, field_names, load_dataclass, read_mapping, resolve

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
        from amft.tasks import get_task

        run, task_config, _ = resolve(self.training, "training")
        return run.splits(get_task(run.task, config=task_config).default_splits)


def load_study(path: str, **overrides: Any) -> Study:
    """The study in the YAML file ``path``; ``overrides`` (not None) replace its top-level keys.
    Every key is checked: the study's own, and those of its training settings and variants."""
    data = read_mapping(path)
    data.update({key: value for key, value in overrides.items() if value is not None})
    check_keys(data, field_names(Study), path)
    for section in ("training", "base", "variants"):
        if not isinstance(data.get(section, {}), Mapping):
            raise OptionsError(f"{path}: {section!r} must be a mapping")
    training = data.get("training", {})
    check_run_keys(training, f"{path}: training")
    check_run_keys({**training, **data.get("base", {})}, f"{path}: base")
    for name, overrides in data.get("variants", {}).items():
        if not isinstance(overrides, Mapping):
            raise OptionsError(f"{path}: variant {name!r}: expected a mapping of settings, got {type(overrides).__name__}")
        check_run_keys({**training, **overrides}, f"{path}: variant {name!r}")
    return load_dataclass(Study, data, path)


def run_arguments(settings: Mapping[str, Any], *, seed: int, output_dir: str, model: str | None):
    """`amft train` options for one run (run, task config, engine): the settings with the seed,
    folder and starting model."""
    values = {**settings, "seed": seed, "model_seed": seed, "task_seed": seed, "output_dir": output_dir, "resume": True}
    if model is not None:
        values["model_name_or_path"] = model
    return resolve(values, output_dir)


def is_complete(run_dir: str) -> bool:
    return os.path.exists(os.path.join(run_dir, SUMMARY_FILE))


LOG_FILE = "train.log"


@dataclass(frozen=True)
class RunJob:
    """One training run of a study: what `amft train` gets, and where it goes."""

    label: str
    settings: dict[str, Any]
    seed: int
    output_dir: str
    model: str | None

    def arguments(self):
        return run_arguments(self.settings, seed=self.seed, output_dir=self.output_dir, model=self.model)

    def train(self) -> None:
        from amft.cli.pipeline import run_training

        run_training(*self.arguments())


def train_in_own_process(job: RunJob) -> None:
    """Run ``job`` in this (fresh, single-use) worker process, its output appended to its ``train.log``."""
    os.makedirs(job.output_dir, exist_ok=True)
    log = os.open(os.path.join(job.output_dir, LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)  # the file descriptors, so progress bars and library logs go there too
    os.dup2(log, 2)
    try:
        job.train()
    except BaseException:
        traceback.print_exc()
        raise


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

    def run(self, jobs: int = 1) -> list[dict[str, Any]]:
        """Train the unfinished runs, ``jobs`` at a time (1: one after the other, in this process)."""
        plan = self.plan()
        todo = []
        for index, (variant, seed) in enumerate(plan, start=1):
            if is_complete(self.run_dir(variant, seed)):
                self.console.print(f"[{index}/{len(plan)}] {variant} · seed {seed}: finished earlier, skipped")
            else:
                todo.append((index, self.variant_job(variant, seed)))  # settings errors stop the study before any run
        if jobs == 1:
            for index, job in todo:
                self.ensure_base(job.seed)
                self.console.rule(f"[{index}/{len(plan)}] {job.label}")
                job.train()
            return self.report()
        seeds = dict.fromkeys(job.seed for _, job in todo)
        failed = self.train_in_parallel([job for job in map(self.base_job, seeds) if job is not None], jobs)
        if not failed:
            failed = self.train_in_parallel([job for _, job in todo], jobs)
        rows = self.report()
        if failed:
            raise SystemExit(f"amft compare: {len(failed)} run(s) failed: {', '.join(failed)}")
        return rows

    def variant_job(self, variant: str, seed: int) -> RunJob:
        """The run of ``variant`` with ``seed``, its settings checked."""
        model = self.base_dir(seed) if self.study.base_sft_steps else None
        job = RunJob(f"{variant} · seed {seed}", {**self.study.training, **self.study.variants[variant]}, seed,
                     self.run_dir(variant, seed), model)
        try:
            job.arguments()
        except ValueError as error:
            raise ValueError(f"variant {variant!r}: {error}") from None
        return job

    def base_job(self, seed: int) -> RunJob | None:
        """The training of the seed's shared starting model, or None when the study has none or it is done."""
        if not self.study.base_sft_steps or is_complete(self.base_dir(seed)):
            return None
        settings = {**self.study.training, **self.study.base, "method": "sft", "max_steps": self.study.base_sft_steps}
        return RunJob(f"starting model for seed {seed}: {self.study.base_sft_steps} SFT steps", settings, seed,
                      self.base_dir(seed), None)

    def ensure_base(self, seed: int) -> None:
        """Train the seed's shared starting model here, unless the study has none or it is done."""
        job = self.base_job(seed)
        if job is not None:
            self.console.rule(job.label)
            job.train()

    def train_in_parallel(self, jobs: list[RunJob], workers: int) -> list[str]:
        """Each job in a fresh process (nothing carries over from one run to the next), ``workers`` at a time;
        a failed run is reported with its log and the others go on. The labels of the failed runs."""
        if not jobs:
            return []
        self.console.print(f"{len(jobs)} run(s), {workers} at a time; each writes {LOG_FILE} in its run folder")
        started, failed = time.perf_counter(), []
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch state shared with this one
        with ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool:
            running = {pool.submit(train_in_own_process, job): job for job in jobs}
            for future in as_completed(running):
                job, minutes = running[future], (time.perf_counter() - started) / 60
                log = os.path.join(job.output_dir, LOG_FILE)
                try:
                    future.result()
                    self.console.print(f"{job.label}: finished ({minutes:.1f} min into this batch)")
                except Exception as error:  # the run's own traceback is in its log
                    failed.append(job.label)
                    self.console.print(f"[red]{job.label}: failed: {error!r}; see {log}[/red]")
        return failed

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
    p.add_argument("--jobs", type=int, default=1,
                   help="Runs trained at the same time, each in a fresh process writing train.log in its run folder "
                   "(default 1: one after the other in this process). Give each run its share of the cores with the "
                   "training setting 'threads' (default here: cores / jobs).")
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
    if options.jobs < 1:
        raise SystemExit(f"amft compare: --jobs must be at least 1, got {options.jobs}")
    if options.jobs > 1 and not study.training.get("threads"):
        study.training["threads"] = max(1, (os.cpu_count() or 1) // options.jobs)
    comparison = Comparison(study)
    if options.report_only:
        comparison.report()
    else:
        comparison.run(options.jobs)
