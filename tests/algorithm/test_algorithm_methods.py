"""Baselines (CHORD, LUFFY, SRFT, ReLIFT, SFT->RL) against values computed by hand on tiny tensors."""

import json
import math

import pytest
import torch

from amft.algorithm import (
    BalanceController,
    ChordScheduleController,
    ControllerStats,
    FixedMuController,
    HardPromptBuffer,
    ReliftController,
    TwoStageController,
    all_failed_groups,
    chord_mu,
    chord_phi,
    clipped_surrogate,
    luffy_surrogate,
    sft_loss,
    srft_rl_loss,
    srft_weights,
)

torch.set_num_threads(1)

SCHEDULE = {"mu_peak": 0.6, "mu_valley": 0.2, "warmup_steps": 4, "decay_steps": 10}


# ------------------------------------------------------------------------------------------------
# CHORD
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 0.0),
        (2, 0.6 * 2 / 4),  # mid warm-up
        (4, 0.6),  # end of warm-up: the peak
        (9, (0.6 + 0.2) / 2),  # 5 of 10 decay steps: cos(pi / 2) = 0, the average of peak and valley
        (14, 0.2),  # end of decay
        (100, 0.2),  # constant afterwards
    ],
)
def test_chord_mu_schedule(step, expected):
    assert chord_mu(step, **SCHEDULE) == pytest.approx(expected, abs=1e-12)


def test_chord_mu_quarter_decay_edge_cases_and_errors():
    # 2.5 of 10 decay steps is not an integer step; 5 of 20 is: cos(pi / 4) = sqrt(2) / 2
    mu = chord_mu(9, mu_peak=0.6, mu_valley=0.2, warmup_steps=4, decay_steps=20)
    assert mu == pytest.approx(0.2 + 0.4 * 0.5 * (1 + math.sqrt(2) / 2))
    assert chord_mu(0, mu_peak=0.6, mu_valley=0.2, warmup_steps=0, decay_steps=10) == pytest.approx(0.6)
    assert chord_mu(4, mu_peak=0.6, mu_valley=0.2, warmup_steps=4, decay_steps=0) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="mu_peak"):
        chord_mu(0, mu_peak=1.5, mu_valley=0.2, warmup_steps=4, decay_steps=10)
    with pytest.raises(ValueError, match="decay_steps"):
        chord_mu(0, mu_peak=0.6, mu_valley=0.2, warmup_steps=4, decay_steps=-1)
    with pytest.raises(ValueError, match="step"):
        chord_mu(-1, **SCHEDULE)


def test_chord_phi_values_and_no_gradient():
    logps = torch.tensor([[0.5, 0.25, 1.0]]).log().requires_grad_(True)
    phi = chord_phi(logps)
    # p (1 - p): 0.5 * 0.5, 0.25 * 0.75, 1 * 0
    torch.testing.assert_close(phi, torch.tensor([[0.25, 0.1875, 0.0]]))
    assert not phi.requires_grad


def test_sft_loss_with_chord_phi_weights():
    probs = torch.tensor([[0.5, 0.25, 0.9]], dtype=torch.float64)
    logps = probs.log().requires_grad_(True)
    mask = torch.ones(1, 3)
    loss = sft_loss(logps, mask, token_weights=chord_phi(logps))
    # phi = 0.25, 0.1875, 0.09; NLL = ln 2, ln 4, -ln 0.9
    expected = (0.25 * math.log(2.0) + 0.1875 * math.log(4.0) - 0.09 * math.log(0.9)) / 3
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    # the weight is a constant: d/dlogp (-phi * logp) / 3 = -phi / 3
    torch.testing.assert_close(logps.grad, -torch.tensor([[0.25, 0.1875, 0.09]], dtype=torch.float64) / 3)


# ------------------------------------------------------------------------------------------------
# LUFFY
# ------------------------------------------------------------------------------------------------
def test_luffy_off_policy_row_value_and_gradient():
    p = torch.tensor([[0.5, 0.1]], dtype=torch.float64)
    logps = p.log().requires_grad_(True)
    # Behaviour probability is taken as 1: whatever the old log-probs hold is ignored.
    old = torch.full((1, 2), float("nan"), dtype=torch.float64)
    advantages = torch.tensor([2.0], dtype=torch.float64)
    loss = luffy_surrogate(logps, old, advantages, torch.ones(1, 2), torch.tensor([True]), gamma=0.1)
    # f = 0.5 / 0.6 and 0.1 / 0.2; per token -2 f; mean over the 2 tokens
    assert loss.item() == pytest.approx((-2 * 0.5 / 0.6 - 2 * 0.1 / 0.2) / 2)
    loss.backward()
    # -A * gamma / (p + gamma)^2 * dp/dlogp (= p), / 2 tokens
    expected = torch.tensor(
        [[-2 * 0.1 / 0.6**2 * 0.5 / 2, -2 * 0.1 / 0.2**2 * 0.1 / 2]], dtype=torch.float64
    )
    torch.testing.assert_close(logps.grad, expected)


