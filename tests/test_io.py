import json
import os

import pytest

from amft.io import atomic_write_json, atomic_write_text


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
