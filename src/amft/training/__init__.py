"""The training engine: `AMFTConfig`, `AMFTTrainer` on TRL's GRPO, and the table of methods."""

from amft.training.config import AMFTConfig
from amft.training.methods import METHODS, Method, get_method
from amft.training.trainer import AMFTTrainer

__all__ = ["AMFTConfig", "AMFTTrainer", "METHODS", "Method", "get_method"]
