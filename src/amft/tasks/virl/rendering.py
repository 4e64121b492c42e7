"""The street views of V-IRL-VL, drawn from scratch with Pillow (see docs/design.md, 'Street-view images').

An observation is a 2x2 grid of views, ``[front, right / back, left]`` as the prompt describes it,
the views separated by a black border. A view is a blocky street scene: sky, ground, buildings with
windows and, where the agent looks along a street, the road. The image shows exactly what V-IRL-L's
text observation says, nothing more:

* each landmark of the observation is a sign with the initials of its name (up to three letters
  of our 5x7 bitmap font) on a board whose colour is chosen by the name, so the same place looks
  the same on every route;
* its egocentric relation decides where the sign hangs (:data:`RELATION_PLACES`): the eight words
  map to eight of the twelve thirds of the four views;
* at an intersection the side views show a cross street instead of the building opposite.

No image files and no font files; nothing is anti-aliased. The facade colours of the plain buildings
vary with a seed (the route and the rail place), so an image is a pure function of the landmarks,
the intersection flag, the style, the canvas size and that seed.

Two city styles share the layout rules but not their look: ``daylight`` (training and the ``id``
splits: blue sky, grey asphalt, brick and stone, rectangular framed boards with black letters high on
the facades) and ``dusk`` (``ood-visual``: a dark violet sky, a lower horizon, pastel facades with lit
windows, a dashed yellow centre line, tag-shaped boards with white letters low on the facades).
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass
from typing import Iterable, Sequence

from PIL import Image, ImageDraw

from amft.tasks.images import GLYPH_HEIGHT, GLYPHS, draw_text, parse_image_size, text_cells

from .routes import VIEW_NAMES

__all__ = [
    "LARGE_IMAGE_SIZE",
    "OOD_STYLE",
    "RELATION_PLACES",
    "RENDERING_VERSION",
    "SMALL_IMAGE_SIZE",
    "STYLES",
    "TRAINING_STYLE",
    "CityStyle",
    "GridLayout",
    "Landmark",
    "board_index",
    "load_views",
    "render_views",
    "sign_label",
    "visible_landmarks",
]

#: bumped whenever a drawn image changes, and recorded in every evaluation row
RENDERING_VERSION = 1
#: 8x8 patches of 16 px for the tiny vision-language model; each view is 63x63 px
SMALL_IMAGE_SIZE: tuple[int, int] = (128, 128)
#: for pretrained vision-language models (the original grid is 2405x2405: four 1200 px views)
LARGE_IMAGE_SIZE: tuple[int, int] = (1200, 1200)
BORDER_COLOUR = (0, 0, 0)

#: relation word -> (view, slot); slots are the left, middle and right thirds of a view. The views along
#: the street (front, back) show the corners on their sides; seen from behind, the right is on the left.
RELATION_PLACES: dict[str, tuple[str, int]] = {
    "front": ("front", 1),
    "right front": ("front", 2),
    "right": ("right", 1),
    "right behind": ("back", 0),
    "behind": ("back", 1),
    "left behind": ("back", 2),
    "left": ("left", 1),
    "left front": ("front", 0),
}

# A sign: up to three glyphs (17 cells) with two cells of board on each side, and a cell above and below.
_LABEL_LETTERS = 3
_SIGN_CELLS = (text_cells("M" * _LABEL_LETTERS) + 4, GLYPH_HEIGHT + 2)
# A view a third of whose width holds one sign at one cell per pixel.
_MIN_VIEW = 3 * _SIGN_CELLS[0]

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class CityStyle:
    """The look of a city: colours, the shape and height of signs, and where horizon and roofs are
    (fractions of a view's height)."""

    name: str
    sky: Colour
    ground: Colour
    road: Colour
    marking: Colour
    dashed_marking: bool
    facades: tuple[Colour, ...]
    window: Colour
    door: Colour
    boards: tuple[Colour, ...]  # sign colours, indexed by the landmark's name (see board_index)
    letters: Colour
    frame: Colour | None  # a board's frame; None for the tag shape, which has none
    sign_shape: str  # "board" (a framed rectangle) or "tag" (a hexagon with pointed ends)
    horizon: float
    roof: float
    sign_top: float
    street_edge: float  # where the buildings along the street end and the road begins (fraction of width)


STYLES: dict[str, CityStyle] = {
    "daylight": CityStyle(
        name="daylight", sky=(140, 195, 240), ground=(200, 200, 195), road=(90, 90, 90), marking=(245, 245, 235),
        dashed_marking=False, facades=((196, 164, 132), (170, 100, 80), (215, 205, 180), (150, 160, 175)),
        window=(60, 80, 110), door=(80, 50, 30),
        boards=((255, 210, 60), (230, 80, 80), (90, 190, 90), (255, 150, 40), (170, 110, 230), (40, 180, 170),
                (250, 140, 200), (250, 250, 250)),
        letters=(0, 0, 0), frame=(40, 40, 40), sign_shape="board", horizon=0.5, roof=0.08, sign_top=0.2,
        street_edge=0.3),
    "dusk": CityStyle(
        name="dusk", sky=(40, 30, 80), ground=(90, 80, 110), road=(35, 35, 45), marking=(240, 200, 40),
        dashed_marking=True, facades=((120, 170, 160), (200, 150, 170), (110, 120, 180), (190, 180, 120)),
        window=(255, 220, 120), door=(30, 20, 40),
        boards=((190, 30, 50), (30, 70, 190), (20, 130, 60), (110, 40, 160), (200, 90, 10), (0, 120, 120),
                (170, 20, 120), (120, 70, 20)),
        letters=(255, 255, 255), frame=None, sign_shape="tag", horizon=0.62, roof=0.22, sign_top=0.6,
        street_edge=0.22),
}
TRAINING_STYLE, OOD_STYLE = "daylight", "dusk"

_RELATION_WORDS = "|".join(sorted(RELATION_PLACES, key=len, reverse=True))
_LANDMARK = re.compile(rf"(?P<name>[^,;]+?) is on your (?P<relation>{_RELATION_WORDS})\b")


@dataclass(frozen=True)
class Landmark:
    """A place in view and its relation to the agent (one of :data:`RELATION_PLACES`)."""

    name: str
    relation: str


def visible_landmarks(observation: str) -> tuple[Landmark, ...]:
    """The landmarks a V-IRL-L observation text names, with their relations
    (``"The destination X is on your right; "`` -> ``(Landmark("X", "right"),)``)."""
    landmarks = observation.split(";")[0]
    found = []
    for match in _LANDMARK.finditer(landmarks):
        name = match.group("name").strip().removeprefix("and ").strip().removeprefix("The destination ").strip()
        found.append(Landmark(name, match.group("relation")))
    return tuple(found)


def sign_label(name: str) -> str:
    """What a sign says: the initials of the name's first words that our font can draw, at most three
    (``"Blue Door Cafe"`` -> ``"BDC"``)."""
    initials = [word[0].upper() for word in name.split() if word[0].upper() in GLYPHS]
    return "".join(initials[:_LABEL_LETTERS])


def board_index(name: str) -> int:
    """Which of a style's board colours a place's sign has (a hash of the name, fixed across runs)."""
    return zlib.crc32(name.encode()) % len(STYLES[TRAINING_STYLE].boards)


@dataclass(frozen=True)
class GridLayout:
    """Where everything goes on a ``width`` x ``height`` canvas. Boxes are ``(left, top, right, bottom)``,
    right and bottom exclusive."""

    width: int
    height: int

    def __post_init__(self) -> None:
        if min(self.view_width, self.view_height) < _MIN_VIEW:
            raise ValueError(f"a {self.width}x{self.height} canvas is too small: its views would be "
                             f"{self.view_width}x{self.view_height} px, and a view needs at least {_MIN_VIEW} px each "
                             f"way for three signs side by side (a canvas of {2 * _MIN_VIEW + 2}x{2 * _MIN_VIEW + 2} "
                             "or more)")

    @property
    def _border(self) -> int:
        """The border between the views, at least; what the halving leaves over widens it."""
        return max(2, round(min(self.width, self.height) / 481))  # 5 px on the original 2405 px grid

    @property
    def view_width(self) -> int:
        return (self.width - self._border) // 2

    @property
    def view_height(self) -> int:
        return (self.height - self._border) // 2

    @property
    def cell(self) -> int:
        """Side of one lit cell of a sign's letters: the largest that fits three signs across a view."""
        return min(self.view_width, self.view_height) // _MIN_VIEW

    def view_box(self, view: str) -> tuple[int, int, int, int]:
        """The box of a view (one of :data:`~amft.tasks.virl.routes.VIEW_NAMES`)."""
        index = VIEW_NAMES.index(view)
        row, col = divmod(index, 2)
        left = col * (self.width - self.view_width)
        top = row * (self.height - self.view_height)
        return left, top, left + self.view_width, top + self.view_height

    def sign_box(self, view: str, slot: int, style: CityStyle) -> tuple[int, int, int, int]:
        """The box of a sign in a third (``slot`` 0, 1, 2) of a view, centred in it."""
        left, top, _, _ = self.view_box(view)
        width, height = (n * self.cell for n in _SIGN_CELLS)
        third = self.view_width // 3
        x = left + slot * third + (third - width) // 2
        y = top + round(style.sign_top * self.view_height)
        return x, y, x + width, y + height

    def label_origin(self, view: str, slot: int, style: CityStyle, label: str) -> tuple[int, int]:
        """The top-left corner of a sign's letters, centred on the sign."""
        x0, y0, x1, _ = self.sign_box(view, slot, style)
        return x0 + (x1 - x0 - text_cells(label) * self.cell) // 2, y0 + self.cell


class _View:
    """Drawing in a view's own coordinates: fractions (u right, v down) of its width and height."""

    def __init__(self, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int]) -> None:
        self.draw, (self.left, self.top, right, bottom) = draw, box
        self.width, self.height = right - self.left, bottom - self.top

    def point(self, u: float, v: float) -> tuple[int, int]:
        return self.left + round(u * self.width), self.top + round(v * self.height)

    def rect(self, u0: float, v0: float, u1: float, v1: float, fill: Colour) -> None:
        (x0, y0), (x1, y1) = self.point(u0, v0), self.point(u1, v1)
        if x1 > x0 and y1 > y0:
            self.draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)

    def polygon(self, points: Iterable[tuple[float, float]], fill: Colour) -> None:
        self.draw.polygon([self.point(u, v) for u, v in points], fill=fill)


