"""Command-line arguments beyond `AMFTConfig`: the task, the model, data sizes and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_SPLITS = "id,rl-only,unseen-deals,ood-rule"


@dataclass
class RunArguments:
    """What to train and how to evaluate it. Every field is also a YAML key of `--config`."""

    task: str = field(default="general-points", metadata={"help": "Task name (see `amft.tasks`)."})
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
    eval_splits: str = field(default=ALL_SPLITS, metadata={"help": "Comma-separated splits to evaluate at the end."})
    eval_attempts: int = field(default=5, metadata={"help": "Verified tries per episode (1 = single turn)."})
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
    resume: bool = field(default=False, metadata={"help": "Continue from the last complete checkpoint in output_dir."})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: all cores)."})
