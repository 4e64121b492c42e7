"""The engine contract with TRL: method `grpo` is GRPOTrainer, and every GRPO setting that changes
TRL's loss is either honoured by AMFT's L_RL (the same loss and gradient as TRL's on a hand-made
batch) or refused with a message naming it."""

import dataclasses
import inspect
import json
import re

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, set_seed
from trl import GRPOConfig, GRPOTrainer

from amft.models import build_tiny_model
from amft.training import AMFTConfig, AMFTTrainer

PROMPTS = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a in range(10) for b in range(10)]
DEMOS = [{"prompt": row["prompt"], "completion": row["answer"]} for row in PROMPTS]
BASE = dict(
    use_cpu=True, bf16=False, seed=0, learning_rate=1e-2, per_device_train_batch_size=8, num_generations=4,
    max_completion_length=6, report_to="none", save_strategy="no", gradient_checkpointing=False, disable_tqdm=True,
    logging_steps=1,
)

#: What an honoured setting is told apart from on the hand-made batch: TRL's defaults, except where the
#: default is the setting itself (dapo) or equals it on one micro-batch (bnpo's token mean is dapo's there).
CONTRAST = {"loss_type=dapo": {"loss_type": "grpo"}, "loss_type=bnpo": {"loss_type": "grpo"}}
#: Each GRPOConfig field that TRL's `_compute_loss` reads, with a non-default value: honoured or refused.
HONOURED = {
    "loss_type=grpo": {"loss_type": "grpo"},
    "loss_type=bnpo": {"loss_type": "bnpo"},
    "loss_type=dr_grpo": {"loss_type": "dr_grpo"},
    "loss_type=dapo": {"loss_type": "dapo"},
    "epsilon": {"epsilon": 0.05},
    "epsilon_high": {"epsilon_high": 0.5},
    "delta": {"delta": 1.05, "epsilon_high": 0.5},
    "importance_sampling_level": {"importance_sampling_level": "sequence", "loss_type": "grpo"},
    "beta": {"beta": 0.3},
    "use_bias_correction_kl": {"beta": 0.3, "use_bias_correction_kl": False},
    "entropy_coef": {"entropy_coef": 0.05},
    "vllm_importance_sampling_correction": {},  # TRL's defaults: sequence_mask, C_max 3
    "vllm_importance_sampling_mode=token_truncate": {"vllm_importance_sampling_mode": "token_truncate"},
}
#: Settings of vLLM rollouts. vLLM is not installed here: the trainers are built without it, then told that
#: their rollouts came from it, and the hand-made batch carries the ratio TRL computes while scoring them.
VLLM_ROLLOUTS = {"vllm_importance_sampling_correction", "vllm_importance_sampling_mode=token_truncate"}
REFUSED = {
    "loss_type=cispo": ({"loss_type": "cispo"}, "loss_type"),
    "loss_type=sapo": ({"loss_type": "sapo"}, "loss_type"),
    "loss_type=vespo": ({"loss_type": "vespo"}, "loss_type"),
    "loss_type=luspo": ({"loss_type": "luspo"}, "loss_type"),
    "top_entropy_quantile": ({"top_entropy_quantile": 0.5}, "top_entropy_quantile"),
    "off_policy_mask_threshold": ({"off_policy_mask_threshold": 0.1}, "off_policy_mask_threshold"),
    "use_adaptive_entropy": ({"use_adaptive_entropy": True}, "use_adaptive_entropy"),
    "router_aux_loss_coef": ({"router_aux_loss_coef": 0.1}, "router_aux_loss_coef"),
}
#: Fields that act only together with a setting above (a refused loss type or adaptive entropy, vLLM), or
#: that enter the loss through the aggregation every loss type shares (checked by the loss_type rows).
DEPENDENT = {
    "sapo_temperature_neg": "loss_type=sapo", "sapo_temperature_pos": "loss_type=sapo",
    "vespo_k_neg": "loss_type=vespo", "vespo_k_pos": "loss_type=vespo", "vespo_lambda_neg": "loss_type=vespo",
    "vespo_lambda_pos": "loss_type=vespo", "entropy_coef_delta": "use_adaptive_entropy",
    "entropy_coef_max": "use_adaptive_entropy", "entropy_coef_min": "use_adaptive_entropy",
    "entropy_target": "use_adaptive_entropy", "use_vllm": "vllm_importance_sampling_correction",
    "max_completion_length": "loss_type=dr_grpo", "steps_per_generation": "loss_type=dapo",
}
#: Trainer attributes named differently from the config field they come from.
ATTRIBUTE_FIELDS = {"epsilon_low": "epsilon"}