@pytest.mark.parametrize(
    ("aggregation", "kwargs"),
    [("grpo", {}), ("bnpo", {}), ("dr_grpo", {"max_completion_length": 4}), ("dapo", {"normalizer": 10.0})],
)
def test_luffy_on_policy_rows_equal_clipped_surrogate(aggregation, kwargs, surrogate_inputs):
    logps, old, advantages, mask = surrogate_inputs
    off_policy = torch.tensor([False, False])
    loss = luffy_surrogate(logps, old, advantages, mask, off_policy, aggregation=aggregation, **kwargs)
    (grad,) = torch.autograd.grad(loss, logps)
    reference = clipped_surrogate(logps, old, advantages, mask, aggregation=aggregation, **kwargs)
    (reference_grad,) = torch.autograd.grad(reference, logps)
    assert loss.item() == pytest.approx(reference.item(), abs=1e-12)
    torch.testing.assert_close(grad, reference_grad)


def test_luffy_on_policy_hand_value(surrogate_inputs):
    logps, old, advantages, mask = surrogate_inputs
    loss = luffy_surrogate(logps, old, advantages, mask, torch.tensor([False, False]))
    # per token: seq 0 -> -1.2, -0.5, -1.0; seq 1 -> 0.8, 1.5
    assert loss.item() == pytest.approx((-2.7 / 3 + 2.3 / 2) / 2)


