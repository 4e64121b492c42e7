"""V-IRL-VL: V-IRL-L with each position's observation shown as a 2x2 grid of street views (see
docs/design.md, 'V-IRL-VL').

Routes, rails, instructions, answers, the verifier, rewards and retries are V-IRL-L's; what changes
is the current observation (an image, see :mod:`.rendering`, or the route's own street-view files,
see docs/design.md, 'Real street views') and the prompt that announces it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from PIL import Image

from amft.tasks.base import Turn
from amft.tasks.images import image_messages, parse_image_size

from .env import VirlEnv
from .rail import Position, build_rail
from .rendering import (
    LARGE_IMAGE_SIZE,
    OOD_STYLE,
    RENDERING_VERSION,
    SMALL_IMAGE_SIZE,
    STYLES,
    TRAINING_STYLE,
    GridLayout,
    load_views,
    render_views,
    visible_landmarks,
)
from .routes import Route, load_routes
from .task import VirlConfig, VirlTask

__all__ = ["VirlVisualConfig", "VirlVisualEnv", "VirlVisualTask", "check_street_views", "position_image"]

#: the canvas of each prompt form when ``image_size`` is not given
DEFAULT_IMAGE_SIZES: dict[str, tuple[int, int]] = {"compact": SMALL_IMAGE_SIZE, "original": LARGE_IMAGE_SIZE}


def position_image(route: Route, position: Position, *, style: str = TRAINING_STYLE,
                   size: tuple[int, int] = SMALL_IMAGE_SIZE) -> Image.Image:
    """The grid of views at a rail position: the route's street-view files where it lists them, else
    drawn in ``style`` from what the position's text observation says."""
    if route.street_views:
        paths = route.street_view(position.place)
        if paths is None:
            raise ValueError(f"route {route.route_id} lists street views but none for rail place {position.place!r}")
        return load_views(paths, size)
    return render_views(visible_landmarks(position.observation), position.at_intersection, style=style, size=size,
                        seed=f"{route.route_id}:{position.place}")


def check_street_views(route: Route) -> None:
    """Refuse a route that lists street views but misses a place its rails can have, or a file."""
    if not route.street_views:
        return
    every_place = build_rail(route, random.Random(0), route.init_heading, drop_rate=0.0)
    missing = [position.place for position in every_place if route.street_view(position.place) is None]
    if missing:
        raise ValueError(f"route {route.route_id} lists street views but none for the rail places {missing} (places "
                         "are 'start', 'k' for node k and 'k.j' for the j-th of the 5 points of segment k)")
    absent = [path for _, paths in route.street_views for path in paths if not Path(path).is_file()]
    if absent:
        raise FileNotFoundError(f"route {route.route_id}: street-view files not found: {absent[:5]}")


class VirlVisualEnv(VirlEnv):
    """V-IRL-L's episode with the current observation shown in an image: ``images`` holds the grid of the
    position the agent stands at, :meth:`messages` the prompt as one chat message with the image first."""

    visual = True

    def __init__(self, route: Route, *, max_attempts: int, style: str = TRAINING_STYLE,
                 image_size: str | tuple[int, int] = SMALL_IMAGE_SIZE, **options: Any) -> None:
        super().__init__(route, max_attempts=max_attempts, **options)
        if style not in STYLES:
            raise ValueError(f"style must be one of {tuple(STYLES)}, got {style!r}")
        self.style, self.image_size = style, parse_image_size(image_size)
        GridLayout(*self.image_size)  # refuses a canvas too small for the signs
        self.observation = ""
        self._image: tuple[int, Image.Image] | None = None  # the current position's, drawn once

    def _begin(self, seed: int | None) -> str:
        self._image = None
        self.observation = super()._begin(seed)
        return self.observation

    def _respond(self, answer: str) -> Turn:
        turn = super()._respond(answer)
        self.observation = turn.observation
        return turn

    def image(self) -> Image.Image:
        """The grid of views at the current position."""
        if self._image is None or self._image[0] != self.index:
            self._image = self.index, position_image(self.route, self.rail[self.index], style=self.style,
                                                     size=self.image_size)
        return self._image[1]

    @property
    def images(self) -> list[Image.Image]:
        return [self.image()]

    def messages(self) -> list[dict[str, Any]]:
        """The last observation as one user message, the image first."""
        return image_messages(self.observation)

    def prompt_columns(self, text: str) -> dict[str, Any]:
        return {"prompt": image_messages(text), "images": [self.image()]}


