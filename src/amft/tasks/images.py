"""What the image tasks share (GP-VL's cards, V-IRL-VL's street views): a 5x7 bitmap font of our own,
canvas sizes, and the chat message that shows an image (see docs/design.md, 'The image variant (GP-VL)').

Text is drawn without font files: each glyph is a 5x7 bitmap, each lit cell a filled square of
``cell`` pixels, glyphs one blank column apart. Nothing is anti-aliased, so a drawn text is a pure
function of the text, the cell size and the ink, and can be read back from the pixels.
"""

from __future__ import annotations

from typing import Any, Sequence

from PIL import ImageDraw

__all__ = ["GLYPHS", "GLYPH_WIDTH", "GLYPH_HEIGHT", "draw_text", "image_messages", "parse_image_size", "text_cells"]

GLYPH_WIDTH, GLYPH_HEIGHT = 5, 7
GLYPHS: dict[str, tuple[str, ...]] = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("####.", "....#", "....#", ".###.", "....#", "....#", "####."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
}


def text_cells(text: str) -> int:
    """Width of ``text`` in cells: its glyphs and one blank column between neighbours."""
    return len(text) * (GLYPH_WIDTH + 1) - 1 if text else 0


def draw_text(draw: ImageDraw.ImageDraw, origin: tuple[int, int], text: str, cell: int,
              ink: tuple[int, int, int]) -> None:
    """Draw ``text`` (characters of :data:`GLYPHS`) with its top-left corner at ``origin``."""
    x0, y0 = origin
    for k, char in enumerate(text):
        gx = x0 + k * (GLYPH_WIDTH + 1) * cell
        for row, bits in enumerate(GLYPHS[char]):
            for col, bit in enumerate(bits):
                if bit == "#":
                    x, y = gx + col * cell, y0 + row * cell
                    draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=ink)


def parse_image_size(value: str | Sequence[int]) -> tuple[int, int]:
    """``"128x64"`` or ``(128, 64)`` as ``(width, height)``; raises ``ValueError`` otherwise."""
    try:
        parts = value.lower().split("x") if isinstance(value, str) else list(value)
        width, height = (int(p) for p in parts)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"image size must be 'WIDTHxHEIGHT' (e.g. '128x64'), got {value!r}") from exc
    return width, height


def image_messages(text: str) -> list[dict[str, Any]]:
    """One user message with an image placeholder before ``text``: the conversational prompt TRL takes
    with an ``images`` column, which fills the placeholder with the image."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
