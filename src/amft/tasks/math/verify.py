"""Math-Verify scoring with a time limit on every call.

`math_verify` parses LaTeX and expressions with sympy, which can take unbounded time on
pathological input (huge exponents, deeply nested expressions). Every parse and comparison
here runs under `math_verify`'s own timeout (a SIGALRM alarm in the main thread), and a
call that times out or fails counts as wrong, never as an exception in training.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from .answers import last_boxed_answer

__all__ = ["answers_match", "gold_parses", "parse_answer"]

logger = logging.getLogger(__name__)

#: Extraction for model output: boxed answers first, then any LaTeX or plain expression.
_PREDICTION_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


def _timeout(seconds: int) -> int | None:
    # The alarm works only in the main thread; elsewhere math_verify runs without one.
    return seconds if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=65_536)
def _parse_gold(gold: str, seconds: int) -> tuple:
    text = gold if "\\boxed" in gold or gold.startswith("$") else f"${gold}$"
    return tuple(parse(text, parsing_timeout=_timeout(seconds)))


def gold_parses(gold: str, *, timeout_seconds: int = 5) -> bool:
    """Whether Math-Verify reads anything in the gold answer ``gold`` (one it cannot read makes every
    completion wrong)."""
    try:
        return bool(gold) and bool(_parse_gold(gold, timeout_seconds))
    except Exception as error:
        logger.debug("gold parse failed: %s", error)
        return False


def parse_answer(text: str, *, timeout_seconds: int = 5) -> list:
    """Math-Verify's parse of a completion's final answer (empty when none is found)."""
    try:
        return parse(text, extraction_config=_PREDICTION_CONFIG, parsing_timeout=_timeout(timeout_seconds))
    except Exception as error:  # math_verify raises on timeouts only when asked; be safe anyway
        logger.debug("parse failed: %s", error)
        return []


def answers_match(completion: str, gold: str, *, timeout_seconds: int = 5, require_boxed: bool = False) -> bool:
    """Whether the completion's final answer equals ``gold`` by Math-Verify.

    ``gold`` is an answer string (``"\\\\frac{1}{2}"``, ``"42"``, or a solution with a box). With
    ``require_boxed``, a completion without a ``\\\\boxed{}`` answer is wrong (a format the
    training prompt asks for). Parsing and comparison each stop after ``timeout_seconds``.
    """
    if not gold or not completion:
        return False
    if require_boxed and last_boxed_answer(completion) is None:
        return False
    try:
        gold_parsed = list(_parse_gold(gold, timeout_seconds))
        predicted = parse_answer(completion, timeout_seconds=timeout_seconds)
        if not gold_parsed or not predicted:
            return False
        return bool(verify(gold_parsed, predicted, timeout_seconds=_timeout(timeout_seconds)))
    except Exception as error:
        logger.debug("verify failed: %s", error)
        return False
