"""Benchmark evaluation by independent samples: k completions per problem, scored by the task's
verifier, reported as avg@k (mean accuracy over all samples) and pass@k (share of problems
with at least one correct sample). Generation runs through vLLM when asked and installed,
else through `generate` of the Hugging Face model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils.logging import tqdm

from amft.evaluation.evaluate import generate_texts
from amft.tasks.base import Task, prompt_text

__all__ = ["SampledResult", "evaluate_samples", "sample_metrics", "vllm_generate"]


@dataclass
class SampledResult:
    """avg@k and pass@k of one split, with every problem's samples."""

    split: str
    problems: int
    samples: int
    temperature: float
    avg_at_k: float
    pass_at_k: float
    correct: list[list[bool]] = field(default_factory=list, repr=False)
    completions: list[list[str]] = field(default_factory=list, repr=False)

    @property
    def success_rate(self) -> float:
        return self.avg_at_k

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("correct", "completions")}

    def details(self) -> list[dict[str, Any]]:
        """Every problem's samples and verdicts, JSON-ready."""
        return [{"index": i, "correct": c, "completions": texts}
                for i, (c, texts) in enumerate(zip(self.correct, self.completions))]

    def display_row(self) -> dict[str, str]:
        """Column -> formatted value, for tables (k is a column: splits of one table may differ in it)."""
        return {
            "avg@k": f"{self.avg_at_k:.1%}",
            "pass@k": f"{self.pass_at_k:.1%}",
            "k": str(self.samples),
            "problems": str(self.problems),
        }


def vllm_generate(model_path: str, prompts: list[str], *, samples: int, temperature: float, max_new_tokens: int,
                  seed: int, progress: bool = True) -> list[list[str]]:
    """``samples`` completions per prompt from vLLM (the `vllm` extra), with vLLM's progress bar."""
    try:
        from vllm import LLM, SamplingParams
    except ImportError as error:
        raise ImportError("generation with vLLM needs the vllm package: pip install 'amft[vllm]'") from error
    llm = LLM(model=model_path, seed=seed)
    params = SamplingParams(n=samples, temperature=temperature, max_tokens=max_new_tokens, seed=seed)
    return [[choice.text for choice in output.outputs] for output in llm.generate(prompts, params, use_tqdm=progress)]


def evaluate_samples(
    model: PreTrainedModel | str,
    tokenizer: PreTrainedTokenizerBase,
    task: Task,
    split: str,
    *,
    samples: int = 1,
    temperature: float = 0.6,
    max_new_tokens: int = 1024,
    seed: int = 0,
    limit: int | None = None,
    use_vllm: bool = False,
    batch_size: int = 256,
    progress: bool = True,
) -> SampledResult:
    """k = ``samples`` x ``task.eval_repeats(split)`` completions per problem of ``split`` (a file that
    lists each problem several times asks for that many samples). With ``use_vllm``, ``model`` is the
    model's path; otherwise a loaded model. ``progress`` shows a bar of the completions generated."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    rows = task.eval_episodes(split)[:limit]
    samples *= task.eval_repeats(split)
    prompts = [prompt_text(row["prompt"], tokenizer) for row in rows]
    if use_vllm:
        if not isinstance(model, str):
            raise ValueError("vLLM generation needs the model's path, not a loaded model")
        grouped = vllm_generate(model, prompts, samples=samples, temperature=temperature,
                                max_new_tokens=max_new_tokens, seed=seed, progress=progress)
    else:
        was_training = model.training
        model.eval()
        bar = tqdm(total=len(rows) * samples, desc=f"sampling {split}", unit="completion", leave=False,
                   disable=not progress)
        with bar, torch.random.fork_rng():
            torch.manual_seed(seed)
            flat = generate_texts(model, tokenizer, [p for p in prompts for _ in range(samples)],
                                  max_new_tokens=max_new_tokens, temperature=temperature, batch_size=batch_size,
                                  on_batch=bar.update)
        model.train(was_training)
        grouped = [flat[i * samples : (i + 1) * samples] for i in range(len(rows))]
    correct = [[task.verify(row, text).success for text in texts] for row, texts in zip(rows, grouped)]
    avg_at_k, pass_at_k = sample_metrics(correct)
    return SampledResult(
        split=split, problems=len(rows), samples=samples, temperature=temperature, avg_at_k=avg_at_k,
        pass_at_k=pass_at_k, correct=correct, completions=grouped,
    )


def sample_metrics(correct: list[list[bool]]) -> tuple[float, float]:
    """(avg@k, pass@k) of k verdicts per problem: mean accuracy over all samples, and the share of
    problems with at least one correct sample (0 for no problems)."""
    if not correct:
        return 0.0, 0.0
    avg = sum(sum(c) / len(c) for c in correct) / len(correct)
    return avg, sum(any(c) for c in correct) / len(correct)
