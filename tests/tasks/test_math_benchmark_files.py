"""Benchmark files in the verl layout, as LUFFY ships them (one parquet holding every math benchmark,
told apart by `data_source`; multiple choice with the options in the question and a letter as ground
truth), avg@k from repeated problems, and the `luffy` evaluation preset of `amft eval`."""

import logging

import pytest
from datasets import Dataset

from amft.cli import EvalArguments, apply_eval_preset, main
from amft.cli.options import OptionsError, read_command_line
from amft.evaluation.sampling import evaluate_samples
from amft.models import build_tiny_model
from amft.tasks import DataError, get_task
from amft.tasks.math import BENCHMARKS, load_benchmark, option_letters, read_benchmark_files

SYSTEM = {"role": "system", "content": "Think step by step inside <think> </think>, then answer."}

#: data_source -> [(question, ground truth)] of the math file
MATH_PROBLEMS = {
    "aime": [("Find the remainder when 2024 is divided by 7.", "1"), ("What is $2^{10}$ mod 1000?", "24")],
    "aime25": [("How many primes are below 20?", "8")],
    "math": [(r"Compute $\frac{1}{2}+\frac{1}{4}$.", r"\frac{3}{4}"),
             ("What is the positive root of $x^2=2$?", r"\sqrt{2}")],
    "minerva": [("Avogadro's number in scientific notation?", r"6.02 \times 10^{23}")],
    "olympiad_bench": [("Solve $1 < x \\le 2$ as an interval.", "(1,2]")],
}
#: a completion in another form that Math-Verify must accept, per ground truth
EQUIVALENT = {"1": "1", "24": "24", "8": "8", r"\frac{3}{4}": "0.75", r"\sqrt{2}": r"2^{1/2}",
              r"6.02 \times 10^{23}": r"6.02 \cdot 10^{23}", "(1,2]": "(1, 2]"}
ARC = "Which is a gas at room temperature?\nA. iron\nB. oxygen\nC. salt\nD. wood"
GPQA = "Which particle has no electric charge?\n(A) proton\n(B) electron\n(C) neutron\n(D) positron"
MMLU = "Which letter comes last?\n" + "\n".join(f"{letter}. option {letter}" for letter in "ABCDEFGHIJ")


def verl_row(source, question, truth, system=True):
    messages = [SYSTEM, {"role": "user", "content": question}] if system else [{"role": "user", "content": question}]
    return {"data_source": source, "prompt": messages, "ability": "math",
            "reward_model": {"ground_truth": truth, "style": "rule"}, "extra_info": {"split": "test"}}


def write(path, rows):
    Dataset.from_list(rows).to_parquet(str(path))
    return str(path)


@pytest.fixture
def files(tmp_path):
    rows = []
    for _ in range(4):  # AIME as LUFFY lists it for avg@k: every problem the same number of times
        rows += [verl_row("aime", q, a) for q, a in MATH_PROBLEMS["aime"]]
    for source in ("aime25", "math", "minerva", "olympiad_bench"):
        rows += [verl_row(source, q, a) for q, a in MATH_PROBLEMS[source]]
    amc = [("What is 3+4?", "7"), ("What is 5*5?", "25")]
    rows += [verl_row("amc", *amc[0]), verl_row("amc", *amc[1]), verl_row("amc", *amc[0])]  # a duplicate
    rows.append(verl_row("gsm8k", "What is 1+1?", "2"))  # a data source that names no benchmark
    return {
        "all": write(tmp_path / "valid.all.parquet", rows),
        "arc": write(tmp_path / "valid.arc_c.parquet", [verl_row("arc_c", ARC, "B")]),
        "gpqa": write(tmp_path / "valid.gpqa.parquet", [verl_row("gpqa", GPQA, "C")]),
        "mmlu": write(tmp_path / "valid.mmlu_pro.parquet", [verl_row("mmlu_pro", MMLU, "J")]),
    }


def test_every_benchmark_loads_from_the_files_split_by_data_source(files, caplog):
    with caplog.at_level(logging.WARNING):
        found = read_benchmark_files(list(files.values()))
    assert set(found) == set(BENCHMARKS)
    for source, name in [("aime", "aime24"), ("aime25", "aime25"), ("math", "math500"), ("minerva", "minerva"),
                         ("olympiad_bench", "olympiad")]:
        benchmark = found[name]
        assert benchmark.kind == "free" and benchmark.source == files["all"]
        assert [(r["problem"], r["answer"]) for r in benchmark.rows] == MATH_PROBLEMS[source]
        assert all(r["messages"] == [{"role": "user", "content": r["problem"]}] for r in benchmark.rows)
    assert [(found[name].kind, found[name].rows[0]["answer"], found[name].rows[0]["letters"])
            for name in ("arc-c", "gpqa-diamond", "mmlu-pro")] == [
        ("choice", "B", "ABCD"), ("choice", "C", "ABCD"), ("choice", "J", "ABCDEFGHIJ")]
    assert "gsm8k (1 rows)" in caplog.text  # left out, and said so

    task = get_task("math", benchmark_files=",".join(files.values()))
    assert task.default_splits == tuple(BENCHMARKS)  # the files' benchmarks, in the usual order


