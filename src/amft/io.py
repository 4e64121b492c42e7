"""Atomic file writes: readers (a resumed run, a study reading its cells, a person with the
file open) see either the old file or the whole new one, never a part of it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

__all__ = ["atomic_copy", "atomic_write_json", "atomic_write_text", "flush_tree"]


def _atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Let ``write`` fill a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8, line endings as given) to ``path`` atomically."""
    _atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_copy(source: str, path: str) -> None:
    """Copy the file ``source`` to ``path`` atomically."""
    def write(handle: BinaryIO) -> None:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, handle)

    _atomic_write(path, write)


def atomic_write_json(path: str, payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically (see `atomic_write_text`)."""
    atomic_write_text(path, json.dumps(payload, indent=2))


def flush_tree(folder: str) -> None:
    """Flush every file below ``folder``, and the folders' entries, to disk: what a marker written
    after this call vouches for survives a crash of the machine, not only of the process."""
    for root, _, files in os.walk(folder):
        for name in files:
            # Windows flushes only a file opened for writing; elsewhere reading is enough, and safer.
            descriptor = os.open(os.path.join(root, name), os.O_RDWR if os.name == "nt" else os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        try:
            descriptor = os.open(root, os.O_RDONLY)
        except OSError:  # a system whose folders cannot be opened (Windows) flushes their entries itself
            continue
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
