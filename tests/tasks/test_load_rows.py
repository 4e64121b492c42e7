"""load_rows: checked JSONL / JSON row files."""

import json

import pytest

from amft.tasks import DataError, load_rows

REQ = {"prompt": str, "values": list}


def write_jsonl(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_good_file(tmp_path):
    p = write_jsonl(tmp_path / "ok.jsonl", [json.dumps({"prompt": "a", "values": [1, 2, 3, 4]}), "",
                                            json.dumps({"prompt": "b", "values": [4, 3, 2, 1], "x": 1})])
    rows = load_rows(p, REQ)
    assert [r["prompt"] for r in rows] == ["a", "b"]
    assert load_rows(p, REQ, skip_invalid=True) == (rows, 0)


@pytest.mark.parametrize(
    "bad, field, problem",
    [
        ({"prompt": "c"}, "values", "missing field"),
        ({"prompt": 3, "values": []}, "prompt", "expected str, got int"),
        ({"prompt": "c", "values": "1 2 3 4"}, "values", "expected list, got str"),
    ],
)
def test_errors_name_file_row_field(tmp_path, bad, field, problem):
    p = write_jsonl(tmp_path / "bad.jsonl", [json.dumps({"prompt": "a", "values": []}), "",
                                             json.dumps(bad)])
    with pytest.raises(DataError) as ei:
        load_rows(p, REQ)
    msg = str(ei.value)
    assert str(p) in msg and "row 3" in msg and f"field '{field}'" in msg and problem in msg
    assert (ei.value.row, ei.value.field) == (3, field)
    assert isinstance(ei.value, ValueError)


def test_invalid_json_line_and_non_object(tmp_path):
    p = write_jsonl(tmp_path / "j.jsonl", [json.dumps({"prompt": "a", "values": []}), '{"prompt": "b", "values": [}'])
    with pytest.raises(DataError, match=r"j\.jsonl: row 2: invalid JSON"):
        load_rows(p, REQ)
    p2 = write_jsonl(tmp_path / "k.jsonl", ["[1, 2]"])
    with pytest.raises(DataError, match="row 1: expected a JSON object"):
        load_rows(p2, REQ)


def test_skip_invalid_counts(tmp_path):
    p = write_jsonl(tmp_path / "mix.jsonl", [
        json.dumps({"prompt": "a", "values": [1]}),
        "not json",
        json.dumps({"prompt": "b"}),
        json.dumps({"prompt": "c", "values": [2]}),
        json.dumps({"prompt": True, "values": [2]}),
        "[" * 100_000,
    ])
    rows, skipped = load_rows(p, REQ, skip_invalid=True)
    assert [r["prompt"] for r in rows] == ["a", "c"]
    assert skipped == 4


def test_json_list_file_and_types(tmp_path):
    p = tmp_path / "rows.json"
    p.write_text(json.dumps([{"prompt": "a", "n": 1}, {"prompt": "b", "n": True}, {"prompt": "c", "n": 2.5}]))
    with pytest.raises(DataError, match=r"rows\.json: row 2: field 'n': expected int, got bool"):
        load_rows(p, {"prompt": str, "n": int})
    rows, skipped = load_rows(p, {"n": int}, skip_invalid=True)
    assert skipped == 2 and rows[0]["prompt"] == "a"
    rows, skipped = load_rows(p, {"n": (int, float)}, skip_invalid=True)  # bool is not a number here either
    assert [r["prompt"] for r in rows] == ["a", "c"] and skipped == 1
    p.write_text(json.dumps({"rows": [{"prompt": "x"}]}))
    assert load_rows(p, {"prompt": str}) == [{"prompt": "x"}]
    p.write_text("{broken")
    with pytest.raises(DataError, match="rows.json"):
        load_rows(p, {})
