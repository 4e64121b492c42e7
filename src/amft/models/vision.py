"""The pieces of a tiny vision-language model built locally (see docs/design.md, 'The tiny vision-language model').

A tiny VLM is a LLaVA: a small ViT reads the image in 16x16 patches, a two-layer projector maps
each patch to one embedding of the tiny text model (the same Qwen2 decoder as the text tiny
models), and those embeddings take the places of the image tokens in the prompt. Its processor
is LLaVA's, built from our parts: an image processor sized to the canvas, the character
tokenizer with one more character standing for an image patch, and a chat template that only
concatenates the messages, so a GP-VL compact prompt renders as the image tokens followed by
the text of GP-L's compact prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import LlavaConfig, LlavaProcessor, PretrainedConfig, PreTrainedTokenizerBase, ViTConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

#: One character, so the character tokenizer keeps one token per character; the processor repeats it once per
#: image patch. Text that contains it is refused by the processor unless an image comes with each one.
IMAGE_TOKEN = "\u25a3"

#: Every message's content in order, an image part as one IMAGE_TOKEN, nothing else: no role markers and no
#: generation prompt, as the text tiny models read plain prompts. Revision turns concatenate the same way.
PLAIN_CHAT_TEMPLATE = "".join((
    "{%- for message in messages -%}",
    "{%- if message['content'] is string -%}{{ message['content'] }}",
    "{%- else -%}{%- for part in message['content'] -%}",
    "{%- if part['type'] == 'image' -%}", IMAGE_TOKEN,
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}",
    "{%- endfor -%}{%- endif -%}",
    "{%- endfor -%}",
))


@dataclass(frozen=True)
class TinyVisionSpec:
    """Shape of a from-scratch ViT image encoder for one fixed canvas.

    ``image_size`` is ``(width, height)`` like GP-VL's; both must be multiples of ``patch_size``.
    Every image is resized to it, so one image is always ``num_image_tokens`` tokens.
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    image_size: tuple[int, int] = (128, 64)
    patch_size: int = 16

    def __post_init__(self) -> None:
        if any(side % self.patch_size for side in self.image_size):
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")

    @property
    def num_image_tokens(self) -> int:
        width, height = self.image_size
        return (width // self.patch_size) * (height // self.patch_size)


def build_vision_processor(tokenizer: PreTrainedTokenizerBase, spec: TinyVisionSpec) -> LlavaProcessor:
    """LLaVA's processor for the encoder's canvas around ``tokenizer``, which must have ``IMAGE_TOKEN`` as one token."""
    if tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) in (None, tokenizer.unk_token_id):
        raise ValueError(f"the tokenizer has no token for the image character {IMAGE_TOKEN!r}")
    width, height = spec.image_size
    canvas = {"height": height, "width": width}
    image_processor = LlavaImageProcessorPil(size=canvas, crop_size=canvas, do_center_crop=False)
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=spec.patch_size,
        # The ViT's first output is its class token: the processor counts it, the model drops it.
        num_additional_image_tokens=1,
        vision_feature_select_strategy="default",
        image_token=IMAGE_TOKEN,
        chat_template=PLAIN_CHAT_TEMPLATE,
    )


def vision_language_config(text_config: PretrainedConfig, spec: TinyVisionSpec, image_token_id: int) -> LlavaConfig:
    """A LLaVA config: a ViT of the given shape in front of ``text_config``'s decoder."""
    width, height = spec.image_size
    vision_config = ViTConfig(
        image_size=(height, width),
        patch_size=spec.patch_size,
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        intermediate_size=spec.intermediate_size,
    )
    return LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=image_token_id,
        image_seq_length=spec.num_image_tokens,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
        tie_word_embeddings=text_config.tie_word_embeddings,
    )


def is_vision_language(config: PretrainedConfig) -> bool:
    """Whether ``AutoModelForImageTextToText`` builds a model of this config (LLaVA, Qwen-VL, Llama-3.2-Vision, ...)."""
    return type(config) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

