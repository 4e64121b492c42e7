"""Each rollout group's prompt is prefilled once and the tokens sampled are those of plain `generate`."""

import pytest
import torch

from amft.models import build_tiny_model
from amft.training.generation import generate_with_shared_prefill, shared_prefill


def left_padded(tokenizer, prompts, group):
    batch = tokenizer([p for p in prompts for _ in range(group)], padding=True, padding_side="left",
                      return_tensors="pt", add_special_tokens=False)
    return batch["input_ids"], batch["attention_mask"]


@pytest.mark.parametrize("group", [1, 4])
def test_shared_prefill_samples_the_tokens_of_plain_generate(group):
    torch.set_num_threads(1)
    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    model.eval()
    input_ids, attention_mask = left_padded(tokenizer, ["12+3=", "7*8-1=", "4="], group)
    settings = dict(do_sample=True, max_new_tokens=12, temperature=1.0, top_k=0, top_p=1.0,
                    pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    plain = model.generate(input_ids=input_ids, attention_mask=attention_mask, **settings)
    torch.manual_seed(0)
    shared = generate_with_shared_prefill(model, input_ids, attention_mask, group=group, **settings)
    assert torch.equal(plain, shared)
    assert len({tuple(row) for row in plain[:, input_ids.size(1):].tolist()}) >= 3  # sampled, not one answer a prompt


def test_rows_not_in_blocks_are_generated_as_they_are():
    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    model.eval()
    input_ids, attention_mask = left_padded(tokenizer, ["12+3=", "7*8-1="], 2)
    input_ids, attention_mask = input_ids[[0, 2, 1, 3]], attention_mask[[0, 2, 1, 3]]  # blocks broken
    settings = dict(do_sample=True, max_new_tokens=6, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(1)
    plain = model.generate(input_ids=input_ids, attention_mask=attention_mask, **settings)
    torch.manual_seed(1)
    with shared_prefill(model, group=2):
        shared = model.generate(input_ids=input_ids, attention_mask=attention_mask, **settings)
    assert torch.equal(plain, shared) and "generate" not in vars(model)
