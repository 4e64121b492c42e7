"""Solver and verifier agree on every ID value multiset; deal-space statistics; exact arithmetic
(see docs/design.md, 'The verifier')."""

from itertools import combinations_with_replacement
from fractions import Fraction

import pytest

from amft.tasks.general_points import solver
from amft.tasks.general_points.solver import solutions, solvable, solve
from amft.tasks.general_points.verifier import evaluate, verify_formula

ID_MULTISETS = list(combinations_with_replacement(range(1, 11), 4))
ALL_MULTISETS = list(combinations_with_replacement(range(1, 14), 4))


def test_multiset_counts():
    assert len(ID_MULTISETS) == 715
    assert len(ALL_MULTISETS) == 1820


def test_solvable_statistics_match_spec():
    id_solvable = [m for m in ID_MULTISETS if solvable(m)]
    assert len(id_solvable) == 566
    assert len(ID_MULTISETS) - len(id_solvable) == 715 - 566
    ood = [m for m in ALL_MULTISETS if max(m) >= 11]
    assert len(ood) == 1105
    assert sum(solvable(m) for m in ood) == 796


def test_every_solver_solution_verifies_and_unsolvable_have_none():
    n_solutions = 0
    unsolvable = 0
    for m in ID_MULTISETS:
        sols = solutions(m)
        # the verifier sees the values in a different order than the sorted multiset
        values = [m[2], m[0], m[3], m[1]]
        if not sols:
            unsolvable += 1
            assert not solvable(m)
            continue
        assert solvable(m)
        for s in sols:
            assert "=" not in s and " " not in s
            assert verify_formula(s, values).reward == 5.0, (m, s)
            assert verify_formula(s + "=24", values).reward == 5.0, (m, s)
            n_solutions += 1
    assert unsolvable == 715 - 566
    assert n_solutions > 20000


def test_solutions_are_exact_and_use_each_value_once():
    for m in [(1, 3, 6, 10), (3, 3, 8, 8), (1, 5, 5, 5), (11, 12, 13, 1)]:
        for s in solutions(m):
            assert evaluate(s) == 24
            nums = sorted(int(x) for x in __import__("re").findall(r"\d+", s))
            assert nums == sorted(m)


def test_3388_exact_arithmetic_g1():
    assert solutions([3, 3, 8, 8]) == ("8/(3-8/3)",)
    assert evaluate("8/(3-8/3)") == Fraction(24)
    v = verify_formula("8/(3-8/3)", [3, 3, 8, 8])
    assert (v.reward, v.success, v.message) == (5.0, True, "Correct solution.")
    assert verify_formula("8/(3-8/3)=24", [8, 3, 8, 3]).reward == 5.0


def test_solver_order_is_seeded_and_covers_the_same_set():
    import random

    a = solve([1, 3, 10, 6], random.Random(7))
    b = solve([1, 3, 10, 6], random.Random(7))
    c = solve([1, 3, 10, 6], random.Random(8))
    assert a == b
    assert sorted(a) == sorted(c) == sorted(solutions([6, 10, 3, 1]))
    assert len(set(a)) == len(a)


def test_solver_enumerates_seven_patterns_and_64_triples():
    assert len(solver.PATTERNS) == 7
    assert len(solver.OPERATOR_TRIPLES) == 64
    # (ab)(cd) and (bcd) patterns are present
    assert "(1+2)*(3+5)" in {s for s in solutions([1, 2, 3, 5])}
    assert "4*(1+2+3)" in solutions([1, 2, 3, 4])


def test_solver_never_divides_by_zero_and_handles_targets():
    assert solutions([1, 1, 1, 1]) == ()
    assert not solvable([1, 1, 1, 1])
    assert solvable([1, 1, 1, 1], target=4)
    assert "1+1+1+1" in solutions([1, 1, 1, 1], target=4)
    with pytest.raises(ValueError):
        solutions([1, 2, 3])


def test_complete_tree_enumeration_agrees_on_solvability():
    """An independent search over all expression trees finds the same solvable ID sets."""

    def reachable(vals):
        if len(vals) == 1:
            return {vals[0]}
        out = set()
        n = len(vals)
        for mask in range(1, 2 ** n - 1):
            left = tuple(vals[i] for i in range(n) if mask >> i & 1)
            right = tuple(vals[i] for i in range(n) if not mask >> i & 1)
            for x in reachable(left):
                for y in reachable(right):
                    out.update({x + y, x - y, x * y})
                    if y != 0:
                        out.add(x / y)
        return out

    sample = ID_MULTISETS[::7]  # 103 multisets keep this fast
    for m in sample:
        assert (Fraction(24) in reachable(tuple(Fraction(v) for v in m))) == solvable(m), m
