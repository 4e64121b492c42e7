import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from amft.models import TINY_MODELS, build_char_tokenizer, build_tiny_model, load_model


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200))
@settings(max_examples=200, deadline=None)
def test_character_tokenizer_round_trips_printable_text(text):
    tokenizer = build_char_tokenizer()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text


def test_unknown_characters_map_to_unk_and_specials_are_distinct():
    tokenizer = build_char_tokenizer()
    assert len(tokenizer("<eos>", add_special_tokens=False)["input_ids"]) == 5  # text cannot forge a special token
    ids = tokenizer("é€", add_special_tokens=False)["input_ids"]
    assert ids == [tokenizer.unk_token_id] * 2
    assert len({tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id}) == 4


def test_tiny_model_sizes_and_seeded_initialisation():
    model, _ = build_tiny_model("tiny-gp", seed=3)
    assert 1.5e6 < sum(p.numel() for p in model.parameters()) < 2.1e6
    again, _ = build_tiny_model("tiny-gp", seed=3)
    other, _ = build_tiny_model("tiny-gp", seed=4)
    first = next(model.parameters())
    assert torch.equal(first, next(again.parameters()))
    assert not torch.equal(first, next(other.parameters()))
    with pytest.raises(ValueError, match="known: " + ", ".join(TINY_MODELS)):
        build_tiny_model("tiny-nope")


def test_load_model_reads_a_saved_local_folder(tmp_path):
    model, tokenizer = build_tiny_model("tiny-test", seed=1)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()  # safe serialisation, no pickle
    loaded, loaded_tokenizer = load_model(str(tmp_path))
    ids = tokenizer("[cards] A 3 K 6", return_tensors="pt", add_special_tokens=False)["input_ids"]
    # The loaded tokenizer encodes exactly as the one that was saved (spaces included).
    assert loaded_tokenizer("[cards] A 3 K 6", return_tensors="pt", add_special_tokens=False)["input_ids"].equal(ids)
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits)
    assert loaded_tokenizer.decode(ids[0]) == "[cards] A 3 K 6"
    assert loaded.generation_config.eos_token_id == tokenizer.eos_token_id
    assert loaded_tokenizer.pad_token == "<pad>"
    assert len(loaded_tokenizer("<eos>", add_special_tokens=False)["input_ids"]) == 5


def test_model_init_kwargs_reach_from_pretrained_and_a_tiny_model_refuses_them(tmp_path):
    model, tokenizer = build_tiny_model("tiny-test", seed=1)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, _ = load_model(str(tmp_path), init_kwargs={"dtype": "bfloat16"}, trust_remote_code=True)
    assert loaded.dtype == torch.bfloat16 and load_model(str(tmp_path))[0].dtype == torch.float32
    with pytest.raises(ValueError, match="dtype is given twice"):
        load_model(str(tmp_path), dtype=torch.float32, init_kwargs={"dtype": "bfloat16"})
    with pytest.raises(ValueError, match="tiny-test is built here from its config"):
        load_model("tiny-test", init_kwargs={"dtype": "bfloat16"})
    assert load_model("tiny-test", dtype="bfloat16")[0].dtype == torch.bfloat16  # the option itself acts
    assert load_model("tiny-test", dtype=torch.float16)[0].dtype == torch.float16


@pytest.mark.parametrize("name", ["tiny-test", "tiny-test-vl"])
def test_tiny_models_keep_their_attention_kernels_through_a_reload(tmp_path, name):
    model, processing_class = build_tiny_model(name)
    assert model.config._attn_implementation == TINY_MODELS[name].attn_implementation == "eager"
    sub_configs = [getattr(model.config, key) for key in ("vision_config", "text_config") if hasattr(model.config, key)]
    assert all(config._attn_implementation == "eager" for config in sub_configs)  # the image encoder's too
    model.save_pretrained(tmp_path)
    processing_class.save_pretrained(tmp_path)
    assert load_model(str(tmp_path))[0].config._attn_implementation == "eager"
    assert load_model(str(tmp_path), attn_implementation="sdpa")[0].config._attn_implementation == "sdpa"
    assert build_tiny_model(name, attn_implementation="sdpa")[0].config._attn_implementation == "sdpa"


def test_a_model_not_built_as_a_tiny_one_gets_transformers_attention(tmp_path):
    model, tokenizer = build_tiny_model("tiny-test")
    delattr(model.config, "amft_tiny_model")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert load_model(str(tmp_path))[0].config._attn_implementation == "sdpa"
