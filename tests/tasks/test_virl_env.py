"""The on-rail environment: prompts, answers, each reward case and the retry rule, on the
hand-checked fixture route (no dropped points, initial heading 10)."""

import dataclasses
from pathlib import Path

import pytest

from amft.tasks.virl import load_routes
from amft.tasks.virl.env import VirlEnv, parse_answer

(ROUTE,) = load_routes(Path(__file__).parent / "virl_files" / "route_bare.json")


def make_env(form="compact", mode="abs"):
    env = VirlEnv(ROUTE, max_attempts=100, form=form, mode=mode, drop_rate=0.0)
    env.reset()
    return env


def test_compact_prompt_and_expert_answers_along_the_rail():
    env = make_env()
    prompt = env.prompt()
    assert prompt == ("[inst] 1 west/left; 2 to Blue Door Cafe; 3 south/left; 4 stop at Corner Bakery\n"
                      "[mode] abs\n[hist] \n[obs] -\n[answer]")
    answers = []
    while True:
        answers.append(env.expert_answer())
        _, reward, terminated, truncated, info = env.step(answers[-1])
        assert reward == 1.0 and not truncated
        if terminated:
            break
    assert answers == [" - 1 west/left turn_direction(west)", *[" - 2 forward()"] * 5,
                       " + 3 south/left turn_direction(south)", *[" - 4 forward()"] * 5, " - 4 stop()"]
    assert info["is_success"] and env.record.calls == env.record.correct == 13
    assert "[hist] tff\n[obs] -\n" in make_env_at(3).prompt()
    assert "[hist] tfffff\n[obs] Blue Door Cafe +\n" in make_env_at(6).prompt()
    assert "[obs] Corner Bakery\n" in make_env_at(12).prompt()


def test_a_turn_reached_without_points_names_its_turn_sentence():
    # A first intersection within 5 m of the start gets no interpolated points, and the original
    # labels it with the move sentence before it (2); the compact answer names its turn sentence (3).
    short = dataclasses.replace(ROUTE, nodes=(ROUTE.start, *ROUTE.nodes[1:]))
    env = VirlEnv(short, max_attempts=100, mode="abs", drop_rate=0.0)
    env.reset()
    env.step(env.expert_answer())
    assert env.rail[1].kind == "intersection" and env.rail[1].sentence == 2
    assert env.expert_answer() == " + 3 south/left turn_direction(south)"


def make_env_at(index):
    env = make_env()
    for _ in range(index):
        env.step(env.expert_answer())
    return env


def test_each_reward_case_and_the_retry_rule():
    env = make_env()
    observation, reward, *_ , info = env.step(" - 1 turn_direction(east)")
    assert reward == -1.0 and env.index == 0
    assert observation == env.prompt() + " - 1 turn_direction(east)\n[failed] action\n[answer]"
    # A correct retry still advances, and the tries start again at the next position.
    assert env.step(" - 1 turn_direction(west)")[1] == 1.0 and env.index == 1
    # Claiming an intersection where there is none: -1.5.
    observation, reward, *_ = env.step(" + 2 stop()")
    assert reward == -1.5 and observation.endswith(" + 2 stop()\n[failed] observation\n[answer]")
    assert env.step(" - 2 stop()")[1] == -1.0
    # A third call at the same position is not evaluated: the episode fails.
    _, reward, terminated, truncated, info = env.step(" - 2 forward()")
    assert (reward, terminated, truncated, info["is_success"]) == (-1.0, False, True, False)
    assert info["verification"] is None and info["attempts"] == 5 and env.record.calls == 4
    with pytest.raises(RuntimeError):
        env.step("anything")

    at_intersection = make_env_at(6)
    assert at_intersection.rail[6].kind == "intersection"
    _, reward, *_, info = at_intersection.step(" - 3 forward()")
    assert reward == -1.5 and "you are at an intersection" in info["verification"].message
    assert at_intersection.step(" + 3 forward()")[1] == -1.0
    assert make_env().step("gibberish")[1] == -1.0


def test_relative_mode_asks_for_relative_turns():
    env = make_env(mode="rel")
    assert "[mode] rel" in env.prompt()
    assert env.expert_answer() == " - 1 west/left turn_direction(left)"
    assert env.step(" - 1 turn_direction(west)")[1] == -1.0
    assert env.step(" - 1 turn_direction(left)")[1] == 1.0


