"""Episodes of the navigation-memory benchmark: a start, a goal with a landmark, the expert's
actions (shortest in navigator steps) and a templated instruction (the
agent gets the instruction, never the goal node; see docs/design.md, 'Episodes and subsets').

Instructions name turns by the street sign or a landmark at the turn and end with the goal's
landmark; when that landmark's name occurs earlier on the path, the instruction counts
("stop at the second fire hydrant"), which needs memory of what was passed. Loop episodes
("turn right at every intersection and stop when you are back where you started") go around a
block back to the start, which needs memory of the place.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from .city import City, NavigatorState
from .observations import _street_names

__all__ = ["Episode", "LOOP_INSTRUCTION", "expert_actions", "sample_counting_episode", "sample_episode",
           "sample_loop_episode"]

_ORDINALS = ("first", "second", "third", "fourth", "fifth")
_MOVES = ("forward", "left", "right", "turn_around")
LOOP_INSTRUCTION = "Turn {side} at every intersection and stop when you are back where you started."


@dataclass(frozen=True)
class Episode:
    instruction: str
    start: NavigatorState
    goal: int
    actions: tuple[str, ...]
    path: tuple[int, ...]
    subsets: tuple[str, ...]


def expert_actions(city: City, start: NavigatorState, goal: int, max_states: int = 200_000) -> tuple[list[str], list[int]] | None:
    """Fewest navigator actions from ``start`` to stopping on ``goal`` (breadth first over states),
    and the nodes visited; None if unreachable."""
    key = (start.node, round(start.heading) % 360)
    before: dict[tuple[int, int], tuple[tuple[int, int], str] | None] = {key: None}
    states = {key: start}
    queue = deque([key])
    while queue and len(before) < max_states:
        current = queue.popleft()
        if current[0] == goal:
            actions, visited, cursor = ["stop"], [current[0]], current
            while before[cursor] is not None:
                cursor, action = before[cursor]
                actions.append(action)
                visited.append(cursor[0])
            visited.reverse()
            path = [node for i, node in enumerate(visited) if i == 0 or node != visited[i - 1]]
            return actions[::-1], path
        for action in _MOVES:
            moved = states[current].step(city, action)
            nxt = (moved.node, round(moved.heading) % 360)
            if nxt not in before:
                before[nxt] = (current, action)
                states[nxt] = moved
                queue.append(nxt)
    return None


def _describe(city: City, node: int, block: float) -> str:
    if city.landmarks.get(node):
        return f"the {city.landmarks[node][0].name}"
    avenue, street = _street_names(city, node, block)
    return f"{avenue} and {street}"


def instruction_for(city: City, actions: list[str], path: list[int], block: float) -> tuple[str, list[str]]:
    """The instruction for an expert action sequence, and its memory-dependent subset tags.

    As in Map2Seq's "go straight and stop at the second bus stop", the last leg is not described
    by the intersections it passes: the final sentence is what ends it. An episode is tagged
    ``counting`` only when the goal's landmark also stands on that last leg, before the goal:
    stopping at the first such landmark after the last turn is then wrong, so the ordinal can
    only be followed by counting what was passed."""
    sentences, subsets, straight, node_index, last_leg = [], [], 0, 0, 0
    for action in actions[:-1]:
        if action == "forward":
            # Counted when the agent goes on through an intersection, not when it arrives at one.
            if node_index > 0 and city.is_intersection(path[node_index]):
                straight += 1
            node_index += 1
            continue
        if straight:
            sentences.append(f"go straight past {straight} intersection{'s' if straight > 1 else ''}")
            straight = 0
        if action == "turn_around":
            sentences.append("turn around")
        else:
            sentences.append(f"turn {action} at {_describe(city, path[node_index], block)}")
            node_index += 1
        last_leg = node_index
    goal_name = city.landmarks[path[-1]][0].name

    def passed(nodes: tuple[int, ...] | list[int]) -> int:
        return sum(1 for n in nodes for lm in city.landmarks.get(n, []) if lm.name == goal_name)

    earlier = passed(path[:-1])
    if earlier:
        if passed(path[last_leg:-1]):
            subsets.append("counting")
        sentences.append(f"stop at the {_ORDINALS[min(earlier, 4)]} {goal_name}")
    else:
        sentences.append(f"stop at the {goal_name}")
    if len(actions) > 40:
        subsets.append("long")
    text = ", then ".join(sentences)
    return text[0].upper() + text[1:] + ".", subsets


def _expert_episode(city: City, start: NavigatorState, goal: int, block: float, min_actions: int,
                    max_actions: int) -> Episode | None:
    """The expert's episode from ``start`` to ``goal``; None if unreachable or of the wrong length."""
    found = expert_actions(city, start, goal)
    if found is None or not min_actions <= len(found[0]) <= max_actions:
        return None
    actions, path = found
    text, subsets = instruction_for(city, actions, path, block)
    return Episode(text, start, goal, tuple(actions), tuple(path), tuple(subsets))


