"""The V-IRL-L task: per-step decision prompts for training, whole episodes with retries for
evaluation (splits ``id``, ``rl-only``, ``ood-rule`` and ``unseen-routes``).

Routes come from a `route_infos.json` file (``routes``) or from V-IRL-L-synthetic. Route splits
are held out: the routes are split by route id with a fixed seed into train, validation and
test; ``id`` evaluates test routes in the absolute action space, ``ood-rule`` test routes with
two turns in the relative space, and ``unseen-routes`` routes of street grids that no training
route comes from (synthetic routes only). Training shows the relative space only on one-turn
routes (the ``[mode]`` token), so ``ood-rule`` asks for an action space on route shapes never
trained with it. With ``rl_only_words``, routes whose turns use those compass words give no
demonstrations (role ``rl-only``) and are held out within their role; ``rl-only`` evaluates
them. See docs/design.md, 'Held-out splits'.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Mapping

from amft.defaults import changed_from_default
from amft.tasks.base import Task, TaskConfig, Verification, completion_text

from .env import MAX_TRIES, Position, VirlEnv, step_reward
from .routes import COMPASS_WORDS, DIAGONAL_WORDS, ROUTE_ROLES, Route, load_routes, route_from_record, route_role
from .synthetic import generate_routes

__all__ = ["VirlConfig", "VirlTask"]


@dataclass(frozen=True)
class VirlConfig(TaskConfig):
    """Options of the V-IRL-L task: each field is a flag and a YAML key of `amft train` / `amft eval`
    when the task is ``virl``, and a keyword of ``get_task("virl", ...)``."""

    _argument_group_name = "virl task options"

    routes: str | None = field(default=None, metadata={"help": (
        "A route_infos.json file (default: V-IRL-L-synthetic routes).")})
    synthetic_routes: int = field(default=1200, metadata={"help": "Number of synthetic routes to generate."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic street grids and routes."})
    prompt_form: str = field(default="compact", metadata={"help": (
        "'compact' prompts with an action-space mode token (tiny models) or the paper's 'original' ones (LLMs).")})
    relative_fraction: float = field(default=0.5, metadata={"help": (
        "Share of one-turn training routes shown in the relative action space.")})
    turn_share: float = field(default=0.5, metadata={"help": (
        "Share of decision rows drawn at turn positions (the start and intersections); the rest are drawn "
        "uniformly along the rail, where most positions only ask for forward().")})
    retry_share: float = field(default=0.2, metadata={"help": (
        "Share of decision rows that are second tries: the prompt holds a failed answer and its feedback.")})
    drop_rate: float = field(default=0.5, metadata={"help": (
        "Probability of dropping each interpolated point between intersections on the rail.")})
    wrap_relative_turns: bool = field(default=True, metadata={"help": (
        "Heading changes are brought to [-180, 180) before naming the relative turn (350 degrees is a slight "
        "right); --no_wrap_relative_turns keeps the original rule (a left).")})
    eval_routes: int = field(default=100, metadata={"help": "Routes per evaluation split."})
    validation_routes: int = field(default=100, metadata={"help": (
        "Routes held out for the meta-gradient's validation prompts.")})
    rl_only_words: str = field(default="", metadata={"help": (
        "Compass words whose turns are never demonstrated: 'diagonal' (the four intercardinal words) or a "
        "comma-separated list of compass words. A route with such a turn is 'rl-only': it gives RL prompts but "
        "no demonstrations, and the 'rl-only' split tests such routes. Empty (the default): every route is "
        "demonstrated.")})
    rl_only_demonstrations: str = field(default="none", metadata={"help": (
        "What imitation shows of rl-only routes: 'none', or 'relative': their one-turn routes are demonstrated "
        "in the relative action space only, so the held-out words appear in instructions and in the answer's "
        "copied sentence but never as an action; RL prompts of rl-only routes then ask in the absolute space.")})
    rl_prompt_routes: str = field(default="training", metadata={"help": (
        "Routes the RL prompts are drawn from: 'training' (demonstrated and rl-only ones) or 'rl-only' (only "
        "those without demonstrations, so every RL prompt asks for what imitation does not teach).")})

    def __post_init__(self) -> None:
        if self.prompt_form not in ("compact", "original"):
            raise ValueError(f"prompt_form must be 'compact' or 'original', got {self.prompt_form!r}")
        for name in ("relative_fraction", "turn_share", "retry_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        unknown = self.held_out_words - set(COMPASS_WORDS)
        if unknown:
            raise ValueError(f"rl_only_words: unknown compass word(s) {', '.join(sorted(unknown))}; use 'diagonal' "
                             f"or words of {', '.join(COMPASS_WORDS)}")
        if self.rl_prompt_routes not in ("training", "rl-only"):
            raise ValueError(f"rl_prompt_routes must be 'training' or 'rl-only', got {self.rl_prompt_routes!r}")
        if self.rl_only_demonstrations not in ("none", "relative"):
            raise ValueError(f"rl_only_demonstrations must be 'none' or 'relative', got {self.rl_only_demonstrations!r}")
        for name, default in (("rl_only_demonstrations", "none"), ("rl_prompt_routes", "training")):
            if getattr(self, name) != default and not self.held_out_words:
                raise ValueError(f"{name} {getattr(self, name)!r} needs rl_only_words: without held-out words no "
                                 "route is rl-only")
        for name in changed_from_default(self, ("synthetic_routes", "synthetic_seed")) if self.routes else ():
            raise ValueError(f"{name} shapes synthetic routes and has no effect with routes {self.routes!r}; leave it out")

    @property
    def held_out_words(self) -> frozenset[str]:
        """The compass words of ``rl_only_words``, ``diagonal`` expanded."""
        words = [word.strip() for word in self.rl_only_words.split(",") if word.strip()]
        return frozenset(w for word in words for w in (DIAGONAL_WORDS if word == "diagonal" else (word,)))


def synthetic_routes(n: int, seed: int) -> list[Route]:
    """The first ``n`` routes of V-IRL-L-synthetic with ``seed``."""
    return [route_from_record(r, "V-IRL-L-synthetic", i) for i, r in enumerate(generate_routes(n, seed), start=1)]


class VirlTask(Task):
    """V-IRL-L; decision rows carry ``prompt``, ``action``, ``at_intersection``, ``mode``."""

    name = "virl"
    reward_fields = {"action": str, "at_intersection": bool}
    #: the splits results are reported on (``rl-only`` only with held-out words)
    test_splits: tuple[str, ...] = ("id", "rl-only", "ood-rule", "unseen-routes")
    #: walked like ``id`` and ``rl-only`` on the validation routes of each role, for choosing a study's
    #: settings; evaluated only when asked for
    validation_splits: tuple[str, ...] = ("val-id", "val-rl-only")
    splits: tuple[str, ...] = test_splits + validation_splits
    quick_eval_attempts = None
    #: a whole route: the environment fails it at a position's third call anyway
    default_eval_attempts = 64

    config_class: type[VirlConfig] = VirlConfig
    env_class: type[VirlEnv] = VirlEnv

    def __init__(self, config: VirlConfig | None = None, **overrides: Any) -> None:
        self.config = config or self.config_class(**overrides)
        self._roles: dict[str, dict[str, list[Route]]] | None = None
        self._splits: dict[str, list[Route]] | None = None
        self._by_id: dict[str, Route] | None = None

    @property
    def default_splits(self) -> tuple[str, ...]:
        return tuple(split for split in self.test_splits if self._has_split(split))

    def _has_split(self, split: str) -> bool:
        """Whether these settings give ``split`` routes: ``rl-only`` needs held-out words, ``unseen-routes``
        the unseen street grids of synthetic data (a route file has none)."""
        if split == "rl-only":
            return bool(self.config.held_out_words)
        if split == "unseen-routes":
            return not self.config.routes
        return True

    # ------------------------------------------------------------------ routes
    def route_role(self, route: Route) -> str:
        """``demo`` or ``rl-only`` (see :func:`route_role`)."""
        return route_role(route, self.config.held_out_words)

    def role_splits(self) -> dict[str, dict[str, list[Route]]]:
        """Per role (``demo``, ``rl-only``): its train / validation / test routes, held out within the role,
        and, for ``demo``, the unseen-grid routes of synthetic data."""
        if self._roles is None:
            config = self.config
            if config.routes:
                routes, unseen = load_routes(config.routes), []
            else:
                routes = synthetic_routes(config.synthetic_routes, config.synthetic_seed)
                unseen = self._unseen_demo_routes()
            self._roles = {}
            for role in ROUTE_ROLES:
                order = sorted((r for r in routes if self.route_role(r) == role), key=lambda route: route.route_id)
                random.Random("virl-route-split").shuffle(order)
                held = min(config.eval_routes + config.validation_routes, len(order) // 2)
                self._roles[role] = {"train": order[held:], "validation": order[held // 2 : held],
                                     "test": order[: held // 2], "unseen": []}
            self._roles["demo"]["unseen"] = unseen
        return self._roles

    def _unseen_demo_routes(self) -> list[Route]:
        """The first ``eval_routes`` demo routes of the unseen grids. The generator is prefix-stable, so
        without held-out words these are its first ``eval_routes`` routes, as before there were roles."""
        config = self.config
        pool = config.eval_routes
        while True:
            demo = [route for route in synthetic_routes(pool, config.synthetic_seed + 1_000)
                    if self.route_role(route) == "demo"]
            if len(demo) >= config.eval_routes or pool >= 16 * config.eval_routes:
                if config.eval_routes and not demo:
                    raise ValueError(f"no unseen-grid route avoids the held-out words {config.rl_only_words!r}; "
                                     "hold out fewer compass words")
                return demo[: config.eval_routes]
            pool *= 2

    def route_splits(self) -> dict[str, list[Route]]:
        """train / validation / test routes of both roles, and unseen-grid routes for synthetic data."""
        if self._splits is None:
            roles = self.role_splits()
            self._splits = {name: [route for role in ROUTE_ROLES for route in roles[role][name]]
                            for name in ("train", "validation", "test", "unseen")}
        return self._splits

    # ------------------------------------------------------------------ decision rows
    def _env_options(self, split: str | None) -> dict[str, Any]:
        """The environment's keywords besides route, mode, seed and budget; ``split`` is the evaluation
        split it serves (None for training rows)."""
        return {"form": self.config.prompt_form, "drop_rate": self.config.drop_rate,
                "wrap": self.config.wrap_relative_turns}

    def _env(self, route: Route, mode: str, seed: int, *, max_attempts: int, split: str | None = None) -> VirlEnv:
        return self.env_class(route, max_attempts=max_attempts, mode=mode, seed=seed, **self._env_options(split))

    def _decision(self, route: Route, mode: str, rng: random.Random) -> dict[str, Any]:
        # A decision row needs at most one (wrong) answer: one position's tries are budget enough.
        # A demonstrated route's failed tries do not name held-out words either.
        avoid = self.config.held_out_words if self.route_role(route) == "demo" else frozenset()
        env = self._env(route, mode, rng.randrange(2**31), max_attempts=MAX_TRIES)
        env.reset()
        turns = [i for i, position in enumerate(env.rail) if position.kind in ("start", "intersection")]
        env.index = rng.choice(turns) if rng.random() < self.config.turn_share else rng.randrange(len(env.rail))
        position: Position = env.rail[env.index]
        demonstration = env.expert_answer()
        prompt = env.step(env.wrong_answer(rng, avoid))[0] if rng.random() < self.config.retry_share else env.prompt()
        return {**env.prompt_columns(prompt), "action": position.action(mode),
                "at_intersection": position.at_intersection, "mode": mode, "demonstration": demonstration}

    def _mode(self, route: Route, rng: random.Random) -> str:
        one_turn = len(route.milestones) == 2
        return "rel" if one_turn and rng.random() < self.config.relative_fraction else "abs"

    def _decisions(self, routes: list[Route], n: int, stream: str, *, demonstrations: bool = False) -> list[dict[str, Any]]:
        if n and not routes:
            raise ValueError("no routes to draw decision rows from (check rl_only_words and the number of routes)")
        rng = random.Random(stream)
        rows = []
        for _ in range(n):
            route = routes[rng.randrange(len(routes))]
            mode = self._mode(route, rng)
            rl_only = self.route_role(route) == "rl-only"
            if rl_only and self.config.rl_only_demonstrations == "relative":
                mode = "rel" if demonstrations else "abs"
            row = self._decision(route, mode, rng)
            if rl_only and not demonstrations:
                row["demonstration"] = None  # the data regime gives none for this decision
            rows.append(row)
        return rows

    def train_prompts(self, n: int, seed: int) -> list[dict]:
        """RL prompts from the training routes of both roles (or only ``rl-only`` ones with
        ``rl_prompt_routes="rl-only"``). Rows of ``demo`` routes carry the expert's answer as
        ``demonstration`` for the methods that use one per prompt; the others have ``None``."""
        routes = (self.route_splits()["train"] if self.config.rl_prompt_routes == "training"
                  else self.role_splits()["rl-only"]["train"])
        return self._decisions(routes, n, f"virl-train:{seed}")

    def demonstrations(self, n: int, seed: int) -> list[dict]:
        """SFT rows from the training routes of role ``demo`` (and, with ``rl_only_demonstrations="relative"``,
        the one-turn ``rl-only`` ones in the relative action space)."""
        roles = self.role_splits()
        routes = roles["demo"]["train"]
        if self.config.rl_only_demonstrations == "relative":
            routes = routes + [route for route in roles["rl-only"]["train"] if len(route.milestones) == 2]
        rows = self._decisions(routes, n, f"virl-demo:{seed}", demonstrations=True)
        for row in rows:
            row["completion"] = row.pop("demonstration")
        return rows

    def validation_prompts(self, n: int, seed: int) -> list[dict]:
        return self._decisions(self.route_splits()["validation"], n, f"virl-validation:{seed}")

    # ------------------------------------------------------------------ evaluation
    def _split_routes(self, split: str) -> tuple[list[Route], str]:
        """The routes an evaluation split walks (all of them, before ``eval_routes``) and its action space."""
        demo = self.role_splits()["demo"]
        if split in ("id", "val-id"):
            return demo["test" if split == "id" else "validation"], "abs"
        if split in ("rl-only", "val-rl-only"):
            if not self.config.held_out_words:
                raise ValueError(f"split {split!r} needs rl_only_words: without held-out words no route is rl-only")
            return self.role_splits()["rl-only"]["test" if split == "rl-only" else "validation"], "abs"
        if split == "ood-rule":
            return [r for r in demo["test"] if len(r.milestones) > 2], "rel"
        if not demo["unseen"]:
            raise ValueError("split 'unseen-routes' needs synthetic routes (no unseen grids in a route file)")
        return demo["unseen"], "abs"

    def eval_episodes(self, split: str) -> list[dict]:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(self.splits)}")
        chosen, mode = self._split_routes(split)
        if not chosen:
            raise ValueError(f"split {split!r} has no routes under these settings (synthetic_routes, rl_only_words)")
        return [{"route_id": route.route_id, "mode": mode, "split": split, "episode": index}
                for index, route in enumerate(chosen[: self.config.eval_routes])]

    def _route(self, row: Mapping[str, Any]) -> Route:
        """The route of an evaluation row."""
        if self._by_id is None:
            self._by_id = {route.route_id: route for group in self.route_splits().values() for route in group}
        return self._by_id[row["route_id"]]

    def make_env(self, row: Mapping[str, Any], *, max_attempts: int) -> VirlEnv:
        """The episode of one route; ``max_attempts`` bounds its model calls, tries included."""
        return self._env(self._route(row), row["mode"], row.get("episode", 0), max_attempts=max_attempts,
                         split=row.get("split"))

    def verify(self, row: Mapping[str, Any], completion: Any) -> Verification:
        return step_reward(self.config.prompt_form, completion_text(completion), str(row.get("action")),
                           bool(row.get("at_intersection")))

