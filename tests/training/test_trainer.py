"""End-to-end checks of AMFTTrainer on a toy task: single-digit sums, reward 1 for the right answer."""

import math

import pytest
import torch
from datasets import Dataset

from amft.algorithm import FixedMuController
from amft.models import build_tiny_model
from amft.training import METHODS, AMFTConfig, AMFTTrainer
from trainer_probes import first_rollouts, series

PROMPTS = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a in range(10) for b in range(10)]
DEMOS = [{"prompt": row["prompt"], "completion": row["answer"]} for row in PROMPTS]


def sum_reward(prompts, completions, answer, **kwargs):
    return [1.0 if completion.strip() == expected else 0.0 for completion, expected in zip(completions, answer)]


def make_trainer(tmp_path, controller=None, **overrides):
    torch.set_num_threads(2)
    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    settings = dict(
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        bf16=False,  # exact float32 arithmetic, so gradients can be compared tightly
        seed=0,
        max_steps=40,
        learning_rate=3e-3,
        per_device_train_batch_size=32,
        num_generations=4,
        max_completion_length=4,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        gradient_checkpointing=False,
        disable_tqdm=True,
        sft_batch_size=32,
    )
    if overrides.get("method", "amft") == "amft":  # the controller's settings; other methods refuse them
        settings.update(amft_warmup_steps=10, entropy_calibration_steps=3, meta_period=5, meta_batch_size=4,
                        meta_normalization="cosine", meta_lr=0.05, entropy_lr=0.05)
    settings.update(overrides)
    return AMFTTrainer(
        model=model,
        reward_funcs=sum_reward,
        args=AMFTConfig(**settings),
        train_dataset=Dataset.from_list(PROMPTS),
        demo_dataset=DEMOS,
        meta_dataset=PROMPTS[:20],
        processing_class=tokenizer,
        controller=controller,
    )



@pytest.mark.slow
def test_amft_training_raises_reward_and_logs_both_controller_terms(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=100)
    trainer.train()
    rewards = series(trainer, "reward")
    assert sum(rewards[:5]) / 5 < 0.05  # a random model cannot add
    assert sum(rewards[-15:]) / 15 > 0.15
    mus = series(trainer, "amft/mu")
    assert mus[:10] == [1.0] * 10  # SFT warm-up
    assert all(0.05 <= mu <= 0.95 for mu in mus[10:])
    # Meta terms only on main-phase steps t = 5, 10, ... ; the entropy term on every main-phase step.
    meta_steps = [row["step"] for row in trainer.state.log_history if row.get("amft/meta_gradient", 0.0) != 0.0]
    assert meta_steps and all((step - 10) % 5 == 0 for step in meta_steps)
    assert len(series(trainer, "amft/val_reward")) == 90 // 5
    assert len(series(trainer, "amft/target_entropy")) > 0
    assert all(loss == loss for loss in series(trainer, "amft/sft_loss"))  # no NaN


@pytest.mark.slow
def test_meta_step_gradient_equals_combined_backward(tmp_path):
    """On a meta step the update is assembled from g_RL and g_SFT; it must be the step a combined
    backward would have taken. Compare one meta step against the same step with the meta term off
    (plain SGD, because Adam's first step is lr * sign(g) and would amplify round-off in tiny entries)."""
    results = {}
    for use_meta in (True, False):
        trainer = make_trainer(tmp_path / str(use_meta), max_steps=1, amft_warmup_steps=0, meta_period=1,
                               use_meta_term=use_meta, use_entropy_term=False, meta_lr=0.0, optim="sgd")
        trainer.train()
        results[use_meta] = [p.detach().clone() for p in trainer.model.parameters()]
    for with_meta, without_meta in zip(results[True], results[False]):
        assert torch.allclose(with_meta, without_meta, atol=1e-6)


def test_constant_mu_one_is_plain_sft_without_rollouts(tmp_path):
    trainer = make_trainer(tmp_path, controller=FixedMuController(1.0), max_steps=3)
    trainer.train()
    assert series(trainer, "reward") == []  # nothing was generated
    assert len(series(trainer, "amft/sft_loss")) == 3


