"""V-IRL's regime where RL matters: routes whose turns use held-out compass words (`rl_only_words`)
give no demonstrations, are held out within their role, and make the `rl-only` split (see
docs/design.md, 'Held-out splits')."""

import re

import pytest

from amft.tasks import get_task
from amft.tasks.virl import load_routes
from amft.tasks.virl.routes import Milestone, route_role
from amft.tasks.virl.visual import VirlVisualTask

DIAGONAL = re.compile(r"northeast|southeast|southwest|northwest")
#: the settings of the V-IRL regime pilots
REGIME = {"synthetic_routes": 2400, "rl_only_words": "diagonal", "rl_prompt_routes": "rl-only"}


@pytest.fixture(scope="module")
def regime():
    return get_task("virl", **REGIME)


def test_a_route_is_rl_only_when_one_of_its_turns_uses_a_held_out_word():
    (route,) = load_routes("tests/tasks/virl_files/route_bare.json")
    words = [milestone.compass for milestone in route.milestones]
    assert route_role(route, frozenset()) == "demo"
    assert route_role(route, frozenset({words[-1]})) == "rl-only"
    other = {"north", "east", "south", "west", "northeast", "southeast", "southwest", "northwest"} - set(words)
    assert route_role(route, frozenset(other)) == "demo"
    diagonal = route.__class__(**{**route.__dict__, "milestones": (
        *route.milestones[:-1], Milestone(**{**route.milestones[-1].__dict__, "compass": "northeast"}))})
    assert get_task("virl", rl_only_words="diagonal").route_role(diagonal) == "rl-only"
    assert get_task("virl", rl_only_words="north,east").route_role(diagonal) == "demo"


def test_without_held_out_words_the_splits_are_the_original_ones():
    task = get_task("virl")
    assert task.default_splits == ("id", "ood-rule", "unseen-routes")
    # pinned: the route split of every earlier V-IRL result
    assert [route.route_id for route in task.route_splits()["test"][:5]] == [
        "synthetic-0-0-705", "synthetic-0-0-288", "synthetic-0-2-44", "synthetic-0-1-565", "synthetic-0-3-901"]
    assert len(task.route_splits()["train"]) == 1000 and not task.role_splits()["rl-only"]["test"]
    for split in ("rl-only", "val-rl-only"):
        with pytest.raises(ValueError, match="rl_only_words"):
            task.eval_episodes(split)


def test_settings_that_cannot_be_honoured_are_refused():
    with pytest.raises(ValueError, match="needs rl_only_words"):
        get_task("virl", rl_prompt_routes="rl-only")
    with pytest.raises(ValueError, match="unknown compass word.*norteast"):
        get_task("virl", rl_only_words="norteast")
    with pytest.raises(ValueError, match="rl_prompt_routes must be"):
        get_task("virl", rl_only_words="diagonal", rl_prompt_routes="all")


def test_imitation_never_shows_a_held_out_word_and_rl_prompts_come_from_rl_only_routes(regime):
    demos = regime.demonstrations(400, seed=0)
    assert not any(DIAGONAL.search(d["prompt"] + d["completion"]) for d in demos)
    prompts = regime.train_prompts(200, seed=0)
    assert all(DIAGONAL.search(p["prompt"].split("\n")[0]) and p["demonstration"] is None for p in prompts)
    # A third of them ask for a held-out word: what RL has to learn.
    asked = sum(bool(DIAGONAL.search(p["action"])) for p in prompts) / len(prompts)
    assert 0.25 < asked < 0.6
    # With both roles in the pool, prompts of demonstrated routes keep their expert answer.
    both = get_task("virl", **{**REGIME, "rl_prompt_routes": "training"}).train_prompts(200, seed=0)
    assert {p["demonstration"] is None for p in both} == {True, False}
    assert all((p["demonstration"] is None) == bool(DIAGONAL.search(p["prompt"].split("\n")[0])) for p in both)


