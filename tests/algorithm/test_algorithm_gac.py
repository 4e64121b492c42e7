"""GAC: the closed form, the proxies on hand-made tensors, the guards, the refresh throttle, resume."""

import json
import math

import pytest
import torch

from amft.algorithm import (
    ControllerStats,
    chord_phi,
    GACController,
    NoiseProxies,
    demonstration_row_statistics,
    gac_mu_star,
    group_advantages,
    measure_noise,
    rollout_row_statistics,
)
from amft.algorithm.gac import gac_guarded_mu, moving_average_step, trimmed_variance

torch.set_num_threads(1)

#: mu follows mu* at once: no averaging, no prior, no cap within [0, 1].
UNGUARDED = {"ema_beta": 0.0, "mu_change_cap": 1.0, "blend": 1.0, "mu_min": 0.0, "mu_max": 1.0}
#: A flat prior at 0.85 from the first step.
FLAT_PRIOR = {"prior_peak": 0.85, "prior_valley": 0.85, "prior_warmup_steps": 0, "prior_decay_steps": 0}


def proxies(sigma_s2=1.0, sigma_r2=4.0, delta_g2=0.0, informative_fraction=1.0):
    return ControllerStats(noise_proxies=NoiseProxies(sigma_r2=sigma_r2, sigma_s2=sigma_s2, delta_g2=delta_g2,
                                                      informative_fraction=informative_fraction))


def log_probs(*probabilities):
    return torch.tensor([probabilities]).log()


# The closed form ---------------------------------------------------------------------------------

def test_closed_form_is_inverse_variance_weighting_without_disagreement_and_tends_to_alpha():
    assert gac_mu_star(sigma_s2=1.0, sigma_r2=4.0, delta_g2=0.0, alpha=0.5) == pytest.approx(0.8)
    assert gac_mu_star(sigma_s2=1.0, sigma_r2=1.0, delta_g2=2.0, alpha=0.5) == pytest.approx(0.5)
    assert gac_mu_star(sigma_s2=1.0, sigma_r2=4.0, delta_g2=1e9, alpha=0.3) == pytest.approx(0.3)
    assert gac_mu_star(0.0, 0.0, 0.0, alpha=0.5) == 0.0  # defined when every proxy is 0


def test_controller_without_guards_returns_the_closed_form():
    controller = GACController(mu_init=0.5, **UNGUARDED)
    assert controller.update(proxies(sigma_s2=1.0, sigma_r2=4.0)) == pytest.approx(0.8)
    assert controller.last_terms["gac/mu/raw"] == pytest.approx(0.8)


def test_before_any_measurement_mu_star_reads_equal_noise_and_no_disagreement():
    controller = GACController(mu_init=0.2, **UNGUARDED)
    assert controller.update() == pytest.approx(0.5)
    terms = controller.last_terms
    assert (terms["gac/mu/sigma_s2"], terms["gac/mu/sigma_r2"], terms["gac/mu/delta_g2"]) == (1.0, 1.0, 0.0)
    assert terms["gac/stats_refreshed"] == 0.0 and terms["gac/informative_rollout_fraction"] is None


# The guards --------------------------------------------------------------------------------------

def test_moving_average_then_prior_blend_then_capped_change():
    # mu_ada = 0.99 * 0.5 + 0.01 * 0.8; without a prior that is the new mu.
    no_prior = GACController(blend=1.0)
    assert no_prior.update(proxies()) == pytest.approx(0.503)
    # With a prior at 0.85: 0.5 * 0.85 + 0.5 * 0.503 = 0.6765, but mu moves at most 0.01.
    with_prior = GACController(**FLAT_PRIOR)
    assert with_prior.update(proxies()) == pytest.approx(0.51)
    terms = with_prior.last_terms
    assert terms["gac/mu/ada"] == pytest.approx(0.503) and terms["gac/mu/prior"] == 0.85
    assert terms["gac/mu/value"] == terms["mu"] == pytest.approx(0.51)
    assert gac_guarded_mu(0.5, 0.8, 0.85, ema_beta=0.99, blend=0.5, change_cap=0.01, mu_min=0.05, mu_max=0.9) == (
        pytest.approx(0.503), pytest.approx(0.51))