def test_meta_controller_requires_validation_prompts(tmp_path):
    model, tokenizer = build_tiny_model("tiny-test")
    with pytest.raises(ValueError, match="meta_dataset"):
        AMFTTrainer(model=model, reward_funcs=sum_reward,
                    args=AMFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=8,
                                    num_generations=4),
                    train_dataset=Dataset.from_list(PROMPTS), demo_dataset=DEMOS, processing_class=tokenizer)


def test_config_rejects_unknown_method(tmp_path):
    with pytest.raises(ValueError, match="method must be one of"):
        AMFTConfig(output_dir=str(tmp_path), method="magic")


@pytest.mark.parametrize(
    ("method", "expected_mu"),
    [
        ("sft", [1.0] * 6),
        ("grpo", [0.0] * 6),
        ("fixed-mu", [0.3] * 6),
        ("luffy", [0.0] * 6),
        ("srft", [0.0] * 6),
        ("sft-then-rl", [1.0] * 3 + [0.0] * 3),
        # CHORD: linear rise 0 -> 0.8 over 2 steps, cosine decay to 0.2 over 2 steps, then flat.
        ("chord", [0.0, 0.4, 0.8, 0.5, 0.2, 0.2]),
    ],
)
def test_each_method_is_a_balance_schedule_of_the_same_trainer(tmp_path, method, expected_mu):
    own_settings = {"fixed-mu": dict(mu=0.3), "sft-then-rl": dict(switch_step=3),
                    "chord": dict(chord_mu_peak=0.8, chord_mu_valley=0.2, chord_mu_warmup_steps=2, chord_mu_decay_steps=2)}
    trainer = make_trainer(tmp_path, method=method, max_steps=6, **own_settings.get(method, {}))
    trainer.train()
    assert series(trainer, "amft/mu") == pytest.approx(expected_mu)
    generated_steps = [row["step"] for row in trainer.state.log_history if "reward" in row]
    assert generated_steps == [step for step, mu in enumerate(expected_mu, start=1) if mu < 1.0]
    sft_steps = [row["step"] for row in trainer.state.log_history if "amft/sft_loss" in row]
    assert sft_steps == [step for step, mu in enumerate(expected_mu, start=1) if mu > 0.0]


def test_chord_phi_weights_the_demonstration_loss(tmp_path):
    losses = {}
    for method in ("fixed-mu", "chord"):
        # A flat CHORD schedule at 0.5 (CHORD-phi): the same mu as fixed-mu, only phi differs.
        own_settings = dict(mu=0.5) if method == "fixed-mu" else dict(
            chord_mu_peak=0.5, chord_mu_valley=0.5, chord_mu_warmup_steps=0, chord_mu_decay_steps=0)
        trainer = make_trainer(tmp_path / method, method=method, max_steps=1, **own_settings)
        trainer.train()
        assert series(trainer, "amft/mu") == [0.5]
        losses[method] = series(trainer, "amft/sft_loss")[0]
    # phi = p(1 - p) <= 1/4, so the weighted NLL of the same first batch is smaller.
    assert 0.0 < losses["chord"] < 0.25 * losses["fixed-mu"] + 1e-6



@pytest.mark.parametrize("method", ["luffy", "srft"])
def test_in_group_methods_place_the_demonstration_last_in_each_group(tmp_path, method):
    trainer = make_trainer(tmp_path, method=method)
    batch, rollouts = first_rollouts(trainer)
    group = trainer.num_generations
    off_policy = rollouts["off_policy"]
    assert off_policy.tolist() == [i % group == group - 1 for i in range(len(batch))]
    tokenizer = trainer.processing_class
    for row in off_policy.nonzero().flatten().tolist():
        ids = rollouts["completion_ids"][row][rollouts["completion_mask"][row].bool()].tolist()
        assert tokenizer.decode(ids, skip_special_tokens=True) == batch[row]["answer"]
    # The untrained model fails, so each correct demonstration holds its group's whole positive advantage.
    advantages = rollouts["advantages"].view(-1, group)
    assert (advantages[:, -1] > 1.0).all()
    assert torch.allclose(advantages.sum(dim=1), torch.zeros(advantages.size(0)), atol=1e-4)


