"""Exact solver for the 24-points game (see docs/design.md, 'Deal sampling and the solver').

Enumeration (same order as the original): distinct permutations of the 4 values
(sorted, then shuffled by the given RNG) x 64 operator triples from ``+-*/`` (in
``itertools.product`` order) x 7 bracket patterns:

    none, (ab), (abc), (bc), (bcd), (cd), (ab)(cd)

Solutions are plain strings without spaces and without ``=24``, e.g. ``8/(3-8/3)``.

Arithmetic is exact.  For speed, each permutation is first scanned with one
generated straight-line float function (448 expressions; division by zero skipped);
every float candidate within 1e-6 of the target is then *confirmed* with
:class:`fractions.Fraction`, so the result is exactly the set of expressions whose
rational value equals the target.  (Values are small integers, so no exact solution
can be missed by the float scan: its float error is ~1e-15, and a nonzero exact
divisor is at least 1/13**2 in size.)
"""

from __future__ import annotations

import random
from fractions import Fraction
from functools import lru_cache
from itertools import permutations, product
from typing import Callable, Iterable, Sequence

__all__ = ["PATTERNS", "OPERATOR_TRIPLES", "solve", "solutions", "solvable", "solution_prefixes"]

#: The 7 bracket patterns over positions a, b, c, d of a permutation (original order).
PATTERNS: tuple[str, ...] = (
    "{a}{o1}{b}{o2}{c}{o3}{d}",
    "({a}{o1}{b}){o2}{c}{o3}{d}",
    "({a}{o1}{b}{o2}{c}){o3}{d}",
    "{a}{o1}({b}{o2}{c}){o3}{d}",
    "{a}{o1}({b}{o2}{c}{o3}{d})",
    "{a}{o1}{b}{o2}({c}{o3}{d})",
    "({a}{o1}{b}){o2}({c}{o3}{d})",
)
#: The 64 operator triples, in ``itertools.product('+-*/', repeat=3)`` order.
OPERATOR_TRIPLES: tuple[tuple[str, str, str], ...] = tuple(product("+-*/", repeat=3))  # type: ignore[assignment]

# (ops, pattern) for every expression index k = ops_index * 7 + pattern_index
_EXPRESSIONS: tuple[tuple[tuple[str, str, str], str], ...] = tuple(
    (ops, pattern) for ops in OPERATOR_TRIPLES for pattern in PATTERNS
)


def _symbolic(ops: tuple[str, str, str], pattern: str) -> str:
    return pattern.format(a="a", b="b", c="c", d="d", o1=ops[0], o2=ops[1], o3=ops[2])


def _build_scanner() -> Callable[[float, float, float, float, float], list[int]]:
    lines = ["def _scan(a, b, c, d, t):", "    hits = []"]
    for k, (ops, pattern) in enumerate(_EXPRESSIONS):
        expr = _symbolic(ops, pattern)
        lines.append("    try:")
        lines.append(f"        if -1e-6 < ({expr}) - t < 1e-6: hits.append({k})")
        lines.append("    except ZeroDivisionError:")
        lines.append("        pass")
    lines.append("    return hits")
    namespace: dict = {}
    # Generated from the fixed templates above only: no external text is ever compiled.
    exec(compile("\n".join(lines), "<gp-solver-scan>", "exec"), namespace)  # noqa: S102
    return namespace["_scan"]


def _build_exact() -> tuple[Callable[..., Fraction], ...]:
    funcs = []
    for ops, pattern in _EXPRESSIONS:
        namespace: dict = {}
        exec(  # noqa: S102 - fixed templates only
            compile(f"def f(a, b, c, d):\n    return {_symbolic(ops, pattern)}", "<gp-solver-exact>", "exec"),
            namespace,
        )
        funcs.append(namespace["f"])
    return tuple(funcs)


_SCAN = _build_scanner()
_EXACT = _build_exact()


def _render(k: int, perm: Sequence[int]) -> str:
    ops, pattern = _EXPRESSIONS[k]
    a, b, c, d = perm
    return pattern.format(a=a, b=b, c=c, d=d, o1=ops[0], o2=ops[1], o3=ops[2])


def _hits(perm: Sequence[int], target: int) -> list[int]:
    a, b, c, d = perm
    out = []
    for k in _SCAN(float(a), float(b), float(c), float(d), float(target)):
        try:
            if _EXACT[k](Fraction(a), Fraction(b), Fraction(c), Fraction(d)) == target:
                out.append(k)
        except ZeroDivisionError:  # pragma: no cover - float scan already skips these
            continue
    return out


def _check_values(values: Sequence[int]) -> tuple[int, ...]:
    vals = tuple(int(v) for v in values)
    if len(vals) != 4:
        raise ValueError(f"the solver takes exactly 4 values, got {len(vals)}")
    return vals


def solve(values: Sequence[int], rng: random.Random | None = None, target: int = 24) -> list[str]:
    """All solution strings for ``values`` (4 ints), in the original enumeration order.

    The distinct permutations are sorted and then shuffled with ``rng`` (a seeded
    ``random.Random``; ``None`` keeps the sorted order, which is deterministic).
    Each solution is a plain expression string without ``=24``.
    """
    vals = _check_values(values)
    perms = sorted(set(permutations(vals)))
    if rng is not None:
        rng.shuffle(perms)
    out: list[str] = []
    for perm in perms:
        for k in _hits(perm, target):
            out.append(_render(k, perm))
    return out


@lru_cache(maxsize=4096)
def _solutions_cached(key: tuple[int, ...], target: int) -> tuple[str, ...]:
    return tuple(solve(key, None, target))


def solutions(values: Iterable[int], target: int = 24) -> tuple[str, ...]:
    """All solutions of the multiset ``values`` in deterministic (sorted-permutation) order; cached.

    The *set* of solutions does not depend on the order of ``values``.
    """
    return _solutions_cached(tuple(sorted(_check_values(list(values)))), int(target))


@lru_cache(maxsize=4096)
def _prefixes_cached(key: tuple[int, ...], target: int) -> frozenset[str]:
    out = set()
    for s in _solutions_cached(key, target):
        for i in range(1, len(s) + 1):
            out.add(s[:i])
    return frozenset(out)


def solution_prefixes(values: Iterable[int], target: int = 24) -> frozenset[str]:
    """Every non-empty prefix of every solution (for the verifier's prefix checks); cached."""
    return _prefixes_cached(tuple(sorted(_check_values(list(values)))), int(target))


@lru_cache(maxsize=8192)
def _solvable_cached(key: tuple[int, ...], target: int) -> bool:
    for perm in set(permutations(key)):
        if _hits(perm, target):
            return True
    return False


def solvable(values: Iterable[int], target: int = 24) -> bool:
    """Whether the multiset ``values`` has at least one solution (cached by sorted multiset)."""
    return _solvable_cached(tuple(sorted(_check_values(list(values)))), int(target))