def test_the_cap_moves_mu_by_at_most_the_cap_each_step_until_it_meets_the_target():
    controller = GACController(update_freq=1, **{**UNGUARDED, "mu_change_cap": 0.1})
    mus = [controller.update(proxies(sigma_s2=1.0, sigma_r2=4.0)) for _ in range(5)]
    assert mus == pytest.approx([0.6, 0.7, 0.8, 0.8, 0.8])


def test_bounds_hold_for_extreme_noise():
    assert GACController(**{**UNGUARDED, "mu_max": 0.9}).update(proxies(sigma_r2=1e6)) == 0.9
    assert GACController(**{**UNGUARDED, "mu_min": 0.05}).update(proxies(sigma_s2=1e6, sigma_r2=0.0)) == 0.05
    # With the moving average, however long the run.
    controller = GACController(update_freq=1, blend=1.0)
    mus = [controller.update(proxies(sigma_r2=1e6)) for _ in range(300)]
    assert max(mus) == 0.9 and all(0.05 <= mu <= 0.9 for mu in mus)


def test_the_disagreement_cap_limits_delta_to_a_ratio_of_the_noise():
    controller = GACController(delta_cap_ratio=0.5, **UNGUARDED)
    controller.update(proxies(sigma_s2=1.0, sigma_r2=1.0, delta_g2=10.0))
    terms = controller.last_terms
    assert terms["gac/mu/delta_g2"] == 10.0 and terms["gac/mu/delta_g2_capped"] == 1.0
    assert terms["gac/mu/raw"] == pytest.approx((0.5 * 1.0 + 1.0) / 3.0)
    uncapped = GACController(**UNGUARDED)
    uncapped.update(proxies(sigma_s2=1.0, sigma_r2=1.0, delta_g2=10.0))
    assert uncapped.last_terms["gac/mu/delta_g2_capped"] == 10.0


def test_the_prior_is_the_warm_up_and_cosine_schedule_by_update():
    controller = GACController(prior_peak=0.8, prior_valley=0.2, prior_warmup_steps=2, prior_decay_steps=2)
    priors = []
    for _ in range(6):
        controller.update()
        priors.append(controller.last_terms["gac/mu/prior"])
    assert priors == pytest.approx([0.0, 0.4, 0.8, 0.5, 0.2, 0.2])
    assert controller.planned_mu() is None and not controller.in_warmup and not controller.is_meta_step()


# Moving averages and the throttle ----------------------------------------------------------------

def test_the_averages_start_at_the_first_measurement_then_decay():
    assert moving_average_step(None, 3.0, beta=0.99) == 3.0
    assert moving_average_step(3.0, 5.0, beta=0.99) == pytest.approx(3.02)
    controller = GACController(update_freq=1)
    controller.update(proxies(sigma_s2=2.0, sigma_r2=4.0, delta_g2=1.0))
    assert controller.last_terms["gac/mu/sigma_s2"] == 2.0  # no pull towards 0 at the start
    controller.update(proxies(sigma_s2=3.0, sigma_r2=0.0, delta_g2=1.0))
    terms = controller.last_terms
    assert terms["gac/mu/sigma_s2"] == pytest.approx(0.99 * 2.0 + 0.01 * 3.0)
    assert terms["gac/mu/sigma_r2"] == pytest.approx(0.99 * 4.0)
    assert terms["gac/mu/delta_g2"] == pytest.approx(1.0)


def test_proxies_refresh_on_the_first_update_then_every_update_freq_updates():
    controller = GACController(update_freq=10)
    due, refreshed, sigma_r2 = [], [], []
    for step in range(21):
        due.append(controller.needs_noise_proxies)
        controller.update(proxies(sigma_r2=float(step + 1)))
        refreshed.append(controller.last_terms["gac/stats_refreshed"])
        sigma_r2.append(controller.last_terms["gac/mu/sigma_r2"])
    assert [step for step, flag in enumerate(due) if flag] == [0, 10, 20]
    assert [step for step, flag in enumerate(refreshed) if flag] == [0, 10, 20]
    # Proxies handed in between refreshes (step 5) leave the averages as they were.
    assert sigma_r2[5] == sigma_r2[0] == 1.0
    assert sigma_r2[10] == pytest.approx(0.99 * 1.0 + 0.01 * 11.0)