def test_luffy_and_srft_train_on_the_mixed_groups(tmp_path):
    for method in ("luffy", "srft"):
        trainer = make_trainer(tmp_path / method, method=method, max_steps=2)
        trainer.train()
        assert series(trainer, "demonstrations_in_groups") == [8.0, 8.0]
        assert all(loss == loss for loss in series(trainer, "amft/rl_loss"))
    weights = series(trainer, "srft/demo_weight")
    entropies = series(trainer, "amft/entropy")
    assert weights == pytest.approx([0.5 * math.exp(-h) for h in entropies], rel=1e-4)


def test_relift_interleaves_an_sft_step_when_the_hard_prompt_buffer_fills(tmp_path):
    # 8 prompts per step; the untrained model fails all of them, so every RL step fills the buffer.
    trainer = make_trainer(tmp_path, method="relift", max_steps=4, relift_buffer_size=8, success_reward=1.0)
    trainer.train()
    assert series(trainer, "amft/mu") == [0.0, 1.0, 0.0, 1.0]
    assert [row["step"] for row in trainer.state.log_history if "reward" in row] == [1, 3]
    assert [row["step"] for row in trainer.state.log_history if "amft/sft_loss" in row] == [2, 4]
    assert trainer.controller.sft_steps == 2 and len(trainer.controller.buffer) == 0


def test_relift_needs_a_success_reward(tmp_path):
    with pytest.raises(ValueError, match="success_reward"):
        make_trainer(tmp_path, method="relift")


def test_config_rejects_loss_types_the_trainer_does_not_apply_and_takes_trls_vllm_defaults(tmp_path):
    with pytest.raises(ValueError, match="loss_type"):
        AMFTConfig(output_dir=str(tmp_path), use_cpu=True, loss_type="cispo")
    args = AMFTConfig(output_dir=str(tmp_path), use_cpu=True, use_vllm=True)  # the correction is applied
    assert args.vllm_importance_sampling_correction and args.vllm_importance_sampling_mode == "sequence_mask"


def test_lora_adapters_train_through_the_meta_step_and_leave_the_base_weights(tmp_path):
    from peft import LoraConfig

    torch.set_num_threads(2)
    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = AMFTTrainer(
        model=model, reward_funcs=sum_reward, processing_class=tokenizer,
        args=AMFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, seed=0, max_steps=2, learning_rate=1e-2,
                        per_device_train_batch_size=16, num_generations=4, max_completion_length=4, logging_steps=1,
                        report_to="none", save_strategy="no", gradient_checkpointing=False, disable_tqdm=True,
                        amft_warmup_steps=0, meta_period=1, meta_batch_size=2, sft_batch_size=8,
                        meta_normalization="cosine", meta_lr=0.05, use_entropy_term=False),
        train_dataset=Dataset.from_list(PROMPTS), demo_dataset=DEMOS, meta_dataset=PROMPTS[:8],
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    trainer.train()
    assert len(series(trainer, "amft/val_reward")) == 2  # both steps were meta steps
    assert all(0.0 <= share <= 1.0 for share in series(trainer, "amft/val_frac_reward_zero_std"))
    assert len(series(trainer, "amft/val_frac_reward_zero_std")) == 2
    trained = dict(trainer.model.named_parameters())
    lora = [name for name in trained if "lora_" in name]
    assert lora and all(trained[name].requires_grad for name in lora)
    for name, value in base.items():
        module, _, leaf = name.rpartition(".")
        wrapped = trained.get(f"base_model.model.{name}", trained.get(f"base_model.model.{module}.base_layer.{leaf}"))
        assert torch.equal(wrapped.detach(), value), name
    assert any(not torch.all(trained[name] == 0) for name in lora if "lora_B" in name)


