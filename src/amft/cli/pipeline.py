"""A whole run: task data, model, AMFT training, evaluation before and after, and the run's report."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import asdict
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from amft.cli.arguments import RunArguments
from amft.evaluation.evaluate import SplitResult, evaluate
from amft.evaluation.report import plot_training_dynamics, print_results, write_summary
from amft.models import load_model
from amft.tasks import get_task
from amft.tasks.base import Task
from amft.training import AMFTConfig, AMFTTrainer
from amft.training.checkpoint import last_complete_checkpoint

logger = logging.getLogger(__name__)
PROGRESS_FILE = "progress_eval.jsonl"


def build_task(run: RunArguments) -> Task:
    return get_task(
        run.task,
        template=run.template,
        completion_format=run.completion_format,
        demo_fraction=run.demo_fraction,
        id_rule_fraction=run.id_rule_fraction,
    )


def bf16_autocast(enabled: bool):
    """bf16 autocast on CPU when asked for (the Trainer does the same for training with `bf16=True`)."""
    if enabled and not torch.cuda.is_available():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def evaluate_splits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    splits: list[str],
    run: RunArguments,
    *,
    bf16: bool,
    seed: int,
    attempts: int | None = None,
    temperature: float | None = None,
    limit: int | None = None,
) -> dict[str, SplitResult]:
    with bf16_autocast(bf16):
        return {
            split: evaluate(
                model,
                tokenizer,
                task,
                split,
                max_attempts=run.eval_attempts if attempts is None else attempts,
                temperature=run.eval_temperature if temperature is None else temperature,
                max_new_tokens=run.eval_max_new_tokens,
                seed=seed,
                limit=run.eval_limit if limit is None else limit,
            )
            for split in splits
        }


class TimeBudgetCallback(TrainerCallback):
    """Stops training once the wall-clock budget is spent; the run then evaluates and reports."""

    def __init__(self, minutes: float) -> None:
        self.deadline = time.monotonic() + minutes * 60

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() >= self.deadline:
            control.should_training_stop = True
            control.should_save = True
        return control


class ProgressEvalCallback(TrainerCallback):
    """Every N steps a quick greedy single-try evaluation, appended to a JSONL file in the run folder
    (so a resumed run keeps the curve it had)."""

    def __init__(self, task: Task, run: RunArguments, amft_args: AMFTConfig, splits: list[str]) -> None:
        self.task, self.run, self.amft_args, self.splits = task, run, amft_args, splits
        self.path = os.path.join(amft_args.output_dir, PROGRESS_FILE)

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step % self.run.progress_eval_steps != 0 or not state.is_world_process_zero:
            return control
        results = evaluate_splits(
            model, processing_class, self.task, self.splits, self.run,
            bf16=self.amft_args.bf16, seed=self.amft_args.seed, attempts=1, temperature=0.0, limit=self.run.progress_eval_episodes,
        )
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"step": state.global_step, **{s: r.success_rate for s, r in results.items()}}) + "\n")
        return control


def read_progress(run_dir: str) -> dict[str, list[tuple[int, float]]]:
    path = os.path.join(run_dir, PROGRESS_FILE)
    curves: dict[str, list[tuple[int, float]]] = {}
    if os.path.exists(path):
        with open(path) as handle:
            for line in handle:
                row = json.loads(line)
                for split, value in row.items():
                    if split != "step":
                        curves.setdefault(split, []).append((row["step"], value))
    return curves


def controller_summary(log_history: list[Mapping[str, Any]]) -> dict[str, Any]:
    """How far mu moved, and how much of that came from each controller term."""
    mus = [row["amft/mu"] for row in log_history if "amft/mu" in row]
    meta = sum(row.get("amft/meta_term", 0.0) for row in log_history)
    entropy = sum(row.get("amft/entropy_term", 0.0) for row in log_history)
    targets = [row["amft/target_entropy"] for row in log_history if "amft/target_entropy" in row]
    return {
        "mu_first": mus[0] if mus else None,
        "mu_last": mus[-1] if mus else None,
        "sum_meta_term": round(meta, 6),
        "sum_entropy_term": round(entropy, 6),
        "target_entropy": targets[-1] if targets else None,
    }


def run_training(run: RunArguments, args: AMFTConfig) -> dict[str, Any]:
    """Train, evaluate and report; returns the summary written to `summary.json`."""
    started = time.monotonic()
    if run.threads:
        torch.set_num_threads(run.threads)
    os.makedirs(args.output_dir, exist_ok=True)
    task = build_task(run)
    model, tokenizer = load_model(run.model_name_or_path, seed=run.model_seed)
    splits = [s for s in run.eval_splits.split(",") if s]
    for split in splits:
        if split not in task.splits:
            raise ValueError(f"unknown split {split!r} for task {task.name}; known: {', '.join(task.splits)}")

    checkpoint = last_complete_checkpoint(args.output_dir) if run.resume else None
    if run.resume and checkpoint is None:
        logger.warning("--resume: no complete checkpoint in %s, starting from scratch", args.output_dir)
    if checkpoint is None and os.path.exists(os.path.join(args.output_dir, PROGRESS_FILE)):
        os.remove(os.path.join(args.output_dir, PROGRESS_FILE))

    initial = None
    if run.eval_before and checkpoint is None:
        initial = evaluate_splits(model, tokenizer, task, splits, run, bf16=args.bf16, seed=args.seed)
        print_results("Before training", initial)

    callbacks: list[TrainerCallback] = []
    if run.time_budget_minutes:
        callbacks.append(TimeBudgetCallback(run.time_budget_minutes))
    if run.progress_eval_steps:
        callbacks.append(ProgressEvalCallback(task, run, args, splits))
    trainer = AMFTTrainer(
        model=model,
        reward_funcs=task.reward,
        args=args,
        train_dataset=Dataset.from_list(task.train_prompts(run.num_train_prompts, seed=run.task_seed)),
        demo_dataset=task.demonstrations(run.num_demonstrations, seed=run.task_seed),
        meta_dataset=task.validation_prompts(run.num_meta_prompts, seed=run.task_seed + 1),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(args.output_dir)

    final = evaluate_splits(trainer.model, tokenizer, task, splits, run, bf16=args.bf16, seed=args.seed)
    print_results(f"After training ({trainer.state.global_step} steps)", final, initial)
    history = trainer.state.log_history
    plot_training_dynamics(
        history,
        read_progress(args.output_dir),
        os.path.join(args.output_dir, "training_dynamics.png"),
        title=f"{args.controller} controller on {task.name}",
    )
    with open(os.path.join(args.output_dir, "eval_results.json"), "w") as handle:
        json.dump({split: [asdict(r) for r in result.records] for split, result in final.items()}, handle)
    return write_summary(
        args.output_dir,
        results=final,
        initial=initial,
        wall_time_seconds=time.monotonic() - started,
        run_info={
            "task": task.name,
            "model": run.model_name_or_path,
            "method": "amft" if args.controller == "meta" else f"fixed-mu ({args.mu})",
            "steps": trainer.state.global_step,
            "resumed_from": checkpoint,
        },
        controller_summary=controller_summary(history),
    )