def test_ground_truths_are_scored_by_math_verify_or_by_letter(files):
    task = get_task("math", benchmark_files=",".join(files.values()))
    for name in ("aime24", "aime25", "math500", "minerva", "olympiad", "amc"):
        for row in task.eval_episodes(name):
            gold = row["answer"]
            assert task.verify(row, rf"so the answer is \boxed{{{gold}}}").success, (name, gold)
            assert task.verify(row, rf"\boxed{{{EQUIVALENT.get(gold, gold)}}}").success, (name, gold)
            assert not task.verify(row, r"\boxed{999}").success, (name, gold)
    for name, right, wrong in [("arc-c", "B", "A"), ("gpqa-diamond", "C", "D"), ("mmlu-pro", "J", "B")]:
        row = task.eval_episodes(name)[0]
        assert task.verify(row, rf"The answer is \boxed{{{right}}}").success
        assert task.verify(row, f"so the answer is ({right}).").success
        assert not task.verify(row, rf"\boxed{{{wrong}}}").success


def test_option_letters_come_from_the_question():
    assert option_letters(ARC) == "ABCD" and option_letters(GPQA) == "ABCD"
    assert option_letters(MMLU) == "ABCDEFGHIJ"
    assert option_letters("A. one\nC. three") == "ABCDEFGHIJ"  # not A, B, ... in order: any letter
    assert option_letters("no options listed") == "ABCDEFGHIJ"


def test_prompts_are_the_tasks_or_the_files_messages_without_the_system_prompt(files):
    own = get_task("math", benchmark_files=files["arc"], prompt_style="chat")
    prompt = own.eval_episodes("arc-c")[0]["prompt"]
    assert prompt == [{"role": "user", "content": ARC + "\nAnswer with the letter of the correct option within \\boxed{}."}]
    luffy = get_task("math", benchmark_files=files["all"], benchmark_prompts="file")
    assert luffy.eval_episodes("math500")[0]["prompt"] == [{"role": "user", "content": MATH_PROBLEMS["math"][0][0]}]
    with pytest.raises(ValueError, match="benchmark_prompts"):
        get_task("math", benchmark_prompts="hub")


def test_repeated_problems_are_avg_at_k_samples_or_duplicates(files, caplog):
    with caplog.at_level(logging.WARNING):
        task = get_task("math", benchmark_files=files["all"])
        assert task.eval_repeats("aime24") == 4 and len(task.eval_episodes("aime24")) == 2
        assert task.eval_repeats("math500") == 1 and len(task.eval_episodes("math500")) == 2
        # AMC lists one problem twice and the other once: duplicates, each problem counted once
        assert task.eval_repeats("amc") == 1 and [r["answer"] for r in task.eval_episodes("amc")] == ["7", "25"]
    assert "amc are listed unequally often (1 to 2 times)" in caplog.text
    assert task.eval_repeats("id") == 1

    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    result = evaluate_samples(model, tokenizer, task, "aime24", samples=2, max_new_tokens=4, progress=False)
    # 2 problems, each sampled 4 (the file's repeats) x 2 (--eval_samples) times: avg@8 and pass@8
    assert (result.problems, result.samples) == (2, 8)
    assert [len(c) for c in result.correct] == [8, 8] and [len(t) for t in result.completions] == [8, 8]
    assert result.avg_at_k == pytest.approx(sum(map(sum, result.correct)) / 16)


