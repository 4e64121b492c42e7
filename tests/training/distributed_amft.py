"""AMFT on the toy sum task, for the two-process check in `test_distributed.py`.

    accelerate launch --multi_gpu --num_processes 2 tests/training/distributed_amft.py OUT.json 16 [METHOD] [--save]
    accelerate launch --config_file configs/accelerate/fsdp.yaml --num_processes 2 --mixed_precision no \
        tests/training/distributed_amft.py OUT.json 16 [METHOD]
    python tests/training/distributed_amft.py OUT.json 32 [METHOD] [--save] [--accumulation N] [--meta_direction adam]

METHOD is amft (the default) or gac, whose proxies are then measured on every step. With --save the run
saves a checkpoint every 2 steps in OUT.json.run and resumes from the last complete one there, if any
(for `test_resume.py`). --accumulation sets the gradient accumulation steps (1 by default),
--meta_direction the meta-gradient's look-ahead (sgd by default).

Accelerate runs an FSDP launch as plain DDP when there is no GPU: its CPU state (MULTI_CPU) drops the
FSDP plugin. `fsdp_without_gpus` marks the state FSDP when the plugin is there, so `Accelerator.prepare`
shards the model with FSDP2's `fully_shard` as it does on GPUs, over gloo; the run records whether the
trained parameters were FSDP2 shards.

Completions come from a rollout function that samples every completion with its own generator,
seeded by (step, prompt, occurrence): the rollouts are then the same however the batch is split
over processes, and the controller's trajectory can be compared exactly. Every completion takes
MAX_NEW_TOKENS forwards, the tokens after the end-of-sequence one left out: under FSDP2 a forward is
collective, so every process must run as many.
"""

import argparse
import json
import zlib

import torch
import torch.distributed as dist
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType
from datasets import Dataset
from torch.distributed.tensor import DTensor

from amft.models import build_tiny_model
from amft.training import AMFTConfig, AMFTTrainer
from amft.training.checkpoint import last_complete_checkpoint

PROMPTS = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a in range(10) for b in range(10)]
DEMOS = [{"prompt": row["prompt"], "completion": row["answer"]} for row in PROMPTS]
MAX_NEW_TOKENS = 3


def sum_reward(prompts, completions, answer, **kwargs):
    # Partial credit for any digit, so that even an untrained model's rollouts differ in reward.
    return [1.0 if text.strip() == expected else 0.25 if any(c.isdigit() for c in text) else 0.0
            for text, expected in zip(completions, answer)]


@torch.no_grad()
def seeded_rollouts(prompts, trainer):
    model, tokenizer = trainer.model, trainer.processing_class
    was_training = model.training
    model.eval()
    prompt_ids, completion_ids, logprobs, seen = [], [], [], {}
    for prompt in prompts:
        occurrence = seen[prompt] = seen.get(prompt, -1) + 1
        key = f"{trainer.state.global_step}|{prompt}|{occurrence}|{trainer.model.training}"
        generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        sequence, new, new_logprobs = torch.tensor([ids]), [], []
        for _ in range(MAX_NEW_TOKENS):
            logits = model(input_ids=sequence).logits[0, -1].float() / trainer.temperature
            probs = torch.softmax(logits, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=generator))
            if tokenizer.eos_token_id not in new:
                new.append(token)
                new_logprobs.append(float(torch.log(probs[token])))
            sequence = torch.cat([sequence, torch.tensor([[token]])], dim=1)
        prompt_ids.append(ids)
        completion_ids.append(new)
        logprobs.append(new_logprobs)
    model.train(was_training)
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs}


#: What each method's run writes: the controller's inputs and output (all-reduced or gathered).
LOGGED = {
    "amft": ("amft/mu", "amft/entropy", "amft/meta_gradient", "amft/entropy_slope", "amft/meta_term", "amft/entropy_term"),
    "gac": ("amft/mu", "gac/mu/raw", "gac/mu/sigma_s2", "gac/mu/sigma_r2", "gac/mu/delta_g2",
            "gac/informative_rollout_fraction"),
}


def fsdp_without_gpus() -> None:
    """Let an FSDP plugin shard the model on a machine without GPUs, where Accelerate would run plain DDP."""
    build_state = AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        build_state(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            # Later states copy the process state's type, so both say FSDP.
            PartialState._shared_state["distributed_type"] = self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin

    AcceleratorState.__init__ = init


#: each method's own settings, from the global batch and the meta step's direction
OWN_SETTINGS = {
    "amft": lambda batch, direction: dict(amft_warmup_steps=2, entropy_calibration_steps=2, meta_period=2,
                                          meta_batch_size=batch // 8, meta_normalization="cosine", meta_lr=0.05,
                                          entropy_lr=0.5, meta_direction=direction),
    "gac": lambda batch, direction: dict(gac_update_freq=1),
}


def main(
    output: str, per_device_batch: int, method: str = "amft", save: bool = False, accumulation: int = 1,
    meta_direction: str = "sgd",
) -> None:
    torch.set_num_threads(1)
    fsdp_without_gpus()
    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    args = AMFTConfig(
        output_dir=output + ".run", use_cpu=True, bf16=False, seed=0, max_steps=8, learning_rate=3e-3,
        per_device_train_batch_size=per_device_batch, num_generations=4, max_completion_length=MAX_NEW_TOKENS,
        logging_steps=1, report_to="none", save_strategy="steps" if save else "no", save_steps=2,
        gradient_checkpointing=False, disable_tqdm=True,
        ddp_find_unused_parameters=False, sft_batch_size=per_device_batch, loss_type="grpo", method=method,
        gradient_accumulation_steps=accumulation, **OWN_SETTINGS[method](per_device_batch * accumulation, meta_direction),
    )
    trainer = AMFTTrainer(
        model=model, reward_funcs=sum_reward, args=args, train_dataset=Dataset.from_list(PROMPTS),
        demo_dataset=DEMOS, meta_dataset=PROMPTS[:40], processing_class=tokenizer, rollout_func=seeded_rollouts,
    )
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(args.output_dir) if save else None)
    if trainer.accelerator.is_main_process:
        # The logged losses are each rank's own, so they are not compared.
        rows = [{key: row.get(key) for key in LOGGED[method]} for row in trainer.state.log_history if "amft/mu" in row]
        with open(output, "w") as handle:
            json.dump({
                "processes": trainer.accelerator.num_processes,
                "distributed_type": str(trainer.accelerator.distributed_type),
                "fsdp2_shards": all(isinstance(p, DTensor) for p in trainer.model.parameters()),
                "steps": rows,
            }, handle)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("per_device_batch", type=int)
    parser.add_argument("method", nargs="?", default="amft")
    parser.add_argument("--save", action="store_true")
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--meta_direction", default="sgd")
    options = parser.parse_args()
    main(options.output, options.per_device_batch, options.method, options.save, options.accumulation,
         options.meta_direction)
