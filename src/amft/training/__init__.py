"""The training engine: `AMFTConfig` and `AMFTTrainer` on TRL's GRPO."""

from amft.training.config import AMFTConfig
from amft.training.trainer import AMFTTrainer, controller_from_config

__all__ = ["AMFTConfig", "AMFTTrainer", "controller_from_config"]
