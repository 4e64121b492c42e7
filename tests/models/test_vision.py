"""The tiny vision-language model: its processor on GP-VL rows, the image path, saving and loading, and
plain TRL GRPO training it end to end (see docs/design.md, 'The tiny vision-language model')."""

import math

import pytest
import torch
from datasets import Dataset
from transformers import AutoConfig, LlavaForConditionalGeneration, LlavaProcessor
from trl import GRPOConfig, GRPOTrainer
from trl.data_utils import prepare_multimodal_messages

from amft.models import (IMAGE_TOKEN, TINY_MODELS, TinyVisionSpec, build_char_tokenizer, build_tiny_model,
                         is_vision_language, load_model)
from amft.models.tokenizer import CHARACTERS
from amft.tasks.base import completion_text, prompt_text
from amft.tasks.general_points import GeneralPointsVisualTask

TEST_VLM = "tiny-test-vl"
#: 128x64 pixels in 16x16 patches
IMAGE_TOKENS = 8 * 4


@pytest.fixture(scope="module")
def task():
    return GeneralPointsVisualTask(template="compact")


def encode(processor, rows):
    """What a VLM reads for rows with one image each: the prompts rendered by the chat template, then the processor."""
    texts = [prompt_text(row["prompt"], processor) for row in rows]
    return processor(images=[row["images"] for row in rows], text=texts, padding=True, return_tensors="pt")


def test_the_tiny_vlm_reads_a_compact_prompt_as_its_image_tokens_then_the_text(task):
    model, processor = build_tiny_model(TEST_VLM, seed=0)
    assert isinstance(model, LlavaForConditionalGeneration) and isinstance(processor, LlavaProcessor)
    assert TINY_MODELS[TEST_VLM].vision.num_image_tokens == IMAGE_TOKENS
    row = task.demonstrations(1, seed=0)[0]
    text = row["prompt"][0]["content"][1]["text"]
    # No role boilerplate: the prompt still ends in "[answer]", and the completion follows it directly.
    assert prompt_text(row["prompt"], processor) == IMAGE_TOKEN + text and text.endswith("[answer]")
    assert completion_text(row["completion"]).startswith(" cards: ")
    inputs = encode(processor, [row])
    ids = inputs["input_ids"][0].tolist()
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert ids == [image_id] * IMAGE_TOKENS + processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert inputs["pixel_values"].shape == (1, 3, 64, 128)
    # TRL renders a rollout's prompt from the messages with the image inside them: the same tokens.
    trl_inputs = processor.apply_chat_template(
        [prepare_multimodal_messages(row["prompt"], images=row["images"])],
        add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
    )
    assert torch.equal(trl_inputs["input_ids"], inputs["input_ids"])
    assert torch.equal(trl_inputs["pixel_values"], inputs["pixel_values"])
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, len(ids), len(processor.tokenizer)) and torch.isfinite(logits).all()


def test_a_revision_conversation_renders_as_the_compact_observation_after_the_image(task):
    _, processor = build_tiny_model(TEST_VLM, seed=0)
    env = task.make_env(task.train_prompts(1, seed=0)[0], max_attempts=3)
    env.reset()
    observation, *_ = env.step(" cards: A 2 3 4 ; formula: 1+2=24")
    assert "[fail]" in observation
    assert prompt_text(env.messages(), processor) == IMAGE_TOKEN + observation


def test_the_image_changes_the_logits(task):
    model, processor = build_tiny_model(TEST_VLM, seed=0)
    first, second = task.train_prompts(2, seed=1)
    assert first["cards"] != second["cards"]
    # The same text with each row's image, and the first image twice.
    swapped = {**second, "prompt": first["prompt"]}
    with torch.no_grad():
        logits = [model(**encode(processor, [row])).logits[0, -1] for row in (first, swapped, first)]
    assert torch.equal(logits[0], logits[2])
    assert not torch.allclose(logits[0], logits[1])


def test_a_saved_tiny_vlm_loads_back_as_a_vision_language_model(tmp_path, task):
    model, processor = build_tiny_model(TEST_VLM, seed=2)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert is_vision_language(AutoConfig.from_pretrained(tmp_path))
    loaded, loaded_processor = load_model(str(tmp_path))
    assert isinstance(loaded, LlavaForConditionalGeneration) and isinstance(loaded_processor, LlavaProcessor)
    rows = task.train_prompts(3, seed=0)
    inputs, loaded_inputs = encode(processor, rows), encode(loaded_processor, rows)
    assert all(torch.equal(inputs[key], loaded_inputs[key]) for key in inputs)
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, loaded(**loaded_inputs).logits)
    tokenizer = loaded_processor.tokenizer
    assert tokenizer.decode(tokenizer("[rule] J=10  Q=10")["input_ids"]) == "[rule] J=10  Q=10"
    assert len(tokenizer("<eos>", add_special_tokens=False)["input_ids"]) == 5
    assert loaded.generation_config.eos_token_id == tokenizer.eos_token_id
    # A sampled image token would have no image features to take its place.
    assert loaded.generation_config.suppress_tokens == [loaded.config.image_token_id]


