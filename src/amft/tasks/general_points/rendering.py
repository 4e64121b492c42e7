"""The card images of GP-VL, drawn from scratch with Pillow (see docs/design.md, 'The image variant (GP-VL)').

No card artwork and no font files: a rank is drawn from a 5x7 bitmap of our own (each lit cell a
filled square), a suit as filled polygons and circles in a square box. Nothing is anti-aliased,
so every pixel is the canvas, the card face, the card edge or the ink, and the image is a pure
function of the ranks, the suits and the canvas size.

Layout: the original's 1200x1200 canvas in casino green with four 270x378 cards at
``x = 5 + i*297``, centred vertically; any other canvas scales that layout by
``min(width / 1200, height / 378)`` (e.g. 128x64 gives four 29x40 cards), for models too small
to read a 1200x1200 image. On a card the rank sits at the top, centred, and the suit below it.

Suits are ``S`` (spades), ``C`` (clubs), ``H`` (hearts), ``D`` (diamonds). Black suits are
drawn in black ink and red ones in red ink; a red card differs from a black one of the same rank
only in the ink colour and in the shape inside its suit box (its own suit), never in the place or
size of anything.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from PIL import Image, ImageDraw

from amft.tasks.images import GLYPH_HEIGHT, draw_text, parse_image_size, text_cells

from .cards import SYMBOLS

__all__ = [
    "SUITS",
    "SUIT_COLOURS",
    "SUIT_PAIRS",
    "INK",
    "CANVAS_COLOUR",
    "CARD_FACE",
    "CARD_EDGE",
    "ORIGINAL_IMAGE_SIZE",
    "SMALL_IMAGE_SIZE",
    "CardLayout",
    "suit_colour",
    "draw_suits",
    "parse_image_size",
    "render_cards",
]

SUITS: tuple[str, ...] = ("S", "C", "H", "D")
#: the suits of each colour; index i of the black suits pairs with index i of the red ones
SUIT_COLOURS: dict[str, tuple[str, str]] = {"black": ("S", "C"), "red": ("H", "D")}
#: each suit and its counterpart of the other colour (spades with hearts, clubs with diamonds)
SUIT_PAIRS: dict[str, str] = {"S": "H", "C": "D", "H": "S", "D": "C"}
INK: dict[str, tuple[int, int, int]] = {"black": (0, 0, 0), "red": (200, 0, 0)}
CANVAS_COLOUR: tuple[int, int, int] = (0x35, 0x65, 0x4D)
CARD_FACE: tuple[int, int, int] = (255, 255, 255)
CARD_EDGE: tuple[int, int, int] = (150, 150, 150)
ORIGINAL_IMAGE_SIZE: tuple[int, int] = (1200, 1200)
SMALL_IMAGE_SIZE: tuple[int, int] = (128, 64)

# The original layout, scaled for other canvases.
_CARD_WIDTH, _CARD_HEIGHT, _LEFT, _STRIDE = 270, 378, 5, 297

#: the widest rank, "10": two glyphs and one blank column between them
_WIDEST_RANK_CELLS = text_cells("10")

# Suit shapes in a unit box (x right, y down): polygons and circles (centre x, centre y, radius).
_SUIT_POLYGONS: dict[str, tuple[tuple[tuple[float, float], ...], ...]] = {
    "S": (((0.5, 0.0), (0.96, 0.55), (0.04, 0.55)), ((0.5, 0.55), (0.72, 1.0), (0.28, 1.0))),
    "C": (((0.5, 0.45), (0.72, 1.0), (0.28, 1.0)), ((0.5, 0.3), (0.74, 0.62), (0.26, 0.62))),
    "H": (((0.02, 0.38), (0.98, 0.38), (0.5, 1.0)),),
    "D": (((0.5, 0.0), (0.88, 0.5), (0.5, 1.0), (0.12, 0.5)),),
}
_SUIT_CIRCLES: dict[str, tuple[tuple[float, float, float], ...]] = {
    "S": ((0.28, 0.6, 0.24), (0.72, 0.6, 0.24)),
    "C": ((0.5, 0.26, 0.23), (0.26, 0.6, 0.23), (0.74, 0.6, 0.23)),
    "H": ((0.27, 0.3, 0.25), (0.73, 0.3, 0.25)),
    "D": (),
}


def suit_colour(suit: str) -> str:
    """``"black"`` for spades and clubs, ``"red"`` for hearts and diamonds."""
    for colour, suits in SUIT_COLOURS.items():
        if suit in suits:
            return colour
    raise ValueError(f"unknown suit {suit!r}; known: {SUITS}")


def draw_suits(rng: random.Random, colour: str, n: int = 4) -> list[str]:
    """``n`` suits drawn uniformly and independently from the suits of ``colour``."""
    suits = SUIT_COLOURS[colour]
    return [suits[rng.randrange(len(suits))] for _ in range(n)]


@dataclass(frozen=True)
class CardLayout:
    """Where everything goes on a ``width`` x ``height`` canvas (boxes are ``(left, top, right, bottom)``,
    right and bottom exclusive)."""

    width: int
    height: int

    def __post_init__(self) -> None:
        if self.cell < 1 or self.suit_side < 5:
            raise ValueError(
                f"a {self.width}x{self.height} canvas is too small: its cards would be {self.card_width}x"
                f"{self.card_height} px, and a card needs at least {_WIDEST_RANK_CELLS + 4} px of width for its rank "
                "and room below it for a suit of 5 px or more")

    @property
    def scale(self) -> float:
        return min(self.width / ORIGINAL_IMAGE_SIZE[0], self.height / _CARD_HEIGHT)

    @property
    def card_width(self) -> int:
        return round(_CARD_WIDTH * self.scale)

    @property
    def card_height(self) -> int:
        return round(_CARD_HEIGHT * self.scale)

    @property
    def edge(self) -> int:
        """Width of the card's edge line."""
        return max(1, self.card_width // 60)

    @property
    def cell(self) -> int:
        """Side of one lit cell of a rank glyph."""
        return (self.card_width - 2 * self.edge) // (_WIDEST_RANK_CELLS + 2)

    @property
    def margin(self) -> int:
        """Space between the card's edge, the rank and the suit."""
        return max(1, self.card_height // 20)

    @property
    def rank_bottom(self) -> int:
        """Bottom of the rank, from the card's top."""
        return self.edge + self.margin + GLYPH_HEIGHT * self.cell

    @property
    def suit_side(self) -> int:
        room_below = self.card_height - self.edge - self.margin - (self.rank_bottom + self.margin)
        return min(room_below, self.card_width - 2 * (self.edge + self.margin), round(0.6 * self.card_width))

    def card_box(self, i: int) -> tuple[int, int, int, int]:
        left = round(_LEFT * self.scale) + i * round(_STRIDE * self.scale)
        top = (self.height - self.card_height) // 2
        return left, top, left + self.card_width, top + self.card_height

    def rank_box(self, i: int, symbol: str) -> tuple[int, int, int, int]:
        cells = text_cells(symbol)
        left, top, _, _ = self.card_box(i)
        x = left + (self.card_width - cells * self.cell) // 2
        y = top + self.edge + self.margin
        return x, y, x + cells * self.cell, y + GLYPH_HEIGHT * self.cell

    def suit_box(self, i: int) -> tuple[int, int, int, int]:
        left, top, _, bottom = self.card_box(i)
        side = self.suit_side
        x = left + (self.card_width - side) // 2
        free_top, free_bottom = top + self.rank_bottom + self.margin, bottom - self.edge - self.margin
        y = free_top + (free_bottom - free_top - side) // 2
        return x, y, x + side, y + side


def _draw_suit(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], suit: str,
               ink: tuple[int, int, int]) -> None:
    x0, y0, x1, _ = box
    side = x1 - x0 - 1  # the last pixel inside the box

    def at(u: float, v: float) -> tuple[float, float]:
        return x0 + u * side, y0 + v * side

    for polygon in _SUIT_POLYGONS[suit]:
        draw.polygon([at(u, v) for u, v in polygon], fill=ink)
    for u, v, r in _SUIT_CIRCLES[suit]:
        (ax, ay), (bx, by) = at(u - r, v - r), at(u + r, v + r)
        draw.ellipse((ax, ay, bx, by), fill=ink)


def render_cards(ranks: Sequence[int], suits: Sequence[str],
                 size: str | Sequence[int] = SMALL_IMAGE_SIZE) -> Image.Image:
    """The RGB image of four cards (ranks 1..13, suits from :data:`SUITS`) on a canvas of ``size``."""
    if len(ranks) != 4 or len(suits) != 4:
        raise ValueError(f"a deal has 4 cards, got ranks {list(ranks)} and suits {list(suits)}")
    layout = CardLayout(*parse_image_size(size))
    image = Image.new("RGB", (layout.width, layout.height), CANVAS_COLOUR)
    draw = ImageDraw.Draw(image)
    for i, (rank, suit) in enumerate(zip(ranks, suits)):
        ink = INK[suit_colour(suit)]
        left, top, right, bottom = layout.card_box(i)
        draw.rectangle((left, top, right - 1, bottom - 1), fill=CARD_FACE, outline=CARD_EDGE, width=layout.edge)
        symbol = SYMBOLS[int(rank)]
        draw_text(draw, layout.rank_box(i, symbol)[:2], symbol, layout.cell, ink)
        _draw_suit(draw, layout.suit_box(i), suit, ink)
    return image
