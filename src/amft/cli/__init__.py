"""The `amft` command: `demo`, `train`, `eval`, `compare`, `nav-study` and `data`.

Options come as flags or as keys of a YAML file given with `--config`, as in TRL's scripts;
flags override the file (`amft.cli.options` reads and checks both). `amft COMMAND --help`
lists every option with its explanation.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from amft.cli.options import CommandLine

USAGE = """usage: amft COMMAND [options]

commands:
  demo    the embedded default: a tiny model learns GeneralPoints-L with AMFT on CPU
          (progress bar, success table per split, plot and summary in the run folder);
          `amft demo --task math` / `--task virl`: the same for arithmetic word problems / street navigation;
          `amft demo --task gp-vl` / `--task virl-vl`: GeneralPoints with the cards in an image / navigation
          from street-view images, learnt by a tiny vision-language model
  train   train with AMFT or a baseline (--method) from a YAML config (--config) and/or flags
  compare run methods x seeds under one budget from a study file; tables and plots
  eval    evaluate a trained model on task splits, single- or multi-turn; writes JSON
  nav-study  navigation agents with Mem4Nav memory and its ablations on synthetic cities; tables and plots
  data    write task data files: `amft data virl-synthetic --n 1000 --seed 0 --output routes.json`

`amft COMMAND --help` explains every option of COMMAND.
"""

DEMO_PRESETS = {"general-points": "demo-general-points.yaml", "gp-vl": "demo-gp-vl.yaml", "math": "demo-math.yaml",
                "virl": "demo-virl.yaml", "virl-vl": "demo-virl-vl.yaml"}

#: `amft eval --eval_preset NAME`: an evaluation protocol, the task it belongs to and the options it fixes
EVAL_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # LUFFY's evaluation, which the AMFT paper reports with: vLLM's sampling at temperature 0.6 with
    # top_p 1.0 (the only way amft samples), 8192 new tokens, the file's chat messages without the
    # system message, and Math-Verify on the answer wherever it is (no box required).
    "luffy": ("math", {"eval_temperature": 0.6, "eval_max_new_tokens": 8192, "prompt_style": "chat",
                       "benchmark_prompts": "file", "require_boxed": False}),
}


@dataclass
class EvalArguments:
    """Options of `amft eval` beyond the task and evaluation settings."""

    _argument_group_name = "eval options"

    model: str = field(default="", metadata={"help": "Trained model folder (or Hub id) to evaluate. Required."})
    output_file: str | None = field(
        default=None, metadata={"help": (
            "Where to write the JSON results (default: <model>/eval-<split>.json). Every episode (its answers, "
            "rewards and success) goes beside it, in the same name ending -episodes.json.")}
    )
    bf16: bool = field(default=True, metadata={"help": "bf16 autocast on CPU during generation."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    eval_preset: str | None = field(default=None, metadata={"help": (
        "A named evaluation protocol that fixes its options; an option given with another value is refused (drop "
        "the preset to change any of them). 'luffy' (task math): LUFFY's evaluation, which the AMFT paper "
        "reports: temperature 0.6, top_p 1.0, up to 8192 new tokens, each benchmark row's chat messages without "
        "the system message through the model's chat template (prompt_style chat, benchmark_prompts file), "
        "Math-Verify with no box required (require_boxed false). Samples per problem stay --eval_samples times "
        "the benchmark file's repeats; use it with --benchmark_files.")})


TRAIN_DESCRIPTION = "Train a model with AMFT or a baseline (--method) on a task (--task)."
DEMO_DESCRIPTION = ("The embedded demo: amft train with the task's preset (see amft/cli/presets); flags override "
                    "the preset.")


def preset_path(name: str) -> str:
    return str(resources.files("amft.cli") / "presets" / name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    from amft.cli.options import OptionsError
    from amft.evaluation.harness import RunsFailed, StaleRuns

    command, rest = argv[0], argv[1:]
    commands = {"train": _run_train, "demo": _run_demo, "compare": _run_compare, "eval": _run_eval,
                "nav-study": _run_nav_study, "data": _run_data}
    if command not in commands:
        print(f"amft: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        return commands[command](rest)
    except (OptionsError, StaleRuns) as error:
        print(f"amft {command}: error: {error}", file=sys.stderr)
        return 2
    except RunsFailed as error:
        print(f"amft {command}: {error}", file=sys.stderr)
        return 1


def _training_options(argv: list[str], prog: str, description: str, preset: str | None = None):
    """The run's, the task's and the engine's options, and for a dry run the plan instead of a run."""
    import torch

    from amft.cli.options import OptionsError, read_command_line

    line = read_command_line(argv, prog, description, config=preset)
    if line.values["use_vllm_eval"]:
        raise OptionsError("--use_vllm_eval: the evaluation after training generates with the trained model in this "
                           "process; evaluate the run folder with vLLM by `amft eval --use_vllm_eval true`")
    note = None
    if line.values["dry_run"] and not line.values["use_cpu"] and not torch.cuda.is_available():
        # Transformers refuses bf16 without a GPU unless told to use the CPU; the plan is still the
        # recipe's, resolved on this machine.
        line.values["use_cpu"] = True
        note = "no GPU on this machine: resolved with use_cpu=True"
    run, task_config, args = line.build()
    if run.dry_run:
        from amft.cli.plan import print_plan

        print_plan(run, task_config, args, note=note)
        return None
    return run, task_config, args


