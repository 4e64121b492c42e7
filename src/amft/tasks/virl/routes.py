"""V-IRL routes: the `route_infos.json` record format and its checked loader.

A file holds the collector's ``[route_list, route_count]`` wrapper, a bare route dict, or a
plain list of route dicts. Only the fields the text environment needs are required:
``start_place.relocated_geocode``, ``route_results.geocode_list``, ``init_heading`` and
``milestone_info`` (pseudo-JSON blocks with trailing commas, parsed line by line). See docs/design.md,
'Routes and V-IRL-L-synthetic'.

A route may also list street-view images per rail position (``street_views``, our addition to the
format, read by V-IRL-VL; see docs/design.md, 'Real street views'): ``{place: path}`` for a ready
2x2 grid, or ``{place: {"front": path, "right": path, "back": path, "left": path}}`` for the four
views. Places are ``start``, ``k`` for node k (an intersection or the destination) and ``k.j`` for
the j-th interpolated point of segment k. Relative paths are read from the route file's folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from amft.tasks.base import DataError

__all__ = [
    "COMPASS_WORDS", "DIAGONAL_WORDS", "ROUTE_ROLES", "VIEW_NAMES", "Milestone", "Route", "load_routes",
    "parse_milestone_info", "route_from_record", "route_role",
]

_HEADING = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*\(\s*([a-z]+)\s*\)\s*$")
COMPASS_WORDS = ("north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest")
DIAGONAL_WORDS = ("northeast", "southeast", "southwest", "northwest")
#: ``demo`` routes give demonstrations; ``rl-only`` routes (a turn named by a held-out compass word) never do
ROUTE_ROLES = ("demo", "rl-only")
#: the four views of a street-view grid, in the grid's reading order (top left, top right, bottom left, bottom right)
VIEW_NAMES = ("front", "right", "back", "left")


@dataclass(frozen=True)
class Milestone:
    """Segment k of a route (node k-1 -> node k) and what is seen on arriving at node k."""

    index: int
    landmarks: str
    distance: str
    heading: int  # degrees of the segment leaving node k - 1
    compass: str  # the compass word the record gives for that heading


@dataclass(frozen=True)
class Route:
    """What the environment needs of one route."""

    route_id: str
    start: tuple[float, float]
    nodes: tuple[tuple[float, float], ...]  # intersections, then the destination
    milestones: tuple[Milestone, ...]
    init_heading: int
    source: str = "V-IRL"
    #: (place, image paths): one path (a whole grid) or four (the views of :data:`VIEW_NAMES`)
    street_views: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def street_view(self, place: str) -> tuple[str, ...] | None:
        """The image paths the route lists for a rail place, None where it lists none."""
        return dict(self.street_views).get(place)


def route_role(route: Route, rl_only_words: frozenset[str]) -> str:
    """``rl-only`` if one of the route's turns is named by a word of ``rl_only_words``, else ``demo``.

    Every segment of a route begins with a turn (at the start or an intersection) whose absolute
    action is the segment's compass word, so these are exactly the words the route's turns ask for.
    """
    return "rl-only" if any(milestone.compass in rl_only_words for milestone in route.milestones) else "demo"


def parse_milestone_info(text: str) -> list[dict[str, str]]:
    """The blocks of a ``milestone_info`` string as dicts of strings.

    Blocks are split on ``}``; each line is split at its first ``:`` and stripped of quotes and
    commas, so the trailing commas of the original format are accepted.
    """
    blocks = []
    for chunk in text.split("}"):
        fields: dict[str, str] = {}
        for line in chunk.replace("{", "\n").splitlines():
            key, colon, value = line.partition(":")
            if not colon:
                continue
            key = key.strip().strip(",").strip().strip('"').strip()
            value = value.strip().rstrip(",").strip().strip('"').strip()
            if key:
                fields[key] = value
        if fields:
            blocks.append(fields)
    return blocks


def _latlng(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        return float(value[0]), float(value[1])
    return None


def route_from_record(record: Any, source: str, index: int) -> Route:
    """A :class:`Route` from one record; :class:`DataError` names the file, the 1-based route and the field."""

    def fail(field: str, problem: str) -> DataError:
        return DataError(source, index, field, problem, unit="route")

    if not isinstance(record, dict):
        raise fail("route", f"expected an object, got {type(record).__name__}")
    start_place = record.get("start_place")
    start = _latlng(start_place.get("relocated_geocode")) if isinstance(start_place, dict) else None
    if start is None:
        raise fail("start_place.relocated_geocode", "expected [lat, lng]")
    results = record.get("route_results")
    geocodes = results.get("geocode_list") if isinstance(results, dict) else None
    if not isinstance(geocodes, list) or not geocodes:
        raise fail("route_results.geocode_list", "expected a non-empty list of [lat, lng]")
    nodes = tuple(_latlng(g) for g in geocodes)
    if any(node is None for node in nodes):
        raise fail("route_results.geocode_list", "every entry must be [lat, lng]")
    init_heading = record.get("init_heading", 0)
    if not isinstance(init_heading, (int, float)) or isinstance(init_heading, bool):
        raise fail("init_heading", "expected a number of degrees")
    info = record.get("milestone_info")
    if not isinstance(info, str):
        raise fail("milestone_info", "expected the milestone text")
    milestones = []
    for k, block in enumerate(parse_milestone_info(info), start=1):
        match = _HEADING.match(block.get("to_next_intersection_heading", ""))
        if match is None or match.group(2) not in COMPASS_WORDS:
            raise fail("milestone_info", f"block {k}: to_next_intersection_heading must look like '259 (west)'")
        if "landmarks" not in block:
            raise fail("milestone_info", f"block {k}: no landmarks line")
        milestones.append(Milestone(k, block["landmarks"], block.get("distance", ""), round(float(match.group(1))),
                                    match.group(2)))
    if len(milestones) != len(nodes):
        raise fail("milestone_info", f"{len(milestones)} milestone blocks for {len(nodes)} nodes in geocode_list")
    route_id = str(record.get("route_id", record.get("id", f"{Path(source).stem}-{index}")))
    return Route(route_id, start, nodes, tuple(milestones), round(float(init_heading)),
                 str(record.get("source", "V-IRL")), _street_views(record.get("street_views"), source, fail))


def _street_views(value: Any, source: str,
                  fail: Callable[[str, str], DataError]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise fail("street_views", "expected an object of rail places")
    folder = Path(source).parent
    views = []
    for place, paths in value.items():
        if isinstance(paths, dict) and set(paths) == set(VIEW_NAMES):
            paths = [paths[name] for name in VIEW_NAMES]
        elif isinstance(paths, str):
            paths = [paths]
        else:
            raise fail("street_views", f"place {place!r}: expected an image path or an object with the views "
                                       f"{', '.join(VIEW_NAMES)}")
        if not all(isinstance(path, str) for path in paths):
            raise fail("street_views", f"place {place!r}: image paths must be strings")
        views.append((str(place), tuple(str(folder / path) for path in paths)))
    return tuple(views)


def load_routes(path: str | Path) -> list[Route]:
    """Every route of a ``route_infos.json`` file (wrapper, bare dict or list of dicts)."""
    source = str(path)
    try:
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise
    except json.JSONDecodeError as error:
        raise DataError(source, None, None, f"not valid JSON ({error.msg} at line {error.lineno})") from None
    if isinstance(data, dict):
        records = [data]
    elif isinstance(data, list) and len(data) == 2 and isinstance(data[0], list) and isinstance(data[1], int):
        records = data[0]
    elif isinstance(data, list):
        records = data
    else:
        raise DataError(source, None, None, "expected [route_list, count], a route object or a list of routes")
    if not records:
        raise DataError(source, None, None, "no routes")
    routes = [route_from_record(record, source, index) for index, record in enumerate(records, start=1)]
    first_row: dict[str, int] = {}
    for index, route in enumerate(routes, start=1):
        if route.route_id in first_row:  # episodes find their route by id
            raise DataError(source, index, "route_id", f"{route.route_id!r} is also route {first_row[route.route_id]}'s",
                            unit="route")
        first_row[route.route_id] = index
    return routes
