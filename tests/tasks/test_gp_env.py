"""Multi-turn revision env."""

import pytest

from amft.tasks import get_task


@pytest.fixture(scope="module")
def compact():
    return get_task("general-points", template="compact")


def row_for(task):
    from amft.tasks.general_points.cards import ID_RULE

    return task._row((1, 3, 13, 6), ID_RULE)


def test_failures_then_truncation(compact):
    row = row_for(compact)
    env = compact.make_env(row, max_attempts=5)
    obs, info = env.reset()
    assert obs == "[rule] J=10 Q=10 K=10 [cards] A 3 K 6 [target] 24 [answer]"
    assert info == {"verification": None, "attempts": 0, "is_success": False}
    rewards, truncations = [], []
    for i in range(5):
        obs, r, term, trunc, info = env.step(" formula: 1+3")
        rewards.append(r)
        truncations.append(trunc)
        assert not term
        assert info["attempts"] == i + 1 and not info["is_success"]
        assert info["verification"].message == "you didn't use numbers: [10, 6]."
        assert obs.endswith(" formula: 1+3 [fail] you didn't use numbers: [10, 6]. [answer]")
        assert obs.count("[fail]") == i + 1
    assert rewards == [-2.0] * 5
    assert truncations == [False] * 4 + [True]  # the fifth failed try spends the budget
    with pytest.raises(RuntimeError):
        env.step(" formula: 10*3-6*1=24")
    assert env.reset()[0] == row["prompt"] and env.attempts == 0


def test_success_terminates(compact):
    env = compact.make_env(row_for(compact), max_attempts=3)
    env.reset()
    _, r1, t1, _, _ = env.step(" formula: 3*8")
    _, r2, t2, _, _ = env.step(" formula: (1+3")
    obs, r3, t3, tr3, info = env.step(" cards: A 3 K 6 ; number: 1 3 10 6 ; formula: 10*3-6*1=24")
    assert (r1, r2, r3) == (-4.0, -2.0, 5.0)
    assert (t1, t2, t3, tr3) == (False, False, True, False)
    assert info["is_success"] and env.is_success and info["attempts"] == 3
    assert obs.endswith("formula: 10*3-6*1=24")


def test_keep_last_bounds_context():
    task = get_task("general-points", template="compact", revision_keep_last=2)
    env = task.make_env(row_for(task), max_attempts=5)
    env.reset()
    for k in range(4):
        obs, *_ = env.step(f" formula: {k}")
    assert obs.count("[fail]") == 2 and " formula: 3 [fail]" in obs and " formula: 1 [fail]" not in obs


def test_original_template_revision_and_budget():
    task = get_task("general-points")
    row = task.eval_episodes("ood-rule")[0]
    env = task.make_env(row, max_attempts=2)
    assert env.reset()[0] == row["prompt"]
    obs, r, term, trunc, info = env.step('{"formula": "1"}')
    assert r < 0 and not term and not trunc
    assert obs.startswith(row["prompt"]) and "\n\nYou failed this trial because " in obs
    assert info["messages"][-1]["content"].startswith("You failed this trial because ")
    _, r, term, trunc, info = env.step("nothing")
    assert r < 0 and (term, trunc) == (False, True) and info["attempts"] == 2