def _run_train(argv: list[str]) -> int:
    options = _training_options(argv, "amft train", TRAIN_DESCRIPTION)
    if options is not None:
        from amft.cli.pipeline import run_training

        run_training(*options)
    return 0


def _run_demo(argv: list[str]) -> int:
    from amft.cli.options import OptionsError, task_and_file

    task, config = task_and_file(argv)
    task = task or "general-points"
    if task not in DEMO_PRESETS:
        raise OptionsError(f"no demo for task {task!r}; demos: {', '.join(DEMO_PRESETS)}")
    if config is not None:
        raise OptionsError("a demo runs its preset; to train from a config file use amft train --config FILE")
    options = _training_options(argv, "amft demo", DEMO_DESCRIPTION, preset=preset_path(DEMO_PRESETS[task]))
    if options is None:
        return 0
    from amft.cli.pipeline import run_training

    summary = run_training(*options)
    print(f"Run folder: {options[2].output_dir} (summary.md, summary.json, training_dynamics.png)")
    print(json.dumps({"success_rate": summary["success_rate"], "wall_time_seconds": summary["wall_time_seconds"]}))
    return 0


def _run_compare(argv: list[str]) -> int:
    from amft.cli.compare import main as compare_main

    compare_main(argv)
    return 0


def _run_data(argv: list[str]) -> int:
    import argparse

    from amft.tasks.virl.synthetic import generate_routes
    from amft.io import atomic_write_json

    parser = argparse.ArgumentParser(prog="amft data", description="Write task data files.")
    sub = parser.add_subparsers(dest="kind", required=True)
    routes = sub.add_parser("virl-synthetic", help="V-IRL-L-synthetic routes in the route_infos.json format.")
    routes.add_argument("--n", type=int, default=1000, help="Number of routes.")
    routes.add_argument("--seed", type=int, default=0, help="Generator seed (the same seed gives the same file).")
    routes.add_argument("--cities", type=int, default=4, help="Number of synthetic street grids.")
    routes.add_argument("--output", required=True, help="The JSON file to write ([route_list, count], as the collector writes).")
    options = parser.parse_args(argv)
    records = generate_routes(options.n, options.seed, cities=options.cities)
    atomic_write_json(options.output, [records, len(records)])
    print(f"{len(records)} synthetic routes written to {options.output}")
    return 0


def _run_nav_study(argv: list[str]) -> int:
    from amft.cli.options import load_dataclass, read_mapping, select_variants, study_keys_help, study_parser
    from amft.navigation.study import NavStudyConfig, report_nav_study, run_nav_study

    parser = study_parser(
        "amft nav-study",
        "Run navigation agents with Mem4Nav memory and with each component removed on synthetic cities (per seed: "
        "a test split on the seed's city and an unseen city; subsets plain, counting, loop, long), one run per agent "
        "and seed, skipping runs that finished earlier; then write results.md/.csv/.json (mean and 95% t-interval "
        "over seeds; per episode, both metric conventions, bootstrap 95% intervals and paired tests against the "
        "reference agent), episodes.csv, tc_by_subset.png and modular_training.png.",
        "configs/mem4nav-study.yaml", epilog=study_keys_help(NavStudyConfig))
    parser.add_argument("--per_subset", type=int, help="Episodes per subset, split and seed (overrides the file).")
    options = parser.parse_args(argv)
    values = read_mapping(options.config)
    for key in ("output_dir", "seeds", "per_subset"):
        if getattr(options, key) is not None:
            values[key] = getattr(options, key)
    if isinstance(values.get("agents"), dict):
        agents = select_variants(values["agents"], options.variants, options.config)
        reference = values.get("reference", NavStudyConfig.reference)
        if reference not in agents and reference in values["agents"]:
            # unlike compare's, this report is built on pairing every agent with the reference on the same episodes
            print(f"--variants leaves out the reference agent {reference}: it runs too, as every agent is paired with it")
            agents[reference] = values["agents"][reference]
        values["agents"] = agents
    config = load_dataclass(NavStudyConfig, values, options.config)
    if options.report_only:
        report_nav_study(config)
    else:
        run_nav_study(config, options.jobs)
    print(f"Results in {config.output_dir}: results.md, results.csv, results.json, episodes.csv, tc_by_subset.png")
    return 0


