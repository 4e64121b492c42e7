"""Evaluation of a model on a task split: every episode runs in its environment, with the
verifier's feedback fed back for up to `max_attempts` model calls (sequential revision); all
episodes advance together, one batched `generate` call per round. A task that shows images is
read by a vision-language model: each episode's conversation goes through the processor's chat
template with the episode's images."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin
from transformers.utils.logging import tqdm

from amft.tasks.base import Task, Verification


@dataclass
class EpisodeRecord:
    """One episode: its model calls (``attempts``), their rewards and texts, the calls the environment
    evaluated and found correct, and whether a limit cut it short."""

    index: int
    success: bool
    attempts: int
    rewards: list[float]
    completions: list[str]
    correct_calls: int = 0
    evaluated_calls: int = 0
    truncated: bool = False
    #: the task's own measures over this episode's answers (``Task.eval_metrics``)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class SplitResult:
    """Success within the attempt budget, success at the first attempt, and every episode."""

    split: str
    episodes: int
    success_rate: float
    first_attempt_success_rate: float
    mean_attempts: float
    max_attempts: int
    temperature: float
    #: correct answers over evaluated model calls (a call refused for exceeding the tries is not evaluated)
    call_accuracy: float = 0.0
    #: the environment's ``episodic``: episodes span several decisions and the environment decides
    #: success (navigation), rather than ending at the first verified answer
    episodic: bool = False
    #: the task's own measures over all answers of the split (``Task.eval_metrics``), e.g. GP-VL's
    #: ``recognition_accuracy``
    metrics: dict[str, float] = field(default_factory=dict)
    records: list[EpisodeRecord] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """The split's numbers, the task's own measures among them."""
        return {**{k: v for k, v in asdict(self).items() if k not in ("records", "metrics")}, **self.metrics}

    def details(self) -> list[dict[str, Any]]:
        """Every episode, JSON-ready."""
        return [asdict(record) for record in self.records]

    def display_row(self) -> dict[str, str]:
        """Column -> formatted value, for tables."""
        if self.episodic:
            row = {
                "episode success": f"{self.success_rate:.1%}",
                "mean model calls": f"{self.mean_attempts:.1f}",
                "per-call accuracy": f"{self.call_accuracy:.1%}",
            }
        else:
            row = {
                f"success within {self.max_attempts} tries": f"{self.success_rate:.1%}",
                "first-try success": f"{self.first_attempt_success_rate:.1%}",
                "mean tries": f"{self.mean_attempts:.2f}",
                "per-call accuracy": f"{self.call_accuracy:.1%}",
            }
        row.update({name.replace("_", " "): f"{value:.1%}" for name, value in self.metrics.items()})
        return {**row, "episodes": str(self.episodes)}


@torch.no_grad()
def generate_texts(
    model: PreTrainedModel,
    processing_class: PreTrainedTokenizerBase | ProcessorMixin,
    prompts: list[str],
    *,
    max_new_tokens: int,
    temperature: float,
    images: list[list[Any]] | None = None,
    batch_size: int = 256,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Complete each prompt (left-padded batches); temperature 0 means greedy decoding.
    With ``images`` (each prompt's images, in the order of its image tokens), ``processing_class``
    is a vision-language model's processor and encodes each prompt with its images.
    ``on_batch(n)`` is called after each batch with the number of prompts it completed."""
    if images is not None and not isinstance(processing_class, ProcessorMixin):
        raise ValueError(f"prompts with images need a vision-language model's processor, got a "
                         f"{type(processing_class).__name__}")
    tokenizer = processing_class.tokenizer if isinstance(processing_class, ProcessorMixin) else processing_class
    outputs: list[str] = []
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            if images is None:
                encoded = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            else:
                encoded = processing_class(text=chunk, images=images[start : start + batch_size], return_tensors="pt",
                                           padding=True, add_special_tokens=False)
                encoded = encoded.to(model.device, dtype=model.dtype)  # casts the image inputs only
            sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else {"do_sample": False}
            generated = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **sampling,
            )
            new_tokens = generated[:, encoded["input_ids"].size(1) :]
            outputs.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
            if on_batch is not None:
                on_batch(len(chunk))
    finally:
        tokenizer.padding_side = previous_side
    return outputs


