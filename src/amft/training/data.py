"""Row streams and tokenisation for the trainer's side streams (demonstrations, validation prompts).

TRL's dataloader feeds the RL prompts, in the order of `EpochRepeatSampler`; the SFT and
validation streams are drawn here, with their position in the data kept in `state_dict()` so a
resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase, ProcessorMixin
from trl.trainer.utils import RepeatSampler

from amft.tasks.base import completion_text, prompt_text


class EpochRepeatSampler(RepeatSampler):
    """TRL's sampler of RL prompts, whose order is a function of the epoch.

    TRL's draws each epoch's permutation from one seeded generator, so a process resumed in epoch e
    would walk epoch 0's order again. Here the Trainer's ``set_epoch(e)`` (called at the start of
    every epoch, a resumed one included) sets the generator to where an uninterrupted run has it at
    that epoch: reseeded and past e permutations. An uninterrupted run keeps TRL's order exactly.
    """

    def set_epoch(self, epoch: int) -> None:
        if not self.shuffle:
            return
        if self.seed is None:
            raise ValueError("EpochRepeatSampler needs a seed to place an epoch's order")
        self.generator.manual_seed(self.seed)
        for _ in range(epoch):
            torch.randperm(self.num_samples, generator=self.generator)


class RowStream:
    """An endless, seeded stream of batches over rows: a fresh permutation every epoch.

    The permutation of epoch e depends only on (seed, e), so the stream's state is three integers.
    With several processes, every process walks the same permutation and takes its share of each
    global batch of ``batch_size * num_processes`` rows (rows ``process_index::num_processes``),
    so together they see what one process with the global batch size would.
    """

    def __init__(
        self, rows: Sequence[dict[str, Any]], batch_size: int, seed: int, process_index: int = 0, num_processes: int = 1
    ) -> None:
        if len(rows) == 0:
            raise ValueError("RowStream needs at least one row")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= process_index < num_processes:
            raise ValueError(f"need 0 <= process_index < num_processes, got {process_index}, {num_processes}")
        self.rows = rows
        self.batch_size = batch_size
        self.process_index = process_index
        self.num_processes = num_processes
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.rows), generator=generator).tolist()

    def next_batch(self) -> list[dict[str, Any]]:
        batch = []
        while len(batch) < self.batch_size * self.num_processes:
            if self.position == len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._permutation(self.epoch)
            batch.append(self.rows[self._order[self.position]])
            self.position += 1
        return batch[self.process_index :: self.num_processes]

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self._order = self._permutation(self.epoch)


#: What a vision-language model's forward takes beside the tokens, as TRL's rollouts hold it (for the whole
#: batch: the trainer forwards whole micro-batches, so per-patch or per-tile tensors need no slicing).
IMAGE_INPUT_KEYS = (
    "pixel_values", "image_grid_thw", "pixel_attention_mask", "spatial_shapes", "image_sizes", "token_type_ids",
    "mm_token_type_ids", "image_position_ids",
)
#: Image inputs that run along the prompt and completion tokens.
TOKEN_TYPE_KEYS = ("token_type_ids", "mm_token_type_ids")


@dataclass
class CompletionBatch:
    """Prompt tokens (left-padded) followed by completion tokens (right-padded), as TRL lays out rollouts, and a
    vision-language model's image inputs (empty for text)."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    image_inputs: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> CompletionBatch:
        tokens = (t.to(device) for t in (self.prompt_ids, self.prompt_mask, self.completion_ids, self.completion_mask))
        images = {key: value.to(device) if isinstance(value, torch.Tensor) else value
                  for key, value in self.image_inputs.items()}
        return CompletionBatch(*tokens, images)


def tokenize_demonstrations(
    rows: Sequence[dict[str, Any]],
    processing_class: PreTrainedTokenizerBase | ProcessorMixin,
    max_prompt_length: int | None = None,
    max_completion_length: int | None = None,
) -> CompletionBatch:
    """Tokenise (prompt, completion) rows; the completion ends with EOS so the model learns to stop.

    Long prompts keep their end (the question is at the end of a chat prompt); long completions
    are cut at the end. Chat prompts (message lists) go through the chat template, as TRL renders
    them for generation; a chat completion contributes its message's text. Rows with `images`
    (a vision-language model's processor) are encoded by the processor, which expands each image's
    tokens; such a prompt is never cut (its image tokens must match its image) but refused when
    longer than `max_prompt_length`.
    """
    if any(row.get("images") for row in rows):
        return _tokenize_image_demonstrations(rows, processing_class, max_prompt_length, max_completion_length)
    tokenizer = processing_class
    prompts = [tokenizer(prompt_text(row["prompt"], tokenizer), add_special_tokens=False)["input_ids"] for row in rows]
    completions = _completion_tokens(rows, tokenizer, max_completion_length)
    if max_prompt_length is not None:
        prompts = [ids[-max_prompt_length:] for ids in prompts]
    pad_id = tokenizer.pad_token_id
    prompt_len = max(len(ids) for ids in prompts)
    prompt_ids = torch.tensor([[pad_id] * (prompt_len - len(ids)) + ids for ids in prompts])
    prompt_mask = torch.tensor([[0] * (prompt_len - len(ids)) + [1] * len(ids) for ids in prompts])
    return CompletionBatch(prompt_ids, prompt_mask, *_right_padded(completions, pad_id))