#: the run options `amft eval` reads; it refuses the others (they belong to training)
EVAL_RUN_OPTIONS = frozenset({"task", "eval_splits", "benchmarks", "eval_samples", "use_vllm_eval", "eval_attempts",
                              "eval_temperature", "eval_max_new_tokens", "eval_limit", "threads",
                              "attn_implementation"})


def apply_eval_preset(line: CommandLine) -> None:
    """Set the options of the line's ``eval_preset``; an option the file or the flags give with
    another value is refused, naming it."""
    from amft.cli.options import OptionsError

    name = line.values.get("eval_preset")
    if not name:
        return
    if name not in EVAL_PRESETS:
        raise OptionsError(f"{line.source}: eval_preset: unknown preset {name!r}; known: {', '.join(EVAL_PRESETS)}")
    task, options = EVAL_PRESETS[name]
    if line.values["task"] != task:
        raise OptionsError(f"eval_preset {name} is an evaluation protocol of task {task}, not of {line.values['task']}")
    clashes = [f"{key} {line.values[key]!r} (the preset's: {value!r})" for key, value in options.items()
               if key in line.given and line.values[key] != value]
    if clashes:
        raise OptionsError(f"{line.source}: eval_preset {name} fixes {', '.join(clashes)}; drop the option, or drop "
                           "the preset and give every option yourself")
    line.values.update(options)


def episodes_path(results_file: str) -> str:
    """Where `amft eval` writes every episode: beside its results, ``name.json`` -> ``name-episodes.json``."""
    stem = results_file[:-len(".json")] if results_file.endswith(".json") else results_file
    return f"{stem}-episodes.json"


def _run_eval(argv: list[str]) -> int:
    import torch

    from amft.cli.arguments import RunArguments
    from amft.cli.options import OptionsError, field_names, read_command_line
    from amft.cli.pipeline import check_model_fits_task, evaluate_splits, evaluation_budget
    from amft.defaults import declared_default
    from amft.evaluation.report import print_results
    from amft.models import load_model
    from amft.tasks import get_task
    from amft.io import atomic_write_json

    line = read_command_line(argv, "amft eval", "Evaluate a trained model on task splits; writes JSON.",
                             before=(EvalArguments,), engine=False,
                             unlisted=field_names(RunArguments) - EVAL_RUN_OPTIONS)
    apply_eval_preset(line)
    # before the options are built, whose checks would send the user to another training option
    training_only = sorted(name for name in field_names(RunArguments) - EVAL_RUN_OPTIONS
                           if line.values[name] != declared_default(RunArguments, name))
    if training_only:
        raise OptionsError(f"{line.source}: {', '.join(training_only)}: options of training, not of amft eval")
    eval_args, run, task_config = line.build()
    if not eval_args.model:
        raise OptionsError("--model is required")
    if run.threads:
        torch.set_num_threads(run.threads)
    task = get_task(run.task, config=task_config)
    splits = run.splits(task.default_splits)
    evaluation_budget(task, run)
    check_model_fits_task(eval_args.model, task)
    if run.use_vllm_eval:
        if task.multi_turn:
            raise OptionsError("--use_vllm_eval applies to sampled evaluation (math), not to multi-turn episodes")
        if run.eval_attempts is not None or run.attn_implementation is not None or not eval_args.bf16:
            raise OptionsError("--use_vllm_eval draws --eval_samples independent samples with vLLM's own kernels and "
                               "dtype: --eval_attempts, --attn_implementation and --bf16 do not act there")
        from amft.evaluation.sampling import evaluate_samples
        from amft.models.loading import load_tokenizer

        tokenizer = load_tokenizer(eval_args.model)
        results = {
            split: evaluate_samples(eval_args.model, tokenizer, task, split, samples=run.eval_samples,
                                    temperature=run.eval_temperature, max_new_tokens=run.eval_max_new_tokens,
                                    seed=eval_args.seed, limit=run.eval_limit, use_vllm=True)
            for split in splits
        }
    else:
        model, processing_class = load_model(eval_args.model, attn_implementation=run.attn_implementation)
        results = evaluate_splits(model, processing_class, task, splits, run, bf16=eval_args.bf16, seed=eval_args.seed)
    protocol = f" ({eval_args.eval_preset} protocol)" if eval_args.eval_preset else ""
    print_results(f"{eval_args.model} on {task.name}{protocol}", results)
    output = eval_args.output_file or os.path.join(eval_args.model, f"eval-{'-'.join(splits)}.json")
    atomic_write_json(output, {split: r.summary() for split, r in results.items()})
    episodes_file = episodes_path(output)
    atomic_write_json(episodes_file, {split: r.details() for split, r in results.items()})
    print(f"Results written to {output}; every episode in {episodes_file}")
    return 0