def test_each_role_holds_out_its_own_test_and_validation_routes(regime):
    roles = regime.role_splits()
    assert {name: len(routes) for name, routes in roles["demo"].items()} == {
        "train": 1604, "validation": 100, "test": 100, "unseen": 100}
    assert {name: len(routes) for name, routes in roles["rl-only"].items()} == {
        "train": 396, "validation": 100, "test": 100, "unseen": 0}
    episodes = {split: regime.eval_episodes(split) for split in regime.default_splits}
    assert regime.default_splits == ("id", "rl-only", "ood-rule", "unseen-routes")
    by_id = {route.route_id: route for group in regime.route_splits().values() for route in group}
    training = {route.route_id for route in regime.route_splits()["train"] + regime.route_splits()["validation"]}
    for split, rows in episodes.items():
        role = "rl-only" if split == "rl-only" else "demo"
        assert rows and {regime.route_role(by_id[row["route_id"]]) for row in rows} == {role}, split
        assert not training & {row["route_id"] for row in rows}, split
    # pinned, in place of an evaluation-set file: the split is fixed by the settings and the generator
    assert [row["route_id"] for row in episodes["id"][:3]] == [
        "synthetic-0-0-338", "synthetic-0-0-760", "synthetic-0-1-207"]
    assert [row["route_id"] for row in episodes["rl-only"][:3]] == [
        "synthetic-0-2-1929", "synthetic-0-2-395", "synthetic-0-2-1477"]
    # the validation routes of each role, for choosing a study's settings without its test splits
    validation = {split: regime.eval_episodes(split) for split in ("val-id", "val-rl-only")}
    assert [row["route_id"] for row in validation["val-id"]] == [r.route_id for r in roles["demo"]["validation"]]
    assert [row["route_id"] for row in validation["val-rl-only"]] == [r.route_id for r in roles["rl-only"]["validation"]]
    assert not {row["route_id"] for rows in validation.values() for row in rows} & {
        row["route_id"] for rows in episodes.values() for row in rows}
    for row in episodes["rl-only"][:5]:
        env = regime.make_env(row, max_attempts=1000)
        env.reset()
        answers = []
        while True:
            answers.append(env.expert_answer())
            *_, terminated, truncated, info = env.step(answers[-1])
            if terminated or truncated:
                break
        assert terminated and info["is_success"] and any(DIAGONAL.search(answer) for answer in answers)


def test_the_visual_variant_inherits_the_regime():
    task = VirlVisualTask(synthetic_routes=300, eval_routes=20, validation_routes=20, rl_only_words="diagonal")
    assert task.default_splits == ("id", "rl-only", "ood-rule", "unseen-routes", "ood-visual")
    rows = task.eval_episodes("rl-only")
    assert rows and {row["style"] for row in rows} == {"daylight"}
    by_id = {route.route_id: route for route in task.ood_visual_routes()}
    assert {task.route_role(by_id[row["route_id"]]) for row in task.eval_episodes("ood-visual")} == {"demo"}
    demos = task.demonstrations(50, seed=0)
    assert not any(DIAGONAL.search(str(d["prompt"]) + d["completion"][0]["content"]) for d in demos)


def test_relative_demonstrations_show_held_out_words_but_never_as_an_action():
    task = get_task("virl", **REGIME, rl_only_demonstrations="relative")
    demos = task.demonstrations(1000, seed=0)
    shown = [d for d in demos if DIAGONAL.search(d["prompt"].split("\n")[0])]
    assert shown and all(d["mode"] == "rel" for d in shown)
    assert any(DIAGONAL.search(d["completion"]) for d in shown)  # in the copied sentence
    assert not any(DIAGONAL.search(d["action"]) for d in demos)
    # RL prompts of rl-only routes ask in the absolute space, without a demonstration
    prompts = task.train_prompts(200, seed=0)
    assert {p["mode"] for p in prompts} == {"abs"} and all(p["demonstration"] is None for p in prompts)
    assert sum(bool(DIAGONAL.search(p["action"])) for p in prompts) > 100
    with pytest.raises(ValueError, match="needs rl_only_words"):
        get_task("virl", rl_only_demonstrations="relative")
