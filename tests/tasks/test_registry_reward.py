"""Registry and the TRL-style reward function."""

import pytest

from amft.tasks import Task, Verification, available_tasks, get_task
from amft.tasks.general_points import GeneralPointsConfig, GeneralPointsTask


def test_registry():
    task = get_task("general-points", template="compact", demo_fraction=0.4)
    assert isinstance(task, Task) and isinstance(task, GeneralPointsTask)
    assert task.name == "general-points" and task.config.demo_fraction == 0.4
    assert "general-points" in available_tasks()
    with pytest.raises(ValueError, match="general-points"):
        get_task("nope")
    with pytest.raises(ValueError, match="unknown general-points option"):
        get_task("general-points", tempalte="compact")
    with pytest.raises(ValueError, match="template"):
        get_task("general-points", template="fancy")
    with pytest.raises(ValueError, match="ood_rule"):
        get_task("general-points", training_rules=[(10, 10, 10), (11, 12, 13)])
    assert get_task("general-points", config=GeneralPointsConfig(target=24)).config.target == 24


def test_config_defaults():
    c = GeneralPointsConfig()
    assert len(c.training_rules) == 63 and (11, 12, 13) not in c.training_rules
    assert (c.template, c.target, c.id_rule_fraction) == ("original", 24, 0.5)
    assert (c.unseen_fraction, c.demo_fraction, c.eval_episodes_per_split) == (0.15, 0.5, 234)


def test_rules_given_as_command_line_text():
    c = GeneralPointsConfig(training_rules="10,10,10; 11,11,11", ood_rule="12,12,12")
    assert (c.training_rules, c.ood_rule) == (((10, 10, 10), (11, 11, 11)), (12, 12, 12))
    with pytest.raises(ValueError, match="training_rules: expected a"):
        GeneralPointsConfig(training_rules="10,10")
    assert GeneralPointsConfig(training_rules="10,10,10; 11,11,11", id_rule_fraction=0.8).id_rule_fraction == 0.8
    with pytest.raises(ValueError, match="with training_rules 10,10,10 it has no effect"):
        GeneralPointsConfig(training_rules="10,10,10", id_rule_fraction=0.8)


def test_reward_trl_call_shapes():
    task = get_task("general-points", template="compact")
    rows = task.train_prompts(3, seed=0)
    demos = task.demonstrations(3, seed=0)
    comps = [d["completion"] for d in demos]
    cols = {k: [d[k] for d in demos] for k in ("cards", "ranks", "values", "rule", "target")}
    out = task.reward(prompts=[d["prompt"] for d in demos], completions=comps, completion_ids=[[1]] * 3,
                      trainer_state=None, log_extra=lambda *a: None, **cols)
    assert out == [5.0, 5.0, 5.0] and all(type(x) is float for x in out)
    # only the prompt column: the deal is read back from the prompt text
    assert task.reward(prompts=[d["prompt"] for d in demos], completions=comps) == [5.0] * 3
    # a wrong answer for row 0
    bad = task.reward(prompts=[r["prompt"] for r in rows], completions=["formula: 1"] * 3,
                      values=[r["values"] for r in rows])
    assert all(x < 0 for x in bad)
    with pytest.raises(ValueError, match="no deal"):
        task.reward(prompts=["hello"], completions=["formula: 1"])


def test_original_chat_format_rows_and_reward():
    task = get_task("general-points", chat_format=True, training_rules=[(10, 10, 10)])
    demo = task.demonstrations(2, seed=0)
    assert demo[0]["prompt"][0]["role"] == "user" and demo[0]["completion"][0]["role"] == "assistant"
    assert all(r["rule"] == [10, 10, 10] for r in task.train_prompts(20, 0))
    assert task.reward(prompts=[d["prompt"] for d in demo], completions=[d["completion"] for d in demo]) == [5.0] * 2
    v = task.verify(demo[0], demo[0]["completion"])
    assert isinstance(v, Verification) and v.success and v.message == "Correct solution."


def test_strict_format():
    strict = get_task("general-points", template="compact", strict_format=True)
    loose = get_task("general-points", template="compact")
    row = {"values": [1, 3, 10, 6]}
    assert strict.verify(row, '"formula": "10*3-6*1"').reward == -3.0
    assert loose.verify(row, '"formula": "10*3-6*1"').reward == 5.0
    assert strict.verify(row, " formula: 10*3-6*1").reward == 5.0