def _building(view: _View, u0: float, u1: float, v0: float, v1: float, style: CityStyle, rng: random.Random) -> None:
    """A facade with two columns of windows above a door."""
    view.rect(u0, v0, u1, v1, style.facades[rng.randrange(len(style.facades))])
    width, height = u1 - u0, v1 - v0
    for column in (0.2, 0.6):
        for row in (0.15, 0.45):
            view.rect(u0 + column * width, v0 + row * height, u0 + (column + 0.2) * width,
                      v0 + (row + 0.15) * height, style.window)
    view.rect(u0 + 0.4 * width, v1 - 0.2 * height, u0 + 0.6 * width, v1, style.door)


def _road(view: _View, centre: float, near: float, far: float, bottom: float, style: CityStyle) -> None:
    """A road vanishing at the horizon: ``near`` and ``far`` are its half widths at ``bottom`` and there."""
    horizon = style.horizon
    view.polygon(((centre - near, bottom), (centre + near, bottom), (centre + far, horizon), (centre - far, horizon)),
                 style.road)
    x, y0 = view.point(centre, horizon)
    _, y1 = view.point(centre, bottom)
    width = max(1, view.width // 100)
    if not style.dashed_marking:
        view.draw.line((x, y0, x, y1 - 1), fill=style.marking, width=width)
        return
    step = max(2, (y1 - y0) // 6)
    for y in range(y0, y1, step):
        view.draw.line((x, y, x, min(y + step // 2, y1) - 1), fill=style.marking, width=width)


def _along_street(view: _View, style: CityStyle, rng: random.Random) -> None:
    """Looking along the street: buildings on both sides, the road ahead, a far building at its end."""
    view.rect(0, 0, 1, style.horizon, style.sky)
    view.rect(0, style.horizon, 1, 1, style.ground)
    edge = style.street_edge
    _building(view, 0.4, 0.6, (style.roof + style.horizon) / 2, style.horizon, style, rng)
    _road(view, 0.5, 0.5 - edge, 0.03, 1.0, style)
    _building(view, 0, edge, style.roof, 1, style, rng)
    _building(view, 1 - edge, 1, style.roof, 1, style, rng)


def _across_street(view: _View, style: CityStyle, rng: random.Random, cross_street: bool) -> None:
    """Looking across the street: three facades beyond the kerb, or at an intersection a cross street
    between two of them."""
    kerb = 0.85
    view.rect(0, 0, 1, 1, style.sky)
    view.rect(0, kerb, 1, 1, style.road)
    for slot in range(3):
        u0, u1 = slot / 3, (slot + 1) / 3
        if slot == 1 and cross_street:
            view.rect(u0, style.horizon, u1, kerb, style.ground)
            _road(view, 0.5, 0.12, 0.02, kerb, style)
        else:
            _building(view, u0, u1, style.roof, kerb, style, rng)


def _sign(draw: ImageDraw.ImageDraw, layout: GridLayout, view: str, slot: int, style: CityStyle,
          landmark: Landmark) -> None:
    x0, y0, x1, y1 = layout.sign_box(view, slot, style)
    board = style.boards[board_index(landmark.name)]
    if style.sign_shape == "board":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=board, outline=style.frame, width=layout.cell)
    else:
        tip, middle = 2 * layout.cell, (y0 + y1 - 1) / 2
        draw.polygon([(x0, middle), (x0 + tip, y0), (x1 - 1 - tip, y0), (x1 - 1, middle), (x1 - 1 - tip, y1 - 1),
                      (x0 + tip, y1 - 1)], fill=board)
    label = sign_label(landmark.name)
    draw_text(draw, layout.label_origin(view, slot, style, label), label, layout.cell, style.letters)


def render_views(landmarks: Sequence[Landmark], at_intersection: bool, *, style: str = TRAINING_STYLE,
                 size: str | Sequence[int] = SMALL_IMAGE_SIZE, seed: str = "") -> Image.Image:
    """The RGB grid of the four views at a rail position: ``landmarks`` as signs where their relations
    put them, cross streets at an intersection; ``seed`` varies the plain facades."""
    city = STYLES[style]
    layout = GridLayout(*parse_image_size(size))
    image = Image.new("RGB", (layout.width, layout.height), BORDER_COLOUR)
    draw = ImageDraw.Draw(image)
    rng = random.Random(f"virl-views:{style}:{seed}")
    for name in VIEW_NAMES:
        view = _View(draw, layout.view_box(name))
        if name in ("front", "back"):
            _along_street(view, city, rng)
        else:
            _across_street(view, city, rng, cross_street=at_intersection)
    for landmark in landmarks:
        name, slot = RELATION_PLACES[landmark.relation]
        _sign(draw, layout, name, slot, city, landmark)
    return image


def load_views(paths: Sequence[str], size: str | Sequence[int] = SMALL_IMAGE_SIZE) -> Image.Image:
    """A position's grid from image files: one path is a whole grid, resized to the canvas; four are the
    views of :data:`~amft.tasks.virl.routes.VIEW_NAMES`, each resized into its place in the grid."""
    layout = GridLayout(*parse_image_size(size))
    if len(paths) == 1:
        with Image.open(paths[0]) as grid:
            return grid.convert("RGB").resize((layout.width, layout.height), Image.Resampling.BILINEAR)
    if len(paths) != len(VIEW_NAMES):
        raise ValueError(f"a street view is one grid image or {len(VIEW_NAMES)} views, got {len(paths)} paths")
    image = Image.new("RGB", (layout.width, layout.height), BORDER_COLOUR)
    for name, path in zip(VIEW_NAMES, paths):
        left, top, right, bottom = layout.view_box(name)
        with Image.open(path) as view:
            resized = view.convert("RGB").resize((right - left, bottom - top), Image.Resampling.BILINEAR)
            image.paste(resized, (left, top))
    return image
