"""The rule-based follower with and without memory on generated episodes."""

import random

import pytest

from amft.navigation.agents import FollowerAgent, parse_instruction, run_episode
from amft.navigation.benchmark import NavBenchmark, evaluate_episodes
from amft.navigation.city import make_city
from amft.navigation.episodes import sample_counting_episode, sample_episode, sample_loop_episode
from amft.navigation.observations import Observer


def test_parse_instruction():
    text = "Go straight past 2 intersections, then turn left at the red bank, then turn around, then stop at the third fire hydrant."
    assert parse_instruction(text) == [("straight", 2), ("turn", "left", "red bank here"), ("turn_around",),
                                       ("stop", "fire hydrant", 3)]
    assert parse_instruction("Turn right at Avenue C and Street 6, then stop at the old bank.")[0] == (
        "turn", "right", "sign: Avenue C & Street 6")
    assert parse_instruction("Stop at the green cafe.") == [("stop", "green cafe", 1)]
    assert parse_instruction("Turn left at every intersection and stop when you are back where you started.") == [
        ("loop", "left")]
    with pytest.raises(ValueError):
        parse_instruction("Fly to the moon.")
    with pytest.raises(ValueError):
        FollowerAgent(memory="dreams")
    with pytest.raises(ValueError, match="memory 'no-octree' sets octree; memory_options would undo the ablation"):
        FollowerAgent(memory="no-octree", memory_options={"octree": True})
    FollowerAgent(memory="no-octree", memory_options={"octree": False})


@pytest.fixture(scope="module")
def benchmark():
    city = make_city(seed=0, size=6)
    rng = random.Random(1)
    return city, Observer(city), ([sample_episode(city, rng) for _ in range(60)] + [sample_loop_episode(city, rng) for _ in range(10)]
                                  + [sample_counting_episode(city, rng) for _ in range(10)])


def test_follower_with_full_memory_reaches_every_goal_and_counting_and_loops_need_memory(benchmark):
    city, observer, episodes = benchmark
    with_memory = FollowerAgent(memory="full")
    for episode in episodes:
        result = run_episode(city, observer, with_memory, episode)
        assert result.stopped and result.path[-1] == episode.goal, episode.instruction
    counting = [e for e in episodes if "counting" in e.subsets]
    assert len(counting) >= 10
    without = [run_episode(city, observer, FollowerAgent(memory="none"), e).path[-1] == e.goal for e in counting]
    assert not any(without)  # stopping at the first one after the last turn is wrong for "the second ..."
    loops = [e for e in episodes if e.subsets == ("loop",)]
    blind = [run_episode(city, observer, FollowerAgent(memory="none"), e) for e in loops]
    assert not any(r.stopped for r in blind)  # it never knows it is back


def test_loop_episodes_go_around_a_block_back_to_the_start(benchmark):
    city, _, episodes = benchmark
    for episode in (e for e in episodes if e.subsets == ("loop",)):
        assert episode.path[0] == episode.path[-1] == episode.goal == episode.start.node
        assert len(set(episode.path)) == len(episode.path) - 1 and episode.actions[-1] == "stop"
        side = episode.instruction.split()[1]
        assert sum(a == side for a in episode.actions) >= 3


def test_both_metric_conventions_are_reported_per_episode(benchmark):
    city, observer, episodes = benchmark
    rows = evaluate_episodes(NavBenchmark(city, observer, {"all": episodes}), FollowerAgent(memory="full"))
    assert len(rows) == len(episodes)
    assert all(row["A_TC"] == row["B_TC"] == 100.0 and row["A_SPD"] == row["B_SPD"] == 0.0 for row in rows)
    assert all(row["A_nDTW"] == pytest.approx(100.0) for row in rows)
    blind = evaluate_episodes(NavBenchmark(city, observer, {"all": episodes}), FollowerAgent(memory="none"))
    assert sum(row["B_TC"] for row in blind) / len(blind) < 100.0