def _mixed_inputs():
    # row 0 on-policy: rho 1.5 (clipped), 0.5, 1.0 with A = +1.
    # row 1 off-policy (demonstration): p = 0.5, 0.1, then a padding position holding +inf.
    logps = torch.tensor(
        [[math.log(1.5), math.log(0.5), 0.0], [math.log(0.5), math.log(0.1), float("inf")]], dtype=torch.float64
    ).requires_grad_(True)
    old = torch.tensor([[0.0, 0.0, 0.0], [-1e30, -1e30, -1e30]], dtype=torch.float64)
    advantages = torch.tensor([1.0, -1.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return logps, old, advantages, mask, torch.tensor([False, True])


# row 0: -1.2, -0.5, -1.0 (sum -2.7); row 1: -A f(p) = 0.5 / 0.6, 0.1 / 0.2 (sum 5/6 + 1/2 = 4/3)
@pytest.mark.parametrize(
    ("aggregation", "kwargs", "expected"),
    [
        ("grpo", {}, (-2.7 / 3 + (4 / 3) / 2) / 2),
        ("bnpo", {}, (-2.7 + 4 / 3) / 5),
        ("dr_grpo", {"max_completion_length": 4}, (-2.7 + 4 / 3) / 8),
        ("dapo", {"normalizer": 10.0}, (-2.7 + 4 / 3) / 10),
    ],
)
def test_luffy_mixed_batch_aggregations(aggregation, kwargs, expected):
    logps, old, advantages, mask, off_policy = _mixed_inputs()
    loss = luffy_surrogate(logps, old, advantages, mask, off_policy, aggregation=aggregation, **kwargs)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_luffy_mixed_batch_gradient_has_no_leak_from_padding():
    logps, old, advantages, mask, off_policy = _mixed_inputs()
    luffy_surrogate(logps, old, advantages, mask, off_policy, aggregation="grpo").backward()
    # row 0 (clipped surrogate, / 3 tokens / 2 rows): clipped token 0; -rho A for the others.
    # row 1 (/ 2 tokens / 2 rows): -A * gamma / (p + gamma)^2 * p with A = -1.
    expected = torch.tensor(
        [
            [0.0, -0.5 / 3 / 2, -1.0 / 3 / 2],
            [0.1 / 0.6**2 * 0.5 / 2 / 2, 0.1 / 0.2**2 * 0.1 / 2 / 2, 0.0],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(logps.grad, expected)


def test_luffy_off_policy_rows_are_not_clipped():
    # p = 0.5 against an old probability of 0.1: rho = 5, far outside [0.8, 1.2].
    logps = torch.tensor([[math.log(0.5)]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[math.log(0.1)]], dtype=torch.float64)
    advantages = torch.tensor([1.0], dtype=torch.float64)
    mask = torch.ones(1, 1)
    clipped = luffy_surrogate(logps, old, advantages, mask, torch.tensor([False]))
    (clipped_grad,) = torch.autograd.grad(clipped, logps)
    assert clipped.item() == pytest.approx(-1.2)  # on-policy: clip(5) * A
    assert clipped_grad.item() == 0.0
    shaped = luffy_surrogate(logps, old, advantages, mask, torch.tensor([True]))
    (shaped_grad,) = torch.autograd.grad(shaped, logps)
    assert shaped.item() == pytest.approx(-0.5 / 0.6)
    assert shaped_grad.item() == pytest.approx(-0.1 / 0.6**2 * 0.5)


def test_luffy_token_advantages_and_errors():
    logps, old, advantages, mask, off_policy = _mixed_inputs()
    per_token = advantages.unsqueeze(-1).expand(2, 3)
    assert luffy_surrogate(logps, old, per_token, mask, off_policy).item() == pytest.approx(
        luffy_surrogate(logps, old, advantages, mask, off_policy).item()
    )
    with pytest.raises(ValueError, match="off_policy"):
        luffy_surrogate(logps, old, advantages, mask, torch.tensor([True]))
    with pytest.raises(ValueError, match="gamma"):
        luffy_surrogate(logps, old, advantages, mask, off_policy, gamma=0.0)
    with pytest.raises(ValueError, match="max_completion_length"):
        luffy_surrogate(logps, old, advantages, mask, off_policy, aggregation="dr_grpo")


# ------------------------------------------------------------------------------------------------
# SRFT
# ------------------------------------------------------------------------------------------------
def test_srft_weights_both_signs():
    assert srft_weights(0.0) == pytest.approx((0.5, 0.1))
    assert srft_weights(0.0, sft_entropy_sign=1) == pytest.approx((0.5, 0.1))
    assert srft_weights(1.0) == pytest.approx((0.5 / math.e, 0.1 * math.e))
    assert srft_weights(1.0, sft_entropy_sign=1) == pytest.approx((0.5 * math.e, 0.1 * math.e))
    assert srft_weights(1.0, sft_coef=1.0, rl_coef=2.0) == pytest.approx((1.0 / math.e, 2.0 * math.e))
    with pytest.raises(ValueError, match="sft_entropy_sign"):
        srft_weights(1.0, sft_entropy_sign=0)


def test_srft_rl_loss_positive_and_negative_rows():
    # row 0: A = +2, weight 0.3; row 1: A = -1, weight 1, then a NaN padding position.
    logps = torch.tensor([[-0.5, -1.0], [-2.0, float("nan")]], requires_grad=True)
    advantages = torch.tensor([2.0, -1.0])
    mask = torch.tensor([[1, 1], [1, 0]])
    loss = srft_rl_loss(logps, advantages, mask, positive_weight=0.3)
    # row 0: -0.3 * 2 * (-0.5) = 0.3, -0.3 * 2 * (-1.0) = 0.6 -> mean 0.45; row 1: -(-1) * (-2) = -2
    assert loss.item() == pytest.approx((0.45 - 2.0) / 2)
    loss.backward()
    # d/dlogp: row 0 -0.3 * 2 / 2 tokens / 2 rows; row 1 +1 / 1 token / 2 rows
    torch.testing.assert_close(logps.grad, torch.tensor([[-0.15, -0.15], [0.5, 0.0]]))
    bnpo = srft_rl_loss(logps, advantages, mask, positive_weight=0.3, aggregation="bnpo")
    assert bnpo.item() == pytest.approx((0.3 + 0.6 - 2.0) / 3)


# ------------------------------------------------------------------------------------------------
# ReLIFT
# ------------------------------------------------------------------------------------------------
def test_all_failed_groups():
    rewards = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.4, 0.2, 0.49])
    assert all_failed_groups(rewards, 3, success_threshold=0.5) == [0, 2]
    # reaching the threshold exactly is a success
    assert all_failed_groups(rewards, 3, success_threshold=0.4) == [0]
    assert all_failed_groups(rewards, 3, success_threshold=0.0) == []
    with pytest.raises(ValueError, match="groups of 4"):
        all_failed_groups(rewards, 4, success_threshold=0.5)


def _row(name):
    return {"prompt": f"q-{name}", "demonstration": f"a-{name}"}


def test_hard_prompt_buffer_fills_drops_drains_and_round_trips():
    buffer = HardPromptBuffer(3)
    given = _row("a")
    buffer.add([given, _row("b")])
    given["prompt"] = "changed"  # the buffer holds its own copy
    assert len(buffer) == 2 and not buffer.full
    buffer.add([_row("c"), _row("d")])  # room for one: d is dropped
    assert len(buffer) == 3 and buffer.full
    buffer.add([_row("e")])  # full: dropped until drained
    assert len(buffer) == 3

    restored = HardPromptBuffer(3)
    restored.load_state_dict(json.loads(json.dumps(buffer.state_dict())))
    assert restored.full

    expected = [_row("a"), _row("b"), _row("c")]
    assert buffer.drain() == expected
    assert len(buffer) == 0 and not buffer.full and buffer.drain() == []
    buffer.add([_row("f")])
    assert buffer.drain() == [_row("f")]
    assert restored.drain() == expected


def test_hard_prompt_buffer_errors():
    with pytest.raises(ValueError, match="capacity"):
        HardPromptBuffer(0)
    with pytest.raises(ValueError, match="capacity"):
        HardPromptBuffer(1).load_state_dict({"rows": [_row("a"), _row("b")]})


# ------------------------------------------------------------------------------------------------
# Controllers
# ------------------------------------------------------------------------------------------------
TERM_KEYS = set(FixedMuController(0.5).last_terms)


def test_two_stage_controller_switch():
    controller = TwoStageController(switch_step=2)
    assert isinstance(controller, TwoStageController) and isinstance(controller, BalanceController)
    assert controller.mu == 1.0
    seen = []
    for _ in range(4):
        warmup = controller.in_warmup
        seen.append((warmup, controller.update(ControllerStats(entropy=0.7))))
    assert seen == [(True, 1.0), (True, 1.0), (False, 0.0), (False, 0.0)]
    assert set(controller.last_terms) == TERM_KEYS and controller.last_terms["entropy"] == 0.7
    assert controller.last_terms["mu"] == 0.0

    rl_only = TwoStageController(0)
    assert rl_only.mu == 0.0 and not rl_only.in_warmup and rl_only.update() == 0.0
    with pytest.raises(ValueError, match="switch_step"):
        TwoStageController(-1)


def test_two_stage_controller_state_round_trip():
    controller = TwoStageController(2)
    controller.update()
    restored = TwoStageController(2)
    restored.load_state_dict(json.loads(json.dumps(controller.state_dict())))
    assert restored.mu == 1.0 and restored.in_warmup
    assert [restored.update() for _ in range(2)] == [1.0, 0.0]
    assert [controller.update() for _ in range(2)] == [1.0, 0.0]
    assert restored.state_dict() == controller.state_dict()


def test_relift_controller_takes_an_sft_step_once_the_buffer_is_full_and_resumes_it():
    controller = ReliftController(buffer_size=3)
    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(4)]
    assert controller.planned_mu() == 0.0 and controller.update() == 0.0
    controller.collect(rows[:2])
    assert controller.planned_mu() == 0.0 and controller.update() == 0.0
    controller.collect(rows[2:])  # the fourth row is dropped: the buffer holds 3
    restored = ReliftController(3)
    restored.load_state_dict(json.loads(json.dumps(controller.state_dict())))
    for c in (controller, restored):
        assert c.planned_mu() == 1.0 and c.update() == 1.0 and c.sft_steps == 1
        assert c.drain() == rows[:3]
        assert c.planned_mu() == 0.0 and c.update() == 0.0


def test_chord_controller_follows_chord_mu():
    controller = ChordScheduleController(**SCHEDULE)
    assert controller.mu == 0.0 and not controller.in_warmup
    mus = [controller.update() for _ in range(16)]
    # update t uses step t - 1: 0, 0.15, 0.3, 0.45, then the peak 0.6 at update 5
    assert mus[:5] == pytest.approx([0.0, 0.15, 0.3, 0.45, 0.6])
    assert mus[9] == pytest.approx(0.4)  # update 10: step 9, the middle of the decay
    assert mus[14:] == pytest.approx([0.2, 0.2])
    assert mus == [chord_mu(t - 1, **SCHEDULE) for t in range(1, 17)]
    controller.update(ControllerStats(entropy=1.3))
    assert set(controller.last_terms) == TERM_KEYS
    assert controller.last_terms["entropy"] == 1.3 and controller.last_terms["mu"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="mu_valley"):
        ChordScheduleController(mu_peak=0.6, mu_valley=-0.1, warmup_steps=4, decay_steps=10)


def test_chord_controller_resumes_exactly():
    controller = ChordScheduleController(**SCHEDULE)
    for _ in range(7):
        controller.update(ControllerStats(entropy=0.5))
    restored = ChordScheduleController(**SCHEDULE)
    restored.load_state_dict(json.loads(json.dumps(controller.state_dict())))
    assert restored.mu == controller.mu and restored.last_terms == controller.last_terms
    assert [restored.update() for _ in range(10)] == [controller.update() for _ in range(10)]
    assert restored.state_dict() == controller.state_dict()
