"""Tiny random-weight MLX language models for fast tests: real mlx-lm folders, a few hundred KB each."""

from __future__ import annotations

import json
from pathlib import Path

VOCAB = ["<unk>", "<s>", "</s>", *[f"w{i}" for i in range(125)]]


def write_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
    fast.save_pretrained(str(folder))


BYTE_SPECIALS = ["<unk>", "<s>", "</s>"]
BYTE_VOCAB_SIZE = len(BYTE_SPECIALS) + 256


def write_byte_tokenizer(folder: Path) -> None:
    """A byte-level tokenizer (GPT-2's byte alphabet, no merges): every text can be written with it, JSON too."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate([*BYTE_SPECIALS, *alphabet])}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(BYTE_SPECIALS)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    fast.save_pretrained(str(folder))


def make_tiny_byte_llama(folder: Path, seed: int = 0, padded_vocab: int = 320) -> Path:
    """A random-weight llama over bytes (``write_byte_tokenizer``) whose logits are ``padded_vocab`` wide, wider
    than its tokenizer, as real models pad theirs."""
    make_tiny_llama(folder, seed=seed, vocab_size=padded_vocab)
    write_byte_tokenizer(folder)
    return folder


def make_tiny_llama(folder: Path, hidden: int = 64, layers: int = 2, seed: int = 0, bits: int | None = None,
                    vocab_size: int = len(VOCAB)) -> Path:  # fmt: skip
    """Write a random-weight llama that ``mlx_lm.load`` accepts; ``bits`` quantizes it like mlx-lm does."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "intermediate_size": hidden * 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "vocab_size": vocab_size,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }
    mx.random.seed(seed)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    if bits:
        nn.quantize(model, group_size=32, bits=bits)
        config["quantization"] = {"group_size": 32, "bits": bits}
    mx.eval(model.parameters())
    mx.save_safetensors(str(folder / "model.safetensors"), dict(tree_flatten(model.parameters())))
    (folder / "config.json").write_text(json.dumps(config))
    write_tokenizer(folder)
    return folder
