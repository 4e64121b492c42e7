"""Configuration of the GeneralPoints-L task."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from amft.tasks.base import TaskConfig

from .cards import ID_RULE, OOD_RULE, Rule, default_training_rules
from .prompts import COMPLETION_FORMATS, TEMPLATES

DEMO_SOLUTIONS = ("random", "canonical")

__all__ = ["GeneralPointsConfig"]


def _rule_tuple(value: Any, name: str) -> tuple[int, int, int]:
    try:
        return Rule.of(value).as_tuple()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a (J, Q, K) triple of integers, got {value!r}") from exc


@dataclass
class GeneralPointsConfig(TaskConfig):
    """Knobs of GP-L.  Every field has a default; ``get_task("general-points", **overrides)``.

    Prompt format
        template: ``"original"`` (the paper's ``Q_GeneralPoint_EQN_L`` text, for pretrained
            LLMs) or ``"compact"`` (``[rule] J=10 Q=10 K=10 [cards] A 3 K 6 [target] 24
            [answer]``, for tiny character-level models).
        completion_format: compact only; ``"plain"`` (cards, number, formula), ``"steps"``
            (adds the three intermediate results before the formula) or ``"short"`` (number
            and formula: the prompt already shows the cards).
        demo_solution: which solver solution a demonstration shows: ``"random"`` (seeded
            uniform choice, diverse targets) or ``"canonical"`` (the smallest solution
            string of the multiset, so every deal of a multiset has the same target).
        chat_format: original only; if True, ``prompt`` / ``completion`` of the rows are
            chat message lists (``[{"role": "user", "content": ...}]``) for TRL's
            conversational format instead of plain strings.
        strict_format: if True, the verifier accepts only the active template's formula
            form (original: JSON / ``"formula": "..."``; compact: ``formula: ...``);
            by default both forms are accepted.

    Game
        target: the number to reach (24 in every published experiment).
        max_attempts: verified attempts per multi-turn episode (the original ``verify_iter``);
            the next call returns -1 truncated without evaluation.
        revision_keep_last: revision prompts keep only the last K failed attempts
            (``None``: all); bounds the context of small models.

    Rules (G4)
        training_rules: J/Q/K triples used for training prompts and demonstrations.
            ``None`` means every triple over {10, 11, 12, 13} except the held-out
            ``ood_rule`` (63 rules).  For a paper-faithful pretrained-LLM run use
            ``[(10, 10, 10)]`` (on the command line ``--training_rules 10,10,10``; rules as text
            are ``"j,q,k"`` separated by ``;``).
        id_rule_fraction: probability of drawing the ID rule (10, 10, 10) for a training
            row when it is in ``training_rules``; the other rules share the rest
            uniformly.  Ignored when the ID rule is not listed (then all are uniform).
        ood_rule: the held-out rule of the ``ood-rule`` split; must not be a training rule.

    Data regime (G3)
        partition_seed, unseen_fraction, demo_fraction: see
            :func:`amft.tasks.general_points.partition.make_partition`.

    Evaluation sets (G5)
        eval_seed: seed of the evaluation-set generator (42 as in the original scripts).
        eval_episodes_per_split: episodes per split (234 as in the original protocol).
        With the default partition / eval settings the committed files in
        ``eval_sets/`` are loaded (their header is checked); with any other settings the
        episodes are generated in memory, deterministically, and a warning is logged.
    """

    template: str = "original"
    completion_format: str = "plain"
    demo_solution: str = "random"
    chat_format: bool = False
    strict_format: bool = False
    target: int = 24
    max_attempts: int = 5
    revision_keep_last: int | None = None
    training_rules: Sequence[Sequence[int]] | str | None = None
    id_rule_fraction: float = 0.5
    ood_rule: Sequence[int] | str = field(default=OOD_RULE.as_tuple())
    partition_seed: int = 0
    unseen_fraction: float = 0.15
    demo_fraction: float = 0.5
    eval_seed: int = 42
    eval_episodes_per_split: int = 234

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ValueError(f"template must be one of {TEMPLATES}, got {self.template!r}")
        if self.completion_format not in COMPLETION_FORMATS:
            raise ValueError(f"completion_format must be one of {COMPLETION_FORMATS}, got {self.completion_format!r}")
        if self.demo_solution not in DEMO_SOLUTIONS:
            raise ValueError(f"demo_solution must be one of {DEMO_SOLUTIONS}, got {self.demo_solution!r}")
        if self.chat_format and self.template != "original":
            raise ValueError("chat_format is only meaningful with template='original'")
        if not isinstance(self.target, int) or isinstance(self.target, bool) or not 1 <= self.target <= 9999:
            raise ValueError(f"target must be an integer in 1..9999, got {self.target!r}")
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be a positive integer, got {self.max_attempts!r}")
        if self.revision_keep_last is not None and (not isinstance(self.revision_keep_last, int)
                                                    or self.revision_keep_last < 0):
            raise ValueError(f"revision_keep_last must be None or an integer >= 0, got {self.revision_keep_last!r}")
        for name in ("id_rule_fraction", "unseen_fraction", "demo_fraction"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        self.ood_rule = _rule_tuple(self.ood_rule, "ood_rule")
        if self.training_rules is None:
            rules = tuple(r.as_tuple() for r in default_training_rules())
            if self.ood_rule != OOD_RULE.as_tuple():
                rules = tuple(r for r in rules + (OOD_RULE.as_tuple(),) if r != self.ood_rule)
        else:
            listed = self.training_rules.split(";") if isinstance(self.training_rules, str) else self.training_rules
            rules = tuple(dict.fromkeys(_rule_tuple(r, "training_rules") for r in listed))
        if not rules:
            raise ValueError("training_rules must not be empty")
        if self.ood_rule in rules:
            raise ValueError(f"the held-out ood_rule {self.ood_rule} must not be among the training_rules")
        self.training_rules = rules
        if not isinstance(self.eval_episodes_per_split, int) or self.eval_episodes_per_split < 1:
            raise ValueError("eval_episodes_per_split must be a positive integer")

    # convenience -----------------------------------------------------------------

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(Rule(*t) for t in self.training_rules)  # type: ignore[union-attr]

    @property
    def id_rule(self) -> Rule:
        return ID_RULE

    @property
    def held_out_rule(self) -> Rule:
        return Rule(*self.ood_rule)

    def partition_settings(self) -> dict[str, Any]:
        """What the value-multiset partition depends on."""
        return {"seed": self.partition_seed, "unseen_fraction": float(self.unseen_fraction),
                "demo_fraction": float(self.demo_fraction), "target": self.target}

    def eval_settings(self) -> dict[str, Any]:
        """What the evaluation sets depend on (compared against the committed files' headers)."""
        return {"seed": self.eval_seed, "n_episodes": self.eval_episodes_per_split,
                "ood_rule": list(self.ood_rule), "partition": self.partition_settings()}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["training_rules"] = [list(r) for r in self.training_rules]  # type: ignore[union-attr]
        d["ood_rule"] = list(self.ood_rule)
        return d
