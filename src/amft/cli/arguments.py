"""The options of a run beyond `AMFTConfig` (engine and method) and the task's own config
(`amft.tasks`): which task and model, how much data, which files, how to evaluate, the budget."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amft.defaults import changed_from_default

if TYPE_CHECKING:
    from amft.training import AMFTConfig


@dataclass
class RunArguments:
    """What to train and how to evaluate it. Every field is also a YAML key of `--config`."""

    _argument_group_name = "run options"

    task: str = field(
        default="general-points",
        metadata={"help": "Task name: 'general-points', 'gp-vl' (its cards in an image), 'math', 'virl', 'virl-vl' "
                  "(its street views in an image) or 'citynav'; its own options are listed under '<task> task "
                  "options'."},
    )
    model_name_or_path: str = field(
        default="tiny-gp",
        metadata={"help": "A tiny model name built from scratch (tiny-test, tiny-gp, tiny-6m; vision-language: "
                  "tiny-test-vl, tiny-gp-vl for a 128x64 image; tiny-test-virl-vl, tiny-virl-vl for a 128x128 one), "
                  "a Hub id or a local folder (a vision-language model loads with its processor)."},
    )
    model_seed: int = field(default=0, metadata={"help": "Seed of the random initialisation of a tiny model."})
    language_model_init: str | None = field(
        default=None,
        metadata={"help": "For a tiny vision-language model built fresh (tiny-gp-vl, tiny-virl-vl, ...): the folder of "
                  "a trained tiny text model of the same shape (a run folder of tiny-gp) whose weights its decoder "
                  "starts from, as real vision-language models start from a pretrained language model; the image "
                  "encoder and projector start random. Refused for any other model."},
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "transformers' attention kernels ('eager', 'sdpa', 'flash_attention_2', ...); default: "
                  "the tiny model's own, built fresh or reloaded from a run folder (eager for tiny-gp and tiny-gp-vl, "
                  "faster on a CPU there), transformers' choice for any other model."},
    )
    num_train_prompts: int = field(default=20000, metadata={"help": "RL prompts generated for training."})
    num_demonstrations: int = field(default=20000, metadata={"help": "Demonstrations generated for the SFT stream."})
    num_meta_prompts: int = field(default=256, metadata={"help": "Held-out validation prompts for the meta term (a run without one, not amft, refuses it)."})
    task_seed: int = field(default=0, metadata={"help": "Seed of the generated task data (RL prompts, demonstrations, validation prompts)."})
    prompt_file: str | None = field(
        default=None, metadata={"help": "RL prompts from a JSONL/JSON file (rows need 'prompt') instead of generated ones."}
    )
    demo_file: str | None = field(
        default=None,
        metadata={"help": "Demonstrations from a JSONL/JSON file (rows need 'prompt' and 'completion') instead of generated ones."},
    )
    meta_file: str | None = field(
        default=None, metadata={"help": "Validation prompts for the meta term from a JSONL/JSON file (rows need 'prompt'; a run without the meta term refuses it)."}
    )
    skip_invalid_rows: bool = field(
        default=False,
        metadata={"help": "Skip and count malformed rows of the files above instead of stopping with an error naming file, row and field."},
    )
    eval_splits: str | None = field(
        default=None,
        metadata={"help": "Comma-separated splits to evaluate at the end; default: the task's own (general-points: "
                  "id,rl-only,unseen-deals,ood-rule, and the validation splits val-id,val-rl-only on request; gp-vl: "
                  "id,rl-only,ood-rule,ood-visual; virl: id,ood-rule,unseen-routes (not with --routes), and rl-only "
                  "with --rl_only_words (validation splits val-id,val-rl-only on request); virl-vl: those and "
                  "ood-visual (with --routes, only with --ood_visual_routes); math: "
                  "id,longer, the five math benchmarks with --dataset, or the benchmarks in --benchmark_files). "
                  "Math benchmarks: aime24, aime25, amc, math500, minerva, olympiad, arc-c, gpqa-diamond, mmlu-pro."},
    )
    benchmarks: str | None = field(default=None, metadata={"help": "Same as --eval_splits (the usual name for math)."})
    eval_samples: int = field(
        default=1, metadata={"help": "Math: completions per problem; avg@k and pass@k are reported for k = this, times the "
                             "number of times a benchmark file lists each problem."}
    )
    use_vllm_eval: bool = field(default=False, metadata={"help": "Math: generate evaluation samples with vLLM (needs the vllm extra)."})
    eval_attempts: int | None = field(
        default=None,
        metadata={"help": "Answers (model calls) per evaluation episode, verified one after the other (1 = single "
                  "turn); default: the task's (general-points and gp-vl 5, virl and virl-vl 64, citynav 250; math 1, "
                  "evaluated by --eval_samples independent samples unless this is given)."},
    )
    eval_temperature: float = field(default=0.6, metadata={"help": "Sampling temperature of evaluation (0 = greedy)."})
    eval_max_new_tokens: int = field(default=96, metadata={"help": "Token limit of each evaluation attempt."})
    eval_limit: int | None = field(default=None, metadata={"help": "Evaluate only the first N episodes per split."})
    eval_before: bool = field(default=True, metadata={"help": "Also evaluate the model before training."})
    eval_before_limit: int | None = field(
        default=64, metadata={"help": "Episodes per split of the evaluation before training (None: --eval_limit's)."}
    )
    progress_eval_steps: int = field(
        default=0, metadata={"help": "Every N steps, a quick greedy evaluation for the success curve: one try per "
                                  "episode, or a whole route on navigation tasks (0 = off)."}
    )
    progress_eval_episodes: int = field(default=64, metadata={"help": "Episodes per split in the quick evaluation."})
    time_budget_minutes: float | None = field(
        default=None, metadata={"help": "Stop training after this many minutes of wall time (evaluation comes after); "
                                  "a resumed run keeps what its checkpoint had left."}
    )
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of all weights (needs the peft extra)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(
        default="all-linear", metadata={"help": "Modules that get adapters: 'all-linear' or comma-separated names."}
    )
    dry_run: bool = field(
        default=False,
        metadata={"help": "Print the resolved plan (model, data, devices, rollout engine, budget) and exit without loading anything."},
    )
    resume: bool = field(default=False, metadata={"help": "Continue from the last complete checkpoint in output_dir."})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: all cores)."})

    def __post_init__(self) -> None:
        for problem in options_without_effect(vars(self), changed_from_default(self)).values():
            raise ValueError(problem)

    def options_the_method_ignores(self, args: AMFTConfig) -> list[str]:
        """Why each data option given would not act in a run of ``args.method``: the validation prompts
        feed only the meta term."""
        from amft.training import get_method

        if get_method(args.method).reads_validation_prompts(args):
            return []
        return [f"{name} gives validation prompts for the meta term, which a run of method {args.method}"
                f"{' with use_meta_term false' if args.method == 'amft' else ''} does not have: leave {name} out"
                for name in changed_from_default(self, ("num_meta_prompts", "meta_file"))]

    def peft_config(self):
        """The LoRA config asked for, or None."""
        if not self.use_peft:
            return None
        try:
            from peft import LoraConfig
        except ImportError as error:
            raise ImportError("--use_peft needs the peft package: pip install 'amft[peft]'") from error
        targets = self.lora_target_modules
        return LoraConfig(
            r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout, task_type="CAUSAL_LM",
            target_modules=targets if targets == "all-linear" else [t for t in targets.split(",") if t],
        )

    def splits(self, task_default: tuple[str, ...]) -> list[str]:
        """The splits to evaluate: `benchmarks` if given, else `eval_splits`, else ``task_default``."""
        chosen = self.benchmarks or self.eval_splits
        return [s for s in chosen.split(",") if s] if chosen else list(task_default)


def options_without_effect(values: Mapping[str, Any], given: Collection[str]) -> dict[str, str]:
    """Each of the ``given`` run options that would not act at its value in ``values`` (every field
    of `RunArguments`), given the others, with why."""
    problems = {name: f"{name} sets the LoRA adapters, which only --use_peft true trains"
                for name in given if name.startswith("lora_") and not values["use_peft"]}
    for count, file in (("num_train_prompts", "prompt_file"), ("num_demonstrations", "demo_file"),
                        ("num_meta_prompts", "meta_file")):
        if count in given and values[file]:
            problems[count] = f"{count} counts generated rows, and {file} gives them: leave {count} out"
    if "progress_eval_episodes" in given and not values["progress_eval_steps"]:
        problems["progress_eval_episodes"] = ("progress_eval_episodes sizes the quick evaluation, which only "
                                              "--progress_eval_steps N (N > 0) runs")
    if "eval_before_limit" in given and not values["eval_before"]:
        problems["eval_before_limit"] = ("eval_before_limit sizes the evaluation before training, which "
                                         "--eval_before false skips")
    if "skip_invalid_rows" in given and values["skip_invalid_rows"] and not any(
            values[file] for file in ("prompt_file", "demo_file", "meta_file")):
        problems["skip_invalid_rows"] = ("skip_invalid_rows applies to rows read from prompt_file, demo_file or "
                                         "meta_file, and none is given")
    if "benchmarks" in given and values["eval_splits"]:
        problems["benchmarks"] = "--benchmarks is another name for --eval_splits: give one of them"
    return problems
