"""`amft compare`: every variant x every seed under one budget, resumable, then tables and plots.

A study file (YAML) names the shared settings, the variants and the seeds:

    output_dir: runs/compare
    seeds: [0, 1, 2]
    base_sft_steps: 450          # optional: all variants of a seed start from one SFT model
    target_split: rl-only
    target_success: 0.6
    reference_variant: sft-then-rl
    records_dir: docs/results/records/compare   # optional: keep each finished run's summary and logs here
    frontier: {x: id, y: rl-only}      # optional: the fixed-mu variants trace the trade-off of two splits
    select_on: [val-id, val-rl-only]   # optional: rank the variants on these (validation) splits
    training: {...}              # keys of `amft train` shared by every run
    variants:
      amft: {method: amft}
      grpo: {method: grpo}
      mu-0.3: {method: fixed-mu, mu: 0.3}
      mu-0.7: {method: fixed-mu, mu: 0.7}

The budget is equal by construction: a variant may not override the keys in `BUDGET_KEYS`
(optimizer steps, prompts and rollouts per step, demonstrations per step).

With `base_sft_steps`, the table's first row is the starting model itself (its final evaluation,
over the seeds whose starting model is trained), so each variant reads against where it began.

With `frontier`, the report draws `frontier.png` (final success on split x against split y: the
constant-mu variants, fixed-mu with sft and grpo at mu 1 and 0, joined in mu order, every other
variant's point and its path over training) and judges each other variant against those points ("vs frontier"). With `select_on`, it
ranks the variants by their mean final success over those splits. The variants of the AMFT
family get `controller.png` (mu, the running sums of the controller's terms, the validation
reward, dH/dmu when logged). See docs/design.md, 'Comparisons'.

The runs go through the study harness (:mod:`amft.evaluation.harness`): finished runs (with a
``summary.json``) are skipped; with ``--jobs N`` the runs go N at a time, each in a fresh process
of its own that writes its output to ``train.log`` in its run folder; the seeds' starting models
are trained first.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.console import Console

from amft.cli.options import (OptionsError, check_keys, check_run_keys, field_names, load_dataclass, read_mapping,
                              resolve, select_variants, study_keys_help, study_parser)
from amft.evaluation.harness import RunRecords, RunsFailed, StudyRun, check_recipes, run_study

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
#: the saved model's config, written last by `save_model`: a run folder with it holds the run's final model
MODEL_CONFIG_FILE = "config.json"
#: the files of a saved model that loading it reads: weights (one file or shards and their index), configs,
#: tokenizer and processor files, chat template
MODEL_FILE_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*config.json", "tokenizer*", "special_tokens_map.json",
                       "added_tokens.json", "vocab.*", "merges.txt", "chat_template.*")
#: the methods whose mu follows the meta-gradient and entropy terms (diagnosed in controller.png)
CONTROLLER_METHODS = ("amft",)
#: run options the study sets for each run itself (from the run's seed and folder)
SET_BY_THE_STUDY = ("seed", "model_seed", "task_seed", "output_dir", "resume", "dry_run")


@dataclass
class Study:
    """A comparison: shared settings, variants (name -> overrides) and seeds."""

    output_dir: str = field(metadata={"help": "Where the runs, the table and the plots go."})
    seeds: list[int] = field(metadata={"help": "Every variant runs once per seed (the seed of its data and model)."})
    training: dict[str, Any] = field(metadata={
        "help": "The `amft train` options every run shares (the budget among them: max_steps and the batch)."})
    variants: dict[str, dict[str, Any]] = field(metadata={
        "help": "Name -> the options that make the variant (its method and settings), over `training`."})
    base_sft_steps: int = field(default=0, metadata={
        "help": "Steps of one SFT starting model per seed that every run starts from (0: none, runs start fresh)."})
    base: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "Options of the starting models only, over `training` (e.g. their learning rate)."})
    target_split: str = field(default="rl-only", metadata={
        "help": "The evaluated split whose quick-evaluation curve gives each variant's steps to target_success."})
    target_success: float = field(default=0.6, metadata={"help": "The success on target_split that counts as reached."})
    reference_variant: str | None = field(default=None, metadata={
        "help": "A variant to read every other against: its final target_split success is a second target for the "
                "steps, and the table gives each variant's difference from it on the frontier's splits (else on "
                "target_split), paired by seed, with its interval; the frontier plot shows it in every panel."})
    frontier: dict[str, str] | None = field(default=None, metadata={
        "help": "Two evaluated splits, {x: SPLIT, y: SPLIT}: the constant-mu variants (fixed-mu, sft, grpo; at least 2) trace the trade-off "
                "of their final success, frontier.png shows it and the table judges every other variant against it."})
    records_dir: str | None = field(default=None, metadata={
        "help": "A folder (to commit) that keeps each finished run's summary and logs, laid out as output_dir: a study "
                "started again elsewhere restores them and counts those runs as finished (docs/design.md, 'Run records')."})
    record_starting_models: bool = field(default=False, metadata={
        "help": "With records_dir and base_sft_steps: each seed's starting model is kept in its record too (weights, "
                "config and tokenizer), so a study continued elsewhere does not train it again. The weights are then "
                "committed with the records: for small models."})
    select_on: list[str] | None = field(default=None, metadata={
        "help": "Evaluated splits (validation ones) on which the report ranks the variants by their mean final "
                "success and names the best."})
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
        if self.base and not self.base_sft_steps:
            raise ValueError("base: settings of the starting model, which only base_sft_steps > 0 trains")
        if self.record_starting_models and not (self.records_dir and self.base_sft_steps):
            raise ValueError("record_starting_models: keeps the starting models (base_sft_steps > 0) in the records "
                             "(records_dir); the study has " + ("no records_dir" if not self.records_dir else "none"))
        self._check_evaluated("target_split", [self.target_split])
        if self.frontier is not None:
            if not isinstance(self.frontier, Mapping) or set(self.frontier) != {"x", "y"}:
                raise ValueError(f"frontier: expected {{x: SPLIT, y: SPLIT}}, got {self.frontier!r}")
            if self.frontier["x"] == self.frontier["y"]:
                raise ValueError(f"frontier: x and y are both {self.frontier['x']!r}; name two splits")
            self._check_evaluated("frontier", list(self.frontier.values()))
            found = len(self.frontier_mu)
            if found < 2:
                raise ValueError(f"frontier: needs at least 2 variants with a constant mu (fixed-mu, sft, grpo), "
                                 f"the study has {found}")
        if self.select_on is not None:
            if not isinstance(self.select_on, list) or not self.select_on:
                raise ValueError(f"select_on: expected a list of splits, got {self.select_on!r}")
            self._check_evaluated("select_on", self.select_on)

    def _check_evaluated(self, key: str, splits: list[str]) -> None:
        evaluated = self.splits
        missing = [split for split in splits if split not in evaluated]
        if missing:
            raise ValueError(f"{key}: {', '.join(map(repr, missing))} not evaluated; the evaluated splits are "
                             f"{', '.join(evaluated)} (training setting 'eval_splits')")

    def engine(self, variant: str) -> Any:
        """The training engine's options (`AMFTConfig`) of the variant's runs."""
        return resolve({**self.training, **self.variants[variant]}, f"variant {variant!r}")[-1]

    @property
    def frontier_mu(self) -> dict[str, float]:
        """The variants that trace the frontier, those whose mu is a constant (fixed-mu, and sft and grpo
        at its ends): name -> mu, by increasing mu."""
        from amft.training import get_method

        engines = {variant: self.engine(variant) for variant in self.variants}
        mus = {variant: get_method(engine.method).constant_mu(engine) for variant, engine in engines.items()}
        return dict(sorted(((variant, mu) for variant, mu in mus.items() if mu is not None), key=lambda item: item[1]))

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
        made_by_the_study = sorted({"method", "max_steps"} & set(settings)) if where == "base" else []
        if made_by_the_study:
            raise OptionsError(f"{path}: base: the starting model is trained by sft for base_sft_steps; leave out "
                               f"{', '.join(made_by_the_study)}")
        if data.get("base_sft_steps") and where != "base" and "language_model_init" in settings:
            raise OptionsError(f"{path}: {where}: language_model_init belongs in 'base': only the starting model "
                               f"is built fresh, every variant starts from it")
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


#: Settings that change how a run is watched or saved, not its result: a study may change them between
#: its runs (`threads` it sets itself from `--jobs`).
WATCH_ONLY_SETTINGS = frozenset({"threads", "report_to", "disable_tqdm", "logging_steps", "save_steps",
                                 "save_total_limit"})


@dataclass(frozen=True)
class TrainingRun(StudyRun):
    """One training run of a comparison: what `amft train` gets, in its folder."""

    settings: dict[str, Any]
    model: str | None  # the starting model (None: the settings' model_name_or_path)

    result_file: ClassVar[str] = SUMMARY_FILE
    log_file: ClassVar[str] = "train.log"
    @property
    def record_files(self) -> tuple[str, ...]:  # type: ignore[override]
        """What the report reads besides the summary: the quick-evaluation curves and the Trainer's logs."""
        from amft.evaluation.report import LOG_HISTORY_FILE, PROGRESS_FILE

        return (PROGRESS_FILE, LOG_HISTORY_FILE)

    @property
    def ready(self) -> bool:
        """Finished with its final model saved (a run restored from its record has no weights, unless the
        record keeps them)."""
        return self.done and os.path.exists(os.path.join(self.folder, MODEL_CONFIG_FILE))

    def model_files(self, folder: str) -> tuple[str, ...]:
        """The files of the saved model in ``folder`` that loading it reads (weights, config, tokenizer and
        processor), its config last; not the run's logs, the model card or training_args.bin."""
        if not os.path.isdir(folder):
            return ()
        names = sorted((name for name in os.listdir(folder)
                        if any(fnmatch.fnmatchcase(name, pattern) for pattern in MODEL_FILE_PATTERNS)),
                       key=lambda name: (name == MODEL_CONFIG_FILE, name))
        return tuple(names) if MODEL_CONFIG_FILE in names else ()

    @property
    def resumable(self) -> bool:
        from amft.training.checkpoint import last_complete_checkpoint

        return not self.done and last_complete_checkpoint(self.folder) is not None

    @property
    def recipe(self) -> dict[str, Any]:
        """The variant's settings, less those that only change how the run is watched, and the recipe of
        the starting model it trains from."""
        settings = {key: value for key, value in self.settings.items() if key not in WATCH_ONLY_SETTINGS}
        return {"settings": settings, "starts_from": self.needs.recipe if self.needs is not None else self.model}

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
        starting_models = [self.base_dir(seed) for seed in study.seeds] if study.record_starting_models else []
        self.records = RunRecords(study.output_dir, study.records_dir, starting_models) if study.records_dir else None

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
            if (base := self.base_run(seed)) is not None:
                base.arguments(where=f"{self.study.source}: the starting model (base)")
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
        failed = run_study(self.plan(), jobs, self.console, self.records)
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
        from amft.evaluation.comparison import (compare_with_reference, judge_against_frontier, plot_comparison,
                                                plot_controller, plot_study_frontier, rank_on, read_run,
                                                selection_markdown, summarize, table_metrics, write_results)

        study = self.study
        if self.records is not None:
            self.records.sync(self.plan())
        check_recipes(self.plan(), finished_only=True)  # the report reads the finished runs only
        records = [
            read_run(self.run_dir(variant, seed), variant, seed, start=self.base_start(seed))
            for seed in study.seeds for variant in study.variants
            if os.path.exists(os.path.join(self.run_dir(variant, seed), SUMMARY_FILE))
        ]
        starting = [read_run(base.folder, base.variant, seed) for seed in study.seeds
                    if (base := self.base_run(seed)) is not None and base.done]
        variants, splits = list(study.variants), study.splits
        metrics = table_metrics([*records, *starting], splits)
        rows = summarize(
            records, variants, metrics, target_split=study.target_split, target_success=study.target_success,
            reference_variant=study.reference_variant, starting=starting,
        )
        if not rows:
            self.console.print("No finished runs yet.")
            return rows
        plots = plot_comparison(records, variants, splits, study.output_dir)
        finished = {row["variant"] for row in rows}
        if study.frontier:
            frontier = {variant: mu for variant, mu in study.frontier_mu.items() if variant in finished}
            if len(frontier) >= 2:
                x, y = study.frontier["x"], study.frontier["y"]
                judge_against_frontier(rows, [*records, *starting], frontier, (x, y))
                plots.append(plot_study_frontier(records, rows, frontier, x, y,
                                                 os.path.join(study.output_dir, "frontier.png"),
                                                 methods={v: study.engine(v).method for v in variants},
                                                 reference_variant=study.reference_variant))
            else:
                self.console.print(f"No frontier yet: it needs finished runs of 2 constant-mu variants, "
                                   f"there are {len(frontier)}.")
        if study.reference_variant in finished:
            compare_with_reference(rows, records, study.reference_variant,
                                   (study.frontier["x"], study.frontier["y"]) if study.frontier else (study.target_split,))
        elif study.reference_variant is not None:
            self.console.print(f"No comparison with {study.reference_variant} yet: none of its runs has finished.")
        controlled = [v for v in variants if v in finished and study.engine(v).method in CONTROLLER_METHODS]
        if controlled:
            plots.append(plot_controller(records, controlled, os.path.join(study.output_dir, "controller.png")))
        selection = rank_on(rows, study.select_on) if study.select_on else None
        settings = {key: value for key, value in vars(study).items() if key not in ("output_dir", "source")}
        table = write_results(study.output_dir, rows, metrics, target_split=study.target_split,
                              reference_variant=study.reference_variant, settings=settings, selection=selection)
        self.console.print(table)
        if selection:
            self.console.print(selection_markdown(selection))
        self.console.print(f"Results in {study.output_dir}: results.md, results.csv, results.json, "
                           + ", ".join(os.path.basename(path) for path in plots))
        planned = len(study.variants) * len(study.seeds)
        if len(records) < planned:
            self.console.print(f"Finished so far: {len(records)} of {planned} runs"
                               + (f", {len(starting)} of {len(study.seeds)} starting models" if study.base_sft_steps else "")
                               + "; the table covers those.")
        return rows


