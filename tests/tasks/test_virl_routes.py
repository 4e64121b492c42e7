"""V-IRL routes and rails on hand-written fixtures in the exact record layout (fictional places)."""

import json
import random
from pathlib import Path

import pytest

from amft.tasks import DataError
from amft.tasks.virl import (
    build_rail,
    compass_word,
    distance_m,
    instruction_sentences,
    load_routes,
    parse_milestone_info,
    relative_word,
)

FILES = Path(__file__).parent / "virl_files"


def test_both_file_wrappers_load():
    (bare,) = load_routes(FILES / "route_bare.json")
    wrapped = load_routes(FILES / "routes_wrapped.json")
    assert len(wrapped) == 2 and wrapped[0].nodes == bare.nodes and wrapped[0].milestones == bare.milestones
    assert bare.start == (40.0, -73.0) and bare.init_heading == 10
    assert [(m.heading, m.compass, m.landmarks) for m in bare.milestones] == [
        (270, "west", "Blue Door Cafe is on your left behind"),
        (180, "south", "The destination Corner Bakery is on your right"),
    ]
    assert wrapped[1].milestones[0].landmarks == "No landmark nearby"


def test_milestone_blocks_with_trailing_commas():
    text = '{\n "intersection_idx": "1",\n "landmarks": "A: B is on your left",\n "to_next_intersection_heading": "90 (east)",\n},\n'
    assert parse_milestone_info(text) == [
        {"intersection_idx": "1", "landmarks": "A: B is on your left", "to_next_intersection_heading": "90 (east)"}
    ]


def test_malformed_files_name_the_route_and_field(tmp_path):
    with pytest.raises(DataError, match=r"bad_heading\.json: route 1: field 'milestone_info': block 1"):
        load_routes(FILES / "bad_heading.json")
    with pytest.raises(DataError, match=r"missing_geocodes\.json: route 2: field 'route_results\.geocode_list'"):
        load_routes(FILES / "missing_geocodes.json")
    broken = tmp_path / "broken.json"
    broken.write_text('[{"start_place": ')
    with pytest.raises(DataError, match="broken.json: not valid JSON"):
        load_routes(broken)
    with pytest.raises(FileNotFoundError):
        load_routes(tmp_path / "absent.json")
    route = json.loads((FILES / "route_bare.json").read_text())
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps([{**route, "route_id": "r1"}, {**route, "route_id": "r2"}, {**route, "route_id": "r1"}]))
    with pytest.raises(DataError, match=r"twice\.json: route 3: field 'route_id': 'r1' is also route 1's"):
        load_routes(twice)


@pytest.mark.parametrize(
    ("delta", "wrapped", "original"),
    [(-90, "left", "left"), (90, "right", "right"), (-45, "slightly left", "slightly left"), (0, "slightly left", "slightly left"),
     (45, "slightly right", "slightly right"), (46, "right", "right"), (260, "left", "right"), (-350, "slightly right", "left"),
     (180, "left", "right"), (-180, "left", "left")],
)
def test_relative_turns_wrap_around_by_default(delta, wrapped, original):
    assert relative_word(delta) == wrapped
    assert relative_word(delta, wrap=False) == original


def test_compass_words():
    assert [compass_word(h) for h in (0, 44, 46, 90, 180, 259, 270, 337.5, 359)] == [
        "north", "northeast", "northeast", "east", "south", "west", "west", "north", "north"]


def test_instruction_and_rail_of_the_worked_example():
    (route,) = load_routes(FILES / "route_bare.json")
    assert distance_m(route.start, route.nodes[0]) == pytest.approx(59.6, abs=0.5)
    assert instruction_sentences(route, initial_heading=10) == [
        "First, turn left to face west.",  # 270 - 10 = 260 wraps to -100 (we wrap); the original says "right"
        "Move forward until you reach next intersection where Blue Door Cafe is on your left behind.",
        "Turn left to face south.",
        "Move forward until you reach destination where The destination Corner Bakery is on your right.",
    ]
    assert instruction_sentences(route, initial_heading=10, wrap=False)[0] == "First, turn right to face west."
    rail = build_rail(route, random.Random(0), initial_heading=10)
    kinds = [p.kind for p in rail]
    assert kinds[0] == "start" and kinds[-1] == "destination" and kinds.count("intersection") == 1
    points = [kinds[1 : kinds.index("intersection")].count("point"), kinds[kinds.index("intersection") + 1 : -1].count("point")]
    assert all(0 <= n <= 5 for n in points)
    start, intersection, destination = rail[0], rail[kinds.index("intersection")], rail[-1]
    assert (start.absolute_action, start.relative_action, start.sentence) == ("turn_direction(west)", "turn_direction(left)", 1)
    assert start.observation == "No landmarks nearby; "
    assert intersection.observation == "Blue Door Cafe is on your left behind; You observe an intersection"
    assert (intersection.absolute_action, intersection.relative_action, intersection.sentence) == (
        "turn_direction(south)", "turn_direction(left)", 3)
    assert (destination.absolute_action, destination.observation, destination.sentence) == (
        "stop()", "The destination Corner Bakery is on your right; ", 4)
    assert all(p.absolute_action == "forward()" and p.sentence in (2, 4) for p in rail if p.kind == "point")
    # No drops at drop_rate 0: five points per segment.
    assert len(build_rail(route, random.Random(0), initial_heading=10, drop_rate=0.0)) == 1 + 5 + 1 + 5 + 1


def test_synthetic_routes_are_deterministic_labelled_and_read_by_the_loader(tmp_path):
    from amft.tasks.virl.synthetic import SOURCE, generate_routes

    records = generate_routes(60, seed=3)
    assert records == generate_routes(60, seed=3) and records != generate_routes(60, seed=4)
    assert all(r["source"] == SOURCE and r["seed"] == 3 and r["region"].startswith("Synthetic City") for r in records)
    path = tmp_path / "synthetic.json"
    path.write_text(json.dumps([records, len(records)]))
    routes = load_routes(path)
    assert len({r.route_id for r in routes}) == 60
    for route in routes:
        assert 2 <= len(route.milestones) <= 3  # one or two turns, then the destination
        assert all(compass_word(m.heading) == m.compass for m in route.milestones)
        assert route.milestones[-1].landmarks.startswith("The destination ")
        rail = build_rail(route, random.Random(0), initial_heading=0)
        assert rail[-1].absolute_action == "stop()" and rail[0].kind == "start"


def test_data_command_writes_a_synthetic_route_file(tmp_path):
    from amft.cli import main

    out = tmp_path / "routes.json"
    assert main(["data", "virl-synthetic", "--n", "12", "--seed", "0", "--output", str(out)]) == 0
    assert len(load_routes(out)) == 12
