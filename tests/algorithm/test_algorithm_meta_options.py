"""The meta-gradient's optional parts: Adam's preconditioner, the measured entropy slope dH/dmu,
the moving average of the meta signal and the measured entropy direction (see docs/design.md,
'The meta-gradient', 'The entropy term' and 'The controller')."""

import copy
import io
import math
import random

import pytest
import torch

from amft.algorithm import (
    ControllerStats,
    ExponentialMovingAverage,
    MetaAlignment,
    MetaGradientController,
    adam_preconditioned,
    clipped_surrogate,
    masked_mean,
    meta_alignment_from_gradients,
    sft_loss,
    token_log_probs,
)

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------
# Adam's preconditioner
# ------------------------------------------------------------------------------------------------
def test_adam_preconditioner_on_a_hand_computed_case():
    # beta2 = 0.5 after 2 steps: v_hat = v / 0.75 = [4, 0.25], sqrt = [2, 0.5], + eps 0.5 = [2.5, 1].
    grads = [torch.tensor([2.0, -1.0]), torch.tensor([3.0]), None]
    second_moments = [torch.tensor([3.0, 0.1875]), None, torch.tensor([1.0])]
    directions = adam_preconditioned(grads, second_moments, [2, 0, 2], beta2=0.5, eps=0.5)
    torch.testing.assert_close(directions[0], torch.tensor([0.8, -1.0]))
    torch.testing.assert_close(directions[1], torch.tensor([3.0]))  # no state yet: P = 1
    assert directions[2] is None


def test_adam_preconditioner_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one second moment and step per gradient"):
        adam_preconditioned([torch.ones(2)], [], [], beta2=0.9, eps=1e-8)
    with pytest.raises(ValueError, match="shape"):
        adam_preconditioned([torch.ones(2)], [torch.ones(3)], [1], beta2=0.9, eps=1e-8)


def _adamw_step(param, optimizer, grad):
    before = param.detach().clone()
    param.grad = grad.clone()
    optimizer.step()
    return param.detach() - before


def _state(optimizer, param):
    state = optimizer.state[param]
    return state["exp_avg_sq"].clone(), float(state["step"])


