"""Tiny from-scratch models with a local tokenizer or processor, and loading of any Hugging Face causal LM or VLM."""

from amft.models.loading import TINY_MODELS, TinyModelSpec, build_tiny_model, load_model
from amft.models.tokenizer import build_char_tokenizer
from amft.models.vision import IMAGE_TOKEN, TinyVisionSpec, build_vision_processor, is_vision_language

__all__ = [
    "IMAGE_TOKEN",
    "TINY_MODELS",
    "TinyModelSpec",
    "TinyVisionSpec",
    "build_char_tokenizer",
    "build_tiny_model",
    "build_vision_processor",
    "is_vision_language",
    "load_model",
]