DESCRIPTION = (
    "Train every variant of a study file with every seed under one budget, skipping runs that finished earlier "
    "(an interrupted run resumes from its last complete checkpoint), then write results.md/.csv/.json (mean and "
    "95% confidence interval per split, steps to the target; with base_sft_steps, the starting model's own row "
    "first) and plots of success, mu and entropy over steps; "
    "with the study settings 'frontier' and 'select_on', the fixed-mu trade-off frontier with each variant's "
    "verdict against it, and the ranking on validation splits; with 'reference_variant', each variant's "
    "difference from it, paired by seed."
)


def methods_epilog() -> str:
    """The keys of a study file, and the methods a variant may name (`method:`), from the table of methods."""
    from amft.training import METHODS

    return (f"{study_keys_help(Study)} A variant's `method` is one of: "
            + "; ".join(f"{m.name} ({m.summary})" for m in METHODS.values()) + ".")


def main(argv: list[str]) -> None:
    options = study_parser("amft compare", DESCRIPTION, "configs/compare-general-points.yaml",
                           threads_hint="Give each run its share of the cores with the training setting 'threads' "
                           "(default here: cores / jobs).", epilog=methods_epilog()).parse_args(argv)
    study = load_study(options.config, output_dir=options.output_dir, seeds=options.seeds)
    study.variants = select_variants(study.variants, options.variants, options.config)
    if study.reference_variant is not None and study.reference_variant not in study.variants:
        print(f"reference_variant {study.reference_variant} is not among --variants: the report compares with none")
        study.reference_variant = None
    if options.jobs > 1 and not study.training.get("threads"):
        study.training["threads"] = max(1, (os.cpu_count() or 1) // options.jobs)
    comparison = Comparison(study)
    if options.report_only:
        comparison.report()
    else:
        comparison.run(options.jobs)