def test_a_vision_spec_needs_whole_patches():
    shape = dict(hidden_size=8, num_layers=1, num_heads=1, intermediate_size=8)
    assert TinyVisionSpec(**shape, image_size=(96, 48)).num_image_tokens == 6 * 3
    with pytest.raises(ValueError, match="multiple of patch_size"):
        TinyVisionSpec(**shape, image_size=(100, 64))


def digit_share(completions, **kwargs):
    """The share of digits in a completion: graded, so an untrained model's groups have a signal."""
    return [sum(c.isdigit() for c in completion_text(x)) / max(len(completion_text(x)), 1) for x in completions]


def test_plain_trl_grpo_trains_the_tiny_vlm_on_gp_vl_rows(tmp_path, task):
    model, processor = build_tiny_model(TEST_VLM, seed=0)
    vision = {name: p.detach().clone() for name, p in model.model.vision_tower.named_parameters()}
    args = GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, seed=0, learning_rate=1e-2, per_device_train_batch_size=8,
        num_generations=4, max_completion_length=24, max_steps=2, report_to="none", save_strategy="no",
        gradient_checkpointing=False, disable_tqdm=True, logging_steps=1,
    )
    trainer = GRPOTrainer(
        model=model, processing_class=processor, reward_funcs=[task.reward, digit_share], args=args,
        train_dataset=Dataset.from_list(task.train_prompts(16, seed=0)),
    )
    trainer.train()
    steps = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(steps) == 2 and all(math.isfinite(entry["loss"]) for entry in steps)
    assert all(entry["rewards/reward/mean"] <= 0 for entry in steps)  # the task's reward scored every completion
    still = {name for name, p in model.model.vision_tower.named_parameters() if torch.equal(p, vision[name])}
    # Every weight on the image path moved; LLaVA reads the last layer's hidden states, so the ViT's final
    # norm and pooler take no part (as CLIP's post-norm in a pretrained LLaVA).
    assert still == {"layernorm.weight", "layernorm.bias", "pooler.dense.weight", "pooler.dense.bias"}


def test_a_tiny_vlm_starts_its_decoder_from_a_trained_text_model(tmp_path):
    text_model, tokenizer = build_tiny_model("tiny-test", seed=5)
    text_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model, processor = load_model("tiny-test-vl", seed=0, language_model=str(tmp_path))
    fresh, _ = load_model("tiny-test-vl", seed=0)
    decoder = model.model.language_model
    embeddings = decoder.embed_tokens.weight
    assert torch.equal(embeddings[: len(tokenizer)], text_model.model.embed_tokens.weight)
    image_row = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert torch.equal(embeddings[image_row], fresh.model.language_model.embed_tokens.weight[image_row])
    assert model.lm_head.weight.data_ptr() == embeddings.data_ptr()  # still tied
    vision = dict(model.model.vision_tower.named_parameters())
    assert all(torch.equal(value, vision[name]) for name, value in fresh.model.vision_tower.named_parameters())
    # Without an image, the VLM reads text exactly as the text model it started from.
    ids = tokenizer("[inst] 1 northeast/left [answer]", return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits[..., : len(tokenizer)], text_model(ids).logits, atol=1e-5)


def test_a_language_model_start_is_refused_where_it_cannot_apply(tmp_path):
    text_model, tokenizer = build_tiny_model("tiny-gp", seed=0)
    text_model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has another shape than the decoder of tiny-test-vl: hidden_size 192 != 64"):
        load_model("tiny-test-vl", language_model=str(tmp_path))
    with pytest.raises(ValueError, match="'tiny-test' is a text model"):
        load_model("tiny-test", language_model=str(tmp_path))
    with pytest.raises(ValueError, match="not to .* whose weights are loaded whole"):
        load_model(str(tmp_path), language_model=str(tmp_path))
    shuffled = tmp_path / "shuffled"
    build_tiny_model("tiny-test")[0].save_pretrained(shuffled)
    build_char_tokenizer(CHARACTERS[::-1]).save_pretrained(shuffled)  # same size, other ids
    with pytest.raises(ValueError, match="its tokenizer is not the character tokenizer"):
        load_model("tiny-test-vl", language_model=str(shuffled))
