"""Episode evaluation: the attempt budget reaches every task's environment, and each phase shows a
bar that counts what it finished."""

import pytest
import tqdm
from transformers.utils import logging as hf_logging

from amft.evaluation.evaluate import evaluate
from amft.evaluation.sampling import evaluate_samples
from amft.models import load_model
from amft.tasks import available_tasks, get_task

SMALL = {
    "gp-vl": {"template": "compact"},
    "math": {"eval_size": 2},
    "virl": {"synthetic_routes": 40, "eval_routes": 2, "validation_routes": 2},
    "virl-vl": {"synthetic_routes": 40, "eval_routes": 2, "validation_routes": 2},
    "citynav": {"nav_eval_episodes": 2},
}
ATTEMPTS = 4
#: model calls of a failed episode when the task's own rules end it before the budget: V-IRL fails a
#: route at the third call at one position (two tries, then a call it does not evaluate)
OWN_LIMIT = {"virl": 3, "virl-vl": 3}


@pytest.fixture(scope="module")
def untrained():
    return load_model("tiny-test")


@pytest.fixture(scope="module")
def untrained_vision():
    return load_model("tiny-test-vl")


@pytest.mark.parametrize("name", sorted({get_task(name).name for name in available_tasks()}))
def test_eval_attempts_is_the_budget_of_every_task(name, untrained, untrained_vision):
    task = get_task(name, **SMALL.get(name, {}))
    model, tokenizer = untrained_vision if task.image_prompts else untrained
    result = evaluate(model, tokenizer, task, task.default_splits[0], max_attempts=ATTEMPTS, temperature=0.0,
                      max_new_tokens=4, limit=2, progress=False)
    assert result.episodes == 2 and result.max_attempts == ATTEMPTS and result.success_rate == 0.0
    expected = min(ATTEMPTS, OWN_LIMIT.get(name, ATTEMPTS))
    assert [record.attempts for record in result.records] == [expected, expected]
    assert all(record.truncated and not record.success for record in result.records)


def test_gp_table_names_the_tries_it_evaluated(untrained):
    model, tokenizer = untrained
    result = evaluate(model, tokenizer, get_task("general-points", template="compact"), "id", max_attempts=8,
                      temperature=0.0, max_new_tokens=4, limit=1, progress=False)
    assert result.records[0].attempts == 8 and "success within 8 tries" in result.display_row()


@pytest.fixture
def bars():
    """Every bar created through transformers' tqdm, shown even where HF progress bars are disabled."""
    created = []

    def hook(factory, args, kwargs):
        created.append(tqdm.tqdm(*args, **kwargs))
        return created[-1]

    previous = hf_logging.set_tqdm_hook(hook)
    yield created
    hf_logging.set_tqdm_hook(previous)


def test_episode_evaluation_bar_counts_finished_episodes(untrained, bars, capsys):
    model, tokenizer = untrained
    task = get_task("general-points", template="compact")
    evaluate(model, tokenizer, task, "ood-rule", max_attempts=2, temperature=0.0, max_new_tokens=4, limit=3)
    (bar,) = bars
    assert (bar.desc, bar.n, bar.total, bar.unit) == ("evaluating ood-rule", 3, 3, "episode")
    assert "evaluating ood-rule" in capsys.readouterr().err

    evaluate(model, tokenizer, task, "ood-rule", max_attempts=2, temperature=0.0, max_new_tokens=4, limit=3,
             progress=False)
    assert bars[-1].disable and capsys.readouterr().err == ""


def test_sampled_evaluation_bar_counts_completions(untrained, bars, capsys):
    model, tokenizer = untrained
    task = get_task("math", eval_size=3)
    evaluate_samples(model, tokenizer, task, "id", samples=2, temperature=1.0, max_new_tokens=4, batch_size=4)
    (bar,) = bars
    assert (bar.desc, bar.n, bar.total, bar.unit) == ("sampling id", 6, 6, "completion")
    assert "sampling id" in capsys.readouterr().err
    evaluate_samples(model, tokenizer, task, "id", samples=2, max_new_tokens=4, progress=False)
    assert bars[-1].disable and capsys.readouterr().err == ""
