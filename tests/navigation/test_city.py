"""The synthetic city and VELMA's navigator semantics."""

import re

import pytest
import torch

from amft.navigation.city import City, NavigatorState, make_city


def plus_city():
    # Centre 0; arms north 1, east 2, south 3, west 4, each 20 m away; 5 continues east of 2 (a street, not a crossing).
    positions = [(0.0, 0.0), (0.0, 20.0), (20.0, 0.0), (0.0, -20.0), (-20.0, 0.0), (40.0, 0.0)]
    headings = {(0, 1): 0.0, (1, 0): 180.0, (0, 2): 90.0, (2, 0): 270.0, (0, 3): 180.0, (3, 0): 0.0, (0, 4): 270.0,
                (4, 0): 90.0, (2, 5): 90.0, (5, 2): 270.0}
    edges = {}
    for (a, b), heading in headings.items():
        edges.setdefault(a, {})[b] = heading
    return City(positions, edges)


def test_navigator_at_an_intersection_and_along_a_street():
    city = plus_city()
    at_centre = NavigatorState(3, 0.0).step(city, "forward")
    assert (at_centre.node, at_centre.heading) == (0, 0.0)
    assert at_centre.step(city, "forward").node == 1
    assert (at_centre.step(city, "left").node, at_centre.step(city, "left").heading) == (4, 270.0)
    assert at_centre.step(city, "right").node == 2
    assert at_centre.step(city, "turn_around").heading == 180.0 and at_centre.step(city, "stop") is at_centre
    # Node 2 has degree 2: "left" means forward there.
    on_street = NavigatorState(2, 90.0)
    assert on_street.step(city, "left").node == 5 and on_street.step(city, "right").node == 5
    # Node 1 is a dead end: forward stays; turning around and going forward leads back.
    dead_end = NavigatorState(1, 0.0)
    assert dead_end.step(city, "forward") == dead_end
    assert dead_end.step(city, "turn_around").step(city, "forward").node == 0
    with pytest.raises(ValueError):
        dead_end.step(city, "jump")


def test_generated_city_is_deterministic_with_streets_crossings_and_dead_ends():
    city = make_city(seed=1, size=6)
    assert city.positions == make_city(seed=1, size=6).positions and city.edges == make_city(seed=1, size=6).edges
    assert city.edges != make_city(seed=2, size=6).edges
    degrees = [city.degree(n) for n in city.edges]
    assert set(degrees) <= {1, 2, 3, 4} and degrees.count(2) > len(degrees) / 2 and 4 in degrees
    for a, successors in city.edges.items():
        for b, heading in successors.items():
            assert city.edges[b]  # every street is two-way
            assert heading in (0.0, 90.0, 180.0, 270.0)
    names = [lm.name for lms in city.landmarks.values() for lm in lms]
    assert len(names) > len(set(names))  # repeated distractors exist


def test_observations_name_landmarks_by_bearing_and_embed_deterministically():
    from amft.navigation.city import Landmark
    from amft.navigation.observations import Observer

    city = plus_city()
    city.landmarks = {1: [Landmark("red bank", 1, "left")], 2: [Landmark("fire hydrant", 2, "right")]}
    observer = Observer(city, block=20.0, visibility=25.0)
    facing_north = observer.text(NavigatorState(0, 0.0))
    assert facing_north == "landmarks: fire hydrant right 20m; red bank ahead 20m | degree 4 | sign: Avenue A & Street 1"
    assert observer.text(NavigatorState(0, 180.0)).startswith("landmarks: fire hydrant left 20m; red bank behind 20m")
    assert observer.text(NavigatorState(5, 90.0)) == "landmarks: fire hydrant behind 20m | degree 1"
    a, b = observer.embed(facing_north), observer.embed(facing_north)
    assert torch.equal(a, b) and abs(float(a.norm()) - 1.0) < 1e-6
    assert float(torch.dot(a, observer.embed("landmarks: none | degree 2"))) < 0.9
    blind = Observer(city, block=20.0, visibility=25.0, false_negative=1.0)
    assert blind.text(NavigatorState(0, 0.0)).startswith("landmarks: none")


def test_expert_actions_and_instructions_on_the_plus_city():
    from amft.navigation.city import Landmark
    from amft.navigation.episodes import expert_actions, instruction_for

    city = plus_city()
    city.landmarks = {4: [Landmark("red bank", 4, "left")], 5: [Landmark("fire hydrant", 5, "right")]}
    actions, path = expert_actions(city, NavigatorState(3, 0.0), goal=4)
    assert actions == ["forward", "left", "stop"] and path == [3, 0, 4]
    text, subsets = instruction_for(city, actions, path, block=20.0)
    assert text == "Turn left at Avenue A and Street 1, then stop at the red bank." and subsets == []
    actions, path = expert_actions(city, NavigatorState(1, 0.0), goal=5)  # facing a dead end
    assert actions == ["turn_around", "forward", "left", "forward", "stop"] and path == [1, 0, 2, 5]
    assert expert_actions(City([(0.0, 0.0), (5.0, 5.0)], {0: {}}), NavigatorState(0, 0.0), goal=1) is None


def test_sampled_episodes_count_repeated_landmarks():
    import random

    from amft.navigation.episodes import sample_counting_episode, sample_episode

    city = make_city(seed=0, size=6)
    rng = random.Random(0)
    episodes = [sample_episode(city, rng) for _ in range(40)] + [sample_counting_episode(city, rng) for _ in range(10)]
    for episode in episodes:
        state = episode.start
        for action in episode.actions[:-1]:
            state = state.step(city, action)
        assert state.node == episode.goal and episode.actions[-1] == "stop"
        assert episode.instruction.endswith(f"{city.landmarks[episode.goal][0].name}.")
    counting = [e for e in episodes if "counting" in e.subsets]
    assert len(counting) >= 10 and all(re.search(r"stop at the (second|third|fourth|fifth) ", e.instruction, re.IGNORECASE) for e in counting)
    # The last leg is not described by intersections: the final sentence is what ends it.
    assert all(", then stop at" in e.instruction and "intersections, then stop" not in e.instruction for e in episodes
               if "turn" in e.instruction)
