"""Generation of rollout groups with each prompt prefilled once (see docs/design.md, 'Faster generation').

TRL's transformers path hands `generate` every prompt `num_generations` times, and `generate` prefills each copy.
Here each block of identical rows is prefilled once, its key/value cache repeated for the block, and
transformers' own `generate` samples on from there: the same sampler, the same random draws, so the same tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import MethodType

import torch
from transformers import DynamicCache, PreTrainedModel


def generate_with_shared_prefill(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, group: int, **kwargs
) -> torch.Tensor:
    """`model.generate` for left-padded rows that come in blocks of `group` identical prompts: each block's
    prompt (all but its last token) is run once into a cache, which is repeated for the block before
    `generate` continues. Rows that do not come in such blocks are generated as they are."""
    plain = type(model).generate
    firsts, first_mask = input_ids[::group], attention_mask[::group]
    same_blocks = input_ids.size(0) % group == 0 and torch.equal(input_ids, firsts.repeat_interleave(group, dim=0)) \
        and torch.equal(attention_mask, first_mask.repeat_interleave(group, dim=0))
    if not same_blocks or input_ids.size(1) < 2:
        return plain(model, input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    # Positions as `generate` counts them for left padding.
    positions = (first_mask.cumsum(-1) - 1).masked_fill(first_mask == 0, 0)
    cache = DynamicCache(config=model.config)
    model(input_ids=firsts[:, :-1], attention_mask=first_mask[:, :-1], position_ids=positions[:, :-1], cache=cache,
          use_cache=True, logits_to_keep=1)
    cache.batch_repeat_interleave(group)
    return plain(model, input_ids=input_ids, attention_mask=attention_mask, cache=cache, **kwargs)


@contextmanager
def shared_prefill(model: PreTrainedModel, group: int) -> Iterator[None]:
    """Within the block, `model.generate` prefills each block of `group` identical prompts once."""
    def generate(self, input_ids=None, attention_mask=None, **kwargs):
        return generate_with_shared_prefill(self, input_ids, attention_mask, group=group, **kwargs)

    model.generate = MethodType(generate, model)
    try:
        yield
    finally:
        del model.generate