META_OPTIONS = dict(max_steps=4, amft_warmup_steps=2, entropy_calibration_steps=1, meta_period=1,
                    per_device_train_batch_size=8, meta_batch_size=2, sft_batch_size=8, meta_normalization="raw",
                    inner_lr=1e-3, meta_lr=1.0)


def test_meta_options_adam_direction_average_and_measured_entropy_run_and_log_the_slope(tmp_path):
    adam = make_trainer(tmp_path / "adam", meta_direction="adam", meta_signal_ema=0.5, entropy_direction="measured",
                        **META_OPTIONS)
    adam.train()
    slopes = series(adam, "amft/entropy_slope")
    assert len(slopes) == 2 and all(math.isfinite(slope) and slope != 0.0 for slope in slopes)  # main steps 1, 2
    assert len(series(adam, "amft/val_reward")) == 2
    assert len(series(adam, "amft/meta_gradient_ema")) == 2
    # The measured entropy term: eta_H (H* - H) times the averaged slope.
    for row in (row for row in adam.state.log_history if "amft/entropy_slope" in row):
        gap = row["amft/target_entropy"] - row["amft/entropy"]
        assert row["amft/entropy_term"] == pytest.approx(0.05 * gap * row["amft/entropy_slope_ema"], rel=1e-5)

    # Up to the first meta step the runs are the same; there Adam's look-ahead reads other dot products.
    sgd = make_trainer(tmp_path / "sgd", **{**META_OPTIONS, "max_steps": 3})
    sgd.train()
    assert series(sgd, "amft/mu")[:2] == series(adam, "amft/mu")[:2] == [1.0, 1.0]
    assert series(sgd, "amft/entropy_slope")[0] != pytest.approx(slopes[0], rel=1e-3)


def test_adam_meta_direction_is_refused_without_adam_moments(tmp_path):
    with pytest.raises(ValueError, match="Adam-family optim"):
        AMFTConfig(output_dir=str(tmp_path), use_cpu=True, optim="sgd", meta_direction="adam")
    trainer = make_trainer(tmp_path, meta_direction="adam", **{**META_OPTIONS, "max_steps": 2, "amft_warmup_steps": 1})
    trainer.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=1e-3, momentum=0.9)
    with pytest.raises(ValueError, match="exp_avg_sq"):
        trainer.train()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("meta_direction", "lbfgs", "meta_direction must be one of"),
     ("meta_signal_ema", 1.0, r"meta_signal_ema is a decay and must be in \[0, 1\)"),
     ("entropy_direction", "up", "entropy_direction must be one of")],
)
def test_config_rejects_invalid_meta_options(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message):
        AMFTConfig(output_dir=str(tmp_path), use_cpu=True, **{field: value})


GAC_KEYS = ("gac/mu/raw", "gac/mu/ada", "gac/mu/prior", "gac/mu/value", "gac/mu/sigma_s2", "gac/mu/sigma_r2",
            "gac/mu/delta_g2", "gac/mu/delta_g2_capped", "gac/mu/alpha", "gac/mu/blend_weight", "gac/stats_refreshed")


def test_gac_trains_both_losses_every_step_and_logs_its_terms(tmp_path):
    trainer = make_trainer(tmp_path, method="gac", max_steps=3, gac_update_freq=2)
    trainer.train()
    for key in GAC_KEYS + ("amft/mu", "amft/entropy", "amft/sft_loss", "amft/rl_loss", "reward"):
        values = series(trainer, key)
        assert len(values) == 3 and all(math.isfinite(value) for value in values), key
    assert series(trainer, "gac/stats_refreshed") == [1.0, 0.0, 1.0]  # the first step, then every 2
    assert len(series(trainer, "gac/informative_rollout_fraction")) == 2
    # The prior scaled to max_steps 3: a rise over round(0.6) = 1 step, a cosine decay over 2.
    assert series(trainer, "gac/mu/prior") == pytest.approx([0.0, 0.85, 0.5])
    mus = [0.5] + series(trainer, "amft/mu")
    assert all(abs(after - before) <= 0.01 + 1e-12 for before, after in zip(mus, mus[1:]))
    assert series(trainer, "gac/mu/value") == mus[1:]


