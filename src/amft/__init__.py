"""amft: adaptive meta fine-tuning (SFT + RL with a learned balance) on TRL."""
__version__ = "0.1.0"