def test_a_benchmark_folder_file_in_the_verl_layout_and_the_hub_layouts_side_by_side(tmp_path):
    rows = [verl_row("aime25", q, a) for q, a in MATH_PROBLEMS["aime25"]] * 3
    write(tmp_path / "aime25.parquet", rows)
    arc_row = {"question": "Which is even?", "choices": {"text": ["3", "8"], "label": ["A", "B"]}, "answerKey": "B"}
    write(tmp_path / "arc-c.parquet", [arc_row])
    aime25 = load_benchmark("aime25", str(tmp_path))
    assert (aime25.repeats, [r["answer"] for r in aime25.rows]) == (3, ["8"])
    arc = load_benchmark("arc-c", str(tmp_path))
    assert (arc.rows[0]["choices"], arc.rows[0]["letters"], arc.rows[0]["answer"]) == (["3", "8"], "AB", "B")


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (verl_row("arc_c", ARC, "E"), "reward_model.ground_truth"),  # not one of A-D
        (verl_row("arc_c", ARC, "oxygen"), "reward_model.ground_truth"),
        ({**verl_row("aime", "What is 1+1?", "2"), "reward_model": {"style": "rule"}}, "reward_model.ground_truth"),
        ({**verl_row("aime", "What is 1+1?", "2"), "prompt": [SYSTEM]}, "prompt"),
        ({**verl_row("aime", "What is 1+1?", "2"), "data_source": ""}, "data_source"),
    ],
)
def test_a_bad_row_is_named_by_file_row_and_field(tmp_path, row, field):
    good = verl_row(row["data_source"] or "aime", "What is 2+2?", "B" if row["data_source"] == "arc_c" else "4")
    path = write(tmp_path / "bad.parquet", [good, row])
    with pytest.raises(DataError, match=rf"bad\.parquet: row 2: field '{field}'"):
        read_benchmark_files([path])


def test_files_that_cannot_hold_benchmarks_are_refused(tmp_path, files, caplog):
    plain = write(tmp_path / "plain.parquet", [{"problem": "What is 1+1?", "answer": "2"}])
    with pytest.raises(DataError, match=r"plain\.parquet: field 'data_source': missing column"):
        read_benchmark_files([plain])
    other = write(tmp_path / "other.parquet", [verl_row("gsm8k", "What is 1+1?", "2")])
    with pytest.raises(DataError, match="no row names a known benchmark"):
        read_benchmark_files([other])
    twice = write(tmp_path / "arc-again.parquet", [verl_row("arc_c", ARC, "B")])
    with pytest.raises(DataError, match=r"benchmark arc-c is also in .*valid\.arc_c\.parquet"):
        read_benchmark_files([files["arc"], twice])
    unreadable = write(tmp_path / "unreadable.parquet",
                       [verl_row("math", "Q1", "4"), verl_row("math", "Q2", r"\text{}")])
    with caplog.at_level(logging.WARNING):
        assert len(read_benchmark_files([unreadable])["math500"].rows) == 2
    assert "unreadable.parquet: rows 2: field 'reward_model.ground_truth': Math-Verify cannot read" in caplog.text


def eval_line(*flags, config=None):
    line = read_command_line(["--task", "math", "--model", "m", *flags, *(["--config", config] if config else [])],
                             "amft eval", "", before=(EvalArguments,), engine=False)
    apply_eval_preset(line)
    return line.build()


def test_the_luffy_preset_sets_the_protocol():
    eval_args, run, config = eval_line("--eval_preset", "luffy", "--benchmark_files", "valid.all.parquet")
    assert eval_args.eval_preset == "luffy"
    assert (run.eval_temperature, run.eval_max_new_tokens, run.eval_samples) == (0.6, 8192, 1)
    assert (config.prompt_style, config.benchmark_prompts, config.require_boxed) == ("chat", "file", False)
    assert config.benchmark_files == "valid.all.parquet"
    # an option the preset does not fix is free, and one given with the preset's value agrees with it
    _, run, _ = eval_line("--eval_preset", "luffy", "--eval_samples", "4", "--eval_temperature", "0.6")
    assert (run.eval_samples, run.eval_max_new_tokens) == (4, 8192)
    _, run, config = eval_line()
    assert (run.eval_max_new_tokens, config.prompt_style, config.require_boxed) == (96, "plain", True)


def test_an_option_that_disagrees_with_the_preset_is_refused(tmp_path, capsys):
    # even the option's default value, given explicitly, is an option given
    with pytest.raises(OptionsError, match=r"eval_preset luffy fixes eval_max_new_tokens 96 \(the preset's: 8192\)"):
        eval_line("--eval_preset", "luffy", "--eval_max_new_tokens", "96")
    with pytest.raises(OptionsError, match="require_boxed True"):
        eval_line("--eval_preset", "luffy", "--require_boxed", "true")
    config = tmp_path / "eval.yaml"
    config.write_text("eval_preset: luffy\nprompt_style: plain\n")
    with pytest.raises(OptionsError, match=rf"{config}: eval_preset luffy fixes prompt_style 'plain'"):
        eval_line(config=str(config))
    with pytest.raises(OptionsError, match="unknown preset 'deepseek'"):
        eval_line("--eval_preset", "deepseek")
    assert main(["eval", "--model", str(tmp_path), "--eval_preset", "luffy"]) == 2
    assert "eval_preset luffy is an evaluation protocol of task math, not of general-points" in capsys.readouterr().err
