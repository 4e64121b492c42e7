"""Prefix rollouts (Prefix-RFT, UFT, BREAD) against values computed by hand on tiny tensors."""

import itertools
import math
import random

import pytest
import torch

from amft.algorithm import (
    AnchorSearch,
    anchor_search,
    chunk_cut_points,
    draw_hint_chunks,
    draw_prefix_ratio,
    entropy_clip_prefix,
    group_advantages,
    hint_chunk_count,
    hint_probability,
    prefix_group_advantages,
    prefix_length,
    prefix_low,
    prefix_unit_ends,
    sft_loss,
    split_steps,
)

torch.set_num_threads(1)


class Midpoint(random.Random):
    """A uniform source that always draws 0.5."""

    def random(self) -> float:
        return 0.5


# ------------------------------------------------------------------------------------------------
# Prefix-RFT
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("step", "expected"), [(0, 0.95), (250, 0.50), (500, 0.05), (700, 0.05)])
def test_prefix_low_falls_on_a_cosine_over_the_run(step, expected):
    assert prefix_low(step, 500) == pytest.approx(expected, abs=1e-12)


def test_prefix_length_of_a_midpoint_draw_half_way_through_the_run():
    ratio = draw_prefix_ratio(prefix_low(250, 500), 0.95, Midpoint())
    assert ratio == pytest.approx(0.725)
    assert prefix_length(ratio, 40) == 29  # floor(29.0)


def test_prefix_length_guards():
    assert prefix_length(0.1, 3, min_len=4) == 2  # raised to 4, then capped at |y*| - 1
    assert prefix_length(0.95, 40, max_len=10) == 10  # room left for the continuation
    assert prefix_length(0.29, 100) == 29  # 0.29 * 100 is 28.999999999999996 in floating point
    assert prefix_length(1.0, 1) == 0  # a one-token demonstration gives no prefix
    assert prefix_length(0.0, 10, min_len=0) == 0


def test_prefix_ratio_draws_are_uniform_between_the_bounds_and_reproducible():
    draws = [draw_prefix_ratio(0.2, 0.6, random.Random(f"prefix:{k}")) for k in range(200)]
    assert all(0.2 <= d <= 0.6 for d in draws)
    assert draws == [draw_prefix_ratio(0.2, 0.6, random.Random(f"prefix:{k}")) for k in range(200)]
    with pytest.raises(ValueError, match="low"):
        draw_prefix_ratio(0.7, 0.6, random.Random(0))


def test_prefix_group_advantages_dr_grpo_variant():
    # One prompt, G = 4: three ordinary rollouts [0, 1, 0] and a hybrid with r_h = 1 (the last row).
    rewards = torch.tensor([0.0, 1.0, 0.0, 1.0])
    hybrid = torch.tensor([False, False, False, True])
    advantages, prefix = prefix_group_advantages(rewards, 4, hybrid, scale="none")
    assert advantages.tolist() == pytest.approx([-1 / 3, 2 / 3, -1 / 3, 1.0])
    assert prefix.tolist() == pytest.approx([0.0, 0.0, 0.0, 2 / 3])


def test_prefix_group_advantages_grpo_variant_and_group_baseline():
    rewards = torch.tensor([0.0, 1.0, 0.0, 1.0])
    hybrid = torch.tensor([False, False, False, True])
    advantages, prefix = prefix_group_advantages(rewards, 4, hybrid, scale="group", eps=1e-6)
    assert advantages.tolist() == pytest.approx([-0.57735, 1.15470, -0.57735, 0.999999], abs=1e-5)
    assert prefix[3].item() == pytest.approx(0.666666, abs=1e-6)
    centred, _ = prefix_group_advantages(rewards, 4, hybrid, scale="none", singleton_baseline="group")
    assert centred[3].item() == pytest.approx(1 - 1 / 3)


def test_prefix_group_advantages_of_groups_without_hybrid_are_group_advantages():
    rewards = torch.tensor([0.0, 1.0, 3.0, 1.0, 2.0, 2.0, 0.0, 5.0])
    hybrid = torch.tensor([False] * 4 + [False, False, False, True])
    advantages, prefix = prefix_group_advantages(rewards, 4, hybrid)
    assert torch.allclose(advantages[:4], group_advantages(rewards, 4)[:4])
    assert prefix[:7].abs().sum() == 0
    with pytest.raises(ValueError, match="ordinary"):
        prefix_group_advantages(rewards[:2], 2, torch.tensor([True, True]))
    with pytest.raises(ValueError, match="scale"):
        prefix_group_advantages(rewards, 4, hybrid, scale="batch")