def test_adam_preconditioner_is_the_step_adamw_takes():
    """With beta1 = 0 and no weight decay AdamW moves by -lr * g / (sqrt(v_hat_new) + eps); a gradient
    of the same magnitudes as the ones before leaves v_hat unchanged, so the step is exactly
    -lr * P g with P read from the state before the step."""
    lr, beta2, eps = 0.01, 0.9, 0.1
    param = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    optimizer = torch.optim.AdamW([param], lr=lr, betas=(0.0, beta2), eps=eps, weight_decay=0.0)
    g = torch.tensor([0.5, -2.0, 0.03], dtype=torch.float64)
    _adamw_step(param, optimizer, g)
    for signs in ([1, -1, 1], [-1, -1, 1], [1, 1, -1]):
        grad = g * torch.tensor(signs, dtype=torch.float64)
        exp_avg_sq, step = _state(optimizer, param)
        (direction,) = adam_preconditioned([grad], [exp_avg_sq], [step], beta2=beta2, eps=eps)
        torch.testing.assert_close(_adamw_step(param, optimizer, grad), -lr * direction, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("beta1", [0.0, 0.9])
def test_adamw_step_derivative_in_mu_matches_the_preconditioned_look_ahead(beta1):
    """d theta'/d mu of one real AdamW step on the mixed gradient, by central differences, against
    -lr_eff * P (g_SFT - g_RL); lr_eff = lr (1 - beta1) / (1 - beta1^(t+1)) is the scale the
    meta term's inner_lr stands for. Late in a run (large t, beta2 near 1) v barely moves in one step."""
    lr, beta2, eps, mu, h = 0.01, 0.99999, 1e-3, 0.4, 1e-4
    # Minimiser of the SFT loss (theta - a)^2 / 2 and of the RL loss (theta - b)^2 / 2: g = theta - target.
    a = torch.tensor([1.0, -0.5, 0.2, 0.0], dtype=torch.float64)
    b = torch.tensor([-0.3, 0.4, 0.1, 0.6], dtype=torch.float64)
    param = torch.nn.Parameter(torch.tensor([0.1, 0.2, -0.1, 0.3], dtype=torch.float64))
    optimizer = torch.optim.AdamW([param], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=0.01)
    _adamw_step(param, optimizer, torch.ones(4, dtype=torch.float64))  # creates the state
    step = 1_000_000.0
    state = optimizer.state[param]
    state["step"] = torch.tensor(step)
    state["exp_avg"] = torch.tensor([0.02, -0.01, 0.05, 0.0], dtype=torch.float64)
    state["exp_avg_sq"] = torch.tensor([0.3, 0.05, 1.0, 0.2], dtype=torch.float64) ** 2
    g_sft, g_rl = param.detach() - a, param.detach() - b

    def theta_after(mu_value):
        trial_param = copy.deepcopy(param)
        trial = torch.optim.AdamW([trial_param], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=0.01)
        trial.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # the step updates its state in place
        _adamw_step(trial_param, trial, (1 - mu_value) * g_rl + mu_value * g_sft)
        return trial_param.detach()

    finite_difference = (theta_after(mu + h) - theta_after(mu - h)) / (2 * h)
    lr_eff = lr * (1 - beta1) / (1 - beta1 ** (step + 1))
    direction_sft, direction_rl = adam_preconditioned(
        [g_sft, g_rl], [state["exp_avg_sq"]] * 2, [step] * 2, beta2=beta2, eps=eps
    )
    torch.testing.assert_close(finite_difference, -lr_eff * (direction_sft - direction_rl), rtol=1e-3, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# The entropy slope dH/dmu
# ------------------------------------------------------------------------------------------------
# A linear softmax policy over 5 tokens: logits = features @ W, with the trainer's three losses.
FEATURES = torch.tensor([[1.0, 0.0, 0.5], [0.2, 1.0, -0.3], [-0.4, 0.3, 1.0], [0.7, -0.6, 0.2]], dtype=torch.float64)
W0 = torch.tensor(
    [[0.3, -0.2, 0.1, 0.5, 0.0], [0.1, 0.4, -0.3, 0.2, -0.1], [-0.2, 0.0, 0.2, -0.4, 0.3]], dtype=torch.float64
)
SAMPLED = torch.tensor([[0, 3, 1, 4]])  # one completion of 4 tokens
SAMPLED_MASK = torch.tensor([[1, 1, 1, 0]])  # the last token is padding
DEMO = torch.tensor([[2, 2, 0, 1]])
ADVANTAGES = torch.tensor([0.7])
ALPHA = 1e-4  # small, so that the first-order slope is the derivative
MU = 0.3


def _logits(w):
    return (FEATURES @ w).unsqueeze(0)  # (1, 4 tokens, 5)


def _entropy(w):
    # token_entropy's formula in float64: its float32 values are too coarse for finite differences.
    log_p = torch.log_softmax(_logits(w), dim=-1)
    return masked_mean(-(log_p.exp() * log_p).sum(-1), SAMPLED_MASK)


def _sft(w):
    return sft_loss(token_log_probs(_logits(w), DEMO), torch.ones(1, 4))


def _rl(w):
    logps = token_log_probs(_logits(w), SAMPLED)
    return clipped_surrogate(logps, logps.detach(), ADVANTAGES, SAMPLED_MASK)


def _grad(fn, w):
    w = w.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(w), w)
    return grad


@pytest.mark.parametrize("direction", ["sgd", "adam"])
@pytest.mark.parametrize("normalization", ["raw", "cosine"])
def test_entropy_slope_matches_finite_difference_of_h_after_the_step(direction, normalization):
    g_sft, g_rl, g_entropy = _grad(_sft, W0), _grad(_rl, W0), _grad(_entropy, W0)
    g_val = torch.ones_like(W0)  # any validation gradient: the slope does not read it
    if direction == "adam":
        exp_avg_sq = (0.01 + torch.arange(15, dtype=torch.float64).view(3, 5) / 100) ** 2
        d_sft, d_rl = adam_preconditioned([g_sft, g_rl], [exp_avg_sq] * 2, [7, 7], beta2=0.999, eps=1e-8)
    else:
        d_sft, d_rl = g_sft, g_rl

    def entropy_after(mu):
        return _entropy(W0 - ALPHA * ((1 - mu) * d_rl + mu * d_sft)).item()

    h = 1e-3
    finite_difference = (entropy_after(MU + h) - entropy_after(MU - h)) / (2 * h)
    alignment = meta_alignment_from_gradients([g_val], [d_sft], [d_rl], g_entropy=[g_entropy])
    controller = MetaGradientController(
        mu_init=MU, mu_min=0.0, mu_max=1.0, inner_lr=ALPHA, meta_period=1, warmup_steps=0,
        normalization=normalization,
    )
    controller.update(ControllerStats(entropy=_entropy(W0).item(), meta_alignment=alignment))
    slope = controller.last_terms["entropy_slope"]
    assert abs(finite_difference) > 1e-2 * ALPHA  # a real slope, not a vanishing one
    assert slope == pytest.approx(finite_difference, rel=1e-3)
    assert controller.entropy_slope == slope


def test_meta_alignment_holds_the_entropy_dots_from_the_same_call():
    g_val, g_sft, g_rl = [torch.tensor([1.0, 0.0])], [torch.tensor([2.0, 1.0])], [torch.tensor([0.0, -3.0])]
    alignment = meta_alignment_from_gradients(g_val, g_sft, g_rl, g_entropy=[torch.tensor([0.5, 2.0])])
    assert (alignment.entropy_dot_sft, alignment.entropy_dot_rl) == (3.0, -6.0)
    assert meta_alignment_from_gradients(g_val, g_sft, g_rl).entropy_dot_sft is None


def test_entropy_slope_is_absent_off_meta_steps_and_without_entropy_gradient():
    controller = MetaGradientController(mu_init=0.5, meta_period=2, warmup_steps=0, inner_lr=1.0)
    controller.update(ControllerStats(entropy=0.5))
    assert controller.last_terms["entropy_slope"] is None
    no_dots = MetaAlignment(val_dot_sft=1.0, val_dot_rl=0.0, val_norm=1.0, sft_norm=1.0, rl_norm=1.0)
    controller.update(ControllerStats(entropy=0.5, meta_alignment=no_dots))
    assert controller.last_terms["entropy_slope"] is None and controller.entropy_slope == 0.0


# ------------------------------------------------------------------------------------------------
# The moving average of the meta signal
# ------------------------------------------------------------------------------------------------
def test_moving_average_bias_correction_by_hand():
    average = ExponentialMovingAverage(0.5)
    assert average.value is None
    # biased: 1, 2.5, 0.75; corrected by 1 - 0.5^n = 0.5, 0.75, 0.875
    assert [average.update(x) for x in (2.0, 4.0, -1.0)] == pytest.approx([2.0, 10.0 / 3.0, 0.75 / 0.875])
    plain = ExponentialMovingAverage(0.0)
    assert [plain.update(x) for x in (0.1, -3.7, 1e-9)] == [0.1, -3.7, 1e-9]  # each measurement as is
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        ExponentialMovingAverage(1.0)


def _alignment(val_dot_sft, val_dot_rl=0.0, entropy_dot_sft=None, entropy_dot_rl=None):
    return MetaAlignment(
        val_dot_sft=val_dot_sft, val_dot_rl=val_dot_rl, val_norm=1.0, sft_norm=1.0, rl_norm=1.0,
        entropy_dot_sft=entropy_dot_sft, entropy_dot_rl=entropy_dot_rl,
    )


def test_meta_signal_ema_moves_mu_by_the_average_on_meta_steps_only():
    controller = MetaGradientController(
        mu_init=0.5, mu_min=0.0, mu_max=1.0, meta_lr=0.01, inner_lr=1.0, meta_period=2, warmup_steps=0,
        use_entropy=False, meta_signal_ema=0.5,
    )
    expected_mu = 0.5
    for measured, average in ((2.0, 2.0), (4.0, 10.0 / 3.0), (-1.0, 0.75 / 0.875)):
        controller.update(ControllerStats())  # not a meta step: no meta term
        assert controller.mu == pytest.approx(expected_mu) and controller.last_terms["meta_gradient_ema"] is None
        controller.update(ControllerStats(meta_alignment=_alignment(measured)))
        expected_mu += 0.01 * average
        terms = controller.last_terms
        assert terms["meta_gradient"] == pytest.approx(measured)
        assert terms["meta_gradient_ema"] == pytest.approx(average)
        assert terms["meta_term"] == pytest.approx(0.01 * average)
        assert controller.mu == pytest.approx(expected_mu)


def _normalized_controller(meta_signal_ema):
    return MetaGradientController(
        mu_init=0.5, mu_min=0.0, mu_max=1.0, meta_lr=0.01, inner_lr=1.0, meta_period=1, warmup_steps=0,
        use_entropy=False, meta_signal_ema=meta_signal_ema, meta_update="normalized",
    )


def test_normalized_meta_update_by_hand():
    # d = 0.5. After 2: mean 2, mean square 4 -> 2 / 2 = 1. After 4: mean (0.5 * 1 + 0.5 * 4) / 0.75 = 10/3,
    # mean square (0.5 * 2 + 0.5 * 16) / 0.75 = 12 -> (10/3) / sqrt(12). After -1: mean 0.75 / 0.875,
    # mean square (0.5 * 9 + 0.5 * 1) / 0.875 = 5 / 0.875.
    controller = _normalized_controller(0.5)
    expected_mu = 0.5
    for measured, average, signal in ((2.0, 2.0, 1.0), (4.0, 10 / 3, (10 / 3) / math.sqrt(12)),
                                      (-1.0, 0.75 / 0.875, (0.75 / 0.875) / math.sqrt(5 / 0.875))):
        controller.update(ControllerStats(meta_alignment=_alignment(measured)))
        expected_mu += 0.01 * signal
        terms = controller.last_terms
        assert terms["meta_gradient"] == pytest.approx(measured)
        assert terms["meta_gradient_ema"] == pytest.approx(average)  # the average itself, not the normalised step
        assert terms["meta_term"] == pytest.approx(0.01 * signal)
        assert controller.mu == pytest.approx(expected_mu)


def test_normalized_meta_update_without_averaging_steps_by_the_sign():
    controller = _normalized_controller(0.0)
    for measured, expected_mu in ((1e-6, 0.51), (-3.0, 0.50), (-0.2, 0.49), (0.0, 0.49)):
        controller.update(ControllerStats(meta_alignment=_alignment(measured)))
        assert controller.mu == pytest.approx(expected_mu)


def test_normalized_meta_update_ignores_the_scale_of_the_meta_gradient():
    measurements = [0.03, -0.01, 0.02, 0.025, -0.04, 0.01]
    trajectories = []
    for scale in (1.0, 1e-4):
        controller = _normalized_controller(0.7)
        trajectories.append([controller.update(ControllerStats(meta_alignment=_alignment(scale * m)))
                             for m in measurements])
    assert trajectories[0] == pytest.approx(trajectories[1])
    # The paper's linear update moves mu 1e4 times less on the small scale.
    linear = MetaGradientController(mu_init=0.5, mu_min=0.0, mu_max=1.0, meta_lr=0.01, inner_lr=1.0, meta_period=1,
                                    warmup_steps=0, use_entropy=False, meta_signal_ema=0.7)
    for m in measurements:
        linear.update(ControllerStats(meta_alignment=_alignment(1e-4 * m)))
    assert abs(linear.mu - 0.5) < 1e-5 < abs(trajectories[1][-1] - 0.5)


# ------------------------------------------------------------------------------------------------
# The measured entropy direction
# ------------------------------------------------------------------------------------------------
def _measured_controller(**overrides):
    settings = dict(
        mu_init=0.5, mu_min=0.0, mu_max=1.0, meta_lr=0.0, entropy_lr=0.5, inner_lr=0.1, meta_period=2,
        warmup_steps=1, entropy_calibration_steps=1, entropy_direction="measured",
    )
    controller = MetaGradientController(**{**settings, **overrides})
    controller.update(ControllerStats(entropy=1.0))  # warm-up: H* = 1
    return controller


@pytest.mark.parametrize(("dots", "slope"), [((1.0, 3.0), 0.2), ((3.0, 1.0), -0.2)])
def test_measured_entropy_term_sign_and_size(dots, slope):
    controller = _measured_controller()
    # t = 1: no slope measured yet, so no entropy term although H is below H*.
    assert controller.update(ControllerStats(entropy=0.6)) == 0.5
    assert controller.last_terms["entropy_term"] == 0.0
    # t = 2, a meta step: dH/dmu = -0.1 (<g_H, g_SFT> - <g_H, g_RL>) is measured and used at once.
    controller.update(ControllerStats(entropy=0.6, meta_alignment=_alignment(0.0, 0.0, *dots)))
    assert controller.last_terms["entropy_slope"] == pytest.approx(slope)
    # H below H*: mu rises when more SFT raises H (slope > 0) and falls when it lowers H.
    assert controller.last_terms["entropy_term"] == pytest.approx(0.5 * 0.4 * slope)
    assert controller.mu == pytest.approx(0.5 + 0.5 * 0.4 * slope)
    # t = 3: the latest slope keeps acting; H above H* reverses the term.
    controller.update(ControllerStats(entropy=1.5))
    assert controller.last_terms["entropy_slope"] is None
    assert controller.last_terms["entropy_term"] == pytest.approx(0.5 * -0.5 * slope)


def test_measured_entropy_slope_is_smoothed_by_the_same_average():
    controller = _measured_controller(meta_period=1, meta_signal_ema=0.5)
    controller.update(ControllerStats(entropy=0.6, meta_alignment=_alignment(0.0, 0.0, 0.0, 2.0)))  # slope 0.2
    controller.update(ControllerStats(entropy=0.6, meta_alignment=_alignment(0.0, 0.0, 0.0, -4.0)))  # slope -0.4
    average = (0.25 * 0.2 + 0.5 * -0.4) / 0.75
    assert controller.last_terms["entropy_slope"] == pytest.approx(-0.4)
    assert controller.last_terms["entropy_slope_ema"] == pytest.approx(average)
    assert controller.last_terms["entropy_term"] == pytest.approx(0.5 * 0.4 * average)


def test_fixed_entropy_direction_ignores_the_measured_slope():
    controller = _measured_controller(entropy_direction="fixed", meta_period=1)
    controller.update(ControllerStats(entropy=0.6, meta_alignment=_alignment(0.0, 0.0, 3.0, 1.0)))
    assert controller.last_terms["entropy_slope"] == pytest.approx(-0.2)
    assert controller.last_terms["entropy_term"] == pytest.approx(0.5 * 0.4)


def test_new_options_are_validated():
    with pytest.raises(ValueError, match="fixed, measured"):
        MetaGradientController(entropy_direction="up")
    with pytest.raises(ValueError, match="use_meta"):
        MetaGradientController(entropy_direction="measured", use_meta=False)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        MetaGradientController(meta_signal_ema=-0.1)
    with pytest.raises(ValueError, match="linear, normalized"):
        MetaGradientController(meta_update="sign")


# ------------------------------------------------------------------------------------------------
# Resumption
# ------------------------------------------------------------------------------------------------
CONFIG = {
    "mu_init": 0.6, "mu_min": 0.05, "mu_max": 0.95, "meta_lr": 0.05, "entropy_lr": 0.2, "meta_period": 3,
    "inner_lr": 0.5, "warmup_steps": 4, "entropy_calibration_steps": 2, "meta_signal_ema": 0.7,
    "entropy_direction": "measured",
}
TOTAL = 22


def _run(controller, start, stop):
    trajectory = []
    for index in range(start, stop):
        rng = random.Random(index)
        alignment = None
        if controller.is_meta_step():
            alignment = MetaAlignment(
                *(rng.uniform(-1, 1) for _ in range(2)), *(rng.uniform(1, 2) for _ in range(3)),
                entropy_dot_sft=rng.uniform(-1, 1), entropy_dot_rl=rng.uniform(-1, 1),
            )
        mu = controller.update(ControllerStats(entropy=rng.uniform(0.2, 1.5), meta_alignment=alignment))
        trajectory.append((mu, controller.last_terms))
    return trajectory


@pytest.mark.parametrize("meta_update", ["linear", "normalized"])
@pytest.mark.parametrize("split", [7, 11, 16])  # after the first meta step (update 7)
def test_state_dict_round_trip_resumes_the_averages_and_slope_exactly(split, meta_update):
    config = {**CONFIG, "meta_update": meta_update}
    reference = _run(MetaGradientController(**config), 0, TOTAL)
    first = MetaGradientController(**config)
    head = _run(first, 0, split)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = MetaGradientController(**config)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert head + _run(resumed, split, TOTAL) == reference
    # Losing the averages (as a state without them would) changes the trajectory.
    stripped = MetaGradientController(**config)
    state = first.state_dict()
    del state["meta_gradient_average"], state["meta_square_average"], state["entropy_slope_average"]
    stripped.load_state_dict(state)
    assert head + _run(stripped, split, TOTAL) != reference
    assert not any(math.isnan(mu) for mu, _ in reference)
