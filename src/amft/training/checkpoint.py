"""Atomic checkpoint bookkeeping.

The Trainer writes a checkpoint folder file by file; a run killed half-way leaves a folder
that looks like a checkpoint but is not. A checkpoint counts only once its completion marker
exists, and the marker is written last, atomically (write to a temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any

AMFT_STATE_FILE = "amft_state.json"
COMPLETE_MARKER = "checkpoint_complete.json"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def atomic_write_json(path: str, payload: Any) -> None:
    """Write JSON so that readers see either the old file or the whole new one, never a part."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(descriptor, "w") as handle:
            json.dump(payload, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


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
