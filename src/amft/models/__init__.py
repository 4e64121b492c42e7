"""Tiny from-scratch models with a local tokenizer, and loading of any Hugging Face causal LM."""

from amft.models.loading import TINY_MODELS, TinyModelSpec, build_tiny_model, load_model
from amft.models.tokenizer import build_char_tokenizer

__all__ = ["TINY_MODELS", "TinyModelSpec", "build_char_tokenizer", "build_tiny_model", "load_model"]