def sample_episode(city: City, rng: random.Random, *, block: float = 80.0, min_actions: int = 6,
                   max_actions: int = 80) -> Episode:
    """A random start (facing along a street) and a reachable goal node that has a landmark."""
    goals = sorted(city.landmarks)
    starts = sorted(city.edges)
    for _ in range(1000):
        node = rng.choice(starts)
        heading = rng.choice(sorted(city.edges[node].values()))
        episode = _expert_episode(city, NavigatorState(node, heading), rng.choice(goals), block, min_actions, max_actions)
        if episode is not None:
            return episode
    raise RuntimeError("could not sample an episode: the city has too few reachable landmark goals")


def sample_counting_episode(city: City, rng: random.Random, *, block: float = 80.0, min_actions: int = 6,
                            max_actions: int = 80, reach: int = 8) -> Episode:
    """An episode tagged ``counting``: the goal's landmark also stands on the final stretch.

    Such episodes are rare among random start-goal pairs (a few in a hundred), so the start is
    drawn within ``reach`` nodes of another place with the goal's landmark (its twin) and kept
    only when the expert passes the twin after the last instruction step."""
    places: dict[str, list[int]] = {}
    for node, marks in sorted(city.landmarks.items()):
        for landmark in marks:
            places.setdefault(landmark.name, []).append(node)
    twins = [(goal, twin) for nodes in places.values() for goal in nodes for twin in nodes if goal != twin]
    if not twins:
        raise RuntimeError("could not sample a counting episode: no landmark name stands at two places")
    for _ in range(2000):
        goal, node = rng.choice(twins)
        for _ in range(rng.randint(1, reach)):
            node = rng.choice(sorted(set(city.successors(node)) | {node}))
        if not city.edges.get(node):
            continue
        start = NavigatorState(node, rng.choice(sorted(city.edges[node].values())))
        episode = _expert_episode(city, start, goal, block, min_actions, max_actions)
        if episode is not None and "counting" in episode.subsets:
            return episode
    raise RuntimeError("could not sample a counting episode: no start passes a twin of its goal's landmark")


def sample_loop_episode(city: City, rng: random.Random, *, max_actions: int = 40) -> Episode:
    """A start in the middle of a street and the loop "turn ``side`` at every intersection" that
    brings the navigator back to it within ``max_actions`` (sides drawn at random)."""
    starts = sorted(node for node in city.edges if city.degree(node) == 2)
    for _ in range(1000):
        node = rng.choice(starts)
        side = rng.choice(("left", "right"))
        start = state = NavigatorState(node, rng.choice(sorted(city.edges[node].values())))
        actions, path = [], [node]
        while len(actions) < max_actions:
            action = side if city.is_intersection(state.node) else "forward"
            moved = state.step(city, action)
            if moved.node == state.node:
                break  # a dead end: no loop from here
            actions.append(action)
            state = moved
            path.append(state.node)
            if state.node == node:
                turns = sum(a == side for a in actions)
                if turns >= 3 and len(set(path)) == len(path) - 1:  # around a block, no node twice
                    return Episode(LOOP_INSTRUCTION.format(side=side), start, node, (*actions, "stop"), tuple(path),
                                   ("loop",))
                break
    raise RuntimeError("could not sample a loop episode: no closed block reachable by one-sided turns")
