"""AMFT on the toy sum task, for the two-process check in `test_distributed.py`.

    accelerate launch --multi_gpu --num_processes 2 tests/training/distributed_amft.py OUT.json 16 [METHOD]
    python tests/training/distributed_amft.py OUT.json 32 [METHOD]

METHOD is amft (the default) or gac, whose proxies are then measured on every step.

Completions come from a rollout function that samples every completion with its own generator,
seeded by (step, prompt, occurrence): the rollouts are then the same however the batch is split
over processes, and the controller's trajectory can be compared exactly.
"""

import json
import sys
import zlib

import torch
import torch.distributed as dist
from datasets import Dataset

from amft.models import build_tiny_model
from amft.training import AMFTConfig, AMFTTrainer

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
            new.append(token)
            new_logprobs.append(float(torch.log(probs[token])))
            if token == tokenizer.eos_token_id:
                break
            sequence = torch.cat([sequence, torch.tensor([[token]])], dim=1)
        prompt_ids.append(ids)
        completion_ids.append(new)
        logprobs.append(new_logprobs)
    model.train(was_training)
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs}


#: What each method's run writes: the controller's inputs and output (all-reduced or gathered).
LOGGED = {
    "amft": ("amft/mu", "amft/entropy", "amft/meta_gradient", "amft/entropy_slope"),
    "gac": ("amft/mu", "gac/mu/raw", "gac/mu/sigma_s2", "gac/mu/sigma_r2", "gac/mu/delta_g2",
            "gac/informative_rollout_fraction"),
}


def main(output: str, per_device_batch: int, method: str = "amft") -> None:
    torch.set_num_threads(1)
    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    args = AMFTConfig(
        output_dir=output + ".run", use_cpu=True, bf16=False, seed=0, max_steps=8, learning_rate=3e-3,
        per_device_train_batch_size=per_device_batch, num_generations=4, max_completion_length=MAX_NEW_TOKENS,
        logging_steps=1, report_to="none", save_strategy="no", gradient_checkpointing=False, disable_tqdm=True,
        ddp_find_unused_parameters=False, amft_warmup_steps=2, entropy_calibration_steps=2, meta_period=2,
        meta_batch_size=per_device_batch // 8, sft_batch_size=per_device_batch, meta_normalization="cosine",
        meta_lr=0.05, entropy_lr=0.5, loss_type="grpo", method=method, gac_update_freq=1,
    )
    trainer = AMFTTrainer(
        model=model, reward_funcs=sum_reward, args=args, train_dataset=Dataset.from_list(PROMPTS),
        demo_dataset=DEMOS, meta_dataset=PROMPTS[:40], processing_class=tokenizer, rollout_func=seeded_rollouts,
    )
    trainer.train()
    if trainer.accelerator.is_main_process:
        # The logged losses are each rank's own, so they are not compared.
        rows = [{key: row.get(key) for key in LOGGED[method]} for row in trainer.state.log_history if "amft/mu" in row]
        with open(output, "w") as handle:
            json.dump({"processes": trainer.accelerator.num_processes, "steps": rows}, handle)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
