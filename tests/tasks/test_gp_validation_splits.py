"""The validation splits `val-id` and `val-rl-only` (see docs/design.md, 'Evaluation sets')."""

import logging
import random
from itertools import permutations

import pytest

from amft.tasks import get_task
from amft.tasks.general_points.cards import ID_RULE, sample_ranks, sampler_support
from amft.tasks.general_points.eval_sets import (
    EVAL_DIR,
    TEST_SPLITS,
    VALIDATION_SPLITS,
    UndrawableSplitError,
    generate_split,
    load_eval_set,
)
from amft.tasks.general_points.config import GeneralPointsConfig
from amft.tasks.general_points.prompts import render_completion
from amft.tasks.general_points.solver import solutions

ROLE = {"val-id": "demo", "val-rl-only": "rl-only"}


def deals(task, splits):
    return {(tuple(e["ranks"]), tuple(e["rule"])) for s in splits for e in task.eval_episodes(s)}


@pytest.fixture(scope="module")
def task():
    return get_task("general-points", template="compact")


def test_validation_splits_exist_but_are_not_evaluated_by_default(task):
    assert VALIDATION_SPLITS == {"val-id": "id", "val-rl-only": "rl-only"}
    assert task.validation_splits == tuple(VALIDATION_SPLITS)
    assert task.default_splits == task.test_splits == TEST_SPLITS
    assert set(task.validation_splits) <= set(task.splits)
    assert not set(task.validation_splits) & set(task.default_splits)


@pytest.mark.parametrize("overrides", [{}, {"partition_seed": 5, "eval_seed": 7}])
def test_validation_episodes_mirror_their_test_split_on_other_deals(overrides, caplog):
    task = get_task("general-points", template="compact", **overrides)
    assert task.uses_committed_eval_sets() == (not overrides)
    test_deals = deals(task, TEST_SPLITS)
    for split, role in ROLE.items():
        with caplog.at_level(logging.WARNING):
            episodes = task.eval_episodes(split)
        assert (f"generating split {split!r} in memory" in caplog.text) == bool(overrides)
        assert len(episodes) == 234 and len({tuple(e["ranks"]) for e in episodes}) == 234
        for e in episodes:
            assert e["split"] == split and tuple(e["rule"]) == ID_RULE.as_tuple()
            assert e["values"] == [min(r, 10) for r in e["ranks"]]
            assert task.partition.role(e["values"]) == role
        assert not deals(task, [split]) & test_deals
        assert episodes == get_task("general-points", template="compact", **overrides).eval_episodes(split)
    assert not deals(task, ["val-id"]) & deals(task, ["val-rl-only"])


def test_committed_validation_files_record_what_they_repeat_and_exclude():
    for split, test in VALIDATION_SPLITS.items():
        rows = load_eval_set(split)
        assert rows == generate_split(split)
        header_line = (EVAL_DIR / f"{split}.jsonl").read_text().splitlines()[0]
        assert f'"validates": "{test}", "excludes_deals_of": ["id", "rl-only", "unseen-deals", "ood-rule"]' \
            in header_line


def test_validation_deals_avoid_the_test_deals_when_the_pool_is_small():
    # with demo_fraction 0.998 the only ID rl-only multiset is (5, 8, 8, 9): no value 10, so its
    # deals are its 4!/2! = 12 orderings; rl-only takes 6 of them, val-rl-only the other 6
    config = GeneralPointsConfig(demo_fraction=0.998, eval_episodes_per_split=6)
    task = get_task("general-points", config=config, template="compact")
    assert [m for m in task.partition.rl_only if max(m) <= 10] == [(5, 8, 8, 9)]
    test = {tuple(e["ranks"]) for e in generate_split("rl-only", config)}
    validation = {tuple(e["ranks"]) for e in generate_split("val-rl-only", config)}
    assert len(test) == len(validation) == 6
    assert test | validation == set(permutations((5, 8, 8, 9)))
    more = GeneralPointsConfig(demo_fraction=0.998, eval_episodes_per_split=7)
    assert len(generate_split("rl-only", more)) == 7
    with pytest.raises(UndrawableSplitError, match=r"split 'val-rl-only': 5 distinct deals .* in no test split, "
                                                   r"7 are needed \(demo_fraction=0.998, eval_episodes_per_split=7"):
        generate_split("val-rl-only", more)


def test_a_split_the_settings_leave_empty_fails_naming_split_and_setting():
    task = get_task("general-points", template="compact", demo_fraction=1.0)
    for split in ("rl-only", "val-rl-only"):
        with pytest.raises(ValueError, match=rf"split '{split}': 0 distinct deals .* 'rl-only' value multiset.*"
                                             r"demo_fraction=1.0"):
            task.eval_episodes(split)
    # the rl-only test split does not exist, so it has no deals for val-id to avoid
    assert not deals(task, ["val-id"]) & deals(task, ["id", "unseen-deals", "ood-rule"])


def test_validation_prompts_avoid_test_deals_only(task):
    prompts = task.validation_prompts(400, seed=0)
    assert not {(tuple(p["ranks"]), tuple(p["rule"])) for p in prompts} & deals(task, TEST_SPLITS)


def test_validation_episodes_run_through_the_env_with_the_solver_as_policy(task):
    for split in VALIDATION_SPLITS:
        for episode in task.eval_episodes(split)[:40]:
            env = task.make_env(episode, max_attempts=2)
            obs, info = env.reset()
            assert obs == episode["prompt"] and info["attempts"] == 0
            _, reward, terminated, truncated, info = env.step(" formula: 1+1")
            assert (terminated, truncated, info["is_success"]) == (False, False, False) and reward < 0
            formula = solutions(episode["values"])[0]
            answer = render_completion("compact", episode["cards"], episode["values"], f"{formula}=24", "plain")
            _, reward, terminated, truncated, info = env.step(answer)
            assert (reward, terminated, truncated, info["is_success"]) == (5.0, True, False, True)


def test_sampler_support_is_what_the_sampler_draws():
    rng = random.Random(0)
    for ood, size in ((False, 13**4), (True, 13**4 - 10**4)):
        support = set(sampler_support(ood))
        assert len(support) == size
        assert {sample_ranks(rng, ood=ood) for _ in range(5000)} <= support
