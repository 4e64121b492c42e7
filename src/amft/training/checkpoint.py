"""Atomic checkpoint bookkeeping.

The Trainer writes a checkpoint folder file by file; a run killed half-way leaves a folder
that looks like a checkpoint but is not. A checkpoint counts only once its completion marker
exists, and the marker is written last, atomically (`amft.io.atomic_write_json`), after the
folder's files are flushed to disk.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from enum import Enum
from typing import Any

from safetensors import safe_open
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from amft.io import atomic_write_json, flush_tree

AMFT_STATE_FILE = "amft_state.json"
COMPLETE_MARKER = "checkpoint_complete.json"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
#: The config fields whose saved values a checkpoint's state puts back when a run resumes: the
#: optimizer's hyperparameters, the scheduler's base rate and the controller's mu. Given other values
#: at resumption they would not act, so the resumption is refused (docs/design.md, 'Checkpoints and
#: resumption').
RESTORED_SETTINGS = ("learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "optim", "mu",
                     "mu_init", "gac_mu_init")


def restored_settings(args: Any) -> dict[str, Any]:
    """The values of `RESTORED_SETTINGS` in the config ``args``, as JSON values."""
    return {name: _json_value(getattr(args, name)) for name in RESTORED_SETTINGS}


def settings_resumption_would_not_apply(saved: Mapping[str, Any], args: Any) -> list[str]:
    """The settings a checkpoint saved (``restored_settings`` then) that ``args`` gives otherwise, each
    as 'name: saved -> given'; a checkpoint that saved none (written before they were saved) has none."""
    given = restored_settings(args)
    return [f"{name}: {saved[name]!r} -> {given[name]!r}" for name in RESTORED_SETTINGS
            if name in saved and saved[name] != given[name]]


def _json_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def mark_checkpoint_complete(checkpoint_dir: str) -> None:
    flush_tree(checkpoint_dir)
    atomic_write_json(os.path.join(checkpoint_dir, COMPLETE_MARKER), {"complete": True})


def mark_checkpoint_incomplete(checkpoint_dir: str) -> None:
    """Remove the marker of a checkpoint folder that is about to be rewritten (absent: nothing to do)."""
    try:
        os.remove(os.path.join(checkpoint_dir, COMPLETE_MARKER))
    except FileNotFoundError:
        pass


def remove_incomplete_checkpoints(run_dir: str) -> list[str]:
    """Delete the checkpoint folders of `run_dir` that have no completion marker (left by a killed
    run: never resumed from); returns them."""
    removed = []
    for name in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, name)
        if _CHECKPOINT_NAME.match(name) and os.path.isdir(path) and not os.path.exists(os.path.join(path, COMPLETE_MARKER)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


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


def saved_weight_shapes(checkpoint_dir: str) -> dict[str, list[int]] | None:
    """Name -> shape of every weight a checkpoint's safetensors files hold (one file or shards), read
    from their headers; None when it holds none (adapters, other formats)."""
    single, index = (os.path.join(checkpoint_dir, name) for name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME))
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        with open(index) as handle:
            files = [os.path.join(checkpoint_dir, name) for name in sorted(set(json.load(handle)["weight_map"].values()))]
    else:
        return None
    shapes = {}
    for path in files:
        with safe_open(path, framework="pt") as handle:
            shapes.update({name: handle.get_slice(name).get_shape() for name in handle.keys()})
    return shapes
