"""V-IRL-L: street navigation on a rail of positions, in text (see docs/design.md, 'V-IRL navigation')."""

from .rail import Position, build_rail, compass_word, distance_m, instruction_sentences, relative_word, turn_words
from .routes import Milestone, Route, load_routes, parse_milestone_info, route_from_record

__all__ = [
    "Milestone",
    "Position",
    "Route",
    "build_rail",
    "compass_word",
    "distance_m",
    "instruction_sentences",
    "load_routes",
    "parse_milestone_info",
    "relative_word",
    "route_from_record",
    "turn_words",
]
