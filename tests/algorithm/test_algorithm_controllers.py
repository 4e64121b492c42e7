"""Controllers: cosine mode, bounds, warm-up, entropy term, meta period, ablations, resume."""

import io
import math
import random

import pytest
import torch

from amft.algorithm import (
    BalanceController,
    ControllerStats,
    FixedMuController,
    MetaAlignment,
    MetaGradientController,
    meta_alignment_from_gradients,
)

torch.set_num_threads(1)

NO_WARMUP = {"warmup_steps": 0, "mu_min": 0.0, "mu_max": 1.0}


def _alignment(val_dot_sft=1.0, val_dot_rl=0.0):
    return MetaAlignment(val_dot_sft=val_dot_sft, val_dot_rl=val_dot_rl, val_norm=1.0, sft_norm=1.0, rl_norm=1.0)


def test_meta_alignment_from_gradients_values_with_none_entries():
    g_val = [torch.tensor([3.0, 4.0]), None]
    g_sft = [torch.tensor([1.0, 0.0]), torch.tensor([2.0])]
    g_rl = [None, torch.tensor([-1.0])]
    al = meta_alignment_from_gradients(g_val, g_sft, g_rl)
    assert al == MetaAlignment(val_dot_sft=3.0, val_dot_rl=0.0, val_norm=5.0, sft_norm=math.sqrt(5.0), rl_norm=1.0)


def test_cosine_mode_on_hand_made_gradients():
    g_val = [torch.tensor([1.0, 0.0])]
    g_sft = [torch.tensor([2.0, 0.0])]  # cos = 1
    g_rl = [torch.tensor([-3.0, 3.0])]  # cos = -1/sqrt(2)
    controller = MetaGradientController(
        mu_init=0.5, meta_lr=0.01, meta_period=1, normalization="cosine", use_entropy=False, **NO_WARMUP
    )
    mu = controller.update(ControllerStats(meta_alignment=meta_alignment_from_gradients(g_val, g_sft, g_rl)))
    m = 1.0 + 1.0 / math.sqrt(2.0)
    assert controller.last_terms["meta_gradient"] == pytest.approx(m)
    assert mu == pytest.approx(0.5 + 0.01 * m)


def test_cosine_mode_with_zero_gradient_gives_zero_term():
    controller = MetaGradientController(meta_period=1, normalization="cosine", **NO_WARMUP)
    zero = MetaAlignment(val_dot_sft=0.0, val_dot_rl=0.0, val_norm=0.0, sft_norm=1.0, rl_norm=1.0)
    controller.update(ControllerStats(meta_alignment=zero))
    assert controller.last_terms["meta_gradient"] == 0.0


def test_raw_mode_scales_by_inner_lr():
    controller = MetaGradientController(
        mu_init=0.5, meta_lr=0.1, inner_lr=0.01, meta_period=1, use_entropy=False, **NO_WARMUP
    )
    controller.update(ControllerStats(meta_alignment=_alignment(val_dot_sft=2.0, val_dot_rl=5.0)))
    assert controller.last_terms["meta_gradient"] == pytest.approx(-0.03)
    assert controller.mu == pytest.approx(0.5 - 0.003)


def test_bounds_clip_mu_both_ways():
    kwargs = {"mu_init": 0.5, "mu_min": 0.2, "mu_max": 0.7, "meta_period": 1, "warmup_steps": 0, "inner_lr": 1.0}
    up = MetaGradientController(meta_lr=10.0, **kwargs)
    assert up.update(ControllerStats(meta_alignment=_alignment(1.0, 0.0))) == 0.7
    down = MetaGradientController(meta_lr=10.0, **kwargs)
    assert down.update(ControllerStats(meta_alignment=_alignment(0.0, 1.0))) == 0.2
    outside = MetaGradientController(**{**kwargs, "mu_init": 0.99, "meta_period": 5})
    assert outside.mu == 0.7 and outside.update() == 0.7


def test_warmup_mu_one_then_target_entropy_then_mu_init():
    controller = MetaGradientController(mu_init=0.6, warmup_steps=5, entropy_calibration_steps=3, meta_period=2)
    entropies = [9.0, 9.0, 1.0, 2.0, 4.0]
    needs = []
    for h in entropies:
        assert controller.in_warmup and controller.mu == 1.0
        assert not controller.is_meta_step()
        needs.append(controller.needs_entropy_sample)
        assert controller.update(ControllerStats(entropy=h)) == 1.0
        assert controller.last_terms["entropy_term"] == 0.0
    assert needs == [False, False, True, True, True]
    assert not controller.in_warmup and not controller.needs_entropy_sample
    assert controller.target_entropy == pytest.approx(7.0 / 3.0)
    assert controller.last_terms["target_entropy"] == pytest.approx(7.0 / 3.0)
    assert controller.mu == 1.0  # the mu of the last warm-up step
    assert controller.update(ControllerStats(entropy=7.0 / 3.0)) == pytest.approx(0.6)
    assert controller.main_steps == 1


