"""The math task on small files we wrote: every loader layout, answer extraction, Math-Verify
rewards and their time limit, benchmarks, the word-problem generator."""

import time
from pathlib import Path

import pytest

from amft.evaluation.sampling import sample_metrics
from amft.tasks import DataError, get_task
from amft.tasks.math import (
    MathColumns,
    answers_match,
    boxed_answers,
    choice_letter,
    generate_problems,
    gsm8k_answer,
    last_boxed_answer,
    load_benchmark,
    load_math_rows,
)

FILES = Path(__file__).parent / "math_files"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{\frac{1}{2}}.", [r"\frac{1}{2}"]),
        (r"\boxed{1} then \fbox{ 2 } and \boxed{\{3\}}", ["1", "2", r"\{3\}"]),
        (r"first \boxed{a{b}c} last \boxed 7", ["a{b}c", "7"]),
        (r"never closed \boxed{1 + {2}", []),
        ("no box", []),
    ],
)
def test_boxed_answers_match_braces_by_depth(text, expected):
    assert boxed_answers(text) == expected
    assert last_boxed_answer(text) == (expected[-1] if expected else None)


def test_gsm8k_and_choice_answers():
    assert gsm8k_answer("3*4=12\n#### 1,200") == "1200"
    assert gsm8k_answer("no marker") is None
    assert choice_letter(r"so the answer is \boxed{C}") == "C"
    assert choice_letter(r"\boxed{\text{(b)}}") == "B"
    assert choice_letter("I think the answer is (D).") == "D"
    assert choice_letter("Between A and B, B") == "B"
    assert choice_letter("B", letters="AB") == "B" and choice_letter("nothing here", letters="AB") is None


def test_math_verify_reward_accepts_equivalent_answers_only():
    assert answers_match(r"so \boxed{\frac{2}{4}}", "0.5")
    assert answers_match(r"\boxed{x = 4}", "4")
    assert not answers_match(r"\boxed{5}", "4")
    assert answers_match("the answer is 42", "42") and not answers_match("the answer is 42", "42", require_boxed=True)
    assert not answers_match("", "4") and not answers_match(r"\boxed{4}", "")


def test_a_pathological_answer_is_cut_off_by_the_time_limit():
    started = time.monotonic()
    assert not answers_match(r"\boxed{9^{9^{9^{9^{9}}}}}", "3", timeout_seconds=1)
    # Without the limit sympy would work on this for a very long time; a generous bound shows it stopped.
    assert time.monotonic() - started < 20


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("plain.jsonl", [("What is 2+3?", "5", r"2+3=5, so \boxed{5}."), ("Half of 1?", r"\frac{1}{2}", None)]),
        ("math_layout.jsonl", [(r"Compute $\frac{1}{2}+\frac{1}{4}$.", r"\frac{3}{4}",
                                r"We get $\frac{2}{4}+\frac{1}{4}=\boxed{\frac{3}{4}}$.")]),
        ("gsm8k.jsonl", [("Tom has 3 bags of 4 apples. How many apples?", "12", r"Each bag has 4 apples, 3*4=12. \boxed{12}"),
                         ("A shop sells 1,200 pens a day. How many in 2 days?", "2400", r"1,200*2=2,400 \boxed{2400}")]),
        ("verl.jsonl", [("Find x if 2x=8.", "4", r"<think>2x=8 so x=4</think> \boxed{4}")]),
        ("openr1.jsonl", [("What is 7*6?", "42", r"7*6=42 \boxed{42}")]),
        ("plain.parquet", [("What is 9-4?", "5", None), ("What is 3*3?", "9", None)]),
    ],
)
def test_every_loader_layout(name, expected):
    rows, skipped = load_math_rows(str(FILES / name))
    assert skipped == 0
    assert [(r["problem"], r["answer"], r["solution"]) for r in rows] == expected


def test_explicit_columns_and_bad_rows():
    rows, _ = load_math_rows(str(FILES / "plain.jsonl"), columns=MathColumns(problem="problem", answer="answer"),
                             skip_invalid=True)
    assert [r["answer"] for r in rows] == ["5"]
    with pytest.raises(DataError, match=r"bad\.jsonl: row 2: field 'answer'"):
        load_math_rows(str(FILES / "bad.jsonl"))
    rows, skipped = load_math_rows(str(FILES / "bad.jsonl"), skip_invalid=True)
    assert [r["answer"] for r in rows] == ["2", "4"] and skipped == 1
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_math_rows(str(FILES / "missing.jsonl"))


def test_unparsable_files_name_the_file_and_row(tmp_path):
    lines = tmp_path / "broken.jsonl"
    lines.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": "2+2", "answer": \n')
    with pytest.raises(DataError, match=r"broken\.jsonl: row 2: invalid JSON"):
        load_math_rows(str(lines))
    listing = tmp_path / "broken.json"
    listing.write_text('[{"problem": "1+1", "answer": "2"},\n {"problem": "2+2", "answer": }]')
    with pytest.raises(DataError, match=r"broken\.json: invalid JSON at line 2"):
        load_math_rows(str(listing))
    table = tmp_path / "broken.parquet"
    table.write_bytes(b"not a parquet file")
    with pytest.raises(DataError, match=r"broken\.parquet: could not be read"):
        load_math_rows(str(table))


