"""AMFTTrainer on image prompts: GP-VL rows (the card image in `images`) with the tiny vision-language model. The
rollouts' and the demonstrations' image inputs reach every forward, so the vision encoder trains through both
losses and through the meta step (see docs/design.md, 'The tiny vision-language model')."""

import math
import shutil

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file

from amft.models import build_tiny_model
from amft.tasks.general_points import GeneralPointsVisualTask
from amft.training import AMFTConfig, AMFTTrainer
from amft.training.data import tokenize_demonstrations


@pytest.fixture(scope="module")
def task():
    return GeneralPointsVisualTask(template="compact")


def digit_share(completions, **kwargs):
    # Partial credit, so that an untrained model's rollouts (all recognising wrong cards) differ in reward.
    texts = [completion[0]["content"] if isinstance(completion, list) else completion for completion in completions]
    return [sum(c.isdigit() for c in text) / max(len(text), 1) for text in texts]


#: the controller's settings of the amft runs (the other methods refuse them)
AMFT_SETTINGS = {"meta_batch_size": 2, "amft_warmup_steps": 1, "entropy_calibration_steps": 1, "meta_period": 2,
                 "meta_normalization": "cosine"}


def train(tmp_path, task, method: str, **settings):
    torch.set_num_threads(1)
    model, processor = build_tiny_model("tiny-test-vl", seed=0)
    vision = {name: p.detach().clone() for name, p in model.model.vision_tower.named_parameters()}
    args = AMFTConfig(**{
        "output_dir": str(tmp_path / method), "use_cpu": True, "bf16": False, "seed": 0, "learning_rate": 1e-2,
        "per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 24, "max_steps": 3,
        "report_to": "none", "save_strategy": "no", "gradient_checkpointing": False, "disable_tqdm": True,
        "logging_steps": 1, "method": method, "sft_batch_size": 4,
        **({"success_reward": task.success_reward} if method in ("hpt", "bread") else {}),
        **(AMFT_SETTINGS if method == "amft" else {}), **settings,
    })
    trainer = AMFTTrainer(
        model=model, reward_funcs=[task.reward, digit_share], args=args, processing_class=processor,
        train_dataset=Dataset.from_list(task.train_prompts(16, seed=0)), demo_dataset=task.demonstrations(16, seed=0),
        meta_dataset=task.validation_prompts(8, seed=1),
    )
    trainer.train()
    moved = {name for name, p in model.model.vision_tower.named_parameters() if not torch.equal(p, vision[name])}
    return trainer, moved


def test_demonstrations_with_images_are_encoded_as_the_processor_encodes_them(task):
    _, processor = build_tiny_model("tiny-test-vl", seed=0)
    rows = task.demonstrations(2, seed=0)
    batch = tokenize_demonstrations(rows, processor)
    image_token = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    assert set(batch.image_inputs) == {"pixel_values"} and batch.image_inputs["pixel_values"].shape[0] == 2
    assert ((batch.prompt_ids == image_token).sum(dim=1) == 32).all()  # each image's patches, none cut
    with pytest.raises(ValueError, match="image prompts are not cut"):
        tokenize_demonstrations(rows, processor, max_prompt_length=16)


@pytest.mark.parametrize("method", ["amft", "luffy", "hpt", "uft", "prefix-rft", "bread"])
def test_amft_trains_the_vision_encoder_on_image_prompts(tmp_path, task, method):
    trainer, moved = train(tmp_path, task, method)
    logged = [row for row in trainer.state.log_history if "amft/mu" in row]
    assert len(logged) == 3 and all(math.isfinite(row["loss"]) for row in logged)
    assert {"embeddings.patch_embeddings.projection.weight", "layers.0.attention.q_proj.weight"} <= moved
    if method == "amft":
        # The meta step (step 3) took its gradients on the image rollouts and validation rollouts.
        assert logged[2]["amft/meta_gradient"] != 0.0 and math.isfinite(logged[2]["amft/meta_gradient"])


def test_a_resumed_run_loads_the_checkpoints_weights_and_ends_as_the_uninterrupted_one(tmp_path, task):
    # save_pretrained writes the vision-language model's weights under their original names, which the
    # Trainer's own resume would not match (it would warn and go on from the weights it was given).
    reference, _ = train(tmp_path / "reference", task, "amft", max_steps=4, save_strategy="steps", save_steps=2)
    checkpoint = tmp_path / "reference" / "amft" / "checkpoint-2"
    model, processor = build_tiny_model("tiny-test-vl", seed=1)  # other weights: only the checkpoint can fix them
    args = reference.args
    resumed = AMFTTrainer(
        model=model, reward_funcs=[task.reward, digit_share], args=args, processing_class=processor,
        train_dataset=Dataset.from_list(task.train_prompts(16, seed=0)), demo_dataset=task.demonstrations(16, seed=0),
        meta_dataset=task.validation_prompts(8, seed=1),
    )
    resumed._load_from_checkpoint(str(checkpoint))
    saved_names = set(load_file(checkpoint / "model.safetensors"))
    assert not saved_names <= set(model.state_dict())  # the case this guards: names differ on disk
    resumed.train(resume_from_checkpoint=str(checkpoint))
    for (name, expected), actual in zip(reference.model.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0, msg=name)
    # A checkpoint that lacks a weight is refused, not filled with fresh values.
    damaged = tmp_path / "damaged"
    shutil.copytree(checkpoint, damaged)
    weights = load_file(damaged / "model.safetensors")
    del weights["lm_head.weight" if "lm_head.weight" in weights else sorted(weights)[-1]]
    save_file(weights, damaged / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="does not hold this model's weights"):
        resumed._load_from_checkpoint(str(damaged))