def test_entropy_clip_keeps_the_top_fifth_of_prefix_tokens():
    entropies = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.7, 2.0]])
    prefix = torch.tensor([[1, 1, 1, 1, 1, 0]])  # the last token is a continuation token
    kept = entropy_clip_prefix(entropies, prefix, keep_fraction=0.2)
    assert kept.tolist() == [[False, True, False, False, False, False]]  # floor(0.8 * 5) = 4 zeroed
    advantages = torch.where(prefix.bool(), (2 / 3) * kept, torch.ones_like(entropies))
    assert advantages[0].tolist() == pytest.approx([0, 2 / 3, 0, 0, 0, 1])
    # Pooled over the batch: N = 3 prefix tokens in two rows, floor(2.4) = 2 zeroed, 1 kept.
    pooled = entropy_clip_prefix(torch.tensor([[0.4, 0.2], [0.3, 9.0]]), torch.tensor([[1, 1], [1, 0]]), 0.2)
    assert pooled.tolist() == [[True, False], [False, False]]
    assert not entropy_clip_prefix(entropies, torch.zeros_like(prefix), 0.2).any()


# ------------------------------------------------------------------------------------------------
# UFT
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("step", "expected"), [(0, 0.95), (1, 0.949975), (75, 0.818198), (150, 0.5), (300, 0.05), (301, None)]
)
def test_hint_probability_schedule(step, expected):
    p = hint_probability(step, 300)
    assert p == (None if expected is None else pytest.approx(expected, abs=1e-6))


@pytest.mark.parametrize(
    ("units", "expected"), [(10, [0, 2, 4, 6, 8, 10]), (7, [0, 1, 3, 4, 6, 7]), (3, [0, 1, 2, 3]), (0, [0])]
)
def test_chunk_cut_points(units, expected):
    assert chunk_cut_points(units, 5) == expected


def test_hint_chunk_count_is_binomial():
    # Every pattern of five Bernoulli(0.5) outcomes, each as a uniform below or above 0.5.
    counts = [0] * 6
    for pattern in itertools.product((0.25, 0.75), repeat=5):
        counts[hint_chunk_count(pattern, 0.5)] += 1
    assert counts == [1, 5, 10, 10, 5, 1]  # P(j) = C(5, j) / 32
    assert draw_hint_chunks(5, 1.0, random.Random(0)) == 5
    assert draw_hint_chunks(5, 0.0, random.Random(0)) == 0
    same_seed = [draw_hint_chunks(5, 0.5, random.Random("uft:0:3:0:1")) for _ in range(2)]
    assert same_seed[0] == same_seed[1]


def test_hint_nll_of_three_hint_tokens():
    logps = torch.tensor([[math.log(0.5), math.log(0.25), 0.0]])
    nll = sft_loss(logps, torch.ones_like(logps))
    assert nll.item() == pytest.approx(0.693147, abs=1e-6)
    assert (0.001 * nll).item() == pytest.approx(0.000693, abs=1e-6)


# ------------------------------------------------------------------------------------------------
# Cutting demonstrations
# ------------------------------------------------------------------------------------------------
def test_split_steps_keeps_separators_and_joins_blank_pieces():
    assert split_steps("a\nb\nc") == ["a\n", "b\n", "c"]
    assert split_steps("a\n\n\nb\n") == ["a\n\n\n", "b\n"]
    assert split_steps("\nx\ny") == ["\nx\n", "y"]
    # Blank lines separate steps when they give at least three.
    text = "one\ntwo\n\nthree\n\nfour"
    assert split_steps(text) == ["one\ntwo\n\n", "three\n\n", "four"]
    assert split_steps("one\n\ntwo") == ["one\n\n", "two"]  # two paragraphs: line breaks decide
    for sample in ("a\nb", "\n\nx\n\n", "formula: (10+7)*7-6=24", ""):
        assert "".join(split_steps(sample)) == sample


def test_prefix_unit_ends_fall_back_to_tokens_for_one_step():
    assert prefix_unit_ends([6], 6) == [1, 2, 3, 4, 5]  # one step: any token-level cut
    assert prefix_unit_ends([3, 3, 7, 10], 10) == [3, 7]  # steps; a step of no token merges; never the last
    assert prefix_unit_ends([0, 4], 4) == []  # the first step got no token of its own


# ------------------------------------------------------------------------------------------------
# BREAD
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("threshold", "probes", "result"),
    [
        (4, [(6, True), (3, False), (5, True), (4, True)], 4),
        (11, [(6, False), (9, False), (10, False)], None),  # never solved: the failed group is kept
        (1, [(6, True), (3, True), (2, True), (1, True)], 1),
    ],
)
def test_anchor_search_probe_order(threshold, probes, result):
    found, seen = anchor_search(10, lambda episodes: episodes >= threshold)
    assert seen == probes and found == result
    assert len(seen) <= math.ceil(math.log2(10 + 1))


def test_anchor_searches_advance_in_lockstep():
    searches = [AnchorSearch(10), AnchorSearch(3)]
    thresholds = [4, 2]
    rounds = 0
    while any(not s.done for s in searches):
        rounds += 1
        for search, threshold in zip(searches, thresholds):
            if not search.done:
                search.record(search.next_probe() >= threshold)
    assert [s.result for s in searches] == [4, 2] and rounds == 4
    with pytest.raises(RuntimeError):
        searches[0].next_probe()


def test_branched_group_advantages():
    advantages = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4)
    assert advantages.tolist() == pytest.approx([1.4997, -0.4999, -0.4999, -0.4999], abs=1e-4)
    assert group_advantages(torch.zeros(4), 4).abs().sum() == 0  # the failed group had no signal
