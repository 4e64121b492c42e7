"""Prompt and completion templates for GP-L and GP-VL.

See docs/design.md, 'Prompts, demonstrations and revision', and for the image variant
docs/design.md, 'The image variant (GP-VL)'.

Two templates:

``"original"`` -- the ``Q_GeneralPoint_EQN_L`` text of Chu et al. 2025, for pretrained
LLMs.  Reproduced verbatim, including the leading newline, the trailing blank line and
the rule-sentence artefact ("count as '10'., and each card ..."): see
:func:`original_prompt`.  The SFT answer is the original three-key JSON-ish response
with trailing commas (:func:`original_completion`); the leading newline of the
original response template is dropped because the prompt already ends with a blank
line.  A revision turn is the user message ``You failed this trial because <message>``.

``"compact"`` -- a short form for tiny character-level models (ours, not the original's)::

    prompt:      [rule] J=10 Q=10 K=10 [cards] A 3 K 6 [target] 24 [answer]
    completion:   cards: A 3 K 6 ; number: 1 3 10 6 ; formula: 10*3-6*1=24

  Whitespace is fixed as follows: the prompt ends with ``[answer]`` (no trailing
  space); the completion starts with exactly one space; fields are separated by
  ``" ; "``; card symbols and numbers by single spaces; nothing follows the formula
  (the end-of-sequence token is the tokenizer's business).  The ``"steps"``
  completion format adds the three intermediate results of the solution in
  evaluation order before the formula::

     cards: A 3 K 6 ; number: 1 3 10 6 ; steps: 10*3=30 6*1=6 30-6=24 ; formula: 10*3-6*1=24

  A non-integer or negative intermediate is written ``p/q`` / ``-n`` and bracketed
  when it is used as an operand: ``8/3=8/3 3-(8/3)=1/3 8/(1/3)=24``.  The verifier
  reads only ``formula``.

  A revision appends `` [fail] <message> [answer]`` after the failed completion, so the
  next prompt text is ``prompt + attempt_1 + " [fail] " + message_1 + " [answer]" + ...``.
  ``keep_last=K`` keeps only the last K failed attempts (the older ones are dropped from
  the text entirely, so the context stays bounded for small models); ``None`` keeps all.

The image variant (GP-VL) shows the cards in an image instead of the text: both templates drop
their cards (``cards=None``).  ``original`` becomes the original ``Q_GeneralPoint_EQN_VL`` text,
verbatim; ``compact`` becomes ``[rule] J=10 Q=10 K=10 [target] 24 [answer]``.  The prompt is one
user message whose content is an image placeholder followed by that text
(:func:`image_messages`); completions and revisions are those of the text variant, and the
answer must state the cards it sees (the ``cards`` field).
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, Sequence

from amft.tasks.images import image_messages

from .cards import Rule, symbol_rank
from .verifier import EvalError, evaluate_tokens, tokenize

__all__ = [
    "TEMPLATES",
    "COMPLETION_FORMATS",
    "ORIGINAL_TEMPLATE",
    "ORIGINAL_VISUAL_TEMPLATE",
    "ORIGINAL_RESPONSE",
    "FEEDBACK_PREFIX",
    "original_prompt",
    "original_completion",
    "compact_prompt",
    "compact_completion",
    "solution_steps",
    "render_prompt",
    "image_messages",
    "user_text",
    "render_completion",
    "feedback_text",
    "render_conversation",
    "render_messages",
    "deal_from_prompt",
]

TEMPLATES: tuple[str, ...] = ("original", "compact")
# Fields before the formula in each compact completion format.
COMPACT_FIELDS: dict[str, tuple[str, ...]] = {
    "plain": ("cards", "number"),
    "steps": ("cards", "number", "steps"),
    "short": ("number",),
    "formula": (),
}
COMPLETION_FORMATS: tuple[str, ...] = tuple(COMPACT_FIELDS)

# The original text and image templates share their rule and goal lines and their answer skeleton.
_GOAL_LINES = """Note that {face_card_msg}, and each card must be used once.
Your goal is to output a formula that evaluates to {target_number} using numbers from the cards and operators such as '+', '-', '*', '/', '(', ')', and '='.
"""
_ANSWER_SKELETON = """{{
  "cards": [x, y, z, w], where {face_card_msg},
  "number": [a, b, c, d], where a, b, c, and d are the numbers on the cards,
  "formula": 'an equation that equals {target_number}',
}}

"""

#: ``Q_GeneralPoint_EQN_L`` (fields: target_number, face_card_msg, cards).
ORIGINAL_TEMPLATE = ("""
[Task Description]
You are an expert {target_number} points card game player. You will receive a set of 4 cards.
""" + _GOAL_LINES + """
[Input]
Cards: {cards}

