"""The tiny vision-language models of V-IRL-VL: the GP-VL ones on the square street-view canvas, their processor
sized to it (see docs/design.md, 'The tiny vision-language model' and 'V-IRL-VL')."""

import dataclasses

import numpy as np
import pytest
import torch

from amft.models import IMAGE_TOKEN, TINY_MODELS, build_tiny_model
from amft.models.loading import on_canvas
from amft.tasks.base import prompt_text
from amft.tasks.virl.rendering import SMALL_IMAGE_SIZE
from amft.tasks.virl.visual import VirlVisualTask


@pytest.mark.parametrize(("name", "gp_name"), [("tiny-virl-vl", "tiny-gp-vl"), ("tiny-test-virl-vl", "tiny-test-vl")])
def test_the_virl_vl_models_are_the_gp_vl_ones_on_the_street_view_canvas(name, gp_name):
    spec, gp_spec = TINY_MODELS[name], TINY_MODELS[gp_name]
    assert spec.vision.image_size == SMALL_IMAGE_SIZE == (128, 128)
    assert spec.vision.num_image_tokens == 8 * 8
    # the same shapes; the attention kernels are each model's measured faster ones (tiny-virl-vl: sdpa)
    assert dataclasses.replace(spec, attn_implementation=gp_spec.attn_implementation) == dataclasses.replace(
        gp_spec, vision=dataclasses.replace(gp_spec.vision, image_size=(128, 128)))
    model, _ = build_tiny_model(name, seed=0)
    gp_model, _ = build_tiny_model(gp_name, seed=0)
    # The only new weights: the ViT's position table has 64 patches (and the class token) instead of 32.
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in gp_model.parameters())
    assert extra == (64 - 32) * spec.vision.hidden_size


def test_the_processor_reads_a_street_view_grid_whole_as_64_image_tokens():
    task = VirlVisualTask(synthetic_routes=60, eval_routes=3, validation_routes=4)
    row = task.demonstrations(1, seed=0)[0]
    model, processor = build_tiny_model("tiny-test-virl-vl", seed=0)
    text = row["prompt"][0]["content"][1]["text"]
    assert prompt_text(row["prompt"], processor) == IMAGE_TOKEN + text
    inputs = processor(images=row["images"], text=[prompt_text(row["prompt"], processor)], return_tensors="pt")
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    text_ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert inputs["input_ids"][0].tolist() == [image_id] * 64 + text_ids
    # the canvas as drawn, not resized: the pixels are the grid's own, normalised
    assert inputs["pixel_values"].shape == (1, 3, 128, 128)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (processor.image_processor.image_mean,
                                                         processor.image_processor.image_std))
    drawn = torch.tensor(np.array(row["images"][0])).permute(2, 0, 1).float() / 255
    assert torch.allclose(inputs["pixel_values"][0], (drawn - mean) / std, atol=1e-5)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[1] == inputs["input_ids"].shape[1] and torch.isfinite(logits).all()


def test_a_text_model_has_no_canvas():
    with pytest.raises(ValueError, match="a text model has no canvas"):
        on_canvas(TINY_MODELS["tiny-gp"], (128, 128))
