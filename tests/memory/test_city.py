"""The synthetic city and VELMA's navigator semantics."""

import pytest

from amft.memory.city import City, NavigatorState, make_city


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
