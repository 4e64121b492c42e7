import json
import os

import pytest

from amft.io import atomic_write_json, atomic_write_text, flush_tree


def test_atomic_writes_replace_the_whole_file_and_leave_nothing_beside_it(tmp_path):
    path = tmp_path / "nested" / "results.json"
    atomic_write_json(str(path), {"a": 1})
    atomic_write_json(str(path), {"b": [1, 2]})
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    atomic_write_text(str(tmp_path / "table.csv"), "x,y\r\n1,2\r\n")
    assert (tmp_path / "table.csv").read_bytes() == b"x,y\r\n1,2\r\n"  # written as given, no newline translation
    assert sorted(os.listdir(path.parent)) == ["results.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write_json(str(path), {"kept": True})
    with pytest.raises(TypeError):
        atomic_write_json(str(path), {"not json": object()})
    assert json.loads(path.read_text()) == {"kept": True}
    assert os.listdir(tmp_path) == ["summary.json"]


def test_flush_tree_flushes_every_file_and_folder_below(tmp_path, monkeypatch):
    (tmp_path / "checkpoint" / "rng").mkdir(parents=True)
    for name in ("checkpoint/model.safetensors", "checkpoint/rng/rng_state_0.pth", "checkpoint/rng/rng_state_1.pth"):
        (tmp_path / name).write_bytes(b"x")
    flushed, fsync = [], os.fsync

    def recording_fsync(descriptor):
        flushed.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    flush_tree(str(tmp_path / "checkpoint"))
    expected = ["checkpoint", "checkpoint/model.safetensors", "checkpoint/rng", "checkpoint/rng/rng_state_0.pth",
                "checkpoint/rng/rng_state_1.pth"]
    assert sorted(flushed) == sorted(str(tmp_path / name) for name in expected)
