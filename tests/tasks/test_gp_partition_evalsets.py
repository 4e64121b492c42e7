"""The data regime (partition, samplers) and the fixed evaluation sets."""

import json
import logging
from collections import Counter

import pytest

from amft.tasks import get_task
from amft.tasks.general_points.cards import ID_RULE, OOD_RULE, multiset
from amft.tasks.general_points.config import GeneralPointsConfig
from amft.tasks.general_points.eval_sets import (
    EVAL_DIR,
    EVAL_SPLITS,
    EvalSetMismatchError,
    load_eval_set,
    main,
    render_split_file,
    write_eval_sets,
)
from amft.tasks.general_points.partition import all_multisets, make_partition
from amft.tasks.general_points.solver import solvable


@pytest.fixture(scope="module")
def task():
    return get_task("general-points", template="compact")


@pytest.fixture(scope="module")
def part():
    return make_partition()


def test_partition_disjoint_complete_and_fractions(part):
    u, d, r = part.unseen, part.demo, part.rl_only
    assert not (u & d) and not (u & r) and not (d & r)
    solv = {m for m in all_multisets(13) if solvable(m)}
    assert u | d | r == solv and len(solv) == 1362
    id_solv = {m for m in solv if max(m) <= 10}
    assert u <= id_solv
    assert len(u) == 85 == round(0.15 * 566)
    assert (len(d), len(r)) == (639, 638)
    counts = part.counts()
    assert (counts["demo_id"], counts["rl-only_id"]) == (241, 240)
    for role, members in (("demo", d), ("rl-only", r), ("unseen", u)):
        assert all(part.role(list(reversed(m))) == role for m in sorted(members)[:5])  # in any card order
    assert part.role([1, 1, 1, 1]) == "unsolvable"


def test_partition_deterministic_by_seed(part):
    again = make_partition.__wrapped__(0, 0.15, 0.5, 24)
    assert again == part
    other = make_partition.__wrapped__(1, 0.15, 0.5, 24)
    assert other.unseen != part.unseen and len(other.unseen) == len(part.unseen)
    custom = make_partition.__wrapped__(0, 0.3, 0.25, 24)
    assert len(custom.unseen) == round(0.3 * 566)
    assert abs(len(custom.demo) / (1362 - len(custom.unseen)) - 0.25) < 0.01


def test_train_prompts_never_unseen_and_follow_rules(task, part):
    rows = task.train_prompts(1500, seed=3)
    assert rows == task.train_prompts(1500, seed=3)
    assert rows != task.train_prompts(1500, seed=4)
    roles = Counter(part.role(r["values"]) for r in rows)
    assert set(roles) <= {"demo", "rl-only"} and roles["demo"] > 300 and roles["rl-only"] > 300
    rules = Counter(tuple(r["rule"]) for r in rows)
    assert OOD_RULE.as_tuple() not in rules
    assert 0.45 < rules[ID_RULE.as_tuple()] / len(rows) < 0.55
    assert len(rules) > 40  # the other 62 training mappings appear
    for r in rows[:50]:
        assert r["values"] == [{11: r["rule"][0], 12: r["rule"][1], 13: r["rule"][2]}.get(k, k) for k in r["ranks"]]
        assert r["prompt"].startswith(f"[rule] J={r['rule'][0]} Q={r['rule'][1]} K={r['rule'][2]} [cards] ")


def test_rl_prompts_can_come_only_from_multisets_without_demonstrations(part):
    task = get_task("general-points", template="compact", rl_prompt_multisets="rl-only", training_rules="10,10,10")
    rows = task.train_prompts(500, seed=1)
    assert {part.role(r["values"]) for r in rows} == {"rl-only"}
    assert {tuple(r["rule"]) for r in rows} == {ID_RULE.as_tuple()}
    assert all(r["demonstration"] is None for r in rows)
    with pytest.raises(ValueError, match="rl_prompt_multisets"):
        GeneralPointsConfig(rl_prompt_multisets="demo")


def test_the_success_reward_is_one_for_a_solution_and_zero_otherwise(task):
    binary = get_task("general-points", template="compact", reward="success")
    row = task.train_prompts(1, seed=5)[0]
    solution = task.demonstrations(1, seed=5)[0]["completion"]
    demo_row = task.demonstrations(1, seed=5)[0]
    for completion, original, success in ((solution, 5.0, True), (" formula: (", -2.0, False)):
        on = demo_row if completion is solution else row
        assert task.verify(on, completion).reward == original
        verdict = binary.verify(on, completion)
        assert (verdict.reward, verdict.success) == (float(success), success)
    assert binary.success_reward == 1.0 and task.success_reward == 5.0


def test_train_prompts_carry_a_demonstration_only_for_demo_multisets(task, part):
    rows = task.train_prompts(300, seed=2)
    for r in rows:
        if part.role(r["values"]) == "demo":
            assert task.verify(r, r["demonstration"]).success
        else:
            assert r["demonstration"] is None


def test_unseen_multisets_never_appear_under_any_rule(part):
    task = get_task("general-points", template="compact", id_rule_fraction=0.0)
    rows = task.train_prompts(800, seed=0) + task.demonstrations(300, seed=0)
    assert not any(multiset(r["values"]) in part.unseen for r in rows)


