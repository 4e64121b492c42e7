"""The controller's meta-gradient against finite differences of a known utility (see docs/design.md,
'The meta-gradient').

For theta'(mu) = theta - alpha [(1 - mu) g_RL + mu g_SFT] (one SGD step on the mixed
loss), dU(theta'(mu))/dmu is estimated by central differences and compared with the
controller's raw meta-gradient m = alpha (<g_val, g_SFT> - <g_val, g_RL>), where g_val
is the gradient of a validation *loss* (-U or a policy-gradient surrogate of it).
"""

import pytest
import torch

from amft.algorithm import (
    ControllerStats,
    MetaGradientController,
    clipped_surrogate,
    meta_alignment_from_gradients,
    sft_loss,
    token_log_probs,
)

torch.set_num_threads(1)

ALPHA = 1e-4
MU = 0.5
META_LR = 10.0


def _grad(loss_fn, theta):
    theta = theta.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(theta), theta)
    return grad


def _finite_difference(utility, theta, g_sft, g_rl, h=1e-3):
    def u_at(mu):
        return utility(theta - ALPHA * ((1 - mu) * g_rl + mu * g_sft)).item()

    return (u_at(MU + h) - u_at(MU - h)) / (2 * h)


def _controller_step(g_val, g_sft, g_rl):
    controller = MetaGradientController(
        mu_init=MU, mu_min=0.0, mu_max=1.0, meta_lr=META_LR, inner_lr=ALPHA,
        meta_period=1, warmup_steps=0, use_entropy=False,
    )
    assert controller.is_meta_step()
    alignment = meta_alignment_from_gradients([g_val], [g_sft], [g_rl])
    new_mu = controller.update(ControllerStats(entropy=0.3, meta_alignment=alignment))
    terms = controller.last_terms
    return new_mu, terms


def _check(fd, new_mu, terms, sign):
    m = terms["meta_gradient"]
    assert fd * sign > 0
    assert m * sign > 0
    assert abs(m - fd) / abs(fd) < 1e-3
    assert terms["entropy_term"] == 0.0
    assert terms["meta_term"] == pytest.approx(META_LR * m, rel=1e-12)
    assert new_mu == pytest.approx(MU + META_LR * m, rel=1e-12, abs=1e-15)
    assert (new_mu - MU) * sign > 0


THETA = torch.zeros(4, dtype=torch.float64)
A_SFT = torch.tensor([1.0, 2.0, 0.0, -1.0], dtype=torch.float64)
B_RL = torch.tensor([-1.0, 0.0, 1.5, 1.0], dtype=torch.float64)


@pytest.mark.parametrize(
    ("c_val", "sign"),
    [
        (A_SFT + torch.tensor([0.1, -0.2, 0.0, 0.3], dtype=torch.float64), 1.0),  # validation optimum near SFT's
        (B_RL + torch.tensor([0.2, 0.1, -0.1, 0.0], dtype=torch.float64), -1.0),  # ... near RL's
    ],
)
def test_raw_meta_gradient_matches_finite_difference_quadratic(c_val, sign):
    def l_sft(t):
        return 0.5 * ((t - A_SFT) ** 2).sum()

    def l_rl(t):
        return 0.5 * ((t - B_RL) ** 2).sum()

    def utility(t):
        return -0.5 * ((t - c_val) ** 2).sum()

    g_sft, g_rl = _grad(l_sft, THETA), _grad(l_rl, THETA)
    g_val = _grad(lambda t: -utility(t), THETA)
    fd = _finite_difference(utility, THETA, g_sft, g_rl)
    # closed form: dU/dmu = alpha <theta' - c, g_SFT - g_RL>, theta' ~ theta
    assert fd == pytest.approx(ALPHA * torch.dot(THETA - c_val, g_sft - g_rl).item(), rel=1e-3)
    _check(fd, *_controller_step(g_val, g_sft, g_rl), sign)


# A 4-armed bandit with a softmax policy: U is the exact expected validation reward and
# g_val comes from the validation policy-gradient loss (clipped_surrogate with rho = 1),
# written over all arms so that it is the exact expectation rather than a sample.
BANDIT_THETA = torch.tensor([0.3, -0.2, 0.1, 0.5], dtype=torch.float64)
DEMO_ARM = 2
R_TRAIN = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
ARMS = torch.arange(4).unsqueeze(-1)  # one length-1 "completion" per arm


def _arm_logps(theta):
    return token_log_probs(theta.expand(4, 1, 4), ARMS)  # (4, 1)


def _bandit_sft_loss(theta):
    return sft_loss(token_log_probs(theta.view(1, 1, 4), torch.tensor([[DEMO_ARM]])), torch.ones(1, 1))


def _bandit_rl_loss(theta):
    return -(torch.softmax(theta, -1) * R_TRAIN).sum()


def _bandit_validation_pg_loss(theta, r_val):
    logps = _arm_logps(theta)
    probs = logps.detach().exp().squeeze(-1)
    # grpo aggregation averages the 4 sequences, so weight each arm by 4 * pi * r.
    advantages = 4 * probs * r_val
    return clipped_surrogate(logps, logps.detach(), advantages, torch.ones(4, 1), aggregation="grpo")


@pytest.mark.parametrize(
    ("r_val", "sign"),
    [
        (torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64), 1.0),  # rewards the demonstrated arm
        (torch.tensor([0.0, 1.0, 0.0, 0.5], dtype=torch.float64), -1.0),  # rewards what RL pursues
    ],
)
def test_raw_meta_gradient_matches_finite_difference_bandit(r_val, sign):
    def utility(t):
        return (torch.softmax(t, -1) * r_val).sum()

    g_sft = _grad(_bandit_sft_loss, BANDIT_THETA)
    g_rl = _grad(_bandit_rl_loss, BANDIT_THETA)
    g_val = _grad(lambda t: _bandit_validation_pg_loss(t, r_val), BANDIT_THETA)
    torch.testing.assert_close(g_val, -_grad(utility, BANDIT_THETA))
    fd = _finite_difference(utility, BANDIT_THETA, g_sft, g_rl)
    _check(fd, *_controller_step(g_val, g_sft, g_rl), sign)
