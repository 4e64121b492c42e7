"""Named tiny models built from a config, and loading of any Hugging Face causal LM.

`load_model("tiny-gp")` builds a randomly initialised Qwen2 of a few million parameters with
the character tokenizer, so everything runs offline on a CPU; any other name is passed to
`AutoModelForCausalLM.from_pretrained` (a Hub id or a local folder), the path a GPU user takes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

from amft.models.tokenizer import build_char_tokenizer


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of a from-scratch Qwen2 model; parameter counts are for the 99-token character vocabulary."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int = 1024


TINY_MODELS: dict[str, TinyModelSpec] = {
    # ~0.09M parameters: for unit tests that only need something that trains.
    "tiny-test": TinyModelSpec(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128),
    # ~1.8M parameters: the GeneralPoints demo model (see the README's measurements).
    "tiny-gp": TinyModelSpec(hidden_size=192, num_layers=4, num_heads=4, intermediate_size=512),
    # ~6.4M parameters: for longer tasks (navigation, math word problems).
    "tiny-6m": TinyModelSpec(hidden_size=320, num_layers=5, num_heads=5, intermediate_size=896),
}


def build_tiny_model(name: str, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A randomly initialised tiny Qwen2 and the character tokenizer, seeded for reproducibility."""
    if name not in TINY_MODELS:
        raise ValueError(f"Unknown tiny model {name!r}; known: {', '.join(TINY_MODELS)}")
    spec = TINY_MODELS[name]
    tokenizer = build_char_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    _align_generation_config(model, tokenizer)
    return model, tokenizer


def load_model(
    name_or_path: str, seed: int = 0, dtype: str | torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A named tiny model (built fresh) or any causal LM from the Hub or a local folder.

    Weights load through `from_pretrained`, which reads safetensors and never unpickles code.
    """
    if name_or_path in TINY_MODELS:
        return build_tiny_model(name_or_path, seed=seed)
    tokenizer = load_tokenizer(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype or "auto")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    _align_generation_config(model, tokenizer)
    return model, tokenizer


# Tokenizers saved as a plain `tokenizer.json` pipeline (the character tokenizer) record these classes.
_PLAIN_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a Hub id or local folder.

    A folder whose tokenizer was saved as a plain `tokenizer.json` pipeline loads exactly that
    pipeline: `AutoTokenizer` would pick the class of the model type (Qwen2's for a tiny
    Qwen2) and rebuild that class's own pre-tokenizer, which drops the spaces of our prompts.
    """
    config_path = os.path.join(name_or_path, "tokenizer_config.json")
    if os.path.isfile(config_path):
        with open(config_path) as handle:
            if json.load(handle).get("tokenizer_class") in _PLAIN_TOKENIZER_CLASSES:
                return PreTrainedTokenizerFast.from_pretrained(name_or_path)
    return AutoTokenizer.from_pretrained(name_or_path)


def _align_generation_config(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    # Generation stops and pads with the tokenizer's ids; a mismatch makes sampled completions run to max length.
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
