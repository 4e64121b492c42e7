"""Reading a tiny AMFTTrainer from the outside, for the training tests."""

from __future__ import annotations


def series(trainer, key: str) -> list:
    """The logged values of ``key``, in step order."""
    return [row[key] for row in trainer.state.log_history if key in row]


def first_rollouts(trainer):
    """The first training batch and its scored rollouts, as the training step sees them before shuffling."""
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    return batch, trainer._generate_and_score_completions(batch)
