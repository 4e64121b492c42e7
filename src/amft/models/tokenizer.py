"""A character-level tokenizer built locally, so tiny models need nothing from a hub.

Every printable ASCII character is one token, plus four special tokens. The result is a
regular `PreTrainedTokenizerFast`: it saves and loads with `save_pretrained` /
`AutoTokenizer.from_pretrained` like any Hugging Face tokenizer.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<bos>"
EOS_TOKEN = "<eos>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)
CHARACTERS = "".join(ch for ch in string.printable if ch.isprintable())  # 95 characters, space included


def build_char_tokenizer(characters: str = CHARACTERS) -> PreTrainedTokenizerFast:
    """A tokenizer with one token per character and special tokens pad, bos, eos, unk.

    Unknown characters map to `<unk>`. Decoding fuses tokens back without inserting spaces.
    """
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for ch in characters:
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    # Split into single characters; without `isolated` a run of spaces would become one unknown token.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        clean_up_tokenization_spaces=False,
        # Text that spells "<eos>" is five characters, not an end of sequence: model text cannot forge specials.
        split_special_tokens=True,
        model_max_length=4096,
    )
