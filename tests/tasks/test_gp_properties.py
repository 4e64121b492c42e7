"""Robustness: any text returns a reward in the reachable range, quickly, without raising or eval."""

import ast
import inspect
import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from amft.tasks import base as base_mod
from amft.tasks import get_task
from amft.tasks.general_points import prompts as prompts_mod
from amft.tasks.general_points import task as task_mod
from amft.tasks.general_points import verifier as verifier_mod
from amft.tasks.general_points.verifier import MAX_REWARD, MIN_REWARD, verify_formula, verify_text

CARDS = [1, 3, 10, 6]
REACHABLE = {5.0, 1.0, -1.0}  # well-formed formulas using each card once
PROPS = settings(deadline=200, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def in_range(v):
    return isinstance(v.reward, float) and MIN_REWARD <= v.reward <= MAX_REWARD and isinstance(v.message, str)


MODEL_TEXT_MODULES = [verifier_mod, prompts_mod, task_mod, base_mod]


@pytest.fixture(autouse=True)
def no_eval(monkeypatch):
    """Any eval/exec/compile call from the modules that handle model text fails the test."""

    def boom(*a, **k):
        raise AssertionError("Python eval/exec must never see model text")

    for mod in MODEL_TEXT_MODULES:
        for name in ("eval", "exec", "compile"):
            monkeypatch.setattr(mod, name, boom, raising=False)


def test_no_eval_in_model_text_modules():
    for mod in MODEL_TEXT_MODULES:
        tree = ast.parse(inspect.getsource(mod))
        called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert not called & {"eval", "exec", "compile", "__import__"}, mod.__name__


@PROPS
@given(st.text())
def test_arbitrary_text(text):
    for wrapped in (text, "formula: " + text, '"formula": "' + text + '"'):
        v = verify_text(wrapped, CARDS)
        assert in_range(v)
        assert v.success == (v.reward == 5.0)


literal = st.one_of(st.sampled_from(["1", "3", "10", "6", "0", "00", "07"]), st.integers(0, 10**60).map(str))
piece = st.one_of(literal, st.sampled_from(list("+-*/()=")), st.sampled_from(["((((((((((", "))))))))", "**", "//"]))


@PROPS
@given(st.lists(piece, max_size=120))
def test_formula_alphabet_with_huge_literals_and_deep_parens(pieces):
    formula = "".join(pieces)
    v = verify_formula(formula, CARDS)
    assert in_range(v)


@PROPS
@given(st.integers(0, 3000), st.integers(0, 3000))
@example(0, 0)
@example(96, 96)
@example(97, 97)
@example(3000, 0)
def test_deep_nesting_and_long_inputs(opens, closes):
    formula = "(" * opens + "10*3-6*1" + ")" * closes
    v = verify_formula(formula, CARDS)
    assert in_range(v)
    if opens == closes and opens * 2 + 8 <= 200:
        assert v.reward == 5.0


def trees(values):
    """Random fully bracketed expression trees over a permutation of ``values``."""

    @st.composite
    def build(draw):
        leaves = [(str(v), Fraction(v)) for v in draw(st.permutations(values))]
        while len(leaves) > 1:
            i = draw(st.integers(0, len(leaves) - 2))
            op = draw(st.sampled_from("+-*/"))
            (ls, lv), (rs, rv) = leaves[i], leaves[i + 1]
            if lv is None or rv is None or (op == "/" and rv == 0):
                val = None
            else:
                val = {"+": lv + rv, "-": lv - rv, "*": lv * rv, "/": lv / rv if rv else None}[op]
            leaves[i:i + 2] = [(f"({ls}{op}{rs})", val)]
        return leaves[0]

    return build()


@PROPS
@given(st.data())
def test_well_formed_formulas_agree_with_exact_oracle(data):
    values = data.draw(st.lists(st.integers(1, 13), min_size=4, max_size=4))
    text, value = data.draw(trees(values))
    v = verify_formula(text, values)
    assert v.reward in REACHABLE
    assert (v.reward == 5.0) == (value == 24)


NASTY = [
    "",
    "x" * 1_000_000,
    "formula: " + "(" * 1_000_000,
    '"formula": "' + "9" * 1_000_000 + '"',
    "{" * 100_000,
    "[" * 100_000,
    "\u202e\u0000\ud7ff\U0001f600 formula: ١٢+٣",
    "formula: __import__('os').system('x')",
    '"formula": "__import__(\'os\').system(\'x\')"',
    "formula: 9**9**9",
    "formula: ((((",
    "formula: 1/0",
    '{"formula": "' + "1" * 100_000 + '"}',
    '{"formula": 1' + "0" * 10_000 + "}",
]


@pytest.mark.parametrize("text", NASTY, ids=range(len(NASTY)))
def test_nasty_inputs(text):
    t = time.perf_counter()
    v = verify_text(text, CARDS)
    assert time.perf_counter() - t < 0.5
    assert in_range(v)
    assert v.reward < 5.0


def test_specific_nasty_rewards():
    assert verify_text("formula: __import__('os').system('x')", CARDS).message == "illegal characters."
    v = verify_text("formula: 9**9**9", CARDS)
    assert v.reward == -3 * 2 - 2 - 2
    assert verify_text("formula: ((((", CARDS).reward == -2.0
    assert verify_text("", CARDS).message == "illegal characters."
    t = time.perf_counter()
    assert verify_text("formula: 10*3-6*1" + "=" * 1_000_000, CARDS).reward == 5.0  # cut at the first '='
    assert verify_text("formula: 1" + "=" * 1_000_000 + "10*3-6*1", CARDS).reward == -2.0
    assert time.perf_counter() - t < 0.5


def test_reward_function_never_raises_on_any_completion():
    task = get_task("general-points", template="compact")
    comps = NASTY + [None, 17, ["bad"], [{"role": "assistant"}], {"content": 3}]
    out = task.reward(prompts=["p"] * len(comps), completions=comps, values=[CARDS] * len(comps),
                      completion_ids=[[0]] * len(comps), trainer_state=object())
    assert len(out) == len(comps)
    assert all(isinstance(r, float) and MIN_REWARD <= r <= MAX_REWARD for r in out)
