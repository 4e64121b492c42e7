"""GeneralPoints-L (GP-L): the 24-points card game with cards as text.

Decisions and deviations from the original: docs/design.md, 'GeneralPoints'.  Modules by concern:

* :mod:`.cards`      ranks, symbols, J/Q/K value rules, deal sampling
* :mod:`.solver`     exact solver, cached ``solvable``
* :mod:`.verifier`   safe field extraction, tokenizer, Fraction evaluator, reward table
* :mod:`.prompts`    original and compact templates, revision rendering
* :mod:`.partition`  the seeded demo / rl-only / unseen partition of value multisets
* :mod:`.eval_sets`  fixed, versioned evaluation files
* :mod:`.config`     :class:`GeneralPointsConfig`
* :mod:`.task`       :class:`GeneralPointsTask` and :class:`GeneralPointsEnv`
"""

from .cards import ID_RULE, OOD_RULE, Rule, default_training_rules, sample_ranks
from .config import GeneralPointsConfig
from .partition import Partition, make_partition
from .solver import solvable, solve, solutions
from .task import GeneralPointsEnv, GeneralPointsTask
from .verifier import REWARDS, EvalError, evaluate, extract_formula, verify_formula, verify_text

__all__ = [
    "ID_RULE",
    "OOD_RULE",
    "Rule",
    "default_training_rules",
    "sample_ranks",
    "GeneralPointsConfig",
    "EVAL_SPLITS",
    "GENERATOR_VERSION",
    "EvalSetMismatchError",
    "load_eval_set",
    "write_eval_sets",
    "Partition",
    "make_partition",
    "solvable",
    "solve",
    "solutions",
    "GeneralPointsEnv",
    "GeneralPointsTask",
    "REWARDS",
    "EvalError",
    "evaluate",
    "extract_formula",
    "verify_formula",
    "verify_text",
]

_LAZY_EVAL_SETS = {"EVAL_SPLITS", "GENERATOR_VERSION", "EvalSetMismatchError", "load_eval_set", "write_eval_sets"}


def __getattr__(name: str):
    # eval_sets is imported lazily so that `python -m amft.tasks.general_points.eval_sets`
    # does not find the module already imported by the package.
    if name in _LAZY_EVAL_SETS:
        from . import eval_sets

        return getattr(eval_sets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
