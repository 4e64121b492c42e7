"""Parser and verifier for GeneralPoints (see docs/design.md, 'The verifier', and for the cards check of
the image variant docs/design.md, 'The image variant (GP-VL)').

Pipeline for one model output:

1. :func:`extract_formula` finds the ``formula`` field: JSON (``json.loads`` of the
   whole text), the original regex form ``"formula": "..."`` (double quotes, exactly
   one space after the colon, non-greedy, one line), or the compact form
   ``formula: ...`` (key at the start or after whitespace / ``;``, one optional space,
   the value runs to the next ``;``, newline or the end, trailing whitespace dropped).
   Only the first :data:`MAX_TEXT_CHARS` characters of the output are considered.
   No field found -> the string ``"None"`` (as in the original), which fails the
   character check with -3.
2. The formula is cut at the first ``=``.
3. :func:`verify_formula` reproduces the original's check order exactly, with stacking:
   character check (-3, stop); syntax walk (-3 per bad transition); number checks
   (-2, ``if/elif`` for invalid/overused, then an independent -2 for unused);
   evaluation only when the total is still 0 (+5 ``Correct solution``; evaluation
   failure and a prefix of a solver solution: +1 ``partial solution``; otherwise -1
   with the prefix-walk message).  Messages are joined with ``", "`` plus a final ``"."``.

Differences from the original, both deliberate:

* Exact arithmetic: evaluation is exact (:class:`fractions.Fraction`), so ``8/(3-8/3)`` on
  [3, 3, 8, 8] scores +5 (the original float ``eval`` gives 0).
* Safe parsing: a hand-written tokenizer and recursive-descent parser; model text never
  reaches Python ``eval``.  Tokens are ASCII digit runs of at most
  :data:`MAX_LITERAL_DIGITS` digits and ``+ - * / ( )``; anything else (a space,
  ``x``, ``×``, a 4-digit literal, a non-ASCII digit such as ``٣``, which the
  original's ``\\d`` accepted) is "illegal characters".  Formulas longer than
  :data:`MAX_FORMULA_CHARS` characters are "illegal characters" too.  Together
  these bound the work on any input.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from fractions import Fraction
from typing import Any, Callable, Iterable, Sequence

from amft.tasks.base import Verification

from .solver import solution_prefixes

__all__ = [
    "REWARDS",
    "MAX_TEXT_CHARS",
    "MAX_FORMULA_CHARS",
    "MAX_LITERAL_DIGITS",
    "MAX_NESTING",
    "MIN_REWARD",
    "MAX_REWARD",
    "PARSE_STYLES",
    "EvalError",
    "extract_field",
    "extract_formula",
    "tokenize",
    "evaluate",
    "evaluate_tokens",
    "verify_formula",
    "verify_text",
    "WRONG_CARDS_MESSAGE",
    "extract_cards",
    "verify_visual_text",
    "recognition_accuracy",
]

#: The original reward table (``REWARD_FN``).
REWARDS: dict[str, float] = {
    "CORRECT_SOLUTION": 5.0,
    "PARTIAL_SOLUTION": 1.0,
    "NO_SOLUTION": -1.0,
    "INCORRECT_VISION": -1.5,
    "INCORRECT_NUMBER": -2.0,
    "ILLEGAL_FORMULA": -3.0,
}
#: Only this many leading characters of a model output are searched for the field.
MAX_TEXT_CHARS = 65536
#: Longer formulas (after the cut at ``=``) are "illegal characters" (-3).
MAX_FORMULA_CHARS = 200
#: Integer literals longer than this are "illegal characters" (-3).
MAX_LITERAL_DIGITS = 3
#: Parenthesis nesting deeper than this fails evaluation (like any other evaluation error).
MAX_NESTING = 200
#: The reachable reward range: at most one -3 per token (<= MAX_FORMULA_CHARS tokens) plus -4.
MIN_REWARD = REWARDS["ILLEGAL_FORMULA"] * MAX_FORMULA_CHARS + 2 * REWARDS["INCORRECT_NUMBER"]
MAX_REWARD = REWARDS["CORRECT_SOLUTION"]

#: The message of an image-variant answer that states other cards than the image shows.
WRONG_CARDS_MESSAGE = "you recognized wrong cards"

#: The field forms :func:`extract_field` understands, tried in this order.
PARSE_STYLES: tuple[str, ...] = ("json", "quoted", "compact")


class EvalError(ValueError):
    """The formula could not be evaluated (syntax, unclosed parenthesis, division by zero...)."""


# --------------------------------------------------------------------------- extraction

_QUOTED_RE: dict[tuple[str, str], re.Pattern[str]] = {}
_COMPACT_RE: dict[str, re.Pattern[str]] = {}
#: The value forms the ``quoted`` style reads: the original's string field, and its card list.
_QUOTED_STRING = '"(.*?)"'
_QUOTED_LIST = r"(\[.*?\])"
#: What :func:`_field_value` returns when a style finds no field.
_ABSENT = object()


def _quoted_re(key: str, value: str) -> re.Pattern[str]:
    pat = _QUOTED_RE.get((key, value))
    if pat is None:
        pat = _QUOTED_RE[key, value] = re.compile('"' + re.escape(key) + '": ' + value)
    return pat


def _compact_re(key: str) -> re.Pattern[str]:
    pat = _COMPACT_RE.get(key)
    if pat is None:
        pat = _COMPACT_RE[key] = re.compile(r"(?<![^\s;])" + re.escape(key) + r":[ ]?([^;\n]*)")
    return pat


def _field_value(text: str, key: str, style: str, quoted_value: str = _QUOTED_STRING) -> Any:
    """The value of field ``key`` in one parse style, or :data:`_ABSENT`.

    ``"json"``: whatever JSON value the object holds under ``key``, when the whole text parses as a
    JSON object; ``"quoted"``: the text ``quoted_value`` captures after ``"key": ``; ``"compact"``: the
    text after ``key:`` up to ``;``/newline/end, trailing whitespace dropped.
    """
    if style == "json":
        stripped = text.strip()
        if not stripped.startswith("{"):
            return _ABSENT
        try:
            obj = json.loads(stripped)
        except (ValueError, RecursionError):
            return _ABSENT
        return obj[key] if isinstance(obj, dict) and key in obj else _ABSENT
    if style == "quoted":
        m = _quoted_re(key, quoted_value).search(text)
        return m.group(1) if m else _ABSENT
    if style == "compact":
        m = _compact_re(key).search(text)
        return m.group(1).rstrip() if m else _ABSENT
    raise ValueError(f"unknown parse style {style!r}; known: {PARSE_STYLES}")


def extract_field(text: Any, key: str = "formula", styles: Iterable[str] = PARSE_STYLES) -> str | None:
    """The raw value of field ``key`` in a model output, or ``None`` if absent.

    ``styles`` selects the accepted forms, tried in order: ``"json"`` (the whole text
    parses as a JSON object holding a string under ``key``), ``"quoted"`` (the original
    regex ``"key": "(.*?)"``) and ``"compact"`` (``key: value`` up to ``;``/newline/end).
    Never raises.
    """
    if not isinstance(text, str):
        return None
    text = text[:MAX_TEXT_CHARS]
    for style in styles:
        value = _field_value(text, key, style)
        if value is not _ABSENT:
            return value if isinstance(value, str) else None
    return None


def extract_formula(text: Any, styles: Iterable[str] = PARSE_STYLES) -> str:
    """The formula of a model output, cut at the first ``=``; ``"None"`` if absent."""
    value = extract_field(text, "formula", styles)
    if value is None:
        value = "None"
    return value.split("=", 1)[0]


# --------------------------------------------------------------------------- tokens

_OPERATORS = frozenset("+-*/")
_DIGITS = frozenset("0123456789")


def tokenize(formula: str) -> list[str] | None:
    """Split ``formula`` into integer literals and ``+ - * / ( )``; ``None`` if illegal.

    Illegal: any other character (ASCII digits only), a literal longer than
    :data:`MAX_LITERAL_DIGITS`, or a formula longer than :data:`MAX_FORMULA_CHARS`.
    """
    if not isinstance(formula, str) or len(formula) > MAX_FORMULA_CHARS:
        return None
    tokens: list[str] = []
    i, n = 0, len(formula)
    while i < n:
        ch = formula[i]
        if ch in _DIGITS:
            j = i + 1
            while j < n and formula[j] in _DIGITS:
                j += 1
            if j - i > MAX_LITERAL_DIGITS:
                return None
            tokens.append(formula[i:j])
            i = j
        elif ch in _OPERATORS or ch == "(" or ch == ")":
            tokens.append(ch)
            i += 1
        else:
            return None
    return tokens


def _kind(token: str) -> str:
    if token in _OPERATORS:
        return "operator"
    if token == "(":
        return "open"
    if token == ")":
        return "close"
    return "number"


# --------------------------------------------------------------------------- evaluation


class _Parser:
    """expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ;
    factor := NUMBER | '(' expr ')'.  Exact ``Fraction`` arithmetic."""

    __slots__ = ("tokens", "i", "trace")

    def __init__(self, tokens: Sequence[str], trace: list | None = None):
        self.tokens = tokens
        self.i = 0
        self.trace = trace

    def _peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def parse(self) -> Fraction:
        value = self._expr(0)
        if self.i != len(self.tokens):
            raise EvalError(f"unexpected {self.tokens[self.i]!r}")
        return value

    def _expr(self, depth: int) -> Fraction:
        value = self._term(depth)
        while (tok := self._peek()) in ("+", "-"):
            self.i += 1
            rhs = self._term(depth)
            result = value + rhs if tok == "+" else value - rhs
            if self.trace is not None:
                self.trace.append((value, tok, rhs, result))
            value = result
        return value

    def _term(self, depth: int) -> Fraction:
        value = self._factor(depth)
        while (tok := self._peek()) in ("*", "/"):
            self.i += 1
            rhs = self._factor(depth)
            if tok == "*":
                result = value * rhs
            else:
                if rhs == 0:
                    raise EvalError("division by zero")
                result = value / rhs
            if self.trace is not None:
                self.trace.append((value, tok, rhs, result))
            value = result
        return value

    def _factor(self, depth: int) -> Fraction:
        tok = self._peek()
        if tok is None:
            raise EvalError("unexpected end of formula")
        if tok == "(":
            if depth >= MAX_NESTING:
                raise EvalError("parentheses nested too deeply")
            self.i += 1
            value = self._expr(depth + 1)
            if self._peek() != ")":
                raise EvalError("unclosed parenthesis")
            self.i += 1
            return value
        if tok[0] in _DIGITS:
            if len(tok) > 1 and tok[0] == "0":
                raise EvalError(f"leading zero in {tok!r}")
            self.i += 1
            return Fraction(int(tok))
        raise EvalError(f"unexpected {tok!r}")


def evaluate_tokens(tokens: Sequence[str], trace: list | None = None) -> Fraction:
    """Evaluate tokens from :func:`tokenize` exactly; raises :class:`EvalError` on any failure.

    If ``trace`` is a list, every binary operation is appended to it in evaluation
    order as ``(left, operator, right, result)`` (used for the compact ``steps`` field).
    """
    try:
        return _Parser(tokens, trace).parse()
    except RecursionError as exc:  # pragma: no cover - MAX_NESTING keeps us far below the limit
        raise EvalError("parentheses nested too deeply") from exc


def evaluate(formula: str) -> Fraction:
    """Evaluate a formula string exactly (never Python ``eval``); raises :class:`EvalError`."""
    tokens = tokenize(formula)
    if tokens is None:
        raise EvalError("illegal characters")
    return evaluate_tokens(tokens)


# --------------------------------------------------------------------------- verification


def _finish(reward: float, messages: list[str], target_hit: bool = False) -> Verification:
    return Verification(reward=float(reward), success=target_hit, message=", ".join(messages) + ".")


def verify_formula(
    formula: str | None,
    values: Sequence[int],
    target: int = 24,
    prefixes: Callable[[], frozenset[str]] | None = None,
) -> Verification:
    """Score one formula against the card ``values`` with the original's exact check order.

    ``formula`` is the extracted field (``None`` counts as the string ``"None"``); it is
    cut at the first ``=`` here.  ``prefixes`` returns the set of all prefixes of all
    solver solutions (default: computed from ``values`` and ``target``, cached); it is
    only called when the +1 / -1 path is reached.  Never raises on any ``formula``.
    """
    if not isinstance(formula, str):
        formula = "None"
    formula = formula.split("=", 1)[0]
    values = [int(v) for v in values]

    # 2. character check
    tokens = tokenize(formula)
    if tokens is None:
        return _finish(REWARDS["ILLEGAL_FORMULA"], ["illegal characters"])

    reward = 0.0
    messages: list[str] = []

    def add(r: float, msg: str) -> None:
        nonlocal reward
        reward += r
        messages.append(msg)

    # 3. syntax walk (penalties stack; unclosed '(' and a trailing operator are not penalised)
    prev: str | None = None
    open_parens = 0
    for tok in tokens:
        kind = _kind(tok)
        if kind == "number":
            if prev not in (None, "operator", "open"):
                add(REWARDS["ILLEGAL_FORMULA"], "invalid sequence after number")
        elif kind == "operator":
            if prev not in ("number", "close"):
                add(REWARDS["ILLEGAL_FORMULA"], "invalid sequence after operator")
        elif kind == "open":
            if prev in (None, "operator", "open"):
                open_parens += 1
            else:
                add(REWARDS["ILLEGAL_FORMULA"], "invalid sequence before '('")
        else:  # close
            if prev in ("number", "close"):
                if open_parens:
                    open_parens -= 1
                else:
                    add(REWARDS["ILLEGAL_FORMULA"], "unmatched closing parenthesis")
            else:
                add(REWARDS["ILLEGAL_FORMULA"], "invalid sequence after ')'")
        prev = kind

    # 4. number checks (multisets; lists keep first-appearance order)
    used = Counter(int(t) for t in tokens if t[0] in _DIGITS)
    cards = Counter(values)
    invalid = [num for num in used if num not in cards]
    overused = [num for num in used if used[num] > cards[num]]
    if invalid:
        add(REWARDS["INCORRECT_NUMBER"], f"you used invalid numbers: {invalid}")
    elif overused:
        add(REWARDS["INCORRECT_NUMBER"], f"you used numbers: {overused} too many times")
    unused = [num for num in cards if cards[num] > used[num]]
    if unused:
        add(REWARDS["INCORRECT_NUMBER"], f"you didn't use numbers: {unused}")

    if reward != 0:
        return _finish(reward, messages)

    # 5. evaluation
    get_prefixes = prefixes if prefixes is not None else (lambda: solution_prefixes(values, target))
    try:
        value = evaluate_tokens(tokens)
    except EvalError:
        if formula in get_prefixes():
            add(REWARDS["PARTIAL_SOLUTION"], "partial solution")
            return _finish(reward, messages)
    else:
        if value == target:
            add(REWARDS["CORRECT_SOLUTION"], "Correct solution")
            return _finish(reward, messages, target_hit=True)

    known = get_prefixes()
    register = ""
    for tok in tokens:
        previous = register
        register += tok
        if register not in known:
            if previous == "":
                add(REWARDS["NO_SOLUTION"], "your formula does not match any solution")
            else:
                add(REWARDS["NO_SOLUTION"],
                    f"{previous} is partially correct but the full formula does not match any solution")
            break
    return _finish(reward, messages)


def verify_text(text: Any, values: Sequence[int], target: int = 24,
                styles: Iterable[str] = PARSE_STYLES) -> Verification:
    """Extract the formula from a model output and verify it (never raises on ``text``)."""
    return verify_formula(extract_formula(text, styles), values, target)


# --------------------------------------------------------------------------- the image variant

_CARD_LIST_JUNK = str.maketrans("", "", "[]'\" ")


def _card_list(text: str) -> list[str]:
    """The original's reading of a card list: brackets, quotes and spaces removed, split on commas."""
    return text.translate(_CARD_LIST_JUNK).split(",")


