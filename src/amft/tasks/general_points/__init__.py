"""GeneralPoints: the 24-points card game with the cards as text (GP-L) or in an image (GP-VL).

Decisions and deviations from the original: docs/design.md, 'GeneralPoints'.  Modules by concern:

* :mod:`.cards`      ranks, symbols, J/Q/K value rules, deal sampling
* :mod:`.solver`     exact solver, cached ``solvable``
* :mod:`.verifier`   safe field extraction, tokenizer, Fraction evaluator, reward table
* :mod:`.prompts`    original and compact templates, revision rendering
* :mod:`.partition`  the seeded demo / rl-only / unseen partition of value multisets
* :mod:`.eval_sets`  fixed, versioned evaluation files
* :mod:`.config`     :class:`GeneralPointsConfig`, :class:`GeneralPointsVisualConfig`
* :mod:`.task`       :class:`GeneralPointsTask` and :class:`GeneralPointsEnv`
* :mod:`.rendering`  the card images of GP-VL, drawn from scratch
* :mod:`.visual_task` :class:`GeneralPointsVisualTask` and :class:`GeneralPointsVisualEnv` (GP-VL)
"""

from .cards import ID_RULE, OOD_RULE, Rule, default_training_rules, sample_ranks
from .config import GeneralPointsConfig, GeneralPointsVisualConfig
from .partition import Partition, make_partition
from .solver import solvable, solve, solutions
from .rendering import render_cards
from .task import GeneralPointsEnv, GeneralPointsTask
from .verifier import (
    REWARDS,
    EvalError,
    evaluate,
    extract_cards,
    extract_formula,
    recognition_accuracy,
    verify_formula,
    verify_text,
    verify_visual_text,
)
from .visual_task import GeneralPointsVisualEnv, GeneralPointsVisualTask

__all__ = [
    "ID_RULE",
    "OOD_RULE",
    "Rule",
    "default_training_rules",
    "sample_ranks",
    "GeneralPointsConfig",
    "GeneralPointsVisualConfig",
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
    "GeneralPointsVisualEnv",
    "GeneralPointsVisualTask",
    "render_cards",
    "REWARDS",
    "EvalError",
    "evaluate",
    "extract_formula",
    "verify_formula",
    "verify_text",
    "extract_cards",
    "verify_visual_text",
    "recognition_accuracy",
]

_LAZY_EVAL_SETS = {"EVAL_SPLITS", "GENERATOR_VERSION", "EvalSetMismatchError", "load_eval_set", "write_eval_sets"}


def __getattr__(name: str):
    # eval_sets is imported lazily so that `python -m amft.tasks.general_points.eval_sets`
    # does not find the module already imported by the package.
    if name in _LAZY_EVAL_SETS:
        from . import eval_sets

        return getattr(eval_sets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