def test_gac_measures_its_proxies_on_the_rows_of_the_step(tmp_path):
    trainer = make_trainer(tmp_path, method="gac")
    batch, rollouts = first_rollouts(trainer)
    advantages = torch.linspace(-1.0, 1.0, len(batch))
    rollouts["advantages"] = advantages
    with torch.no_grad():
        forward = trainer._rollout_forward(trainer.model, rollouts)
        trainer._entropy_of_step(trainer.model, forward)  # keeps the rollouts' token log-probs
        trainer._open_demonstrations(accumulation=1)
        demonstrations = trainer._step_demonstrations.pop(0)
        _, demo_logps = trainer._sft_forward(trainer.model, demonstrations)
    rollout_logps, rollout_mask, demo_mask = forward.logps, forward.sampled, demonstrations.completion_mask
    measured = trainer._noise_proxies(trainer.model, rollouts, (demo_logps, demo_mask))

    def phi(logps):
        return logps.exp() * (1 - logps.exp())

    rows = [i for i in range(len(batch)) if rollout_mask[i].any()]
    assert measured.sigma_r2 == pytest.approx(advantages[rows].var(unbiased=False).item(), rel=1e-6)
    nlls = sorted(-demo_logps[i][demo_mask[i].bool()].mean().item() for i in range(len(demo_logps)))
    trimmed = torch.tensor(nlls[3:-3], dtype=torch.float64)  # 32 demonstrations: 3 dropped at each end
    assert measured.sigma_s2 == pytest.approx(trimmed.var(unbiased=False).item(), rel=1e-6)
    gaps = [((advantages[i] - phi(rollout_logps[i][rollout_mask[i].bool()])) ** 2).mean().item() for i in rows]
    gaps += [(phi(demo_logps[i][demo_mask[i].bool()]) ** 2).mean().item() for i in range(len(demo_logps))]
    assert measured.delta_g2 == pytest.approx(sum(gaps) / len(gaps), rel=1e-5)
    assert measured.informative_fraction == 1.0


def test_gac_weights_the_demonstration_loss_by_phi_unless_switched_off(tmp_path):
    losses = {}
    for use_phi in (True, False):
        trainer = make_trainer(tmp_path / str(use_phi), method="gac", max_steps=1, gac_use_phi=use_phi)
        trainer.train()
        losses[use_phi] = series(trainer, "amft/sft_loss")[0]
    # phi = p(1 - p) <= 1/4: the weighted NLL of the same first batch is at most a quarter of the plain one.
    assert 0.0 < losses[True] < 0.25 * losses[False] + 1e-6


@pytest.mark.slow
def test_gac_resumes_its_averages_from_a_checkpoint(tmp_path):
    settings = dict(method="gac", max_steps=4, gac_update_freq=3, save_strategy="steps", save_steps=2)
    reference = make_trainer(tmp_path / "reference", **settings)
    reference.train()
    resumed = make_trainer(tmp_path / "resumed", **settings)
    resumed.train(resume_from_checkpoint=str(tmp_path / "reference" / "run" / "checkpoint-2"))
    # The resumed history holds the checkpoint's first two steps, then its own.
    for key in GAC_KEYS + ("amft/mu",):
        assert len(series(resumed, key)) == 4 and series(resumed, key) == series(reference, key), key


def test_a_resumption_that_changes_a_setting_the_checkpoint_puts_back_is_refused(tmp_path):
    settings = dict(method="fixed-mu", mu=0.5, max_steps=2, save_strategy="steps", save_steps=2)
    make_trainer(tmp_path / "first", **settings).train()
    checkpoint = str(tmp_path / "first" / "run" / "checkpoint-2")
    # the checkpoint's controller state holds mu, its optimizer and scheduler states the learning rate
    for change, named in (({"mu": 0.3}, "mu: 0.5 -> 0.3"), ({"learning_rate": 1e-3}, "learning_rate: 0.003 -> 0.001")):
        resumed = make_trainer(tmp_path / "resumed", **{**settings, **change, "max_steps": 4})
        with pytest.raises(ValueError, match=f"{named}.*resume with the checkpoint's values"):
            resumed.train(resume_from_checkpoint=checkpoint)
    resumed = make_trainer(tmp_path / "resumed", **{**settings, "max_steps": 4})  # a longer run is a resumption
    resumed.train(resume_from_checkpoint=checkpoint)
    assert resumed.state.global_step == 4


