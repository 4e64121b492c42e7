"""Command-line arguments beyond `AMFTConfig`: the task, the model, data sizes and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field



@dataclass
class RunArguments:
    """What to train and how to evaluate it. Every field is also a YAML key of `--config`."""

    task: str = field(default="general-points", metadata={"help": "Task name: 'general-points', 'math', 'virl' or 'citynav'."})
    model_name_or_path: str = field(
        default="tiny-gp",
        metadata={"help": "A tiny model name built from scratch (tiny-test, tiny-gp, tiny-6m), a Hub id or a local folder."},
    )
    model_seed: int = field(default=0, metadata={"help": "Seed of the random initialisation of a tiny model."})
    template: str = field(
        default="compact",
        metadata={"help": "Prompt template: 'compact' (tiny models, value-mapping header) or 'original' (pretrained LLMs)."},
    )
    completion_format: str = field(
        default="plain",
        metadata={"help": "Compact completion: 'plain' (cards, numbers, formula) or 'steps' (adds the three intermediate results)."},
    )
    demo_solution: str = field(
        default="random",
        metadata={"help": "Which solver solution a demonstration shows: 'random' (diverse) or 'canonical' (one per multiset)."},
    )
    revision_keep_last: int | None = field(
        default=None,
        metadata={"help": "Revision prompts keep only the last K failed attempts (None: all; 0: every retry sees the original prompt)."},
    )
    demo_fraction: float = field(
        default=0.5, metadata={"help": "Share of training value multisets that have demonstrations."}
    )
    id_rule_fraction: float = field(
        default=0.5, metadata={"help": "Share of training deals under the ID rule J=Q=K=10 (the rest use other mappings)."}
    )
    training_rules: str | None = field(
        default=None,
        metadata={"help": "GeneralPoints: the J,Q,K value mappings of training deals, ';'-separated (e.g. '10,10,10' "
                  "as in the paper's LLM runs; default: every mapping over 10-13 except --ood_rule)."},
    )
    ood_rule: str = field(
        default="11,12,13", metadata={"help": "GeneralPoints: the held-out J,Q,K mapping of the 'ood-rule' split."}
    )
    target: int = field(default=24, metadata={"help": "GeneralPoints: the number the cards must make."})
    strict_format: bool = field(
        default=False,
        metadata={"help": "GeneralPoints: accept only the template's own formula form (by default both forms are accepted)."},
    )
    chat_format: bool = field(
        default=False,
        metadata={"help": "GeneralPoints, original template: prompts and completions as chat messages (TRL's "
                  "conversational format)."},
    )
    partition_seed: int = field(
        default=0, metadata={"help": "GeneralPoints: seed of the split of value multisets into training and unseen ones."}
    )
    unseen_fraction: float = field(
        default=0.15, metadata={"help": "GeneralPoints: share of value multisets held out for the 'unseen-deals' split."}
    )
    eval_seed: int = field(
        default=42, metadata={"help": "GeneralPoints: seed of the evaluation episodes (42, as in the original scripts)."}
    )
    eval_episodes_per_split: int = field(
        default=234, metadata={"help": "GeneralPoints: evaluation episodes per split (234, as in the original protocol)."}
    )
    dataset: str | None = field(
        default=None,
        metadata={"help": "Math: training problems from a .jsonl/.json/.parquet file or a Hub dataset (default: generated word problems)."},
    )
    dataset_split: str = field(default="train", metadata={"help": "Math: split of a Hub dataset."})
    problem_column: str | None = field(default=None, metadata={"help": "Math: column of the problem (default: detected)."})
    answer_column: str | None = field(default=None, metadata={"help": "Math: column of the final answer (default: detected)."})
    solution_column: str | None = field(
        default=None, metadata={"help": "Math: column of the worked solution or trace to imitate (default: detected)."}
    )
    prompt_style: str = field(
        default="plain", metadata={"help": "Math: 'plain' text prompts (base and tiny models) or 'chat' messages (instruct models)."}
    )
    benchmark_dir: str | None = field(
        default=None, metadata={"help": "Math: folder of local benchmark files <name>.jsonl/.json/.parquet (else the Hub)."}
    )
    instruction: str | None = field(
        default=None,
        metadata={"help": "Math: the instruction after each chat prompt (default: 'Please reason step by step, and put "
                  "your final answer within \\boxed{}.'; multiple-choice benchmarks ask for the letter)."},
    )
    require_boxed: bool = field(default=True, metadata={"help": "Math: a completion without a \\boxed{} answer scores 0."})
    verify_timeout_seconds: int = field(
        default=5, metadata={"help": "Math: seconds Math-Verify may spend on one answer before it counts as wrong."}
    )
    validation_size: int = field(
        default=256, metadata={"help": "Math: dataset problems held out for the meta-gradient's validation prompts."}
    )
    eval_size: int = field(default=200, metadata={"help": "Math: generated problems per evaluation split ('id', 'longer')."})
    generated_max_number: int = field(
        default=10, metadata={"help": "Math: largest starting count and amount in generated word problems."}
    )
    routes: str | None = field(
        default=None, metadata={"help": "V-IRL: a route_infos.json file (default: V-IRL-L-synthetic routes)."}
    )
    synthetic_routes: int = field(default=1200, metadata={"help": "V-IRL: number of synthetic routes to generate."})
    synthetic_seed: int = field(default=0, metadata={"help": "V-IRL: seed of the synthetic street grids and routes."})
    prompt_form: str = field(
        default="compact",
        metadata={"help": "V-IRL: 'compact' prompts with an action-space mode token (tiny models) or the paper's 'original' ones."},
    )
    relative_fraction: float = field(
        default=0.5, metadata={"help": "V-IRL: share of one-turn training routes shown in the relative action space."}
    )
    turn_share: float = field(
        default=0.5,
        metadata={"help": "V-IRL: share of decision rows drawn at turn positions (the rest uniformly along the rail)."},
    )
    retry_share: float = field(
        default=0.2, metadata={"help": "V-IRL: share of decision rows that are second tries (a failed answer and its feedback)."}
    )
    drop_rate: float = field(
        default=0.5,
        metadata={"help": "V-IRL: probability of dropping each interpolated point between intersections on the rail."},
    )
    wrap_relative_turns: bool = field(
        default=True,
        metadata={"help": "V-IRL: heading changes are brought to [-180, 180) before naming the relative turn (350 "
                  "degrees is a slight right); --no_wrap_relative_turns keeps the original rule (a left)."},
    )
    eval_routes: int = field(default=100, metadata={"help": "V-IRL: routes per evaluation split."})
    validation_routes: int = field(
        default=100, metadata={"help": "V-IRL: routes held out for the meta-gradient's validation prompts."}
    )
    city_size: int = field(default=8, metadata={"help": "City navigation: the synthetic city is a grid of N x N intersections."})
    city_seed: int = field(
        default=0, metadata={"help": "City navigation: seed of the training city (the 'unseen' split uses another city)."}
    )
    nav_memory: str = field(
        default="full",
        metadata={"help": "City navigation: the memory behind the prompt's [mem] line: full, no-octree, no-graph, "
                  "no-short-term, no-long-term or none (no line)."},
    )
    loop_fraction: float = field(default=0.3, metadata={"help": "City navigation: share of training episodes that are loops."})
    counting_fraction: float = field(
        default=0.2, metadata={"help": "City navigation: share of training episodes that are counting episodes."}
    )
    decision_share: float = field(
        default=0.5,
        metadata={"help": "City navigation: share of training rows drawn from decisions (an intersection, a landmark the "
                  "step names, a place seen before, or an action other than forward); the rest are plain walking."},
    )
    nav_eval_episodes: int = field(default=50, metadata={"help": "City navigation: evaluation episodes per subset."})
    num_train_prompts: int = field(default=20000, metadata={"help": "RL prompts generated for training."})
    num_demonstrations: int = field(default=20000, metadata={"help": "Demonstrations generated for the SFT stream."})
    num_meta_prompts: int = field(default=256, metadata={"help": "Held-out validation prompts for the meta term."})
    task_seed: int = field(default=0, metadata={"help": "Seed of the generated task data (RL prompts, demonstrations, validation prompts)."})
    prompt_file: str | None = field(
        default=None, metadata={"help": "RL prompts from a JSONL/JSON file (rows need 'prompt') instead of generated ones."}
    )
    demo_file: str | None = field(
        default=None,
        metadata={"help": "Demonstrations from a JSONL/JSON file (rows need 'prompt' and 'completion') instead of generated ones."},
    )
    meta_file: str | None = field(
        default=None, metadata={"help": "Validation prompts for the meta term from a JSONL/JSON file (rows need 'prompt')."}
    )
    skip_invalid_rows: bool = field(
        default=False,
        metadata={"help": "Skip and count malformed rows of the files above instead of stopping with an error naming file, row and field."},
    )
    eval_splits: str | None = field(
        default=None,
        metadata={"help": "Comma-separated splits to evaluate at the end; default: the task's own (general-points: "
                  "id,rl-only,unseen-deals,ood-rule; math: id,longer, or the five math benchmarks with --dataset). Math benchmarks: "
                  "aime24, amc, math500, minerva, olympiad, arc-c, gpqa-diamond, mmlu-pro."},
    )
    benchmarks: str | None = field(default=None, metadata={"help": "Same as --eval_splits (the usual name for math)."})
    eval_samples: int = field(
        default=1, metadata={"help": "Math: completions per problem; avg@k and pass@k are reported for k = this."}
    )
    use_vllm_eval: bool = field(default=False, metadata={"help": "Math: generate evaluation samples with vLLM (needs the vllm extra)."})
    eval_attempts: int = field(default=5, metadata={"help": "GeneralPoints: verified tries per episode (1 = single turn)."})
    eval_temperature: float = field(default=0.6, metadata={"help": "Sampling temperature of evaluation (0 = greedy)."})
    eval_max_new_tokens: int = field(default=96, metadata={"help": "Token limit of each evaluation attempt."})
    eval_limit: int | None = field(default=None, metadata={"help": "Evaluate only the first N episodes per split."})
    eval_before: bool = field(default=True, metadata={"help": "Also evaluate the model before training."})
    eval_before_limit: int | None = field(
        default=64, metadata={"help": "Episodes per split of the evaluation before training (None: all)."}
    )
    progress_eval_steps: int = field(
        default=0, metadata={"help": "Every N steps, a quick greedy single-try evaluation for the success curve (0 = off)."}
    )
    progress_eval_episodes: int = field(default=64, metadata={"help": "Episodes per split in the quick evaluation."})
    time_budget_minutes: float | None = field(
        default=None, metadata={"help": "Stop training after this many minutes of wall time (evaluation comes after)."}
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
