"""Configuration of the GeneralPoints tasks: GP-L (cards as text) and GP-VL (cards in an image)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from amft.defaults import changed_from_default
from amft.tasks.base import TaskConfig

from .cards import ID_RULE, OOD_RULE, Rule, default_training_rules
from .prompts import COMPACT_FIELDS, COMPLETION_FORMATS, TEMPLATES
from .rendering import ORIGINAL_IMAGE_SIZE, SMALL_IMAGE_SIZE, CardLayout, parse_image_size

DEMO_SOLUTIONS = ("random", "canonical")
RL_PROMPT_MULTISETS = ("training", "rl-only")
REWARDS = ("original", "success")
OOD_RULE_TEXT = ",".join(map(str, OOD_RULE.as_tuple()))

__all__ = ["GeneralPointsConfig", "GeneralPointsVisualConfig"]


def _rule_tuple(value: Any, name: str) -> tuple[int, int, int]:
    try:
        return Rule.of(value).as_tuple()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a (J, Q, K) triple of integers, got {value!r}") from exc


@dataclass
class GeneralPointsConfig(TaskConfig):
    """Options of the GeneralPoints-L task: each field is a flag and a YAML key of `amft train`
    when the task is ``general-points``, and a keyword of ``get_task("general-points", ...)``.

    Rules are written ``"j,q,k"`` (the values of J, Q and K), several separated by ``;``; YAML
    files and Python may give lists of triples instead. After construction ``training_rules`` and
    ``ood_rule`` hold ``(J, Q, K)`` tuples. The data regime (``partition_seed``,
    ``unseen_fraction``, ``demo_fraction``) is :func:`amft.tasks.general_points.partition.make_partition`'s.
    With the default partition and evaluation settings the committed files in ``eval_sets/`` are
    loaded (their header is checked); with any other settings the episodes are generated in
    memory, deterministically, and a warning is logged.
    """

    _argument_group_name = "general-points task options"

    template: str = field(default="original", metadata={"help": (
        "Prompt template: 'original' (the paper's Q_GeneralPoint_EQN_L text, for pretrained LLMs) or 'compact' "
        "('[rule] J=10 Q=10 K=10 [cards] A 3 K 6 [target] 24 [answer]', for tiny character-level models).")})
    completion_format: str = field(default="plain", metadata={"help": (
        "Completion of the compact template: 'plain' (cards, numbers, formula), 'steps' (adds the three "
        "intermediate results before the formula), 'short' (numbers and formula: the prompt already shows the "
        "cards) or 'formula' (the formula alone).")})
    demo_solution: str = field(default="random", metadata={"help": (
        "Which solver solution a demonstration shows: 'random' (a seeded uniform choice: diverse targets) or "
        "'canonical' (the multiset's smallest solution string: every deal of a multiset has the same target).")})
    chat_format: bool = field(default=False, metadata={"help": (
        "Original template only: prompts and completions as chat messages (TRL's conversational format) "
        "instead of plain text.")})
    strict_format: bool = field(default=False, metadata={"help": (
        "Accept only the template's own formula form (original: JSON '\"formula\": \"...\"'; compact: "
        "'formula: ...'); by default both forms are accepted.")})
    target: int = field(default=24, metadata={"help": "The number the cards must make (24 in every published experiment)."})
    revision_keep_last: int | None = field(default=None, metadata={"help": (
        "Revision prompts keep only the last K failed attempts (default: all; 0: every retry sees the original "
        "prompt); bounds the context of small models.")})
    training_rules: str | None = field(default=None, metadata={"help": (
        "The J,Q,K value mappings of training prompts and demonstrations, 'j,q,k' separated by ';' (e.g. "
        "'10,10,10', the paper's setting for pretrained LLMs); default: every mapping over 10-13 except "
        "ood_rule (63 rules).")})
    id_rule_fraction: float = field(default=0.5, metadata={"help": (
        "Probability that a training row uses the ID rule J=Q=K=10 when it is a training rule; the other rules "
        "share the rest uniformly (all are uniform when it is not one).")})
    ood_rule: str = field(default=OOD_RULE_TEXT, metadata={"help": (
        "The held-out J,Q,K mapping of the 'ood-rule' split, 'j,q,k'; never a training rule.")})
    partition_seed: int = field(default=0, metadata={"help": (
        "Seed of the split of value multisets into training and unseen ones.")})
    unseen_fraction: float = field(default=0.15, metadata={"help": (
        "Share of value multisets held out for the 'unseen-deals' split.")})
    demo_fraction: float = field(default=0.5, metadata={"help": (
        "Share of training value multisets that have demonstrations (the others make the 'rl-only' split).")})
    rl_prompt_multisets: str = field(default="training", metadata={"help": (
        "Value multisets the RL prompts are drawn from: 'training' (demonstrated and rl-only ones, the original "
        "regime) or 'rl-only' (only those without demonstrations, so every RL prompt is one that imitation "
        "does not teach).")})
    reward: str = field(default="original", metadata={"help": (
        "The reward of an answer: 'original' (the original's table: +5 solved, -1 a legal formula that is not "
        "the target, -2 number problems, -3 an illegal formula, +1 a partial solution) or 'success' (1 solved, "
        "0 otherwise). The verifier's verdict and messages are the same.")})
    eval_seed: int = field(default=42, metadata={"help": "Seed of the evaluation episodes (42, as in the original scripts)."})
    eval_episodes_per_split: int = field(default=234, metadata={"help": (
        "Evaluation episodes per split (234, as in the original protocol).")})

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ValueError(f"template must be one of {TEMPLATES}, got {self.template!r}")
        if self.completion_format not in COMPLETION_FORMATS:
            raise ValueError(f"completion_format must be one of {COMPLETION_FORMATS}, got {self.completion_format!r}")
        if self.completion_format != "plain" and self.template != "compact":
            raise ValueError(f"completion_format={self.completion_format!r} shapes the compact template's completions; "
                             f"the {self.template!r} template has its own: use template='compact' or leave it 'plain'")
        if self.demo_solution not in DEMO_SOLUTIONS:
            raise ValueError(f"demo_solution must be one of {DEMO_SOLUTIONS}, got {self.demo_solution!r}")
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {self.reward!r}")
        if self.rl_prompt_multisets not in RL_PROMPT_MULTISETS:
            raise ValueError(f"rl_prompt_multisets must be one of {RL_PROMPT_MULTISETS}, got {self.rl_prompt_multisets!r}")
        self._check_chat_format()
        if not isinstance(self.target, int) or isinstance(self.target, bool) or not 1 <= self.target <= 9999:
            raise ValueError(f"target must be an integer in 1..9999, got {self.target!r}")
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
        if changed_from_default(self, ("id_rule_fraction",)) and not (ID_RULE.as_tuple() in rules and len(rules) > 1):
            raise ValueError(f"id_rule_fraction weighs the ID rule {ID_RULE.as_tuple()} against other training rules; "
                             f"with training_rules {';'.join(','.join(map(str, r)) for r in rules)} it has no effect: "
                             "leave it out")
        if not isinstance(self.eval_episodes_per_split, int) or self.eval_episodes_per_split < 1:
            raise ValueError("eval_episodes_per_split must be a positive integer")

    def _check_chat_format(self) -> None:
        if self.chat_format and self.template != "original":
            raise ValueError("chat_format is only meaningful with template='original'")

    # convenience -----------------------------------------------------------------

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(Rule(*t) for t in self.training_rules)  # type: ignore[union-attr]

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


#: the canvas of each template when ``image_size`` is not given
DEFAULT_IMAGE_SIZES: dict[str, tuple[int, int]] = {"original": ORIGINAL_IMAGE_SIZE, "compact": SMALL_IMAGE_SIZE}


@dataclass
class GeneralPointsVisualConfig(GeneralPointsConfig):
    """Options of the GP-VL task (the cards shown in an image): those of GP-L, plus the image's size.

    Prompts are always chat messages (``chat_format`` stays True): TRL passes images to a model only
    with conversational prompts. The answer must state the cards it sees, so the compact template
    takes only the completion formats with a ``cards`` field (``plain``, ``steps``). After
    construction ``image_size`` holds ``(width, height)``.
    """

    _argument_group_name = "gp-vl task options"

    # GP-L's two prompt fields again, with what they mean here: the prompt shows no cards, and the formats
    # without a cards field are refused.
    template: str = field(default="original", metadata={"help": (
        "Prompt template, after the card image: 'original' (the paper's Q_GeneralPoint_EQN_VL text, for pretrained "
        "VLMs: it asks for the cards seen, their numbers and the formula as JSON) or 'compact' ('[rule] J=10 Q=10 "
        "K=10 [target] 24 [answer]', for tiny character-level VLMs). The cards are only in the image.")})
    completion_format: str = field(default="plain", metadata={"help": (
        "Completion of the compact template; it must state the cards seen: 'plain' (cards, numbers, formula) or "
        "'steps' (adds the three intermediate results before the formula).")})
    chat_format: bool = field(default=True, metadata={"help": (
        "Prompts and completions as chat messages; always True for GP-VL (TRL passes images only with "
        "conversational prompts).")})
    image_size: str | None = field(default=None, metadata={"help": (
        "Canvas of the card image, 'WIDTHxHEIGHT'. 1200x1200 is the original layout (four 270x378 cards on casino "
        "green); smaller canvases scale it (128x64: four 29x40 cards, for tiny vision encoders). Default: 1200x1200 "
        "with the original template, 128x64 with the compact one.")})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.template == "compact" and "cards" not in COMPACT_FIELDS[self.completion_format]:
            shown = [name for name, fields in COMPACT_FIELDS.items() if "cards" in fields]
            raise ValueError(f"GP-VL answers must state the cards they see: completion_format must be one of {shown} "
                             f"with the compact template, got {self.completion_format!r}")
        size = DEFAULT_IMAGE_SIZES[self.template] if self.image_size is None else parse_image_size(self.image_size)
        CardLayout(*size)  # refuses a canvas too small to draw the cards on
        self.image_size = size

    def _check_chat_format(self) -> None:
        if not self.chat_format:
            raise ValueError("GP-VL prompts are always chat messages (TRL passes images only with conversational "
                             "prompts): chat_format=False is not available")

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["image_size"] = list(self.image_size)  # type: ignore[arg-type]
        return d