def test_a_due_refresh_without_proxies_waits_for_the_next_measured_update():
    controller = GACController(update_freq=3)
    controller.update()  # due, nothing measured
    assert controller.needs_noise_proxies
    controller.update(proxies(sigma_r2=2.0))
    assert controller.last_terms["gac/stats_refreshed"] == 1.0 and controller.last_terms["gac/mu/sigma_r2"] == 2.0
    assert not controller.needs_noise_proxies


# The proxies on hand-made tensors ----------------------------------------------------------------

def test_sigma_r2_is_the_population_variance_of_the_sequence_advantages():
    advantages, _ = rollout_row_statistics(torch.ones(4, 3), torch.tensor([1.0, -1.0, 1.0, -1.0]), None)
    nlls = torch.tensor([1.0])
    assert measure_noise(advantages, torch.zeros(4), nlls, torch.zeros(1), trim=0.1).sigma_r2 == pytest.approx(1.0)


def test_sigma_r2_of_one_informative_group_of_two_follows_its_share():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    advantages = group_advantages(rewards, 4)
    measured = measure_noise(advantages, torch.zeros(8), torch.tensor([1.0]), torch.zeros(1), trim=0.1)
    # Each informative group of G z-scores has sum of squares (G - 1) std^2 / (std + 1e-4)^2, std = 0.5.
    assert measured.sigma_r2 == pytest.approx(3 * 0.25 / (0.5 + 1e-4) ** 2 / 8, rel=1e-5)
    assert measured.sigma_r2 == pytest.approx(0.37485, abs=1e-5)
    assert measured.informative_fraction == 0.5


def test_sigma_s2_is_the_trimmed_variance_of_the_demonstration_losses():
    assert trimmed_variance(torch.arange(1.0, 11.0), 0.1) == pytest.approx(5.25)  # var of 2..9
    assert trimmed_variance(torch.tensor([1.0, 2.0, 30.0]), 0.4) == pytest.approx(torch.tensor([1.0, 2.0, 30.0]).var(
        unbiased=False).item())  # fewer than 4 values: untrimmed
    assert trimmed_variance(torch.tensor([2.0, 2.0, 2.0, 2.0, 2.0]), 0.1) == 1e-8  # nothing dropped, floored
    with pytest.raises(ValueError, match=r"trim must be in \[0, 0.5\)"):
        trimmed_variance(torch.ones(4), 0.5)
    # Each demonstration's mean NLL over its own tokens.
    logps = torch.tensor([[-1.0, -3.0, -100.0], [-4.0, -100.0, -100.0]])
    nlls, _ = demonstration_row_statistics(logps, torch.tensor([[1, 1, 0], [1, 0, 0]]), chord_phi(logps))
    assert nlls.tolist() == [2.0, 4.0]


def test_disagreement_averages_squared_coefficient_gaps_per_row_then_over_both_streams():
    # A rollout with A = 1 at p = 0.5: (-0.25 + 1)^2 = 0.5625; a demonstration at p = 0.5: 0.25^2 = 0.0625.
    rollout, demonstration = log_probs(0.5, 0.5), log_probs(0.5)
    advantages, rollout_gaps = rollout_row_statistics(torch.ones(1, 2), torch.tensor([1.0]), chord_phi(rollout))
    nlls, demo_gaps = demonstration_row_statistics(demonstration, torch.ones(1, 1), chord_phi(demonstration))
    assert rollout_gaps.tolist() == pytest.approx([0.5625]) and demo_gaps.tolist() == pytest.approx([0.0625])
    assert measure_noise(advantages, rollout_gaps, nlls, demo_gaps, trim=0.1).delta_g2 == pytest.approx(0.3125)
    # With the plain NLL the SFT coefficient is -1: the rollout's gap is (-1 + 1)^2 = 0, the demonstration's 1.
    advantages, rollout_gaps = rollout_row_statistics(torch.ones(1, 2), torch.tensor([1.0]), None)
    nlls, demo_gaps = demonstration_row_statistics(demonstration, torch.ones(1, 1), None)
    assert measure_noise(advantages, rollout_gaps, nlls, demo_gaps, trim=0.1).delta_g2 == pytest.approx(0.5)


