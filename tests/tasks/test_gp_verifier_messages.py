"""The exact check order, stacking and messages of the original verifier (see docs/design.md, 'The verifier')."""

import pytest

from amft.tasks.general_points.verifier import (
    EvalError,
    MIN_REWARD,
    evaluate,
    extract_field,
    extract_formula,
    tokenize,
    verify_formula,
    verify_text,
)

CARDS = [1, 3, 10, 6]  # A 3 K 6 under the ID rule


def check(formula, values, reward, message):
    v = verify_formula(formula, values)
    assert (v.reward, v.message) == (reward, message)
    assert isinstance(v.reward, float)
    assert v.success == (reward == 5.0)


def test_spec_stacking_example():
    check("3*8+3-3", [3, 3, 8, 8], -4.0, "you used numbers: [3] too many times, you didn't use numbers: [8].")


def test_correct_with_and_without_suffix():
    check("10*3-6*1", CARDS, 5.0, "Correct solution.")
    check("10*3-6*1=24", CARDS, 5.0, "Correct solution.")
    check("10*3-6*1=25", CARDS, 5.0, "Correct solution.")  # everything after '=' is discarded


@pytest.mark.parametrize("formula", ["None", "10 * 3 - 6 * 1", "10x3-6x1", "10×3-6×1", "1+3+10+6.", "1000+3",
                                     "١+3+10+6", "a", "1" * 201])
def test_illegal_characters(formula):
    check(formula, CARDS, -3.0, "illegal characters.")


@pytest.mark.parametrize(
    "formula, reward, message",
    [
        ("(1+3)10*6", -3.0, "invalid sequence after number."),
        ("-1+3+10+6", -3.0, "invalid sequence after operator."),
        ("1+(*3)+10+6", -3.0, "invalid sequence after operator."),
        ("1++3**10//6", -9.0, "invalid sequence after operator, invalid sequence after operator, "
                              "invalid sequence after operator."),
        ("6(1+3)*10", -6.0, "invalid sequence before '(', unmatched closing parenthesis."),
        ("1+3)*10*6", -3.0, "unmatched closing parenthesis."),
        ("(1+3))*10*6", -3.0, "unmatched closing parenthesis."),
        ("((1+3)*10))*6)", -6.0, "unmatched closing parenthesis, unmatched closing parenthesis."),
        ("1+3+10+6+()", -3.0, "invalid sequence after ')'."),
        (")1+3+10+6", -6.0, "invalid sequence after ')', invalid sequence after number."),
        # syntax penalties stack with number penalties
        ("(1+3)10", -5.0, "invalid sequence after number, you didn't use numbers: [6]."),
    ],
)
def test_syntax_walk_messages_and_stacking(formula, reward, message):
    check(formula, CARDS, reward, message)


def test_unclosed_paren_and_trailing_operator_are_not_syntax_errors():
    check("3*10-", CARDS, -2.0, "you didn't use numbers: [1, 6].")
    # unclosed, evaluation fails, not a solution prefix -> prefix walk
    check("6*1-(3*10", CARDS, -1.0, "your formula does not match any solution.")


@pytest.mark.parametrize(
    "formula, reward, message",
    [
        ("1+3+10", -2.0, "you didn't use numbers: [6]."),
        ("3", -2.0, "you didn't use numbers: [1, 10, 6]."),
        ("", -2.0, "you didn't use numbers: [1, 3, 10, 6]."),
        ("1+3+10+7", -4.0, "you used invalid numbers: [7], you didn't use numbers: [6]."),
        ("1+3+10+6+6", -2.0, "you used numbers: [6] too many times."),
        # invalid and overused: only the first (if/elif)
        ("1+1+3+10+6+7", -2.0, "you used invalid numbers: [7]."),
        ("7+1+1+8+3+10+6", -2.0, "you used invalid numbers: [7, 8]."),
        ("1/0", -4.0, "you used invalid numbers: [0], you didn't use numbers: [3, 10, 6]."),
    ],
)
def test_number_checks(formula, reward, message):
    check(formula, CARDS, reward, message)


def test_partial_solution_plus_one():
    check("4*(1+2+3", [1, 2, 3, 4], 1.0, "partial solution.")
    check("4*(1+2+3", [4, 3, 2, 1], 1.0, "partial solution.")


def test_prefix_walk_messages():
    check("1+3+10+6", CARDS, -1.0, "1 is partially correct but the full formula does not match any solution.")
    check("(10*3-6*1", CARDS, -1.0,
          "(10*3-6 is partially correct but the full formula does not match any solution.")
    check("6*1+3+10", CARDS, -1.0, "your formula does not match any solution.")
    # leading zero: counts as the number, evaluation fails, no solution starts with it
    check("01*3*10-6", CARDS, -1.0, "your formula does not match any solution.")
    # division by zero with card numbers only
    check("1/(1-1)*1", [1, 1, 1, 1], -1.0, "your formula does not match any solution.")


def test_evaluation_failures():
    for bad in ["1/0", "(1+2", "1+", "", "08", "1)", "()", "1 + 2", "9**9"]:
        with pytest.raises(EvalError):
            evaluate(bad)
    assert evaluate("2*(3+4)/7") == 2
    assert evaluate("1-2-3") == -4  # left associative
    assert evaluate("8/4/2") == 1
    assert evaluate("0") == 0


def test_tokenizer():
    assert tokenize("10*(3-6)/1") == ["10", "*", "(", "3", "-", "6", ")", "/", "1"]
    assert tokenize("") == []
    assert tokenize("999") == ["999"]
    assert tokenize("1000") is None
    assert tokenize("1 2") is None


def test_field_extraction_forms():
    original = '{"cards": [\'A\', \'3\', \'K\', \'6\'], "number": [1, 3, 10, 6], "formula": "10*3-6*1=24",}'
    assert extract_formula(original) == "10*3-6*1"
    assert extract_formula('{"formula": "1+2=3"}') == "1+2"  # valid JSON
    assert extract_formula(" cards: A 3 K 6 ; number: 1 3 10 6 ; formula: 10*3-6*1=24") == "10*3-6*1"
    assert extract_formula("formula: 10*3-6*1 ; junk") == "10*3-6*1"
    assert extract_formula("formula:10*3-6*1\nmore") == "10*3-6*1"
    assert extract_formula("no field here") == "None"
    assert extract_formula("'formula': '1+2'") == "None"  # the original regex needs double quotes
    assert extract_formula('"formula":"1+2"') == "None"  # ... and exactly one space
    assert extract_formula("myformula: 1+2") == "None"
    assert extract_formula(None) == "None"
    assert extract_field("formula: 1+2", styles=("json", "quoted")) is None
    assert extract_field('"formula": "1+2"', styles=("compact",)) is None
    assert extract_formula('{"formula": 24}') == "None"
    with pytest.raises(ValueError):
        extract_field("x", styles=("bogus",))


def test_verify_text_end_to_end():
    assert verify_text("formula: 10*3-6*1=24", CARDS).reward == 5.0
    assert verify_text("10*3-6*1=24", CARDS).message == "illegal characters."
    assert verify_text("formula: ", CARDS).reward == -2.0
    assert MIN_REWARD == -604.0
