"""The GeneralPoints-L task (cards as text) and its multi-turn revision environment."""

from __future__ import annotations

import dataclasses

import logging
import random
from typing import Any, Callable, Mapping

from amft.tasks.base import Env, Task, Turn, Verification, completion_text

from .cards import ID_RULE, Rule, multiset, rank_symbol, sample_ranks, symbol_rank
from .config import GeneralPointsConfig
from .partition import Partition, make_partition
from .prompts import (
    deal_from_prompt,
    render_completion,
    render_conversation,
    render_messages,
    render_prompt,
    user_text,
)
from .solver import solutions
from .verifier import REWARDS, verify_text

__all__ = ["GeneralPointsTask", "GeneralPointsEnv"]

logger = logging.getLogger(__name__)

_MAX_TRIES_PER_ROW = 100_000
_STYLES = {"original": ("json", "quoted"), "compact": ("compact",)}


class GeneralPointsTask(Task):
    """GP-L: 4 cards as text, a formula reaching the target, shaped reward, revision env.

    Row keys (prompts, demonstrations, validation rows and evaluation episodes):

    * ``prompt``: the rendered prompt (a string; a chat message list with ``chat_format``)
    * ``cards``: card symbols, e.g. ``["A", "3", "K", "6"]``
    * ``ranks``: ranks 1..13, e.g. ``[1, 3, 13, 6]``
    * ``values``: values under ``rule``, e.g. ``[1, 3, 10, 6]`` (what the reward reads)
    * ``rule``: the J/Q/K values, e.g. ``[10, 10, 10]``
    * ``target``: 24
    * demonstrations add ``completion`` and ``solution`` (the formula without ``=24``)
    * evaluation episodes add ``split`` and ``episode`` (index within the split)
    """

    name = "general-points"
    #: the splits results are reported on (same as ``eval_sets.TEST_SPLITS``)
    test_splits: tuple[str, ...] = ("id", "rl-only", "unseen-deals", "ood-rule")
    #: drawn like ``id`` and ``rl-only`` on deals of no test split, for choosing a study's settings;
    #: evaluated only when asked for (same as ``eval_sets.VALIDATION_SPLITS``)
    validation_splits: tuple[str, ...] = ("val-id", "val-rl-only")
    splits: tuple[str, ...] = test_splits + validation_splits
    success_reward = REWARDS["CORRECT_SOLUTION"]
    config_class: type[GeneralPointsConfig] = GeneralPointsConfig

    def __init__(self, config: GeneralPointsConfig | None = None, **overrides: Any):
        if config is None:
            config = self.config_class(**overrides)
        elif not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        elif overrides:
            config = self.config_class(**{**config.to_dict(), **overrides})
        self.config = config
        if config.reward == "success":
            self.success_reward = 1.0
        self.partition: Partition = make_partition(config.partition_seed, float(config.unseen_fraction),
                                                   float(config.demo_fraction), config.target)
        self._eval_cache: dict[str, list[dict]] = {}
        self._styles = _STYLES[config.template] if config.strict_format else ("json", "quoted", "compact")

    @property
    def default_splits(self) -> tuple[str, ...]:
        return self.test_splits

    # ------------------------------------------------------------------ rows
    def _row(self, ranks: tuple[int, ...], rule: Rule) -> dict[str, Any]:
        cards = [rank_symbol(r) for r in ranks]
        return {"prompt": self._prompt(cards, rule), "cards": cards, "ranks": list(ranks), "values": rule.values(ranks),
                "rule": list(rule.as_tuple()), "target": self.config.target}

    def _prompt(self, cards: list[str], rule: Rule) -> Any:
        text = render_prompt(self.config.template, cards, rule, self.config.target)
        return [{"role": "user", "content": text}] if self.config.chat_format else text

    def _draw_rule(self, rng: random.Random) -> Rule:
        rules = self.config.rules
        if ID_RULE in rules and len(rules) > 1:
            if rng.random() < self.config.id_rule_fraction:
                return ID_RULE
            others = [r for r in rules if r != ID_RULE]
            return others[rng.randrange(len(others))]
        return rules[rng.randrange(len(rules))]

    def _sample(self, n: int, rng: random.Random, accept: frozenset, exclude: frozenset = frozenset()) -> list[dict]:
        if n < 0:
            raise ValueError("n must be >= 0")
        if n and not accept:
            raise ValueError("no value multisets to sample from (check demo_fraction / unseen_fraction)")
        rows = []
        for _ in range(n):
            rule = self._draw_rule(rng)
            for _try in range(_MAX_TRIES_PER_ROW):
                ranks = sample_ranks(rng, ood=False)
                values = rule.values(ranks)
                if multiset(values) in accept and (ranks, rule.as_tuple()) not in exclude:
                    break
            else:
                raise RuntimeError(f"could not draw an accepted deal under rule {rule.as_tuple()}")
            rows.append(self._row(ranks, rule))
        return rows

    def train_prompts(self, n: int, seed: int) -> list[dict]:
        """RL prompts: training rules, ID-style sampling, multisets in ``demo | rl-only`` (or only
        ``rl-only`` with ``rl_prompt_multisets="rl-only"``).

        Prompts from ``demo`` multisets carry a ``demonstration`` (a solution completion, drawn as
        for :meth:`demonstrations`) for the methods that use one per prompt (LUFFY, SRFT,
        ReLIFT); the others have ``None`` there: the data regime gives them none.
        """
        pool = self.partition.training if self.config.rl_prompt_multisets == "training" else self.partition.rl_only
        rows = self._sample(n, random.Random(f"gp-train:{seed}"), pool)
        rng = random.Random(f"gp-train-demo:{seed}")
        for row in rows:
            has_demo = multiset(row["values"]) in self.partition.demo
            row["demonstration"] = self._solution_completion(row, rng)[0] if has_demo else None
        return rows

    def demonstrations(self, n: int, seed: int) -> list[dict]:
        """SFT rows from ``demo`` multisets only: one solver solution (seeded uniform choice, or the
        canonical one, see ``demo_solution``) + ``=24``."""
        rng = random.Random(f"gp-demo:{seed}")
        rows = self._sample(n, rng, self.partition.demo)
        for row in rows:
            text, row["solution"] = self._solution_completion(row, rng)
            row["completion"] = [{"role": "assistant", "content": text}] if self.config.chat_format else text
        return rows

    def _solution_completion(self, row: Mapping[str, Any], rng: random.Random) -> tuple[str, str]:
        """(completion text, formula) of one solver solution of the row's deal."""
        sols = solutions(row["values"], self.config.target)
        formula = min(sols) if self.config.demo_solution == "canonical" else sols[rng.randrange(len(sols))]
        text = render_completion(self.config.template, row["cards"], row["values"],
                                 f"{formula}={self.config.target}", self.config.completion_format)
        return text, formula

    def validation_prompts(self, n: int, seed: int) -> list[dict]:
        """Training-distribution prompts (own seed stream) whose deal (ranks + rule) is in no test split;
        they may share deals with the validation splits (both are validation data)."""
        exclude = frozenset((tuple(ep["ranks"]), tuple(ep["rule"])) for split in self.test_splits
                            for ep in self._episodes(split))
        return self._sample(n, random.Random(f"gp-validation:{seed}"), self.partition.training, exclude)

    def uses_committed_eval_sets(self) -> bool:
        """Whether this config's eval settings are the default ones (then the committed files are used)."""
        return self.config.eval_settings() == GeneralPointsConfig().eval_settings()

    def eval_episodes(self, split: str) -> list[dict]:
        """The fixed episodes of ``split``; rows as documented on the class, copies on every call."""
        return [dict(r) for r in self._episodes(split)]

    def _episodes(self, split: str) -> list[dict]:
        """The cached rows of ``split``'s episodes."""
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; known: {self.splits}")
        if split not in self._eval_cache:
            self._eval_cache[split] = [self._episode_row(split, ep) for ep in self._stored_episodes(split)]
        return self._eval_cache[split]

    def _episode_row(self, split: str, episode: Mapping[str, Any]) -> dict[str, Any]:
        row = self._row(tuple(episode["ranks"]), Rule.of(episode["rule"]))
        row.update(split=split, episode=episode["episode"])
        return row

    def _stored_episodes(self, split: str) -> list[dict[str, Any]]:
        # imported here so that `python -m amft.tasks.general_points.eval_sets` runs cleanly
        from .eval_sets import generate_split, load_eval_set

        return self._committed_or_generated(split, load_eval_set, generate_split)

    def _committed_or_generated(self, split: str, load: Callable[..., list[dict]],
                                generate: Callable[..., list[dict]]) -> list[dict[str, Any]]:
        """The committed file's episodes with the default eval settings, else ``generate``'s, with a warning."""
        if self.uses_committed_eval_sets():
            return load(split, self.config)
        logger.warning(
            "GeneralPoints: eval settings %s differ from the defaults of the committed evaluation "
            "sets; generating split %r in memory (deterministic from eval_seed=%s).",
            self.config.eval_settings(), split, self.config.eval_seed)
        return generate(split, self.config)

    # ------------------------------------------------------------------ scoring
    def _deal(self, row: Mapping[str, Any]) -> tuple[list[int], int]:
        target = row.get("target")
        target = int(target) if isinstance(target, (int, float)) and not isinstance(target, bool) else self.config.target
        values = row.get("values")
        if isinstance(values, (list, tuple)) and len(values) == 4:
            return [int(v) for v in values], target
        ranks, rule = row.get("ranks"), row.get("rule")
        if isinstance(ranks, (list, tuple)) and len(ranks) == 4 and isinstance(rule, (list, tuple)):
            return Rule.of(rule).values(int(r) for r in ranks), target
        parsed = deal_from_prompt(row.get("prompt"))
        if parsed is not None:
            cards, rule_, target_ = parsed
            return rule_.values(symbol_rank(c) for c in cards), target_
        raise ValueError("GeneralPoints row has no deal: expected a 'values' column (or 'ranks' and 'rule', "
                         f"or a GeneralPoints prompt); got keys {sorted(row)}")

    def scoring_problem(self, row: Mapping[str, Any]) -> str | None:
        try:
            self._deal(row)
        except (TypeError, ValueError, OverflowError) as error:
            return str(error)
        return None

    def _check(self, row: Mapping[str, Any], text: str) -> Verification:
        """The verifier's verdict on one answer text, with the original reward table."""
        values, target = self._deal(row)
        return verify_text(text, values, target, self._styles)

    def verify(self, row: Mapping[str, Any], completion: Any) -> Verification:
        """Score one completion (string or chat messages).  Never raises on the completion;
        raises ``ValueError`` only if ``row`` carries no deal (a dataset setup error)."""
        verification = self._check(row, completion_text(completion))
        if self.config.reward == "success":
            return dataclasses.replace(verification, reward=float(verification.success))
        return verification

    def make_env(self, row: Mapping[str, Any], *, max_attempts: int) -> "GeneralPointsEnv":
        return GeneralPointsEnv(self, row, max_attempts=max_attempts)


