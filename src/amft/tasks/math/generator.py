"""Small arithmetic word problems with worked solutions, for the CPU math demo.

Each problem is a short story with one to three additions or subtractions on small whole
numbers (a start and amounts up to ``max_number``; results stay non-negative); its
demonstration works the steps out (``8+7=15. 15-5=10.``) and ends with the answer in
``\\boxed{}``, the format the Math-Verify reward reads. A problem is determined by its seed and
index, so train, validation and evaluation draws never share a problem text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["WordProblem", "generate_problems"]

_NAMES = ("Ann", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea", "Max", "Noor")
_ITEMS = ("apples", "books", "coins", "cards", "shells", "stamps", "pens", "marbles", "eggs", "stickers")
_GAINS = ("buys {n} more", "finds {n} more", "gets {n} more", "is given {n} more")
_LOSSES = ("gives away {n}", "loses {n}", "sells {n}", "uses {n}")


@dataclass(frozen=True)
class WordProblem:
    """One problem: its text, the worked solution (ending in a boxed answer) and the answer."""

    question: str
    solution: str
    answer: int


def _problem(rng: random.Random, steps: int, max_number: int) -> WordProblem:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    start = total = rng.randint(2, max_number)
    clauses, work = [], []
    for _ in range(steps):
        if total > 1 and rng.random() < 0.5:
            amount = rng.randint(1, min(total - 1, max_number))
            clauses.append(rng.choice(_LOSSES).format(n=amount))
            work.append(f"{total}-{amount}={total - amount}.")
            total -= amount
        else:
            amount = rng.randint(1, max_number)
            clauses.append(rng.choice(_GAINS).format(n=amount))
            work.append(f"{total}+{amount}={total + amount}.")
            total += amount
    question = f"{name} has {start} {item}. {name} {', then '.join(clauses)}. How many {item} does {name} have now?"
    return WordProblem(question, f"{' '.join(work)} \\boxed{{{total}}}", total)


def generate_problems(n: int, seed: int | str, *, min_steps: int = 1, max_steps: int = 2, max_number: int = 10,
                      exclude: frozenset[str] = frozenset()) -> list[WordProblem]:
    """``n`` distinct problems (by question text) from the seeded stream, none in ``exclude``."""
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
    if max_number < 2:
        raise ValueError(f"max_number must be >= 2, got {max_number}")
    rng = random.Random(f"math-words:{seed}")
    problems: list[WordProblem] = []
    seen = set(exclude)
    attempts = 0
    while len(problems) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise RuntimeError(f"could only draw {len(problems)} distinct problems of the {n} asked")
        problem = _problem(rng, rng.randint(min_steps, max_steps), max_number)
        if problem.question not in seen:
            seen.add(problem.question)
            problems.append(problem)
    return problems