def test_local_benchmarks_in_their_public_layouts():
    arc = load_benchmark("arc-c", str(FILES))
    assert arc.kind == "choice" and arc.repeats == 1
    assert arc.rows[0]["choices"] == ["iron", "oxygen", "salt", "wood"] and arc.rows[0]["answer"] == "B"
    assert arc.rows[1]["answer"] == "C" and arc.rows[1]["letters"] == "ABC"  # numeric labels map to letters by position
    mmlu = load_benchmark("mmlu-pro", str(FILES))
    assert mmlu.rows[0]["answer"] == "B" and len(mmlu.rows[0]["choices"]) == 5
    gpqa = load_benchmark("gpqa-diamond", str(FILES))
    assert gpqa.rows == load_benchmark("gpqa-diamond", str(FILES)).rows  # the shuffle is fixed
    assert gpqa.rows[0]["choices"]["ABCD".index(gpqa.rows[0]["answer"])] == "neutron"
    aime = load_benchmark("aime24", str(FILES))
    assert aime.kind == "free" and [r["answer"] for r in aime.rows] == ["1", "4"]
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_benchmark("aime99", str(FILES))


def test_benchmark_rows_are_scored_by_letter_or_by_math_verify():
    task = get_task("math", benchmark_dir=str(FILES))
    arc = task.eval_episodes("arc-c")[0]
    assert "B. oxygen" in arc["prompt"]
    assert task.verify(arc, r"The answer is \boxed{B}").success
    assert not task.verify(arc, r"\boxed{A}").success
    aime = task.eval_episodes("aime24")[0]
    assert task.verify(aime, r"remainder \boxed{1}").reward == 1.0
    assert task.verify(aime, r"\boxed{2}").reward == 0.0


def test_generated_word_problems_are_correct_distinct_and_held_out():
    problems = generate_problems(300, seed=0, max_steps=3)
    assert problems == generate_problems(300, seed=0, max_steps=3)
    assert len({p.question for p in problems}) == 300
    for p in problems:
        assert answers_match(p.solution, str(p.answer), require_boxed=True)
        for step in p.solution.split(". ")[:-1]:
            left, result = step.rstrip(".").split("=")
            a, op, b = (left.partition("+") if "+" in left else left.partition("-"))
            assert int(result) == (int(a) + int(b) if op == "+" else int(a) - int(b)) >= 0
            assert int(b) <= 10  # the default max_number
    task = get_task("math")
    train = {r["prompt"] for r in task.train_prompts(500, seed=0)}
    demos = task.demonstrations(200, seed=0)
    evaluation = {r["prompt"] for split in ("id", "longer") for r in task.eval_episodes(split)}
    assert not train & evaluation and not {d["prompt"] for d in demos} & evaluation
    assert all(task.verify(d, d["completion"]).success for d in demos)
    assert all(task.verify(r, f" \\boxed{{{r['answer']}}}").success for r in task.eval_episodes("longer")[:20])


def test_dataset_task_holds_out_validation_problems_and_uses_chat_prompts():
    task = get_task("math", dataset=str(FILES / "gsm8k.jsonl"), prompt_style="chat", validation_size=1)
    prompts = task.train_prompts(4, seed=0)
    assert prompts[0]["prompt"][0]["role"] == "user" and "\\boxed{}" in prompts[0]["prompt"][0]["content"]
    demos = task.demonstrations(2, seed=0)
    assert all(d["completion"].strip().endswith(f"\\boxed{{{d['answer']}}}") for d in demos)
    assert task.default_splits == ("aime24", "amc", "math500", "minerva", "olympiad")
    with pytest.raises(ValueError, match="prompt_style"):
        get_task("math", prompt_style="fancy")


def test_options_that_would_not_act_are_refused_and_skipped_dataset_rows_are_counted(tmp_path, caplog):
    with pytest.raises(ValueError, match="problem_column, validation_size: options of the training dataset"):
        get_task("math", problem_column="question", validation_size=1)
    with pytest.raises(ValueError, match="the plain prompt .* has none"):
        get_task("math", instruction="Think.")
    dataset = tmp_path / "problems.jsonl"
    dataset.write_text((FILES / "gsm8k.jsonl").read_text() + '{"question": "No answer here."}\n')
    task = get_task("math", dataset=str(dataset), validation_size=1, skip_invalid_dataset_rows=True)
    with caplog.at_level("WARNING"):
        task.train_prompts(1, seed=0)
    assert f"{dataset}: skipped 1 malformed row(s)" in caplog.text


def test_avg_and_pass_at_k_by_hand():
    assert sample_metrics([[True, False, False, False], [False] * 4, [True] * 4]) == pytest.approx((5 / 12, 2 / 3))
    assert sample_metrics([]) == (0.0, 0.0)