class GeneralPointsEnv(Env):
    """Sequential revision: up to ``max_attempts`` verified tries per episode.

    * A +5 attempt ends the episode (``terminated=True``, ``info["is_success"]=True``).
    * After a failed attempt the observation is the next prompt text: the conversation so
      far with the feedback turn (see :func:`render_conversation`; ``info["messages"]``
      holds the same conversation as chat messages).
    * The failed attempt that spends ``max_attempts`` ends the episode (``truncated=True``).
    """

    episodic = False

    def __init__(self, task: GeneralPointsTask, row: Mapping[str, Any], *, max_attempts: int):
        super().__init__(max_attempts=max_attempts)
        self.task = task
        self.row = dict(row)
        task._deal(self.row)  # a row without a deal fails here rather than at the first answer
        prompt = user_text(self.row.get("prompt"))
        if prompt is None:
            raise ValueError("the row needs a 'prompt'")
        self.prompt: str = prompt
        self.template = task.config.template
        self.keep_last = task.config.revision_keep_last
        self.history: list[tuple[str, str]] = []

    def _begin(self, seed: int | None) -> str:
        self.history = []
        return self.prompt

    def messages(self) -> list[dict[str, str]]:
        return render_messages(self.prompt, self.history, self.template, self.keep_last)

    def observation(self) -> str:
        return render_conversation(self.prompt, self.history, self.template, self.keep_last)

    def _respond(self, answer: str) -> Turn:
        verification = self.task._check(self.row, answer)
        if verification.success:
            return Turn(self.observation() + answer, verification.reward, verification, terminated=True, success=True,
                        info={"messages": self.messages()})
        self.history.append((answer, verification.message))
        return Turn(self.observation(), verification.reward, verification, info={"messages": self.messages()})