def test_rows_are_weighted_equally_and_rows_without_tokens_are_left_out():
    logps = log_probs(0.5, 0.5, 0.5).expand(3, 3).clone()
    logps[2] = float("-inf")  # padding may hold anything
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    per_token = torch.tensor([[1.0, 1.0, 1.0], [3.0, 9.0, 9.0], [5.0, 5.0, 5.0]])
    advantages, gaps = rollout_row_statistics(mask, per_token, chord_phi(logps))
    assert advantages[:2].tolist() == [1.0, 3.0] and advantages[2].isnan()
    assert gaps[:2].tolist() == pytest.approx([0.75**2, 2.75**2]) and gaps[2].isnan()
    nlls, demo_gaps = torch.tensor([1.0, math.nan]), torch.tensor([0.0625, math.nan])
    measured = measure_noise(advantages, gaps, nlls, demo_gaps, trim=0.1)
    assert measured.sigma_r2 == pytest.approx(1.0)  # variance of [1, 3]
    assert measured.delta_g2 == pytest.approx((0.75**2 + 2.75**2 + 0.0625) / 3)
    assert measure_noise(advantages, gaps, torch.tensor([math.nan]), torch.tensor([math.nan]), trim=0.1) is None


# Resume and settings -----------------------------------------------------------------------------

def run(controller, steps, start=0):
    mus, terms = [], []
    for step in range(start, start + steps):
        measured = NoiseProxies(sigma_r2=0.3 * (step % 4), sigma_s2=1.0 + 0.1 * step, delta_g2=0.05 * step,
                                informative_fraction=0.5)
        mus.append(controller.update(ControllerStats(entropy=1.0 / (step + 1), noise_proxies=measured)))
        terms.append(controller.last_terms)
    return mus, terms


def test_state_dict_round_trip_resumes_exactly():
    settings = dict(update_freq=3, prior_warmup_steps=4, prior_decay_steps=6, mu_change_cap=0.02)
    reference = GACController(**settings)
    expected_mus, expected_terms = run(reference, 12)

    first_half = GACController(**settings)
    run(first_half, 7)
    state = json.loads(json.dumps(first_half.state_dict()))  # as a checkpoint stores it
    resumed = GACController(**settings)
    resumed.load_state_dict(state)
    assert resumed.mu == first_half.mu and resumed.needs_noise_proxies == first_half.needs_noise_proxies
    mus, terms = run(resumed, 5, start=7)
    assert mus == expected_mus[7:]  # bit for bit
    assert terms == expected_terms[7:]


def test_a_fresh_controller_state_round_trips_too():
    controller = GACController()
    restored = GACController()
    restored.load_state_dict(json.loads(json.dumps(controller.state_dict())))
    assert run(restored, 3) == run(controller, 3)


@pytest.mark.parametrize(
    ("setting", "message"),
    [({"ema_beta": 1.0}, r"ema_beta is a decay and must be in \[0, 1\)"),
     ({"mu_change_cap": 0.0}, "mu_change_cap must be > 0"),
     ({"update_freq": 0}, "update_freq must be >= 1"),
     ({"blend": 1.5}, r"blend must be in \[0, 1\]"),
     ({"mu_min": 0.6, "mu_max": 0.4}, "must not exceed mu_max"),
     ({"delta_cap_ratio": -1.0}, "delta_cap_ratio must be >= 0"),
     ({"prior_decay_steps": -1}, "prior_warmup_steps and prior_decay_steps must be >= 0")],
)
def test_invalid_settings_are_refused(setting, message):
    with pytest.raises(ValueError, match=message):
        GACController(**setting)
