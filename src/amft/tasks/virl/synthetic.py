"""V-IRL-L-synthetic: routes on procedurally generated street grids, written in the
`route_infos.json` record format so that the same loader and environment read them (see
docs/design.md, 'Routes and V-IRL-L-synthetic').

A city is a rotated grid of streets with fictional landmarks at some intersections. A route
starts at an intersection, follows streets with one to two turns and ends at a fictional
destination place; its nodes are the turn intersections and the destination, as in Google
Directions' steps. Every record says it is synthetic (`source`, generator version, seed,
region). Generation is deterministic for a seed.
"""

from __future__ import annotations

import math
import random
from typing import Any

from .rail import compass_word

__all__ = ["GENERATOR_VERSION", "SOURCE", "generate_routes"]

SOURCE = "V-IRL-L-synthetic"
GENERATOR_VERSION = 1
_ORIGIN = (10.0, 20.0)  # a fictional (lat, lng) origin for local metres
_METRES_PER_DEGREE = 111_320.0
_KINDS = ("Cafe", "Bakery", "Books", "Pharmacy", "Deli", "Gallery", "Florist", "Bistro", "Market", "Tailor", "Studio", "Bank")
_NAMES = ("Blue Door", "Red Fern", "Silver Oak", "Maple", "Harbor", "Juniper", "Copper Kettle", "Lantern", "Orchid",
          "Granite", "Willow", "Amber", "Cobalt", "Pinecone", "Saffron", "Velvet", "Ivory", "Larkspur")
_RELATIONS = ("front", "right front", "right", "right behind", "behind", "left behind", "left", "left front")


def _latlng(x: float, y: float) -> list[float]:
    lat = _ORIGIN[0] + y / _METRES_PER_DEGREE
    lng = _ORIGIN[1] + x / (_METRES_PER_DEGREE * math.cos(math.radians(_ORIGIN[0])))
    return [round(lat, 7), round(lng, 7)]


def _bearing(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Degrees clockwise from north from local point a to b (x east, y north)."""
    return math.degrees(math.atan2(b[0] - a[0], b[1] - a[1])) % 360


def _relation(heading: float, bearing: float) -> str:
    """The egocentric word for something at ``bearing`` seen while facing ``heading``."""
    offset = (bearing - heading) % 360
    return _RELATIONS[round(offset / 45) % 8]


class _City:
    def __init__(self, rng: random.Random, index: int, size: int = 7, landmark_rate: float = 0.7) -> None:
        self.index = index
        self.size = size
        self.rotation = rng.choice((0.0, 45.0, rng.uniform(0, 90)))
        self.block = [rng.uniform(40, 90) for _ in range(2)]  # metres between streets along x and y
        names = [f"{n} {k}" for n in _NAMES for k in _KINDS]
        rng.shuffle(names)
        self.landmarks: dict[tuple[int, int], tuple[str, float]] = {}
        for i in range(size):
            for j in range(size):
                if rng.random() < landmark_rate:
                    self.landmarks[(i, j)] = (names.pop(), rng.choice((45.0, 135.0, 225.0, 315.0)))

    def point(self, i: float, j: float) -> tuple[float, float]:
        x, y = i * self.block[0], j * self.block[1]
        angle = math.radians(self.rotation)
        return (x * math.cos(angle) - y * math.sin(angle), x * math.sin(angle) + y * math.cos(angle))


_STEPS = ((1, 0), (0, 1), (-1, 0), (0, -1))


def _route(rng: random.Random, city: _City, seed: int, number: int) -> dict[str, Any] | None:
    turns = rng.choice((1, 2))
    node = (rng.randrange(city.size), rng.randrange(city.size))
    direction = rng.randrange(4)
    path = [node]
    for leg in range(turns + 1):
        if leg:
            direction = (direction + rng.choice((1, 3))) % 4  # a left or right turn at a street corner
        blocks = rng.randint(1, 2)
        di, dj = _STEPS[direction]
        node = (node[0] + di * blocks, node[1] + dj * blocks)
        if not (0 <= node[0] < city.size and 0 <= node[1] < city.size):
            return None
        path.append(node)
    # The destination stands half a block short of where the last leg ends, on one side of the street.
    di, dj = _STEPS[direction]
    destination = (path[-1][0] - di / 2, path[-1][1] - dj / 2)
    points = [city.point(*path[0]), *(city.point(*n) for n in path[1:-1]), city.point(*destination)]
    milestones, headings, blocks = [], [], []
    for k in range(1, len(points)):
        heading = _bearing(points[k - 1], points[k])
        distance = math.dist(points[k - 1], points[k])
        if k < len(points) - 1:
            landmark = city.landmarks.get(path[k])
            if landmark is None:
                text = "No landmark nearby"
            else:
                name, corner = landmark
                text = f"{name} is on your {_relation(heading, (city.rotation + corner) % 360)}"
        else:
            side = rng.choice(("left", "right"))
            name = f"{rng.choice(_NAMES)} {rng.choice(_KINDS)}"
            text = f"The destination {name} is on your {side}"
        headings.append(round(heading) % 360)
        milestones.append(text)
        blocks.append(
            "{\n"
            f'    "intersection_idx": "{k}",\n'
            f'    "landmarks": "{text}",\n'
            f'    "distance": "{round(distance)} meters",\n'
            f'    "human_heading": "{headings[-2] if k > 1 else 0}",\n'
            f'    "to_next_intersection_heading": "{headings[-1]} ({compass_word(headings[-1])})",\n'
            "},\n"
        )
    start = _latlng(*points[0])
    nodes = [_latlng(*p) for p in points[1:]]
    region = f"Synthetic City {city.index}"
    place = lambda name, ll: {"name": name, "geocode": ll, "relocated_geocode": ll, "region": region}  # noqa: E731
    return {
        "route_id": f"synthetic-{seed}-{city.index}-{number}",
        "source": SOURCE,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "region": region,
        "start_place": place("Start corner", start),
        "dest_place": place(milestones[-1].split("The destination ")[1].split(" is on your")[0], nodes[-1]),
        "route_results": {"geocode_list": nodes},
        "init_heading": 0,
        "milestone_info": "".join(blocks),
    }


def generate_routes(n: int, seed: int, *, cities: int = 4) -> list[dict[str, Any]]:
    """``n`` distinct route records over ``cities`` grids, all determined by ``seed``."""
    rng = random.Random(f"virl-synthetic:{seed}")
    grids = [_City(rng, index) for index in range(cities)]
    routes, seen = [], set()
    attempts = 0
    while len(routes) < n:
        attempts += 1
        if attempts > 1000 * (n + 1):
            raise RuntimeError(f"could only draw {len(routes)} distinct routes of the {n} asked")
        city = grids[rng.randrange(cities)]
        record = _route(rng, city, seed, len(routes))
        if record is None:
            continue
        key = (record["region"], record["milestone_info"], tuple(record["start_place"]["geocode"]))
        if key not in seen:
            seen.add(key)
            routes.append(record)
    return routes