def extract_cards(text: Any, styles: Iterable[str] = PARSE_STYLES) -> list[str] | None:
    """The four card symbols a model output states in its ``cards`` field, or ``None``.

    Forms, tried in the order of ``styles``: ``"json"`` (the whole text is a JSON object whose
    ``cards`` is a list or a string), ``"quoted"`` (``"cards": [...]``, one line) -- both read as the
    original does: brackets, quotes and spaces removed, split on commas -- and ``"compact"``
    (``cards: A 3 K 6``, split on spaces).  A list of other than four items is ``None``.  Never raises.
    """
    if not isinstance(text, str):
        return None
    text = text[:MAX_TEXT_CHARS]
    for style in styles:
        value = _field_value(text, "cards", style, quoted_value=_QUOTED_LIST)
        if isinstance(value, list):
            cards = [item for v in value for item in _card_list(str(v))]
        elif isinstance(value, str):
            cards = value.split() if style == "compact" else _card_list(value)
        else:
            continue
        return cards if len(cards) == 4 else None
    return None


def verify_visual_text(text: Any, cards: Sequence[str], values: Sequence[int], target: int = 24,
                       styles: Iterable[str] = PARSE_STYLES) -> Verification:
    """Verify an answer to the image variant: first the cards it states, then its formula.

    An answer whose ``cards`` are not the true card symbols ``cards`` (compared as sorted lists) scores
    -1.5 with the message :data:`WRONG_CARDS_MESSAGE` (no final period, as in the original) and its
    formula is not read; otherwise the formula is verified as in :func:`verify_text`.
    """
    stated = extract_cards(text, styles)
    if stated is None or sorted(stated) != sorted(cards):
        return Verification(reward=REWARDS["INCORRECT_VISION"], success=False, message=WRONG_CARDS_MESSAGE)
    return verify_text(text, values, target, styles)


def recognition_accuracy(verifications: Iterable[Verification | None]) -> float:
    """Card recognition accuracy of verified answers: 1 - (answers with wrong cards) / (answers).

    ``None`` entries (calls an environment did not evaluate) are skipped; no answer gives 1.0.
    """
    verdicts = [v for v in verifications if v is not None]
    wrong = sum(v.message == WRONG_CARDS_MESSAGE for v in verdicts)
    return 1.0 - wrong / len(verdicts) if verdicts else 1.0
