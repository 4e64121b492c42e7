"""`--eval_attempts` and `--eval_samples` reach every task's evaluation, or are refused."""

import pytest

from amft.cli.arguments import RunArguments
from amft.cli.pipeline import evaluation_budget
from amft.tasks import get_task


@pytest.mark.parametrize(("task", "default"), [("general-points", 5), ("virl", 64), ("citynav", 250)])
def test_episodic_and_retry_tasks_take_the_runs_budget_or_their_own(task, default):
    built = get_task(task)
    assert evaluation_budget(built, RunArguments(task=task)) == ("episodes", default)
    assert evaluation_budget(built, RunArguments(task=task, eval_attempts=8)) == ("episodes", 8)
    with pytest.raises(ValueError, match="--eval_samples 3"):
        evaluation_budget(built, RunArguments(task=task, eval_samples=3))


def test_math_is_sampled_unless_an_attempt_budget_is_given():
    math = get_task("math")
    assert evaluation_budget(math, RunArguments(task="math", eval_samples=4)) == ("samples", 4)
    assert evaluation_budget(math, RunArguments(task="math", eval_attempts=3)) == ("episodes", 3)
    with pytest.raises(ValueError, match="not|independent samples"):
        evaluation_budget(math, RunArguments(task="math", eval_attempts=3, eval_samples=4))