[Output]
""" + _ANSWER_SKELETON)

#: ``Q_GeneralPoint_EQN_VL``, the image variant: the cards are in the image that precedes the text
#: (fields: target_number, face_card_msg).
ORIGINAL_VISUAL_TEMPLATE = ("""
[Task Description]
You are an expert {target_number} points card game player. You are observing these four cards in the image.
""" + _GOAL_LINES + """
[Output]
Your response should be a valid json file in the following format:
""" + _ANSWER_SKELETON)

#: The original SFT response layout (leading newline dropped, see module doc).
ORIGINAL_RESPONSE = """{{
  "cards": {cards},
  "number": {numbers},
  "formula": "{formula}",
}}"""

#: The user message of an original-template revision turn is this plus the verifier message.
FEEDBACK_PREFIX = "You failed this trial because "


# --------------------------------------------------------------------------- single turn


def original_prompt(cards: Sequence[str] | None, rule: Rule, target: int = 24) -> str:
    """The original GP-L prompt for the card symbols ``cards`` under ``rule``; with ``cards=None``, the
    original GP-VL prompt (the cards are in the image)."""
    if cards is None:
        return ORIGINAL_VISUAL_TEMPLATE.format(target_number=target, face_card_msg=rule.sentence)
    return ORIGINAL_TEMPLATE.format(target_number=target, face_card_msg=rule.sentence, cards=str(list(cards)))


def original_completion(cards: Sequence[str], values: Sequence[int], formula: str) -> str:
    """The original JSON-ish answer, e.g. ``"formula": "10*3-6*1=24",`` with trailing commas."""
    return ORIGINAL_RESPONSE.format(cards=str(list(cards)), numbers=str([int(v) for v in values]), formula=formula)


def compact_prompt(cards: Sequence[str] | None, rule: Rule, target: int = 24) -> str:
    """``[rule] J=10 Q=10 K=10 [cards] A 3 K 6 [target] 24 [answer]``; with ``cards=None`` (the cards
    are in the image) ``[rule] J=10 Q=10 K=10 [target] 24 [answer]``."""
    shown = "" if cards is None else f" [cards] {' '.join(cards)}"
    return f"[rule] {rule.header}{shown} [target] {target} [answer]"


def _num(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _operand(x: Fraction) -> str:
    s = _num(x)
    return s if x.denominator == 1 and x >= 0 else f"({s})"


def solution_steps(formula: str) -> str:
    """The intermediate results of ``formula`` in evaluation order: ``10*3=30 6*1=6 30-6=24``."""
    tokens = tokenize(formula.split("=", 1)[0])
    if tokens is None:
        raise ValueError(f"not a formula: {formula!r}")
    trace: list = []
    try:
        evaluate_tokens(tokens, trace)
    except EvalError as exc:
        raise ValueError(f"cannot evaluate {formula!r}: {exc}") from exc
    return " ".join(f"{_operand(a)}{op}{_operand(b)}={_num(r)}" for a, op, b, r in trace)


def compact_completion(cards: Sequence[str], values: Sequence[int], formula: str,
                       completion_format: str = "plain") -> str:
    """`` cards: A 3 K 6 ; number: 1 3 10 6 ; formula: 10*3-6*1=24`` for ``plain``; the other
    formats keep the fields that ``COMPACT_FIELDS`` lists (``steps`` adds the three
    intermediate results, ``short`` drops the echo of the cards, ``formula`` keeps only it)."""
    if completion_format not in COMPACT_FIELDS:
        raise ValueError(f"unknown completion_format {completion_format!r}; known: {COMPLETION_FORMATS}")
    field_values = {
        "cards": lambda: " ".join(cards),
        "number": lambda: " ".join(str(int(v)) for v in values),
        "steps": lambda: solution_steps(formula),
    }
    parts = [f"{name}: {field_values[name]()}" for name in COMPACT_FIELDS[completion_format]]
    return " " + " ; ".join([*parts, f"formula: {formula}"])


def render_prompt(template: str, cards: Sequence[str] | None, rule: Rule, target: int = 24) -> str:
    """The prompt text of ``template``; ``cards=None`` for the image variant, whose cards are in the image."""
    if template == "original":
        return original_prompt(cards, rule, target)
    if template == "compact":
        return compact_prompt(cards, rule, target)
    raise ValueError(f"unknown template {template!r}; known: {TEMPLATES}")


def render_completion(template: str, cards: Sequence[str], values: Sequence[int], formula: str,
                      completion_format: str = "plain") -> str:
    if template == "original":
        return original_completion(cards, values, formula)
    if template == "compact":
        return compact_completion(cards, values, formula, completion_format)
    raise ValueError(f"unknown template {template!r}; known: {TEMPLATES}")


def user_text(prompt: Any) -> str | None:
    """The text of a prompt: a string as it is; for chat messages the first user message's text (the
    text parts of a content list joined); ``None`` if there is none."""
    if isinstance(prompt, (list, tuple)):
        prompt = next((m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"), None)
        if isinstance(prompt, (list, tuple)):
            texts = [part.get("text") for part in prompt if isinstance(part, dict) and part.get("type") == "text"]
            prompt = "".join(t for t in texts if isinstance(t, str)) if texts else None
    return prompt if isinstance(prompt, str) else None


# --------------------------------------------------------------------------- revision


def feedback_text(template: str, message: str) -> str:
    """The feedback turn after a failed attempt.

    original: ``You failed this trial because <message>`` (a user message);
    compact: `` [fail] <message> [answer]`` (appended right after the failed completion).
    """
    if template == "original":
        return FEEDBACK_PREFIX + message
    if template == "compact":
        return f" [fail] {message} [answer]"
    raise ValueError(f"unknown template {template!r}; known: {TEMPLATES}")


def _kept(history: Sequence[tuple[str, str]], keep_last: int | None) -> list[tuple[str, str]]:
    history = list(history)
    if keep_last is None:
        return history
    if keep_last < 0:
        raise ValueError("keep_last must be >= 0 or None")
    return history[len(history) - keep_last:] if keep_last else []


def render_messages(prompt: str, history: Sequence[tuple[str, str]], template: str = "original",
                    keep_last: int | None = None) -> list[dict[str, str]]:
    """The conversation as chat messages: user prompt, then (assistant attempt, user feedback) pairs.

    This is the faithful form of the original revision protocol (apply the model's chat
    template to it).  ``history`` is ``[(attempt_text, verifier_message), ...]``.
    """
    messages = [{"role": "user", "content": prompt}]
    for attempt, message in _kept(history, keep_last):
        messages.append({"role": "assistant", "content": attempt})
        messages.append({"role": "user", "content": feedback_text(template, message)})
    return messages


def render_conversation(prompt: str, history: Sequence[tuple[str, str]], template: str,
                        keep_last: int | None = None) -> str:
    """The next prompt text after the failed attempts in ``history`` (``[(attempt, message), ...]``).

    compact: ``prompt + attempt + " [fail] " + message + " [answer]"`` per kept attempt.
    original (plain text, for models used without a chat template):
    ``prompt + attempt + "\\n\\nYou failed this trial because " + message + "\\n\\n"`` per
    kept attempt; with a chat model use :func:`render_messages` instead.
    ``keep_last`` keeps only the last K failed attempts (``None``: all).
    """
    kept = _kept(history, keep_last)
    if template == "compact":
        return prompt + "".join(attempt + feedback_text("compact", message) for attempt, message in kept)
    if template == "original":
        return prompt + "".join(f"{attempt}\n\n{feedback_text('original', message)}\n\n" for attempt, message in kept)
    raise ValueError(f"unknown template {template!r}; known: {TEMPLATES}")


# --------------------------------------------------------------------------- reading prompts back

_COMPACT_PROMPT_RE = re.compile(
    r"\[rule\] J=(\d{1,2}) Q=(\d{1,2}) K=(\d{1,2}) \[cards\] ((?:\S+ ){3}\S+) \[target\] (\d{1,4}) \[answer\]")
_ORIGINAL_CARDS_RE = re.compile(r"Cards: \[('[^']{1,2}', '[^']{1,2}', '[^']{1,2}', '[^']{1,2}')\]")
_ORIGINAL_RULE_RE = re.compile(
    r"Note that 'J', 'Q', and 'K' count as '(\d{1,2})'(?:, '(\d{1,2})', and '(\d{1,2})' respectively)?\.")
_ORIGINAL_TARGET_RE = re.compile(r"You are an expert (\d{1,4}) points card game player")


def deal_from_prompt(prompt: Any) -> tuple[list[str], Rule, int] | None:
    """Recover ``(card symbols, rule, target)`` from a rendered prompt (either template), or ``None``.

    Used by the reward function when a dataset carries only the ``prompt`` column.
    Chat-message prompts are read from their first user message.
    """
    prompt = user_text(prompt)
    if prompt is None:
        return None
    try:
        m = _COMPACT_PROMPT_RE.search(prompt)
        if m:
            cards = m.group(4).split(" ")
            [symbol_rank(c) for c in cards]
            return cards, Rule(int(m.group(1)), int(m.group(2)), int(m.group(3))), int(m.group(5))
        mc, mr = _ORIGINAL_CARDS_RE.search(prompt), _ORIGINAL_RULE_RE.search(prompt)
        if mc and mr:
            cards = [c.strip().strip("'") for c in mc.group(1).split(",")]
            [symbol_rank(c) for c in cards]
            j = int(mr.group(1))
            rule = Rule(j, int(mr.group(2)), int(mr.group(3))) if mr.group(2) else Rule(j, j, j)
            mt = _ORIGINAL_TARGET_RE.search(prompt)
            return cards, rule, int(mt.group(1)) if mt else 24
    except (KeyError, ValueError):
        return None
    return None
