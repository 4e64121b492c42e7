"""Final answers in model text and in dataset rows: boxed answers (nested braces included),
GSM8K's `#### answer`, and multiple-choice letters.

These are string operations only: nothing here evaluates model text.
"""

from __future__ import annotations

import re

__all__ = ["boxed_answers", "last_boxed_answer", "gsm8k_answer", "choice_letter"]

#: Only the last this-many characters of a text are searched for boxes (final answers come last;
#: the cap keeps the scan fast on pathological text with thousands of unclosed boxes).
MAX_SCAN_CHARS = 16_384
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BARE_BOXED = re.compile(r"\\boxed ([^\s$]+)")


def _boxes(text: str) -> list[tuple[int, str]]:
    """(position, content) of every box in the tail of ``text``, in order of position."""
    text = text[-MAX_SCAN_CHARS:]
    boxes = []
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for index in range(start, len(text)):
            char = text[index]
            if char in "{}" and text[index - 1] == "\\":
                continue  # an escaped brace is content
            depth += 1 if char == "{" else -1 if char == "}" else 0
            if depth == 0:
                boxes.append((match.start(), text[start:index].strip()))
                break
    boxes.extend((m.start(), m.group(1)) for m in _BARE_BOXED.finditer(text))
    return sorted(boxes)


def boxed_answers(text: str) -> list[str]:
    """The contents of every ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, in order.

    Braces are matched by depth, so ``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``; a box whose
    braces never close is ignored. ``\\boxed 5`` (no braces) gives ``5``.
    """
    return [content for _, content in _boxes(text)]


def last_boxed_answer(text: str) -> str | None:
    """The last boxed answer of ``text`` (the final answer by convention), or None."""
    boxes = _boxes(text)
    return boxes[-1][1] if boxes else None


def gsm8k_answer(solution: str) -> str | None:
    """The answer after GSM8K's ``####`` marker, thousands separators removed."""
    match = re.search(r"####\s*(.+?)\s*$", solution.strip())
    return match.group(1).replace(",", "").strip() if match else None


def choice_letter(text: str, letters: str = "ABCDEFGHIJ") -> str | None:
    """The option letter a completion chose: a boxed letter, else ``answer is (X)``, else the last
    standalone letter among ``letters``."""
    boxed = last_boxed_answer(text)
    if boxed is not None:
        cleaned = re.sub(r"\\text\{([^}]*)\}", r"\1", boxed).strip().strip("()").strip()
        if len(cleaned) == 1 and cleaned.upper() in letters:
            return cleaned.upper()
    pattern = rf"answer is:?\s*\(?([{letters}])\)?"
    match = re.search(pattern, text, flags=re.IGNORECASE)
    if match:
        return match.group(1).upper()
    standalone = re.findall(rf"(?<![A-Za-z])\(?([{letters}])\)?(?![A-Za-z])", text)
    return standalone[-1] if standalone else None