def digit_share_reward(prompts, completions, **kwargs):
    """The share of digits in a completion: graded, so an untrained model's groups have a signal."""
    return [sum(c.isdigit() for c in completion) / max(len(completion), 1) for completion in completions]


def test_every_loss_setting_of_trl_is_honoured_or_refused():
    """Walks the GRPOConfig fields TRL's loss reads (from its source), so a new TRL setting fails here."""
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    source = inspect.getsource(GRPOTrainer._compute_loss)
    read = set(re.findall(r"self\.args\.(\w+)", source)) | set(re.findall(r"self\.(\w+)", source))
    loss_fields = {ATTRIBUTE_FIELDS.get(name, name) for name in read} & fields
    covered = {key.split("=")[0] for key in (*HONOURED, *REFUSED)} | set(DEPENDENT)
    assert loss_fields - covered == set()


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny model saved to a folder, so TRL can build the reference model of beta > 0 from its path."""
    torch.manual_seed(0)
    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    path = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(path)
    return str(path), tokenizer


def trainers(saved_model, tmp_path, settings, accumulation=1, vllm_rollouts=False):
    path, tokenizer = saved_model
    torch.set_num_threads(1)
    common = dict(BASE, output_dir=str(tmp_path), gradient_accumulation_steps=accumulation, **settings)
    built = []
    for trainer_class, config_class, extra in (
        (GRPOTrainer, GRPOConfig, {}),
        (AMFTTrainer, AMFTConfig, {"demo_dataset": DEMOS, "args": None}),
    ):
        config = config_class(**common, **({"method": "grpo"} if config_class is AMFTConfig else {}))
        model = AutoModelForCausalLM.from_pretrained(path)
        kwargs = dict(model=model, reward_funcs=digit_share_reward, train_dataset=Dataset.from_list(PROMPTS),
                      processing_class=tokenizer, **extra)
        kwargs["args"] = config
        trainer = trainer_class(**kwargs)
        trainer.use_vllm = vllm_rollouts
        built.append(trainer)
    return built


def hand_made_batch(model, seed=1, sampling_mode="sequence_mask"):
    """Prompts and completions of random tokens with padding, advantages of both signs, old log-probs
    off the current policy (so clipping and delta bite), a reference policy and the vLLM ratio of
    `sampling_mode`."""
    generator = torch.Generator().manual_seed(seed)
    vocabulary = model.config.vocab_size
    prompt_ids = torch.randint(3, vocabulary, (4, 3), generator=generator)
    completion_ids = torch.randint(3, vocabulary, (4, 6), generator=generator)
    completion_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
    with torch.no_grad():
        logits = model(input_ids=torch.cat([prompt_ids, completion_ids], 1)).logits[:, 2:-1]
        logps = torch.log_softmax(logits.float(), -1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": torch.ones_like(prompt_ids),
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.tensor([1.2, -0.7, 0.4, -1.5]),
        "old_per_token_logps": logps + 0.3 * torch.randn(logps.shape, generator=generator),
        "ref_per_token_logps": logps + 0.5 * torch.randn(logps.shape, generator=generator),
        "num_items_in_batch": completion_mask.sum(),
        # The ratio TRL computes while scoring vLLM rollouts, set by hand: per sequence, masked to 0 outside
        # [C_min, C_max]; or per token, clamped at C_max = 3.
        "importance_sampling_ratio": (
            torch.tensor([[1.4], [0.0], [0.6], [2.2]]) if sampling_mode.startswith("sequence")
            else torch.rand(logps.shape, generator=generator).mul(3.5).clamp(max=3.0)
        ),
    }


def loss_and_gradient(trainer, batch, accumulation):
    trainer.model.train()
    trainer.model.zero_grad()
    trainer.current_gradient_accumulation_steps = accumulation
    if isinstance(trainer, AMFTTrainer):
        trainer._plan = trainer._plan_step()
        # What TRL buffers when a step opens: its micro-batches, which the controller reads as a whole.
        trainer._buffered_inputs = [batch] * accumulation
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in trainer.model.parameters()]


@pytest.mark.parametrize("accumulation", [1, 2])
@pytest.mark.parametrize("name", list(HONOURED))
def test_honoured_setting_gives_trls_loss_and_gradient(saved_model, tmp_path, name, accumulation):
    trl_trainer, amft_trainer = trainers(saved_model, tmp_path, HONOURED[name], accumulation, name in VLLM_ROLLOUTS)
    batch = hand_made_batch(trl_trainer.model, sampling_mode=trl_trainer.vllm_importance_sampling_mode)
    trl_loss, trl_grad = loss_and_gradient(trl_trainer, batch, accumulation)
    amft_loss, amft_grad = loss_and_gradient(amft_trainer, batch, accumulation)
    torch.testing.assert_close(amft_loss, trl_loss, rtol=1e-5, atol=1e-7)
    for ours, theirs in zip(amft_grad, trl_grad):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-7)
    # The setting matters on this batch: TRL's defaults give another loss.
    default_trainer, _ = trainers(saved_model, tmp_path / "default", CONTRAST.get(name, {}), accumulation)
    default_loss, _ = loss_and_gradient(default_trainer, batch, accumulation)
    assert not torch.isclose(default_loss, trl_loss, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("name", list(REFUSED))
def test_unimplemented_setting_is_refused_with_its_name(tmp_path, name):
    settings, field = REFUSED[name]
    with pytest.raises(ValueError, match=field):
        AMFTConfig(**BASE, output_dir=str(tmp_path), method="grpo", **settings)


@pytest.mark.slow
@pytest.mark.parametrize("accumulation", [1, 2])
def test_method_grpo_trains_as_grpo_trainer(saved_model, tmp_path, accumulation):
    """Two optimizer steps of the whole loop (generation, scoring, loss, backward, SGD) give the same weights."""
    settings = {"max_steps": 2, "optim": "sgd", "per_device_train_batch_size": 8 // accumulation}
    results = []
    for trainer in trainers(saved_model, tmp_path, settings, accumulation):
        set_seed(0)  # each run samples from the same random state
        trainer.train()
        results.append([p.detach().clone() for p in trainer.model.parameters()])
    initial = AutoModelForCausalLM.from_pretrained(saved_model[0])
    assert any(not torch.equal(p, q) for p, q in zip(results[0], initial.parameters()))
    for ours, theirs in zip(results[1], results[0]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_checkpoint_holds_what_resume_from_checkpoint_reads_and_the_controller(saved_model, tmp_path):
    """The overridden save and load hooks: the Trainer's files plus AMFT's state, marked complete last;
    resuming restores the step, the controller and the side streams."""
    from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME

    from amft.training.checkpoint import AMFT_STATE_FILE, COMPLETE_MARKER

    path, tokenizer = saved_model
    settings = dict(BASE, method="amft", amft_warmup_steps=1, entropy_calibration_steps=1, meta_period=1,
                    meta_batch_size=2, sft_batch_size=4, meta_normalization="cosine", meta_lr=0.05,
                    save_strategy="steps", save_steps=2,
                    lr_scheduler_type="constant")  # the runs stop at different max_steps: a decaying lr would differ

    def amft_trainer(output_dir, max_steps):
        return AMFTTrainer(model=AutoModelForCausalLM.from_pretrained(path), reward_funcs=digit_share_reward,
                           args=AMFTConfig(**{**settings, "output_dir": str(output_dir), "max_steps": max_steps}),
                           train_dataset=Dataset.from_list(PROMPTS), demo_dataset=DEMOS, meta_dataset=PROMPTS[:8],
                           processing_class=tokenizer)

    first = amft_trainer(tmp_path, 2)
    first.train()
    checkpoint = tmp_path / "checkpoint-2"
    names = {p.name for p in checkpoint.iterdir()}
    assert {TRAINER_STATE_NAME, OPTIMIZER_NAME, SCHEDULER_NAME, "rng_state.pth", "model.safetensors",
            AMFT_STATE_FILE, COMPLETE_MARKER} <= names
    resumed = amft_trainer(tmp_path, 3)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 3
    uninterrupted = amft_trainer(tmp_path / "uninterrupted", 3)
    uninterrupted.train()
    assert resumed.controller.state_dict() == uninterrupted.controller.state_dict()
    assert resumed.demo_stream.state_dict() == uninterrupted.demo_stream.state_dict()
    assert resumed.meta_stream.state_dict() == uninterrupted.meta_stream.state_dict()
    saved = json.loads((checkpoint / AMFT_STATE_FILE).read_text())
    assert saved["controller"] != uninterrupted.controller.state_dict()  # the resumed run did move on


def test_trls_renamed_checkpointing_setting_keeps_its_meaning_without_a_warning(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        by_default = AMFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)
        old_name_off = AMFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, gradient_checkpointing=False)
        new_name_off = AMFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, activation_checkpointing=False)
        old_kwargs = AMFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False,
                                gradient_checkpointing_kwargs={"use_reentrant": False})
    assert by_default.activation_checkpointing is True and by_default.activation_checkpointing == GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False).activation_checkpointing  # TRL's default
    assert (old_name_off.activation_checkpointing, old_name_off.gradient_checkpointing) == (False, False)
    assert (new_name_off.activation_checkpointing, new_name_off.gradient_checkpointing) == (False, False)
    assert old_kwargs.activation_checkpointing_kwargs == old_kwargs.gradient_checkpointing_kwargs == {"use_reentrant": False}
