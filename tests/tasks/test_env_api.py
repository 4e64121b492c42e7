"""Every registered task's environment has the gymnasium shape of `amft.tasks.base.Env`."""

from functools import cache

import pytest

from amft.tasks import Env, Verification, available_tasks, get_task

#: options that keep each task small: V-IRL and city navigation build synthetic data
SMALL = {
    "math": {"eval_size": 2},
    "virl": {"synthetic_routes": 40, "eval_routes": 2, "validation_routes": 2},
    "citynav": {"nav_eval_episodes": 2},
}


@cache
def small_task(name):
    return get_task(name, **SMALL.get(get_task(name).name, {}))


def first_row(task):
    return task.eval_episodes(task.default_splits[0])[0]


def check_info(info, attempts):
    assert isinstance(info, dict)
    assert info["attempts"] == attempts
    assert info["verification"] is None or isinstance(info["verification"], Verification)
    assert isinstance(info["is_success"], bool)


@pytest.mark.parametrize("name", available_tasks())
def test_env_follows_the_gymnasium_api(name):
    task = small_task(name)
    env = task.make_env(first_row(task), max_attempts=2)
    assert isinstance(env, Env) and isinstance(type(env).episodic, bool)
    with pytest.raises(RuntimeError):
        env.step("before reset")

    observation, info = env.reset()
    assert isinstance(observation, str) and observation
    check_info(info, 0)
    assert info["verification"] is None and not info["is_success"]
    assert env.reset(seed=7) == env.reset(seed=7)

    ended, attempts = False, 0
    while not ended:
        result = env.step("")  # an empty answer solves no task's problem
        attempts += 1
        assert isinstance(result, tuple) and len(result) == 5
        observation, reward, terminated, truncated, info = result
        assert isinstance(observation, str) and isinstance(reward, float)
        assert isinstance(terminated, bool) and isinstance(truncated, bool)
        check_info(info, attempts)
        assert not info["is_success"]
        ended = terminated or truncated
    assert attempts == 2 and truncated and not terminated  # the budget ends the failed episode
    with pytest.raises(RuntimeError):
        env.step("after the end")
    assert env.reset()[1]["attempts"] == 0


def test_an_env_must_declare_whether_it_is_episodic():
    class Undeclared(Env):
        def _begin(self, seed):
            return ""

        def _respond(self, answer):
            raise AssertionError

    with pytest.raises(TypeError, match="episodic"):
        Undeclared(max_attempts=1)
    task = small_task("general-points")
    with pytest.raises(ValueError, match="max_attempts"):
        task.make_env(first_row(task), max_attempts=0)
