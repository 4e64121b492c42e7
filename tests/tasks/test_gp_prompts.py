"""Prompt templates render exactly; compact completions parse back; revision formats."""

import pytest

from amft.tasks.general_points.cards import ID_RULE, OOD_RULE, Rule
from amft.tasks.general_points.prompts import (
    compact_completion,
    compact_prompt,
    deal_from_prompt,
    feedback_text,
    original_completion,
    original_prompt,
    render_conversation,
    render_messages,
    solution_steps,
)
from amft.tasks.general_points.verifier import extract_field, extract_formula, verify_text

CARDS = ["A", "3", "K", "6"]
VALUES = [1, 3, 10, 6]

ORIGINAL_GOLDEN = (
    "\n"
    "[Task Description]\n"
    "You are an expert 24 points card game player. You will receive a set of 4 cards.\n"
    "Note that 'J', 'Q', and 'K' count as '10'., and each card must be used once.\n"
    "Your goal is to output a formula that evaluates to 24 using numbers from the cards and operators such as "
    "'+', '-', '*', '/', '(', ')', and '='.\n"
    "\n"
    "[Input]\n"
    "Cards: ['A', '3', 'K', '6']\n"
    "\n"
    "[Output]\n"
    "{\n"
    "  \"cards\": [x, y, z, w], where 'J', 'Q', and 'K' count as '10'.,\n"
    "  \"number\": [a, b, c, d], where a, b, c, and d are the numbers on the cards,\n"
    "  \"formula\": 'an equation that equals 24',\n"
    "}\n"
    "\n"
)


def test_original_prompt_golden():
    assert original_prompt(CARDS, ID_RULE) == ORIGINAL_GOLDEN


def test_rule_sentences():
    assert ID_RULE.sentence == "'J', 'Q', and 'K' count as '10'."
    assert OOD_RULE.sentence == "'J', 'Q', and 'K' count as '11', '12', and '13' respectively."
    ood = original_prompt(["Q", "2", "7", "10"], OOD_RULE)
    assert "Note that 'J', 'Q', and 'K' count as '11', '12', and '13' respectively., and each card" in ood
    assert "Cards: ['Q', '2', '7', '10']\n" in ood
    assert OOD_RULE.header == "J=11 Q=12 K=13"


def test_original_completion_golden_and_verifies():
    text = original_completion(CARDS, VALUES, "10*3-6*1=24")
    assert text == ('{\n  "cards": [\'A\', \'3\', \'K\', \'6\'],\n  "number": [1, 3, 10, 6],\n'
                    '  "formula": "10*3-6*1=24",\n}')
    assert extract_formula(text) == "10*3-6*1"
    assert verify_text(text, VALUES).reward == 5.0


def test_compact_prompt_and_completion_golden():
    assert compact_prompt(CARDS, ID_RULE) == "[rule] J=10 Q=10 K=10 [cards] A 3 K 6 [target] 24 [answer]"
    assert compact_prompt(CARDS, OOD_RULE) == "[rule] J=11 Q=12 K=13 [cards] A 3 K 6 [target] 24 [answer]"
    plain = compact_completion(CARDS, VALUES, "10*3-6*1=24")
    assert plain == " cards: A 3 K 6 ; number: 1 3 10 6 ; formula: 10*3-6*1=24"
    steps = compact_completion(CARDS, VALUES, "10*3-6*1=24", "steps")
    assert steps == " cards: A 3 K 6 ; number: 1 3 10 6 ; steps: 10*3=30 6*1=6 30-6=24 ; formula: 10*3-6*1=24"
    assert compact_completion(CARDS, VALUES, "10*3-6*1=24", "short") == " number: 1 3 10 6 ; formula: 10*3-6*1=24"
    assert compact_completion(CARDS, VALUES, "10*3-6*1=24", "formula") == " formula: 10*3-6*1=24"
    with pytest.raises(ValueError):
        compact_completion(CARDS, VALUES, "1", "bogus")


def test_compact_completion_parses_back():
    for fmt in ("plain", "steps", "short", "formula"):
        text = compact_completion(CARDS, VALUES, "10*3-6*1=24", fmt)
        fields = {key: extract_field(text, key) for key in ("cards", "number", "formula")}
        if fmt in ("plain", "steps"):
            assert fields["cards"].split() == CARDS
        if fmt != "formula":
            assert [int(x) for x in fields["number"].split()] == VALUES
        assert fields["formula"] == "10*3-6*1=24"
        assert extract_formula(text) == "10*3-6*1"
        assert verify_text(text, VALUES).reward == 5.0
    assert extract_field(compact_completion(CARDS, VALUES, "10*3-6*1=24", "steps"), "steps") == "10*3=30 6*1=6 30-6=24"


def test_steps_with_fractions_and_negatives():
    assert solution_steps("8/(3-8/3)") == "8/3=8/3 3-(8/3)=1/3 8/(1/3)=24"
    assert solution_steps("(3-9)*(8-12)=24") == "3-9=-6 8-12=-4 (-6)*(-4)=24"
    with pytest.raises(ValueError):
        solution_steps("1+")


def test_feedback_formats():
    msg = "you didn't use numbers: [6]."
    assert feedback_text("original", msg) == "You failed this trial because you didn't use numbers: [6]."
    assert feedback_text("compact", msg) == " [fail] you didn't use numbers: [6]. [answer]"


def test_render_conversation_compact_and_keep_last():
    p = compact_prompt(CARDS, ID_RULE)
    hist = [(" formula: 1+3", "m1."), (" formula: 6", "m2."), (" formula: 10", "m3.")]
    assert render_conversation(p, [], "compact") == p
    assert render_conversation(p, hist[:1], "compact") == p + " formula: 1+3 [fail] m1. [answer]"
    full = render_conversation(p, hist, "compact")
    assert full == p + " formula: 1+3 [fail] m1. [answer] formula: 6 [fail] m2. [answer] formula: 10 [fail] m3. [answer]"
    assert render_conversation(p, hist, "compact", keep_last=1) == p + " formula: 10 [fail] m3. [answer]"
    assert render_conversation(p, hist, "compact", keep_last=0) == p


def test_render_conversation_original_text_and_messages():
    p = original_prompt(CARDS, ID_RULE)
    hist = [('{"formula": "1+3"}', "you didn't use numbers: [10, 6].")]
    text = render_conversation(p, hist, "original")
    assert text == p + '{"formula": "1+3"}\n\nYou failed this trial because you didn\'t use numbers: [10, 6].\n\n'
    msgs = render_messages(p, hist, "original")
    assert msgs == [
        {"role": "user", "content": p},
        {"role": "assistant", "content": '{"formula": "1+3"}'},
        {"role": "user", "content": "You failed this trial because you didn't use numbers: [10, 6]."},
    ]


def test_deal_from_prompt_roundtrip():
    rule = Rule(12, 10, 13)
    for text in (original_prompt(CARDS, rule), compact_prompt(CARDS, rule),
                 [{"role": "user", "content": original_prompt(CARDS, ID_RULE)}]):
        cards, r, target = deal_from_prompt(text)
        assert cards == CARDS and target == 24
    assert deal_from_prompt(original_prompt(CARDS, ID_RULE))[1] == ID_RULE
    assert deal_from_prompt(compact_prompt(CARDS, rule))[1] == rule
    assert deal_from_prompt("nothing") is None
    assert deal_from_prompt(None) is None