def test_warmup_rejects_meta_alignment():
    controller = MetaGradientController(warmup_steps=2)
    with pytest.raises(ValueError, match="warm-up"):
        controller.update(ControllerStats(meta_alignment=_alignment()))


def test_entropy_term_follows_eq6_sign():
    def first_mu(entropy):
        controller = MetaGradientController(
            mu_init=0.5, entropy_lr=0.1, warmup_steps=1, entropy_calibration_steps=1, meta_period=100
        )
        controller.update(ControllerStats(entropy=1.0))  # H* = 1
        mu = controller.update(ControllerStats(entropy=entropy))
        return mu, controller.last_terms

    low, low_terms = first_mu(0.4)  # entropy below target: more SFT
    high, high_terms = first_mu(1.3)
    assert low == pytest.approx(0.5 + 0.1 * 0.6) and low_terms["entropy_term"] == pytest.approx(0.06)
    assert high == pytest.approx(0.5 - 0.1 * 0.3)
    assert high_terms["entropy"] == 1.3 and high_terms["target_entropy"] == 1.0
    assert high_terms["meta_term"] == 0.0
    assert first_mu(1.0)[0] == pytest.approx(0.5)


def test_entropy_term_off_without_target_or_entropy():
    no_target = MetaGradientController(mu_init=0.5, warmup_steps=0)
    assert no_target.update(ControllerStats(entropy=0.1)) == 0.5
    controller = MetaGradientController(mu_init=0.5, warmup_steps=1, entropy_calibration_steps=1)
    controller.update(ControllerStats(entropy=1.0))
    assert controller.update(ControllerStats(entropy=None)) == 0.5


def test_is_meta_step_period_and_convention():
    controller = MetaGradientController(meta_period=3, warmup_steps=2)
    assert [controller.is_meta_step(t) for t in range(0, 8)] == [False, False, False, True, False, False, True, False]
    flags = []
    for _ in range(2 + 7):
        flags.append(controller.is_meta_step())
        alignment = _alignment() if flags[-1] else None
        controller.update(ControllerStats(entropy=0.5, meta_alignment=alignment))
    # 2 warm-up updates, then main-phase t = 1..7: meta at t = 3 and 6
    assert flags == [False, False, False, False, True, False, False, True, False]


def test_meta_alignment_off_period_is_rejected():
    controller = MetaGradientController(meta_period=2, warmup_steps=0)
    with pytest.raises(ValueError, match="not a meta step"):
        controller.update(ControllerStats(meta_alignment=_alignment()))


def test_meta_step_without_alignment_gives_zero_meta_term():
    controller = MetaGradientController(mu_init=0.5, meta_period=1, use_entropy=False, **NO_WARMUP)
    assert controller.update(ControllerStats(entropy=0.2)) == 0.5
    assert controller.last_terms["meta_gradient"] == 0.0


def test_ablation_flags():
    no_meta = MetaGradientController(mu_init=0.5, meta_period=1, use_meta=False, **NO_WARMUP)
    assert not no_meta.is_meta_step() and not no_meta.is_meta_step(1)
    with pytest.raises(ValueError, match="use_meta=False"):
        no_meta.update(ControllerStats(meta_alignment=_alignment()))

    no_entropy = MetaGradientController(
        mu_init=0.5, entropy_lr=0.1, warmup_steps=2, entropy_calibration_steps=2, meta_period=1, use_entropy=False
    )
    assert not no_entropy.needs_entropy_sample
    no_entropy.update(ControllerStats(entropy=1.0))
    no_entropy.update(ControllerStats(entropy=1.0))
    assert no_entropy.target_entropy is None
    mu = no_entropy.update(ControllerStats(entropy=0.1, meta_alignment=_alignment(1.0, 0.0)))
    assert mu == pytest.approx(0.5 + 1e-4 * 1e-6)
    assert no_entropy.last_terms["entropy_term"] == 0.0


def test_constructor_validation():
    with pytest.raises(ValueError, match="raw, cosine"):
        MetaGradientController(normalization="l2")
    with pytest.raises(ValueError, match="mu_min"):
        MetaGradientController(mu_min=0.9, mu_max=0.1)
    with pytest.raises(ValueError, match="meta_period"):
        MetaGradientController(meta_period=0)


def _stats_for(index, controller, rng):
    entropy = rng.uniform(0.2, 1.5)
    alignment = None
    if controller.is_meta_step():
        alignment = MetaAlignment(
            val_dot_sft=rng.uniform(-1, 1), val_dot_rl=rng.uniform(-1, 1),
            val_norm=rng.uniform(1, 2), sft_norm=rng.uniform(1, 2), rl_norm=rng.uniform(1, 2),
        )
    return ControllerStats(entropy=None if index % 7 == 4 else entropy, meta_alignment=alignment)