def _tokenize_image_demonstrations(
    rows: Sequence[dict[str, Any]], processor: ProcessorMixin, max_prompt_length: int | None,
    max_completion_length: int | None,
) -> CompletionBatch:
    if not isinstance(processor, ProcessorMixin):
        raise ValueError("demonstrations with images need a vision-language model's processor, not a tokenizer")
    if not all(row.get("images") for row in rows):
        raise ValueError("a demonstration batch mixes rows with and without images")
    encoded = dict(processor(
        images=[row["images"] for row in rows], text=[prompt_text(row["prompt"], processor) for row in rows],
        padding=True, padding_side="left", return_tensors="pt",
    ))
    prompt_ids, prompt_mask = encoded.pop("input_ids"), encoded.pop("attention_mask")
    longest = int(prompt_mask.sum(dim=1).max())
    if max_prompt_length is not None and longest > max_prompt_length:
        raise ValueError(f"a demonstration prompt with its image tokens is {longest} tokens, over "
                         f"max_demo_prompt_length={max_prompt_length}; image prompts are not cut")
    tokenizer = processor.tokenizer
    completion_ids, completion_mask = _right_padded(
        _completion_tokens(rows, tokenizer, max_completion_length), tokenizer.pad_token_id
    )
    for key in TOKEN_TYPE_KEYS:  # the completion's tokens are text
        if key in encoded:
            encoded[key] = torch.cat([encoded[key], encoded[key].new_zeros(completion_ids.shape)], dim=1)
    return CompletionBatch(prompt_ids, prompt_mask, completion_ids, completion_mask, encoded)


def _completion_tokens(
    rows: Sequence[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, max_completion_length: int | None
) -> list[list[int]]:
    completions = [
        tokenizer(completion_text(row["completion"]), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for row in rows
    ]
    if max_completion_length is not None:
        completions = [ids[:max_completion_length] for ids in completions]
    return completions


def _right_padded(completions: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in completions)
    completion_ids = torch.tensor([ids + [pad_id] * (width - len(ids)) for ids in completions])
    completion_mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in completions])
    return completion_ids, completion_mask


# Per-token tensors of TRL's rollout dict that line up with `completion_ids`.
PER_TOKEN_KEYS = ("completion_ids", "completion_mask", "old_per_token_logps", "sampling_per_token_logps")


def replace_completions(
    rollouts: dict[str, Any], rows: Sequence[int], token_ids: Sequence[Sequence[int]], pad_id: int
) -> dict[str, Any]:
    """A copy of TRL's rollout dict in which completion row ``rows[k]`` becomes ``token_ids[k]``.

    The per-token tensors are widened with padding when a new completion is longer than the
    batch's. Per-token log-probabilities of a replaced row are zeroed: they belong to the
    sampled completion it replaces, and the losses that read them ignore off-policy rows.
    """
    if len(rows) != len(token_ids):
        raise ValueError(f"{len(rows)} rows but {len(token_ids)} completions")
    out = dict(rollouts)
    width = max([out["completion_ids"].size(1), *(len(ids) for ids in token_ids)])
    for key in PER_TOKEN_KEYS:
        if out.get(key) is None:
            continue
        tensor = out[key]
        fill = pad_id if key == "completion_ids" else 0
        if tensor.size(1) < width:
            padding = tensor.new_full((tensor.size(0), width - tensor.size(1)), fill)
            tensor = torch.cat([tensor, padding], dim=1)
        else:
            tensor = tensor.clone()
        for row, ids in zip(rows, token_ids):
            tensor[row] = fill
            if key == "completion_ids":
                tensor[row, : len(ids)] = torch.tensor(ids, dtype=tensor.dtype, device=tensor.device)
            elif key == "completion_mask":
                tensor[row, : len(ids)] = 1
        out[key] = tensor
    for key in TOKEN_TYPE_KEYS:  # they run along prompt + completion: a widened completion is text
        if out.get(key) is not None and width > rollouts["completion_ids"].size(1):
            tensor = out[key]
            out[key] = torch.cat([tensor, tensor.new_zeros((tensor.size(0), width - rollouts["completion_ids"].size(1)))], dim=1)
    return out