@dataclass(frozen=True)
class VirlVisualConfig(VirlConfig):
    """Options of the V-IRL-VL task: those of V-IRL-L, plus the image's size and the routes of the
    ``ood-visual`` split. After construction ``image_size`` holds ``(width, height)``."""

    _argument_group_name = "virl-vl task options"

    image_size: str | None = field(default=None, metadata={"help": (
        "Canvas of the 2x2 street-view grid, 'WIDTHxHEIGHT', at least 128x128. Default: 128x128 with compact prompts "
        "(the tiny vision-language model reads it as 8x8 patches of 16 px), 1200x1200 with the original ones.")})
    ood_visual_routes: str | None = field(default=None, metadata={"help": (
        "A route_infos.json of another city for the ood-visual split, e.g. with its own street_views. Default: "
        "the routes of unseen-routes (synthetic street grids no training route comes from), drawn in the dusk "
        "style.")})

    def __post_init__(self) -> None:
        super().__post_init__()
        size = DEFAULT_IMAGE_SIZES[self.prompt_form] if self.image_size is None else parse_image_size(self.image_size)
        GridLayout(*size)  # refuses a canvas too small for the signs
        object.__setattr__(self, "image_size", size)


class VirlVisualTask(VirlTask):
    """V-IRL-VL. Rows are V-IRL-L's (see :class:`VirlTask`) with:

    * ``prompt``: one user message, the image placeholder then the text:
      ``[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ...}]}]``
    * ``images``: ``[image]``, the RGB grid of the position's four views (``config.image_size``)
    * demonstrations' ``completion``: one assistant message (prompt rows keep ``demonstration`` as text)
    * evaluation rows add ``style`` (the city style of drawn views) and ``rendering_version``; their
      environments (:class:`VirlVisualEnv`) draw each position's image when the agent reaches it

    Training rows and the splits ``id``, ``rl-only``, ``ood-rule`` and ``unseen-routes`` are drawn in the daylight
    style; ``ood-visual`` walks the routes of ``unseen-routes`` (or ``ood_visual_routes``) drawn in the
    dusk style, so its gap to ``unseen-routes`` is the visual shift alone.
    """

    name = "virl-vl"
    test_splits = (*VirlTask.test_splits, "ood-visual")
    splits = test_splits + VirlTask.validation_splits
    config_class = VirlVisualConfig
    config: VirlVisualConfig
    env_class = VirlVisualEnv
    image_prompts = True

    def __init__(self, config: VirlVisualConfig | None = None, **overrides: Any) -> None:
        if config is not None and not isinstance(config, VirlVisualConfig):
            raise TypeError(f"VirlVisualTask takes a VirlVisualConfig, got {type(config).__name__}")
        super().__init__(config, **overrides)
        self._ood_visual: dict[str, Route] | None = None  # by route id
        self._checked = False

    def role_splits(self) -> dict[str, dict[str, list[Route]]]:
        roles = super().role_splits()
        if not self._checked:
            for route in (route for splits in roles.values() for group in splits.values() for route in group):
                check_street_views(route)
            self._checked = True
        return roles

    def ood_visual_routes(self) -> list[Route]:
        """The routes of ``ood-visual``: ``ood_visual_routes``' or those of ``unseen-routes``."""
        return list(self._ood_visual_by_id().values())

    def _ood_visual_by_id(self) -> dict[str, Route]:
        if self._ood_visual is None:
            if self.config.ood_visual_routes:
                # held-out compass words stay out of it, as out of unseen-routes: the gap is the visual shift alone
                routes = [route for route in load_routes(self.config.ood_visual_routes) if self.route_role(route) == "demo"]
                for route in routes:
                    check_street_views(route)
            else:
                routes = self.route_splits()["unseen"]
            self._ood_visual = {route.route_id: route for route in routes}
        return self._ood_visual

    @staticmethod
    def style(split: str | None) -> str:
        """The city style of a split's drawn views (None: training rows)."""
        return OOD_STYLE if split == "ood-visual" else TRAINING_STYLE

    def _env_options(self, split: str | None) -> dict[str, Any]:
        return {**super()._env_options(split), "style": self.style(split), "image_size": self.config.image_size}

    def demonstrations(self, n: int, seed: int) -> list[dict]:
        rows = super().demonstrations(n, seed)
        for row in rows:
            row["completion"] = [{"role": "assistant", "content": row["completion"]}]
        return rows

    def _has_split(self, split: str) -> bool:
        if split == "ood-visual":
            return not self.config.routes or bool(self.config.ood_visual_routes)
        return super()._has_split(split)

    def _split_routes(self, split: str) -> tuple[list[Route], str]:
        if split != "ood-visual":
            return super()._split_routes(split)
        routes = self.ood_visual_routes()
        if not routes:
            raise ValueError("split 'ood-visual' needs synthetic routes or ood_visual_routes (a route file has no "
                             "unseen city)")
        return routes, "abs"

    def eval_episodes(self, split: str) -> list[dict]:
        return [{**row, "style": self.style(split), "rendering_version": RENDERING_VERSION}
                for row in super().eval_episodes(split)]

    def _route(self, row: Mapping[str, Any]) -> Route:
        if row.get("split") == "ood-visual":
            return self._ood_visual_by_id()[row["route_id"]]
        return super()._route(row)