def test_checkpoints_of_longer_rollout_cycles_fall_on_cycle_ends_and_resume_exactly(tmp_path):
    settings = dict(method="fixed-mu", mu=0.5, max_steps=4, per_device_train_batch_size=16, steps_per_generation=2,
                    save_strategy="steps", save_steps=2)
    with pytest.raises(ValueError, match="serve 2 optimizer steps .* save_steps a multiple of 2"):
        AMFTConfig(output_dir=str(tmp_path), use_cpu=True, **{**settings, "save_steps": 3})
    with pytest.raises(ValueError, match="serve 2 optimizer steps .* give max_steps a multiple of 2"):
        AMFTConfig(output_dir=str(tmp_path), use_cpu=True, **{**settings, "max_steps": 5})
    # a generation batch of one micro-batch, with two micro-batches a step: the step's rollouts would come
    # from two generations
    with pytest.raises(ValueError, match="steps_per_generation=1 must be a multiple of gradient_accumulation_steps=2"):
        AMFTConfig(output_dir=str(tmp_path), use_cpu=True, method="fixed-mu", per_device_train_batch_size=16,
                   gradient_accumulation_steps=2, generation_batch_size=16)
    reference = make_trainer(tmp_path / "reference", **settings)
    reference.train()
    resumed = make_trainer(tmp_path / "resumed", **settings)
    resumed.train(resume_from_checkpoint=str(tmp_path / "reference" / "run" / "checkpoint-2"))
    # the rollouts of steps 3 and 4 are generated once, from the checkpoint's state, as in the reference
    assert series(resumed, "amft/entropy") == series(reference, "amft/entropy")


def test_gac_settings_are_checked_when_the_config_is_made(tmp_path):
    def config(**settings):
        return AMFTConfig(output_dir=str(tmp_path), use_cpu=True, method="gac", **settings)

    args = config(max_steps=10)
    controller = METHODS["gac"].controller(args)
    assert (controller.prior_warmup_steps, controller.prior_decay_steps) == (2, 8)
    controller = METHODS["gac"].controller(config(max_steps=10, gac_prior_warmup_steps=5))
    assert (controller.prior_warmup_steps, controller.prior_decay_steps) == (5, 5)
    with pytest.raises(ValueError, match="default to shares of max_steps, which is not set"):
        config()
    assert METHODS["gac"].controller(config(gac_prior_warmup_steps=200, gac_prior_decay_steps=800)).prior(200) == 0.85
    with pytest.raises(ValueError, match=r"method 'gac': ema_beta is a decay"):
        config(max_steps=10, gac_ema_beta=1.0)
    with pytest.raises(ValueError, match=r"gac_trim must be in \[0, 0.5\)"):
        config(max_steps=10, gac_trim=0.5)
    # Another method would ignore them, so it refuses them.
    with pytest.raises(ValueError, match=r"gac_ema_beta=1.0 is a setting of gac; method 'grpo' does not read it"):
        AMFTConfig(output_dir=str(tmp_path), use_cpu=True, method="grpo", gac_ema_beta=1.0)
    with pytest.raises(ValueError, match=r"hpt_sft_coef=0.5 is a setting of hpt, superrl; method 'amft'"):
        AMFTConfig(output_dir=str(tmp_path), use_cpu=True, method="amft", hpt_sft_coef=0.5)
    AMFTConfig(output_dir=str(tmp_path), use_cpu=True, method="superrl", hpt_sft_coef=0.5)


def test_training_raises_no_deprecation_warning_for_names_trl_calls(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # TRL's rollouts call renamed checkpointing methods
        make_trainer(tmp_path, method="grpo", max_steps=2, gradient_checkpointing=True).train()