CONFIG = {
    "mu_init": 0.6, "mu_min": 0.05, "mu_max": 0.95, "meta_lr": 0.05, "entropy_lr": 0.2,
    "meta_period": 3, "inner_lr": 1.0, "warmup_steps": 5, "entropy_calibration_steps": 3,
}
TOTAL = 20


def _run(controller, start, stop, seed=0):
    trajectory = []
    for index in range(start, stop):
        rng = random.Random(seed * 1000 + index)
        mu = controller.update(_stats_for(index, controller, rng))
        trajectory.append((mu, controller.last_terms))
    return trajectory


@pytest.mark.parametrize("normalization", ["raw", "cosine"])
@pytest.mark.parametrize("split", [0, 3, 5, 9, 14])
def test_state_dict_round_trip_resumes_identically(split, normalization):
    reference = _run(MetaGradientController(normalization=normalization, **CONFIG), 0, TOTAL)

    first = MetaGradientController(normalization=normalization, **CONFIG)
    head = _run(first, 0, split)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = MetaGradientController(normalization=normalization, **CONFIG)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.mu == first.mu and resumed.last_terms == first.last_terms
    assert head + _run(resumed, split, TOTAL) == reference

    # The check is sensitive: continuing from a fresh controller diverges.
    if split:
        fresh = MetaGradientController(normalization=normalization, **CONFIG)
        assert head + _run(fresh, split, TOTAL) != reference


def test_fixed_controller():
    fixed = FixedMuController(0.3)
    assert isinstance(fixed, BalanceController)
    assert fixed.update(ControllerStats(entropy=0.7)) == 0.3 and fixed.mu == 0.3
    assert fixed.last_terms == {
        "mu": 0.3, "meta_term": 0.0, "meta_gradient": 0.0, "entropy_term": 0.0,
        "entropy": 0.7, "target_entropy": None, "meta_term_total": 0.0, "entropy_term_total": 0.0,
    }
    assert not fixed.in_warmup and not fixed.needs_entropy_sample and not fixed.is_meta_step(20)
    other = FixedMuController(0.9)
    other.load_state_dict(fixed.state_dict())
    assert other.mu == 0.3

    meta = MetaGradientController(mu_init=0.4, warmup_steps=0)
    assert meta.mu == 0.4
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        FixedMuController(1.5)


def test_running_sums_of_the_two_terms_add_up_to_mus_movement_when_unclipped():
    controller = MetaGradientController(
        mu_init=0.5, entropy_lr=0.1, meta_lr=0.1, normalization="cosine", warmup_steps=1,
        entropy_calibration_steps=1, meta_period=2,
    )
    controller.update(ControllerStats(entropy=1.0))
    for step, entropy in enumerate((0.9, 0.8, 1.1, 0.95), start=1):
        alignment = _alignment() if controller.is_meta_step() else None
        controller.update(ControllerStats(entropy=entropy, meta_alignment=alignment))
    terms = controller.last_terms
    assert terms["entropy_term_total"] == pytest.approx(0.1 * (0.1 + 0.2 - 0.1 + 0.05))
    assert terms["meta_term_total"] != 0.0
    assert controller.mu == pytest.approx(0.5 + terms["meta_term_total"] + terms["entropy_term_total"])


def test_planned_mu_announces_scheduled_values_and_not_measured_ones():
    from amft.algorithm import ChordScheduleController, TwoStageController

    assert FixedMuController(0.0).planned_mu() == 0.0
    two_stage = TwoStageController(switch_step=1)
    assert two_stage.planned_mu() == 1.0
    assert two_stage.update() == 1.0 and two_stage.planned_mu() == 0.0 and two_stage.update() == 0.0
    chord = ChordScheduleController(mu_peak=0.8, mu_valley=0.2, warmup_steps=2, decay_steps=2)
    for _ in range(5):
        planned = chord.planned_mu()
        assert chord.update() == planned
    assert MetaGradientController(warmup_steps=0).planned_mu() is None  # depends on entropy and alignment


def test_non_finite_measurements_are_left_out_of_an_update():
    alignment = MetaAlignment(val_dot_sft=1.0, val_dot_rl=float("nan"), val_norm=1.0, sft_norm=1.0, rl_norm=1.0)
    stats, dropped = ControllerStats(entropy=float("inf"), meta_alignment=alignment).finite()
    assert stats == ControllerStats() and dropped == ["entropy", "meta_alignment"]
    finite = ControllerStats(entropy=0.5, meta_alignment=MetaAlignment(1.0, 0.5, 1.0, 1.0, 1.0))
    assert finite.finite() == (finite, [])
    # A controller given the left-out stats keeps mu where a NaN entropy would have made it NaN.
    controller = MetaGradientController(warmup_steps=1, entropy_calibration_steps=1, meta_period=100)
    controller.update(ControllerStats(entropy=1.0))
    assert controller.update(ControllerStats(entropy=float("nan")).finite()[0]) == controller.mu == 0.8
    assert math.isnan(controller.update(ControllerStats(entropy=float("nan"))))