def test_original_prompt_and_json_answers():
    env = make_env(form="original")
    prompt = env.prompt()
    assert "[Instruction]\n1. First, turn left to face west.\n2. Move forward" in prompt
    assert "where x is one of [north, northeast, east, southeast, south, southwest, west, northwest]" in prompt
    assert prompt.split("[Observations and actions sequence]\n")[1].startswith("O_1: No landmarks nearby; \nA_1: \n")
    target = env.expert_answer()
    assert parse_answer("original", target) == ("turn_direction(west)", "No landmarks nearby; ")
    # The skeleton's trailing commas are not JSON: the regex still reads the fields.
    loose = '{\n  "current observation": "x; You observe an intersection",\n  "current instruction": "3",\n  "action": "stop()",\n}'
    assert parse_answer("original", loose) == ("stop()", "x; You observe an intersection")
    failed, reward, *_ = make_env(form="original").step('{"action": "stop()"}')
    assert reward == -1.0 and failed.endswith('{"action": "stop()"}\nYou failed this trial because you make incorrect '
                                              'action. Please avoid this action and try again.\n')
    assert env.step(target)[1] == 1.0
    assert "O_1: No landmarks nearby; \nA_1: turn_direction(west)\nO_2:" in env.prompt()


def test_virl_task_rows_splits_and_expert_episodes():
    from amft.tasks import get_task

    task = get_task("virl", synthetic_routes=300, eval_routes=20, validation_routes=20)
    splits = task.route_splits()
    assert len(splits["train"]) == 260 and len(splits["test"]) == len(splits["validation"]) == 20
    train_ids = {r.route_id for r in splits["train"]}
    assert not train_ids & {r.route_id for r in splits["test"] + splits["validation"]}
    demos = task.demonstrations(200, seed=0)
    assert demos == task.demonstrations(200, seed=0)
    assert all(task.verify(d, d["completion"]).reward == 1.0 for d in demos)
    relative = [d for d in demos if d["mode"] == "rel"]
    assert relative and all("[mode] rel" in d["prompt"] for d in relative)
    assert all(parse_answer("compact", d["completion"])[0] == d["action"] for d in demos)
    # Every compact demonstration and prompt fits the demo's generation and model lengths.
    assert max(len(d["completion"]) for d in demos) < 64 and max(len(d["prompt"]) for d in demos) < 300
    retries = [d for d in demos if "\n[failed] " in d["prompt"]]
    assert 0.1 < len(retries) / len(demos) < 0.35  # retry_share 0.2
    assert all(d["prompt"].endswith("\n[answer]") and parse_answer("compact", d["prompt"].split("\n")[-3].removeprefix("[answer]"))[0]
               not in (None, d["action"]) for d in retries)
    turns_only = get_task("virl", synthetic_routes=300, eval_routes=20, validation_routes=20, turn_share=1.0)
    assert all(d["action"].startswith("turn_direction") for d in turns_only.demonstrations(50, seed=0))
    with pytest.raises(ValueError, match="turn_share"):
        get_task("virl", turn_share=1.5)
    prompts = task.train_prompts(50, seed=0)
    assert all(task.verify(p, " - 1 nonsense").reward < 0 for p in prompts)
    ood = task.eval_episodes("ood-rule")
    assert ood and all(row["mode"] == "rel" for row in ood)
    for row in (*task.eval_episodes("id")[:5], *ood[:5], *task.eval_episodes("unseen-routes")[:5]):
        env = task.make_env(row, max_attempts=1000)
        env.reset()
        while True:
            *_, terminated, truncated, info = env.step(env.expert_answer())
            if terminated or truncated:
                break
        assert terminated and info["is_success"]


def test_a_route_file_reports_only_the_splits_it_has(tmp_path):
    """A route file has no unseen street grids: its runs leave out unseen-routes (and, drawn, ood-visual
    without a file of another city), and the options that shape synthetic routes are refused with it."""
    import json

    from amft.tasks import get_task
    from amft.tasks.virl.synthetic import generate_routes

    records = generate_routes(40, seed=3)
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps([records, len(records)]))  # as `amft data virl-synthetic` writes it
    assert get_task("virl").default_splits == ("id", "ood-rule", "unseen-routes")
    task = get_task("virl", routes=str(routes), eval_routes=5, validation_routes=5)
    assert task.default_splits == ("id", "ood-rule")
    assert all(task.eval_episodes(split) for split in task.default_splits)
    assert get_task("virl-vl", routes=str(routes)).default_splits == ("id", "ood-rule")
    assert get_task("virl-vl", routes=str(routes), ood_visual_routes=str(routes)).default_splits == (
        "id", "ood-rule", "ood-visual")
    with pytest.raises(ValueError, match="synthetic_seed"):
        get_task("virl", routes=str(routes), synthetic_seed=1)
