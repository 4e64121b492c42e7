"""The on-rail environment's geometry: compass and relative words, the templated instruction,
and the rail of positions, each with one correct action per action space (see docs/design.md,
'The rail').

Rails are built without panorama relocation (V-IRL-L needs no street views): between nodes more
than 5 m apart, ``straight_line_length`` evenly spaced points are inserted and each is dropped
with probability ``drop_rate``.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from .routes import COMPASS_WORDS, Route

__all__ = [
    "Position",
    "build_rail",
    "compass_word",
    "distance_m",
    "instruction_sentences",
    "landmark_names",
    "relative_word",
    "turn_words",
]

NO_LANDMARK = "No landmark nearby"
EMPTY_OBSERVATION = "No landmarks nearby; "
INTERSECTION = "You observe an intersection"
MIN_SEGMENT_M = 5.0


def compass_word(heading: float) -> str:
    """The nearest of the eight compass words (45 degree steps), ties to the first in order."""
    distances = [abs((heading - 45 * i + 180) % 360 - 180) for i in range(8)]
    return COMPASS_WORDS[distances.index(min(distances))]


def relative_word(delta: float, wrap: bool = True) -> str:
    """The relative turn word for a heading change ``delta`` (degrees).

    With ``wrap`` (the default) delta is first brought to [-180, 180), so 350 -> 10 is a
    slight right; ``wrap=False`` is the original rule, where it is "left" (see docs/design.md,
    'Deviations from the original').
    """
    if wrap:
        delta = (delta + 180) % 360 - 180
    if delta < -45:
        return "left"
    if delta > 45:
        return "right"
    return "slightly left" if delta <= 0 else "slightly right"


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two (lat, lng) points."""
    lat1, lng1, lat2, lng2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


def turn_words(route: Route, initial_heading: int, wrap: bool = True) -> list[tuple[str, str]]:
    """(absolute word, relative word) of each milestone's turn: heading h_k against h_{k-1},
    where h_0 is the initial heading. The absolute word is the record's own compass word."""
    words, previous = [], initial_heading
    for milestone in route.milestones:
        words.append((milestone.compass, relative_word(milestone.heading - previous, wrap=wrap)))
        previous = milestone.heading
    return words


_RELATION = re.compile(r"\s+is on your [^,;]*")


def landmark_names(text: str) -> str:
    """The place names of a landmarks or observation text, without their relations to the agent
    ("The destination X is on your right; " -> "X"); "-" when there is none."""
    text = text.strip().rstrip(";").strip()
    if text in (NO_LANDMARK, EMPTY_OBSERVATION.strip().rstrip(";"), ""):
        return "-"
    return _RELATION.sub("", text.removeprefix("The destination ")).strip()


def instruction_sentences(route: Route, initial_heading: int, wrap: bool = True, compact: bool = False) -> list[str]:
    """The templated instruction: a turn and a move sentence per milestone.

    ``compact`` keeps what the sentences say in a few words, for character-level models: a turn
    is ``west/left`` (the compass word, then the relative one), a move ``to Blue Door Cafe``,
    ``to next`` or ``stop at Corner Bakery``. Turn k is always sentence 2k - 1, its move 2k."""
    sentences = []
    last = len(route.milestones)
    for milestone, (absolute, relative) in zip(route.milestones, turn_words(route, initial_heading, wrap)):
        if compact:
            sentences.append(f"{absolute}/{relative}")
            names = landmark_names(milestone.landmarks)
            sentences.append(f"stop at {names}" if milestone.index == last else f"to {'next' if names == '-' else names}")
            continue
        first = milestone.index == 1 and last > 1
        sentences.append(f"{'First, turn' if first else 'Turn'} {relative} to face {absolute}.")
        if milestone.index == last:
            sentences.append(f"Move forward until you reach destination where {milestone.landmarks}.")
        elif milestone.landmarks == NO_LANDMARK:
            sentences.append("Move forward until you reach next intersection.")
        else:
            sentences.append(f"Move forward until you reach next intersection where {milestone.landmarks}.")
    return sentences


@dataclass(frozen=True)
class Position:
    """One rail position: what the agent observes, the correct action in each action space, the
    (1-based) instruction sentence it executes, and its place on the route (``start``, ``k`` for
    node k, ``k.j`` for the j-th interpolated point of segment k, dropped points counted)."""

    kind: str  # start, point, intersection, destination
    observation: str
    absolute_action: str
    relative_action: str
    sentence: int
    place: str

    @property
    def at_intersection(self) -> bool:
        return self.kind == "intersection"

    def action(self, mode: str) -> str:
        return self.absolute_action if mode == "abs" else self.relative_action

    @property
    def compact_observation(self) -> str:
        """The observation in the compact prompt: the place names, then ``+`` at an intersection."""
        names = landmark_names(self.observation.split(";")[0])
        return f"{names} +" if self.at_intersection else names


def build_rail(route: Route, rng: random.Random, initial_heading: int, *, drop_rate: float = 0.5,
               straight_line_length: int = 5, wrap: bool = True) -> list[Position]:
    """The positions of one episode; ``rng`` decides which interpolated points stay."""
    turns = turn_words(route, initial_heading, wrap)
    nodes = [route.start, *route.nodes]
    last = len(route.milestones)

    def turn(k: int) -> tuple[str, str]:
        absolute, relative = turns[k - 1]
        return f"turn_direction({absolute})", f"turn_direction({relative})"

    rail = [Position("start", EMPTY_OBSERVATION, *turn(1), 1, "start")]
    for k, milestone in enumerate(route.milestones, start=1):
        move_sentence = 2 * k
        long_enough = distance_m(nodes[k - 1], nodes[k]) > MIN_SEGMENT_M
        if long_enough:
            for j in range(1, straight_line_length + 1):
                if rng.random() >= drop_rate:
                    rail.append(Position("point", EMPTY_OBSERVATION, "forward()", "forward()", move_sentence,
                                         f"{k}.{j}"))
        if k == last:
            rail.append(Position("destination", f"{milestone.landmarks}; ", "stop()", "stop()", move_sentence, f"{k}"))
        else:
            # The original's quirk: a node reached without interpolated points keeps the move sentence.
            sentence = 2 * k + 1 if long_enough else move_sentence
            rail.append(Position("intersection", f"{milestone.landmarks}; {INTERSECTION}", *turn(k + 1), sentence,
                                 f"{k}"))
    return rail
