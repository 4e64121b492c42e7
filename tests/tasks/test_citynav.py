"""City navigation for language-model agents: memory lines, rewards and whole episodes."""

import pytest

from amft.tasks import get_task
from amft.tasks.citynav import parse_action


@pytest.fixture(scope="module")
def task():
    return get_task("citynav", nav_eval_episodes=3)


def test_memory_line_counts_places_and_recognises_the_start_of_a_loop(task):
    loop = task.benchmark("loop").episodes["loop"][0]
    env = task.make_env({"split": "loop", "subset": "loop", "index": 0}, max_attempts=100)
    prompt, _ = env.reset()
    side = loop.instruction.lower().split("turn ")[1].split()[0]
    assert prompt.startswith(f"[step] loop {side}\n[obs] ") and prompt.endswith("[mem] new place\n[answer]")
    for action in loop.actions[:-1]:
        prompt, reward, terminated, truncated, info = env.step(f" {action}")
        assert reward == 1.0 and not terminated
    assert "been here" in prompt.split("[mem]")[1]  # back at the start, before stopping
    _, reward, terminated, _, info = env.step(" stop")
    assert terminated and info["is_success"] and info["path"][0] == info["path"][-1]

    blind = get_task("citynav", nav_eval_episodes=3, nav_memory="none")
    assert "[mem]" not in blind.make_env({"split": "loop", "subset": "loop", "index": 0}, max_attempts=1).reset()[0]


def test_counting_prompts_show_how_many_places_were_passed(task):
    episode = task.benchmark("counting").episodes["counting"][0]
    env = task.make_env({"split": "counting", "subset": "counting", "index": 0}, max_attempts=100)
    env.reset()
    goal_name = task.benchmark("counting").city.landmarks[episode.goal][0].name
    for action in episode.actions[:-1]:
        prompt, *_ = env.step(f" {action}")
    ordinal = episode.instruction.lower().rsplit("stop at the ", 1)[1].split()[0]
    count = {"second": 2, "third": 3, "fourth": 4, "fifth": 5}[ordinal]
    assert prompt.startswith(f"[step] stop at {goal_name} #{count}\n[obs] {goal_name} here")
    assert f"[mem] {goal_name} x{count}; new place" in prompt
    blind = get_task("citynav", nav_eval_episodes=3, nav_memory="no-short-term").make_env(
        {"split": "counting", "subset": "counting", "index": 0}, max_attempts=100)
    blind.reset()
    for action in episode.actions[:-1]:
        prompt, *_ = blind.step(f" {action}")
    assert f"[mem] {goal_name} x{count}; " in prompt  # the octree still counts places


def test_training_rows_reward_the_moves_that_do_what_the_expert_does(task):
    rows = task.train_prompts(200, seed=0)
    demos = task.demonstrations(50, seed=0)
    assert all(task.verify(row, row["demonstration"]).reward == 1.0 for row in rows)
    assert all(task.verify(row, row["completion"]).success for row in demos)
    stop_rows = [row for row in rows if row["valid_actions"] == ["stop"]]
    assert stop_rows and task.verify(stop_rows[0], " forward").reward == 0.0
    assert task.verify(rows[0], "fly away").reward == 0.0
    assert parse_action(" turn_around then more") == "turn_around" and parse_action("") is None


def test_an_agent_that_never_stops_runs_out_of_budget(task):
    env = task.make_env({"split": "plain", "subset": "plain", "index": 0}, max_attempts=1000)
    env.reset()
    for step in range(env.budget):
        _, reward, terminated, truncated, info = env.step(" nonsense")
    assert truncated and not terminated and not info["is_success"] and reward == 0.0
    with pytest.raises(RuntimeError):
        env.step(" stop")
    assert [row["subset"] for row in task.eval_episodes("unseen")] == ["plain"] * 3 + ["counting"] * 3 + ["loop"] * 3 + ["long"] * 3


def test_whole_episodes_are_evaluated_and_reported_as_episodes(task):
    from amft.evaluation.evaluate import evaluate
    from amft.models import load_model

    model, tokenizer = load_model("tiny-test")
    result = evaluate(model, tokenizer, task, "loop", max_attempts=300, temperature=0.0, max_new_tokens=4, limit=2,
                      progress=False)
    assert result.episodic and list(result.display_row())[0] == "episode success"
    budgets = [2 * len(e.actions) + 10 for e in task.benchmark("loop").episodes["loop"][:2]]
    # The untrained model never stops: each episode ends at the task's budget of 2 x steps + 10 model calls,
    # well under max_attempts, one call per step.
    assert [(r.attempts, len(r.completions), r.truncated, r.success) for r in result.records] == [
        (b, b, True, False) for b in budgets]


def test_training_streams_mix_episode_kinds_by_the_configured_shares():
    rows = get_task("citynav", nav_eval_episodes=3, loop_fraction=0.0, counting_fraction=1.0).demonstrations(60, seed=0)
    stops = [row["prompt"].split("\n")[0] for row in rows if row["prompt"].startswith("[step] stop")]
    assert stops and all(int(line.rsplit("#", 1)[1]) >= 2 for line in stops)
    rows = get_task("citynav", nav_eval_episodes=3, loop_fraction=1.0, counting_fraction=0.0).demonstrations(30, seed=0)
    assert all(row["prompt"].startswith("[step] loop ") for row in rows)
    with pytest.raises(ValueError, match="sum of at most 1"):
        get_task("citynav", loop_fraction=0.9, counting_fraction=0.2)


def test_decision_share_sets_how_many_rows_are_decisions():
    rows = get_task("citynav", nav_eval_episodes=3, decision_share=1.0).train_prompts(300, seed=0)
    walking = [row for row in rows if row["demonstration"] == " forward" and "sign" not in row["prompt"]
               and "been here" not in row["prompt"]]
    # what remains is going straight past a landmark the step names (an anchor, or a target not yet counted)
    assert walking and all(row["prompt"].split("\n")[0].split(" at ")[-1].split(" #")[0] in row["prompt"].split("\n")[1]
                           for row in walking)
    plain = get_task("citynav", nav_eval_episodes=3, decision_share=0.0).train_prompts(300, seed=0)
    assert {row["demonstration"] for row in plain} == {" forward"}
    with pytest.raises(ValueError, match="decision_share"):
        get_task("citynav", decision_share=1.5)
