"""How fast a tiny model learns GeneralPoints-L by SFT, per compact completion format.

Plain SFT of tiny-gp from scratch (batch 64, AdamW, bf16 autocast, gradient clipping 1.0) for a
wall-clock budget; every `--eval-every` steps, greedy single-try success on the first
`--eval-episodes` episodes of `id` and `rl-only`. Run one format at a time, alone on the machine:

    python benchmarks/gp_completion_formats.py --format formula --demo-solution canonical --minutes 3.5
    python benchmarks/gp_completion_formats.py --format steps --demo-solution canonical --minutes 3.5

Each evaluation prints a JSON line; the last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from amft.algorithm import sft_loss, token_log_probs
from amft.evaluation.evaluate import evaluate
from amft.models import build_tiny_model
from amft.tasks import get_task
from amft.tasks.general_points.prompts import COMPLETION_FORMATS
from amft.training.data import RowStream, tokenize_demonstrations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=COMPLETION_FORMATS, default="formula")
    parser.add_argument("--demo-solution", choices=("random", "canonical"), default="canonical")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--minutes", type=float, default=3.5, help="training wall time, evaluations excluded")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    task = get_task("general-points", template="compact", completion_format=args.format,
                    demo_solution=args.demo_solution, revision_keep_last=0)
    stream = RowStream(task.demonstrations(30000, seed=0), args.batch_size, seed=0)
    model, tokenizer = build_tiny_model("tiny-gp")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.0)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)

    def success() -> dict[str, float]:
        with autocast:
            return {split: evaluate(model, tokenizer, task, split, max_attempts=1, temperature=0.0,
                                    max_new_tokens=120, limit=args.eval_episodes).success_rate
                    for split in ("id", "rl-only")}

    step, training_seconds, curve = 0, 0.0, []
    while training_seconds < args.minutes * 60:
        started = time.perf_counter()
        batch = tokenize_demonstrations(stream.next_batch(), tokenizer)
        input_ids = torch.cat([batch.prompt_ids, batch.completion_ids], dim=1)
        attention_mask = torch.cat([batch.prompt_mask, batch.completion_mask], dim=1)
        with autocast:
            logits = model(input_ids=input_ids, attention_mask=attention_mask,
                           logits_to_keep=batch.completion_ids.size(1) + 1).logits[:, :-1]
        loss = sft_loss(token_log_probs(logits, batch.completion_ids), batch.completion_mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        training_seconds += time.perf_counter() - started
        if step % args.eval_every == 0:
            point = {"step": step, "minutes": round(training_seconds / 60, 2), "loss": round(loss.item(), 3), **success()}
            curve.append(point)
            print(json.dumps(point), flush=True)
    final = {"step": step, "minutes": round(training_seconds / 60, 2), **success()}
    print(json.dumps({"format": args.format, "demo_solution": args.demo_solution,
                      "learning_rate": args.learning_rate, "final": final}))


if __name__ == "__main__":
    main()