def evaluate(
    model: PreTrainedModel,
    processing_class: PreTrainedTokenizerBase | ProcessorMixin,
    task: Task,
    split: str,
    *,
    max_attempts: int = 5,
    temperature: float = 0.6,
    max_new_tokens: int = 96,
    batch_size: int = 256,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
) -> SplitResult:
    """Run every episode of `split` with a budget of `max_attempts` model calls each (1 = single turn).

    Each environment ends its episode: at the first verified success, when the budget is spent, or
    earlier by the task's own rules (see :class:`~amft.tasks.base.Env`); ``info["is_success"]``
    says whether it was solved. A task that shows images (``task.image_prompts``) needs a
    vision-language model's processor as ``processing_class``: each call reads the episode's
    conversation so far (``env.messages()``) through its chat template, with the episode's images
    (``env.images``). ``progress`` shows a bar of finished episodes.
    """
    if task.image_prompts and not isinstance(processing_class, ProcessorMixin):
        raise ValueError(f"task {task.name} shows images: evaluate it with a vision-language model and its processor, "
                         f"not with a {type(processing_class).__name__}")
    rows = task.eval_episodes(split)
    if limit is not None:
        rows = rows[:limit]
    envs = [task.make_env(row, max_attempts=max_attempts) for row in rows]
    observations = [env.reset()[0] for env in envs]
    records = [EpisodeRecord(i, False, 0, [], []) for i in range(len(rows))]
    verdicts: list[list[Verification | None]] = [[] for _ in rows]
    active = list(range(len(rows)))
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(rows), desc=f"evaluating {split}", unit="episode", leave=False, disable=not progress)
    with bar, torch.random.fork_rng():
        torch.manual_seed(seed)
        rounds = 0
        while active:
            rounds += 1
            if task.image_prompts:
                prompts = [processing_class.apply_chat_template(envs[i].messages(), tokenize=False,
                                                                add_generation_prompt=True) for i in active]
                images = [list(envs[i].images) for i in active]
            else:
                prompts, images = [observations[i] for i in active], None
            texts = generate_texts(
                model,
                processing_class,
                prompts,
                images=images,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                batch_size=batch_size,
            )
            still_active = []
            for i, text in zip(active, texts):
                observation, reward, terminated, truncated, info = envs[i].step(text)
                record = records[i]
                record.attempts += 1
                record.rewards.append(reward)
                record.completions.append(text)
                verification = info["verification"]
                verdicts[i].append(verification)
                if verification is not None:
                    record.evaluated_calls += 1
                    record.correct_calls += int(verification.success)
                record.truncated = truncated
                record.success = info["is_success"]
                observations[i] = observation
                if not (terminated or truncated):
                    still_active.append(i)
            bar.update(len(active) - len(still_active))
            bar.set_postfix(round=rounds, solved=sum(r.success for r in records))
            active = still_active
    model.train(was_training)
    for record, episode_verdicts in zip(records, verdicts):
        record.metrics = task.eval_metrics(episode_verdicts)
    count = max(len(records), 1)
    return SplitResult(
        split=split,
        episodes=len(records),
        success_rate=sum(r.success for r in records) / count,
        # The environment ends an episode at its first success, so one attempt + success = first-try success.
        first_attempt_success_rate=sum(r.success and r.attempts == 1 for r in records) / count,
        mean_attempts=sum(r.attempts for r in records) / count,
        call_accuracy=sum(r.correct_calls for r in records) / max(sum(r.evaluated_calls for r in records), 1),
        max_attempts=max_attempts,
        temperature=temperature,
        episodic=any(env.episodic for env in envs),
        metrics=task.eval_metrics([v for episode in verdicts for v in episode]),
        records=records,
    )
