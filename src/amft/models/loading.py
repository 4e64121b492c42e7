"""Named tiny models built from a config, and loading of any Hugging Face causal LM or vision-language model.

`load_model("tiny-gp")` builds a randomly initialised Qwen2 of a few million parameters with
the character tokenizer, so everything runs offline on a CPU; `load_model("tiny-gp-vl")` puts a
small image encoder in front of it and returns its processor (see docs/design.md, 'The tiny
vision-language model'). Any other name is passed to `from_pretrained` (a Hub id or a local
folder), the path a GPU user takes: `AutoModelForImageTextToText` with its processor when the
config is a vision-language one, `AutoModelForCausalLM` with its tokenizer otherwise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2Config,
)

from amft.models.tokenizer import CHARACTERS, build_char_tokenizer
from amft.models.vision import (
    IMAGE_TOKEN,
    TinyVisionSpec,
    build_vision_processor,
    is_vision_language,
    vision_language_config,
)


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of a from-scratch Qwen2 model and, for a vision-language model, of its image encoder.

    Parameter counts are for the 99-token character vocabulary (100 with the image character).
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int = 1024
    vision: TinyVisionSpec | None = None
    #: transformers' attention kernels for this model: sdpa (transformers' default) unless eager
    #: measured faster on a CPU (docs/design.md, 'Attention kernels of the tiny models')
    attn_implementation: str = "sdpa"


TINY_MODELS: dict[str, TinyModelSpec] = {
    # ~0.09M parameters: for unit tests that only need something that trains.
    "tiny-test": TinyModelSpec(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                               attn_implementation="eager"),
    # ~1.8M parameters: the GeneralPoints demo model (see the README's measurements); eager attention is about a
    # quarter faster on GeneralPoints' short sequences and as fast on V-IRL's longer ones.
    "tiny-gp": TinyModelSpec(hidden_size=192, num_layers=4, num_heads=4, intermediate_size=512,
                             attn_implementation="eager"),
    # ~6.4M parameters: for longer tasks (navigation, math word problems).
    "tiny-6m": TinyModelSpec(hidden_size=320, num_layers=5, num_heads=5, intermediate_size=896),
    # ~0.13M parameters: tiny-test reading a 128x64 image, for unit tests of the image path.
    "tiny-test-vl": TinyModelSpec(
        hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
        vision=TinyVisionSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
        attn_implementation="eager",
    ),
    # ~2.2M parameters: the GP-VL model, tiny-gp reading the 128x64 card image as 32 patches.
    "tiny-gp-vl": TinyModelSpec(
        hidden_size=192, num_layers=4, num_heads=4, intermediate_size=512,
        vision=TinyVisionSpec(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=256),
        attn_implementation="eager",
    ),
}


def on_canvas(spec: TinyModelSpec, image_size: tuple[int, int]) -> TinyModelSpec:
    """The same tiny model with its image encoder (and so its processor) sized to the canvas ``(width, height)``."""
    if spec.vision is None:
        raise ValueError("a text model has no canvas")
    return replace(spec, vision=replace(spec.vision, image_size=image_size))


#: the canvas of V-IRL-VL's 2x2 street-view grid with compact prompts
VIRL_CANVAS = (128, 128)
# The V-IRL-VL models: the GP-VL ones reading the square street-view grid as 8x8 = 64 patches
# (~2.2M parameters: a longer position table in the ViT), with sdpa: on V-IRL-VL's sequences eager attention
# is slower.
TINY_MODELS["tiny-test-virl-vl"] = on_canvas(TINY_MODELS["tiny-test-vl"], VIRL_CANVAS)
TINY_MODELS["tiny-virl-vl"] = replace(on_canvas(TINY_MODELS["tiny-gp-vl"], VIRL_CANVAS), attn_implementation="sdpa")


#: the config key that names the tiny model a saved model was built as, so a reload keeps its settings
TINY_MODEL_KEY = "amft_tiny_model"


def build_tiny_model(
    name: str, seed: int = 0, attn_implementation: str | None = None, language_model: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | ProcessorMixin]:
    """A randomly initialised tiny model, seeded for reproducibility, with its character tokenizer,
    or for a vision-language one (an entry with ``vision``) a LLaVA with its processor.

    ``attn_implementation`` overrides the kernels its `TinyModelSpec` names. ``language_model``, for a
    vision-language one only, is the folder of a trained tiny text model of the same shape whose weights
    its decoder starts from, as real VLMs start from a pretrained LM (docs/design.md, 'The tiny
    vision-language model'); the image encoder, the projector and the image token's embedding stay random."""
    if name not in TINY_MODELS:
        raise ValueError(f"Unknown tiny model {name!r}; known: {', '.join(TINY_MODELS)}")
    spec = TINY_MODELS[name]
    if language_model is not None and spec.vision is None:
        raise ValueError(f"language_model_init starts a tiny vision-language model's decoder from a text model; "
                         f"{name!r} is a text model (train it from {language_model!r} with model_name_or_path instead)")
    tokenizer = build_char_tokenizer(CHARACTERS if spec.vision is None else CHARACTERS + IMAGE_TOKEN)
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
    auto_class, processing_class = AutoModelForCausalLM, tokenizer
    if spec.vision is not None:
        config = vision_language_config(config, spec.vision, tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
        auto_class, processing_class = AutoModelForImageTextToText, build_vision_processor(tokenizer, spec.vision)
    setattr(config, TINY_MODEL_KEY, name)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = auto_class.from_config(config, attn_implementation=attn_implementation or spec.attn_implementation)
    if language_model is not None:
        _start_decoder_from(model, tokenizer, language_model)
    _align_generation_config(model, tokenizer)
    return model, processing_class


_DECODER_SHAPE = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")


def _start_decoder_from(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str) -> None:
    """Copy a saved tiny text model's weights into the decoder of the tiny LLaVA ``model``.

    The LLaVA vocabulary is the text model's characters plus the image token, appended last, so the
    text model's embedding rows are the first rows of the LLaVA's; the image token's row keeps its
    random initialisation (its positions are replaced by image features anyway)."""
    text_model, text_tokenizer = load_model(path, dtype=torch.float32)
    if is_vision_language(text_model.config):
        raise ValueError(f"language_model_init {path!r} is a vision-language model; it needs a text model")
    mismatched = [key for key in _DECODER_SHAPE
                  if getattr(text_model.config, key) != getattr(model.config.text_config, key)]
    if mismatched:
        raise ValueError(f"language_model_init {path!r} has another shape than the decoder of "
                         f"{getattr(model.config, TINY_MODEL_KEY)}: " + ", ".join(
                             f"{key} {getattr(text_model.config, key)} != {getattr(model.config.text_config, key)}"
                             for key in mismatched))
    vocabulary = tokenizer.get_vocab()
    image_token_id = vocabulary.pop(IMAGE_TOKEN)
    if vocabulary != text_tokenizer.get_vocab() or image_token_id != len(vocabulary):
        raise ValueError(f"language_model_init {path!r}: its tokenizer is not the character tokenizer "
                         f"of the tiny models, so its embeddings cannot be reused")
    weights = text_model.model.state_dict()
    embeddings = model.model.language_model.embed_tokens.weight.detach().clone()
    embeddings[: len(vocabulary)] = weights["embed_tokens.weight"]
    weights["embed_tokens.weight"] = embeddings
    model.model.language_model.load_state_dict(weights)


def load_model(
    name_or_path: str,
    seed: int = 0,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
    language_model: str | None = None,
    trust_remote_code: bool = False,
    init_kwargs: Mapping[str, Any] | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | ProcessorMixin]:
    """A named tiny model (built fresh), or any model from the Hub or a local folder: a vision-language
    one with its processor, a causal LM with its tokenizer. ``language_model`` starts a tiny
    vision-language model's decoder from a trained tiny text model (see `build_tiny_model`).

    Weights load through `from_pretrained`, which reads safetensors and never unpickles code.
    ``attn_implementation`` is transformers' (``"eager"``, ``"sdpa"``, ...); by default a tiny model,
    built fresh or saved from one, gets those its `TinyModelSpec` names, any other model transformers' choice.
    ``trust_remote_code`` and ``init_kwargs`` (TRL's `model_init_kwargs`: ``dtype``, ``device_map``,
    ``revision``, ...) go to every `from_pretrained` call, as TRL passes them.
    """
    if name_or_path in TINY_MODELS:
        if trust_remote_code or init_kwargs:
            raise ValueError(f"{name_or_path} is built here from its config: trust_remote_code and model_init_kwargs "
                             "apply to a model loaded from the Hub or a folder")
        model, processing_class = build_tiny_model(name_or_path, seed=seed, attn_implementation=attn_implementation,
                                                   language_model=language_model)
        if dtype not in (None, "auto"):  # "auto", as for a saved model: the dtype it was built in
            model = model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
        return model, processing_class
    if language_model is not None:
        raise ValueError(f"language_model_init applies to a tiny vision-language model built fresh "
                         f"(tiny-gp-vl, tiny-virl-vl, ...), not to {name_or_path!r}, whose weights are loaded whole")
    init_kwargs = dict(init_kwargs or {})
    for name, value in (("dtype", dtype), ("attn_implementation", attn_implementation)):
        if value is not None and name in init_kwargs:
            raise ValueError(f"{name} is given twice, as an option and in model_init_kwargs: give it once")
    remote = {"trust_remote_code": trust_remote_code}
    revision = {"revision": init_kwargs["revision"]} if "revision" in init_kwargs else {}
    config = AutoConfig.from_pretrained(name_or_path, **remote, **revision)
    built_as = getattr(config, TINY_MODEL_KEY, None)
    if attn_implementation is None and built_as in TINY_MODELS:
        attn_implementation = TINY_MODELS[built_as].attn_implementation
    options = {"dtype": dtype or "auto", "attn_implementation": attn_implementation, **init_kwargs, **remote}
    if is_vision_language(config):
        processor = AutoProcessor.from_pretrained(name_or_path, **remote, **revision)
        model = AutoModelForImageTextToText.from_pretrained(name_or_path, **options)
        tokenizer, processing_class = processor.tokenizer, processor
    else:
        tokenizer = processing_class = load_tokenizer(name_or_path, **remote, **revision)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **options)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    _align_generation_config(model, tokenizer)
    return model, processing_class


# Tokenizers saved as a plain `tokenizer.json` pipeline (the character tokenizer) record these classes.
_PLAIN_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(name_or_path: str, **hub_options: Any) -> PreTrainedTokenizerBase:
    """The tokenizer of a Hub id or local folder.

    A folder whose tokenizer was saved as a plain `tokenizer.json` pipeline loads exactly that
    pipeline: `AutoTokenizer` would pick the class of the model type (Qwen2's for a tiny
    Qwen2) and rebuild that class's own pre-tokenizer, which drops the spaces of our prompts.
    ``hub_options`` (``trust_remote_code``, ``revision``) go to `from_pretrained`.
    """
    config_path = os.path.join(name_or_path, "tokenizer_config.json")
    if os.path.isfile(config_path):
        with open(config_path) as handle:
            if json.load(handle).get("tokenizer_class") in _PLAIN_TOKENIZER_CLASSES:
                return PreTrainedTokenizerFast.from_pretrained(name_or_path, **hub_options)
    return AutoTokenizer.from_pretrained(name_or_path, **hub_options)


def _align_generation_config(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    # Generation stops and pads with the tokenizer's ids; a mismatch makes sampled completions run to max length.
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    image_token_id = getattr(model.config, "image_token_id", None)
    if image_token_id is not None:
        # A sampled image token has no image features to take its place; TRL's GRPO suppresses it the same way.
        suppressed = set(model.generation_config.suppress_tokens or [])
        model.generation_config.suppress_tokens = sorted(suppressed | {image_token_id})
