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

The runs go through the study harness (:mod:`amft.evaluation.harness`): finished runs (with a
``summary.json``) are skipped; with ``--jobs N`` the runs go N at a time, each in a fresh process
of its own that writes its output to ``train.log`` in its run folder; the seeds' starting models
are trained first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.console import Console

from amft.cli.options import (OptionsError, check_keys, check_run_keys, field_names, load_dataclass, read_mapping,
                              resolve, select_variants, study_parser)
from amft.evaluation.harness import RunsFailed, StudyRun, run_study

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
#: run options the study sets for each run itself (from the run's seed and folder)
SET_BY_THE_STUDY = ("seed", "model_seed", "task_seed", "output_dir", "resume", "dry_run")


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
    source: str = field(default="the study", init=False)  # the study file, named in errors

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
    sections = {"training": training, "base": data.get("base", {}), **{
        f"variant {name!r}": overrides for name, overrides in data.get("variants", {}).items()}}
    for where, settings in sections.items():
        if not isinstance(settings, Mapping):
            raise OptionsError(f"{path}: {where}: expected a mapping of settings, got {type(settings).__name__}")
        check_run_keys({**training, **settings}, f"{path}: {where}")
        fixed = [key for key in SET_BY_THE_STUDY if key in settings]
        if data.get("base_sft_steps") and where.startswith("variant") and "model_name_or_path" in settings:
            fixed.append("model_name_or_path")  # every variant starts from the seed's starting model
        if fixed:
            raise OptionsError(f"{path}: {where}: {', '.join(fixed)}: set by the study for each run")
    study = load_dataclass(Study, data, path)
    study.source = path
    return study


def run_arguments(settings: Mapping[str, Any], *, seed: int, output_dir: str, model: str | None,
                  where: str | None = None):
    """`amft train` options for one run (run, task config, engine): the settings with the seed,
    folder and starting model; errors name ``where`` (default: the folder)."""
    values = {**settings, "seed": seed, "model_seed": seed, "task_seed": seed, "output_dir": output_dir, "resume": True}
    if model is not None:
        values["model_name_or_path"] = model
    return resolve(values, where or output_dir)


@dataclass(frozen=True)
class TrainingRun(StudyRun):
    """One training run of a comparison: what `amft train` gets, in its folder."""

    settings: dict[str, Any]
    model: str | None  # the starting model (None: the settings' model_name_or_path)

    result_file: ClassVar[str] = SUMMARY_FILE
    log_file: ClassVar[str] = "train.log"

    def arguments(self, where: str | None = None):
        return run_arguments(self.settings, seed=self.seed, output_dir=self.folder, model=self.model, where=where)

    def execute(self) -> None:
        from amft.cli.pipeline import run_training

        run_training(*self.arguments())


class Comparison:
    """Runs a :class:`Study` on the study harness (skipping finished runs) and writes its results."""

    def __init__(self, study: Study, console: Console | None = None) -> None:
        self.study = study
        self.console = console or Console()

    def run_dir(self, variant: str, seed: int) -> str:
        return os.path.join(self.study.output_dir, "runs", variant, f"seed{seed}")

    def base_dir(self, seed: int) -> str:
        return os.path.join(self.study.output_dir, "base", f"seed{seed}")

    def plan(self) -> list[TrainingRun]:
        """Every variant with every seed, seed-major (a study stopped half-way has every variant for its
        first seeds); each run's settings are checked here, before any run starts."""
        runs = []
        for seed in self.study.seeds:
            for variant, overrides in self.study.variants.items():
                run = TrainingRun(variant, seed, self.run_dir(variant, seed), self.base_run(seed),
                                  {**self.study.training, **overrides},
                                  self.base_dir(seed) if self.study.base_sft_steps else None)
                run.arguments(where=f"{self.study.source}: variant {variant!r}")
                runs.append(run)
        return runs

    def base_run(self, seed: int) -> TrainingRun | None:
        """The training of the seed's shared starting model (None when the study has none)."""
        if not self.study.base_sft_steps:
            return None
        settings = {**self.study.training, **self.study.base, "method": "sft", "max_steps": self.study.base_sft_steps}
        return TrainingRun(f"starting model ({self.study.base_sft_steps} SFT steps)", seed, self.base_dir(seed), None,
                           settings, None)

    def run(self, jobs: int = 1) -> list[dict[str, Any]]:
        """Train the unfinished runs, ``jobs`` at a time (1: one after the other, in this process)."""
        failed = run_study(self.plan(), jobs, self.console)
        rows = self.report()
        if failed:
            raise RunsFailed(failed)
        return rows

    def base_start(self, seed: int) -> dict[str, float] | None:
        """The starting model's quick-evaluation success, as step 0 of the variants' curves."""
        from amft.evaluation.comparison import read_run

        base = self.base_run(seed)
        if base is None or not base.done:
            return None
        curves = read_run(base.folder, "base", seed).curves
        return {split: curve[-1][1] for split, curve in curves.items() if curve and curve[-1][0] == self.study.base_sft_steps}

    def report(self) -> list[dict[str, Any]]:
        from amft.evaluation.comparison import plot_comparison, read_run, summarize, write_results

        study = self.study
        records = [
            read_run(self.run_dir(variant, seed), variant, seed, start=self.base_start(seed))
            for seed in study.seeds for variant in study.variants
            if os.path.exists(os.path.join(self.run_dir(variant, seed), SUMMARY_FILE))
        ]
        variants, splits = list(study.variants), study.splits
        rows = summarize(
            records, variants, splits, target_split=study.target_split, target_success=study.target_success,
            reference_variant=study.reference_variant,
        )
        if not rows:
            self.console.print("No finished runs yet.")
            return rows
        settings = {key: value for key, value in vars(study).items() if key not in ("output_dir", "source")}
        table = write_results(study.output_dir, rows, splits, target_split=study.target_split,
                              reference_variant=study.reference_variant, settings=settings)
        plot_comparison(records, variants, splits, study.output_dir)
        self.console.print(table)
        self.console.print(
            f"Results in {study.output_dir}: results.md, results.csv, results.json, success_vs_step.png, mu.png, entropy.png"
        )
        return rows


DESCRIPTION = (
    "Train every variant of a study file with every seed under one budget, skipping runs that finished earlier "
    "(an interrupted run resumes from its last complete checkpoint), then write results.md/.csv/.json (mean and "
    "95% confidence interval per split, steps to the target) and plots of success, mu and entropy over steps."
)


def methods_epilog() -> str:
    """The methods a variant may name (`method:`), from the table of methods."""
    from amft.training import METHODS

    return "A variant's `method` is one of: " + "; ".join(f"{m.name} ({m.summary})" for m in METHODS.values()) + "."


def main(argv: list[str]) -> None:
    options = study_parser("amft compare", DESCRIPTION, "configs/compare-general-points.yaml",
                           threads_hint="Give each run its share of the cores with the training setting 'threads' "
                           "(default here: cores / jobs).", epilog=methods_epilog()).parse_args(argv)
    study = load_study(options.config, output_dir=options.output_dir, seeds=options.seeds)
    study.variants = select_variants(study.variants, options.variants, options.config)
    if study.reference_variant not in study.variants:
        study.reference_variant = None
    if options.jobs > 1 and not study.training.get("threads"):
        study.training["threads"] = max(1, (os.cpu_count() or 1) // options.jobs)
    comparison = Comparison(study)
    if options.report_only:
        comparison.report()
    else:
        comparison.run(options.jobs)