def test_demonstrations_only_from_demo_and_verify(task, part):
    demos = task.demonstrations(300, seed=1)
    assert demos == task.demonstrations(300, seed=1)
    for d in demos:
        assert part.role(d["values"]) == "demo"
        assert d["completion"].endswith(f"; formula: {d['solution']}=24")
        assert task.verify(d, d["completion"]).reward == 5.0


def test_validation_prompts_disjoint_from_eval_deals(task, part):
    val = task.validation_prompts(400, seed=0)
    assert val != task.train_prompts(400, seed=0)
    eval_deals = {(tuple(e["ranks"]), tuple(e["rule"])) for s in task.default_splits for e in task.eval_episodes(s)}
    assert all((tuple(v["ranks"]), tuple(v["rule"])) not in eval_deals for v in val)
    assert all(part.role(v["values"]) in ("demo", "rl-only") for v in val)


def test_eval_sets_load_and_match_split_definitions(task, part):
    assert task.splits == EVAL_SPLITS == ("id", "rl-only", "unseen-deals", "ood-rule", "val-id", "val-rl-only")
    role = {"id": "demo", "rl-only": "rl-only", "unseen-deals": "unseen", "val-id": "demo", "val-rl-only": "rl-only"}
    for split in EVAL_SPLITS:
        eps = task.eval_episodes(split)
        assert len(eps) >= 234
        assert len({tuple(e["ranks"]) for e in eps}) == len(eps)
        for e in eps:
            assert e["split"] == split and e["target"] == 24
            if split == "ood-rule":
                assert tuple(e["rule"]) == OOD_RULE.as_tuple()
                assert any(r >= 11 for r in e["ranks"])
                assert solvable(e["values"])
                assert e["prompt"].startswith("[rule] J=11 Q=12 K=13 ")
            else:
                assert tuple(e["rule"]) == ID_RULE.as_tuple()
                assert part.role(e["values"]) == role[split]
                assert e["values"] == [min(r, 10) for r in e["ranks"]]


def test_eval_files_regenerate_byte_identically_from_recorded_seed(tmp_path):
    for split in EVAL_SPLITS:
        path = EVAL_DIR / f"{split}.jsonl"
        header = json.loads(path.read_text().splitlines()[0])
        p = header["partition"]
        cfg = GeneralPointsConfig(eval_seed=header["seed"], eval_episodes_per_split=header["n_episodes"],
                                  partition_seed=p["seed"], unseen_fraction=p["unseen_fraction"],
                                  demo_fraction=p["demo_fraction"], target=p["target"])
        assert render_split_file(split, cfg).encode() == path.read_bytes()
    write_eval_sets(tmp_path)
    for split in EVAL_SPLITS:
        assert (tmp_path / f"{split}.jsonl").read_bytes() == (EVAL_DIR / f"{split}.jsonl").read_bytes()
    assert main(["--check", "--dir", str(tmp_path)]) == 0


def test_mismatched_header_raises(tmp_path):
    with pytest.raises(EvalSetMismatchError, match="partition"):
        load_eval_set("id", GeneralPointsConfig(partition_seed=1))
    lines = (EVAL_DIR / "id.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    header["seed"] = 43
    (tmp_path / "id.jsonl").write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    with pytest.raises(EvalSetMismatchError, match="seed"):
        load_eval_set("id", directory=tmp_path)
    (tmp_path / "id.jsonl").write_text("\n".join(lines[:1] + ['{"episode": 0, "ranks": [1, 2, 3, 4]}']) + "\n")
    with pytest.raises(EvalSetMismatchError, match="row 2"):
        load_eval_set("id", directory=tmp_path)
    assert main(["--check", "--dir", str(tmp_path)]) == 1


def test_non_default_partition_generates_in_memory_with_warning(caplog):
    task = get_task("general-points", template="compact", partition_seed=5)
    assert not task.uses_committed_eval_sets()
    with caplog.at_level(logging.WARNING):
        eps = task.eval_episodes("unseen-deals")
    assert "generating split 'unseen-deals' in memory" in caplog.text
    assert len(eps) == 234
    assert all(task.partition.role(e["values"]) == "unseen" for e in eps)
    assert eps == get_task("general-points", template="compact", partition_seed=5).eval_episodes("unseen-deals")


def test_prompt_format_does_not_change_eval_deals(task):
    orig = get_task("general-points")
    assert orig.uses_committed_eval_sets()
    a, b = orig.eval_episodes("id"), task.eval_episodes("id")
    assert [x["ranks"] for x in a] == [x["ranks"] for x in b]
    assert a[0]["prompt"].startswith("\n[Task Description]")
    with pytest.raises(ValueError, match="unknown split"):
        task.eval_episodes("test")


def test_canonical_demonstrations_show_one_solution_per_multiset():
    canonical = get_task("general-points", template="compact", completion_format="formula", demo_solution="canonical")
    demos = canonical.demonstrations(400, seed=2)
    by_multiset: dict = {}
    for d in demos:
        by_multiset.setdefault(multiset(d["values"]), set()).add(d["solution"])
        assert d["completion"] == f" formula: {d['solution']}=24"
        assert canonical.verify(d, d["completion"]).reward == 5.0
    assert all(len(solutions) == 1 for solutions in by_multiset.values())
    assert any(len(s) > 1 for s in _solutions_per_multiset(get_task("general-points", template="compact")))


def _solutions_per_multiset(task):
    found: dict = {}
    for d in task.demonstrations(400, seed=2):
        found.setdefault(multiset(d["values"]), set()).add(d["solution"])
    return found.values()
