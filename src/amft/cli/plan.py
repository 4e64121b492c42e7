"""`amft train --dry-run`: the resolved plan of a run, printed without loading a model or data."""

from __future__ import annotations

import dataclasses
import importlib.util

from accelerate import PartialState
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from amft.cli.arguments import RunArguments
from amft.tasks.base import TaskConfig
from amft.training import AMFTConfig, get_method

__all__ = ["describe_plan", "print_plan"]


def task_settings(config: TaskConfig) -> str:
    """The task options that differ from the task's defaults."""
    changed = [f"{f.name}={getattr(config, f.name)}" for f in dataclasses.fields(config)
               if getattr(config, f.name) != getattr(type(config)(), f.name)]
    return ", ".join(changed) or "its defaults"


def describe_plan(run: RunArguments, task_config: TaskConfig, args: AMFTConfig) -> dict[str, str]:
    """What a run would do, resolved from its options and the launch environment (no loading)."""
    state = PartialState(cpu=args.use_cpu)
    processes = state.num_processes
    accumulation = args.gradient_accumulation_steps
    completions = args.per_device_train_batch_size * processes * accumulation
    if args.use_vllm:
        installed = importlib.util.find_spec("vllm") is not None
        engine = f"vLLM ({args.vllm_mode} mode){'' if installed else ' - NOT INSTALLED: pip install amft[vllm]'}"
    else:
        engine = "transformers generate"
    sharding = "DeepSpeed" if args.deepspeed else "FSDP" if args.fsdp else "none (data parallel)"
    lora = (f"LoRA r={run.lora_r}, alpha={run.lora_alpha}, modules {run.lora_target_modules}"
            if run.use_peft else "all weights")
    return {
        "model": run.model_name_or_path,
        "trained parameters": lora,
        "task": f"{run.task} ({task_settings(task_config)})",
        "user files": ", ".join(f"{k}={v}" for k, v in (("prompts", run.prompt_file), ("demonstrations", run.demo_file),
                                                         ("validation", run.meta_file)) if v) or "none",
        "method": f"{args.method}: {get_method(args.method).details(args)}",
        "devices": f"{processes} process(es), {state.distributed_type.value}, device {state.device}, "
                   f"precision {'bf16' if args.bf16 else 'fp16' if args.fp16 else 'fp32'}, parameter sharding {sharding}",
        "rollout engine": engine,
        "budget per optimizer step": (
            f"{completions // args.num_generations} prompts x {args.num_generations} completions "
            f"(<= {args.max_completion_length} tokens), <= {args.sft_batch_size * processes * accumulation} demonstrations"
        ),
        "steps": f"{args.max_steps} optimizer steps"
                 + (f" or {run.time_budget_minutes:g} minutes, whichever ends first" if run.time_budget_minutes else "")
                 + f", learning rate {args.learning_rate}, L_RL {args.loss_type}, beta {args.beta}",
        "evaluation": f"splits {run.benchmarks or run.eval_splits or 'task default'}, "
                      f"{run.eval_samples} sample(s) / {run.eval_attempts or 'task default'} tries, temperature {run.eval_temperature}",
        "output": f"{args.output_dir} (checkpoints every {args.save_steps} steps, logs to {args.report_to})",
    }


def print_plan(run: RunArguments, task_config: TaskConfig, args: AMFTConfig, note: str | None = None) -> None:
    table = Table(title="amft: resolved plan (dry run, nothing loaded)", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in describe_plan(run, task_config, args).items():
        table.add_row(key, escape(value))
    if note:
        table.add_row("note", note)
    Console().print(table)
