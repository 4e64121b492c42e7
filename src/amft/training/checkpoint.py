"""Atomic checkpoint bookkeeping.

The Trainer writes a checkpoint folder file by file; a run killed half-way leaves a folder
that looks like a checkpoint but is not. A checkpoint counts only once its completion marker
exists, and the marker is written last, atomically (`amft.io.atomic_write_json`).
"""

from __future__ import annotations

import os
import re

from amft.io import atomic_write_json

AMFT_STATE_FILE = "amft_state.json"
COMPLETE_MARKER = "checkpoint_complete.json"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def mark_checkpoint_complete(checkpoint_dir: str) -> None:
    atomic_write_json(os.path.join(checkpoint_dir, COMPLETE_MARKER), {"complete": True})


def last_complete_checkpoint(run_dir: str) -> str | None:
    """The newest checkpoint folder in `run_dir` whose completion marker exists, or None."""
    if not os.path.isdir(run_dir):
        return None
    steps = []
    for name in os.listdir(run_dir):
        match = _CHECKPOINT_NAME.match(name)
        if match and os.path.exists(os.path.join(run_dir, name, COMPLETE_MARKER)):
            steps.append(int(match.group(1)))
    return os.path.join(run_dir, f"checkpoint-{max(steps)}") if steps else None
