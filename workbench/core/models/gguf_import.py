"""Import a GGUF file into an MLX model folder that mlx-lm loads.

The direct route (see DESIGN.md): ``mx.load`` reads Q4_0/Q4_1/Q8_0 tensors straight into MLX's affine
layout with group size 32, so a 4-bit import keeps llama.cpp's blocks bit for bit. What is left is
renaming tensors, undoing llama.cpp's row order of the Q and K projections, writing config.json from
the GGUF metadata, generation_config.json from its sampling keys (llama.cpp's ``general.sampling.*``) or
from defaults the caller knows, and saving the tokenizer that transformers reads from the same file.

Everything is written into a temporary folder beside the destination and renamed into place at the
end, so a failure never leaves a half-written model. Run this on the inference thread (it uses MLX).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
GROUP_SIZE = 32
SUPPORTED_BITS = (4, 8, 16)
SUPPORTED_ARCHITECTURES = ("llama",)
MARKER_FILE = "workbench-import.json"

Progress = Callable[[str, float], None]


class GgufImportError(Exception):
    """An import that cannot be done; the message is meant for the user."""


class NotAGgufError(GgufImportError):
    pass


class UnsupportedArchitectureError(GgufImportError):
    pass


def is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm.weight": "model.norm.weight",
    "output": "lm_head",
}
_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")


def quantization_name(file_type: object) -> str:
    """The name llama.cpp gives a GGUF's ``general.file_type`` ("Q4_K_M", "Q8_0", "F16"); "" when unknown."""
    try:
        from gguf import LlamaFileType

        return LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_").removeprefix("ALL_")  # type: ignore[call-overload]
    except (ImportError, TypeError, ValueError):
        return ""


def mlx_name(gguf_name: str) -> str | None:
    """The mlx-lm llama name of a GGUF tensor (weight, scales or biases), or None if it has none."""
    if match := _BLOCK.match(gguf_name):
        layer, rest = match.groups()
        for src, dst in _LAYER_NAMES.items():
            if rest == src or rest.startswith(src + "."):
                return f"model.layers.{layer}.{dst}{rest[len(src):]}"
        return None
    for src, dst in _TOP_NAMES.items():
        if gguf_name == src or gguf_name.startswith(src + "."):
            return dst + gguf_name[len(src):]
    return None


def unpermute_rows(array: Any, n_heads: int) -> Any:
    """Undo llama.cpp's interleaving of rotary halves in the rows of a Q or K projection.

    llama.cpp stores each head's rows as (half, 2) where Hugging Face has (2, half). The permutation
    only moves whole rows, so it applies unchanged to packed quantized weights, scales and biases.
    """
    rows = array.shape[0]
    rest = tuple(array.shape[1:])
    head_rows = rows // n_heads
    return array.reshape(n_heads, head_rows // 2, 2, *rest).swapaxes(1, 2).reshape(rows, *rest)


def _scalar(meta: dict[str, Any], key: str, default: Any = None) -> Any:
    value = meta.get(key, default)
    if hasattr(value, "item"):
        return value.item()
    return value


def config_from_metadata(meta: dict[str, Any], tensor_names: set[str]) -> dict[str, Any]:
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"architecture {arch!r} cannot be converted yet (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )

    def key(name: str, default: Any = None) -> Any:
        value = _scalar(meta, f"{arch}.{name}", default)
        if value is None:
            raise GgufImportError(f"the GGUF metadata lacks {arch}.{name}; the file looks incomplete")
        return value

    n_heads = int(key("attention.head_count"))
    hidden = int(key("embedding_length"))
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = int(key("vocab_size", len(tokens) if tokens else 0))
    config: dict[str, Any] = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "num_hidden_layers": int(key("block_count")),
        "intermediate_size": int(key("feed_forward_length")),
        "num_attention_heads": n_heads,
        "num_key_value_heads": int(key("attention.head_count_kv", n_heads)),
        "head_dim": int(key("rope.dimension_count", hidden // n_heads)),
        "rms_norm_eps": float(key("attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(key("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(key("context_length", 4096)),
        "vocab_size": vocab,
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "attention_bias": False,
        "mlp_bias": False,
    }
    for ours, theirs in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id")):
        value = _scalar(meta, f"tokenizer.ggml.{theirs}")
        if value is not None:
            config[ours] = int(value)
    return config


# llama.cpp's recommended-sampling metadata -> generation_config.json field
GGUF_SAMPLING_KEYS = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_p": "top_p",
    "general.sampling.top_k": "top_k",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repetition_penalty",
}


def generation_config_from_metadata(meta: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """generation_config.json for the import: the GGUF's own sampling keys over ``defaults``; {} when neither
    sets a sampling value (then no file is written and the app's built-in defaults apply)."""
    sampling: dict[str, Any] = dict(defaults or {})
    for key, field_name in GGUF_SAMPLING_KEYS.items():
        value = _scalar(meta, key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            sampling[field_name] = value
    if not sampling:
        return {}
    if sampling.get("temperature") == 0:  # greedy: transformers wants do_sample false and no sampling values
        sampling = {key: value for key, value in sampling.items() if key not in ("temperature", "top_p", "top_k",
                                                                                 "min_p")}  # fmt: skip
        config: dict[str, Any] = {"do_sample": False, **sampling}
    else:
        config = {"do_sample": True, **sampling}
    for ours, theirs in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id")):
        value = _scalar(meta, f"tokenizer.ggml.{theirs}")
        if value is not None:
            config[ours] = int(value)
    return config


def _convert_weights(
    tensors: dict[str, Any], config: dict[str, Any], bits: int, float_dtype: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Rename, un-permute and (re)quantize; returns the weights and mlx-lm's quantization config."""
    import mlx.core as mx

    renamed: dict[str, Any] = {}
    for name, array in tensors.items():
        target = mlx_name(name)
        if target is None:
            log.info("skipping GGUF tensor %s (no mlx-lm counterpart)", name)
            continue
        renamed[target] = array

    heads = {"q_proj": config["num_attention_heads"], "k_proj": config["num_key_value_heads"]}
    for name in list(renamed):
        for proj, n_heads in heads.items():
            if f".self_attn.{proj}." in name:
                renamed[name] = unpermute_rows(renamed[name], n_heads)

    weights: dict[str, Any] = {}
    per_layer: dict[str, Any] = {}
    modules = {name.rsplit(".", 1)[0] for name in renamed if name.endswith(".weight")}
    for module in sorted(modules):
        weight = renamed[f"{module}.weight"]
        scales = renamed.get(f"{module}.scales")
        biases = renamed.get(f"{module}.biases")
        if scales is not None:
            in_features = scales.shape[-1] * GROUP_SIZE
            native_bits = weight.shape[-1] * 32 // in_features
            if bits == 16 or (bits == 8 and native_bits < 8):
                weight = mx.dequantize(weight, scales, biases, group_size=GROUP_SIZE, bits=native_bits)
                scales = biases = None
            else:
                # A 4-bit import keeps every native block as it is; 8-bit blocks stay 8-bit.
                if native_bits != bits:
                    per_layer[module] = {"group_size": GROUP_SIZE, "bits": native_bits}
        if scales is None and bits < 16 and weight.ndim == 2 and weight.shape[-1] % GROUP_SIZE == 0:
            weight, scales, biases = mx.quantize(weight.astype(float_dtype), group_size=GROUP_SIZE, bits=bits)
        if scales is None:
            weights[f"{module}.weight"] = weight.astype(float_dtype)
        else:
            weights[f"{module}.weight"] = weight
            weights[f"{module}.scales"] = scales.astype(float_dtype)
            weights[f"{module}.biases"] = biases.astype(float_dtype)

    quantization = None
    if bits < 16:
        quantization = {"group_size": GROUP_SIZE, "bits": bits, **per_layer}
    return weights, quantization


def _save_tokenizer(gguf_path: Path, out_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    if not getattr(tokenizer, "chat_template", None):
        log.warning("%s carries no chat template", gguf_path.name)
    tokenizer.save_pretrained(str(out_dir))


def preferred_float_dtype() -> Any:
    """float32 on MLX's CPU backend (half-precision scales make quantized matmuls far slower there)."""
    import mlx.core as mx

    return mx.float32 if mx.default_device() == mx.Device(mx.cpu) else mx.float16


def import_gguf(
    gguf_path: Path,
    dest: Path,
    bits: int = 4,
    progress: Progress | None = None,
    overwrite: bool = False,
    generation: dict[str, Any] | None = None,
) -> Path:
    """Convert ``gguf_path`` into an mlx-lm model folder at ``dest``; returns ``dest``.

    ``generation``: sampling defaults for generation_config.json (temperature, top_p, ...) where the GGUF
    carries none of its own."""
    report = progress or (lambda stage, fraction: None)
    gguf_path = Path(gguf_path)
    dest = Path(dest)
    if bits not in SUPPORTED_BITS:
        raise GgufImportError(f"--bits must be one of {SUPPORTED_BITS}, not {bits}")
    if not gguf_path.is_file():
        raise GgufImportError(f"{gguf_path}: no such file")
    if not is_gguf(gguf_path):
        raise NotAGgufError(f"{gguf_path} is not a GGUF file (it does not start with the GGUF magic bytes)")
    if dest.exists() and not overwrite:
        raise GgufImportError(f"{dest} already exists")

    import mlx.core as mx

    report("reading GGUF", 0.05)
    try:
        tensors, meta = mx.load(str(gguf_path), return_metadata=True)
    except Exception as exc:  # mlx raises plain RuntimeError/ValueError for unreadable files
        raise GgufImportError(f"{gguf_path.name}: MLX cannot read this GGUF ({exc})") from exc
    config = config_from_metadata(meta, set(tensors))

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    staging.chmod(0o755)
    try:
        report("converting weights", 0.3)
        # 16 bits means float16 weights, as asked, even on the CPU where float32 would run faster.
        float_dtype = mx.float16 if bits == 16 else preferred_float_dtype()
        weights, quantization = _convert_weights(tensors, config, bits, float_dtype)
        if quantization:
            config["quantization"] = quantization
        config["torch_dtype"] = "float32" if float_dtype == mx.float32 else "float16"
        report("writing weights", 0.6)
        mx.save_safetensors(str(staging / "model.safetensors"), weights, metadata={"format": "mlx"})
        (staging / "config.json").write_text(json.dumps(config, indent=2))
        if generation_config := generation_config_from_metadata(meta, generation):
            (staging / "generation_config.json").write_text(json.dumps(generation_config, indent=2))
        report("writing tokenizer", 0.8)
        _save_tokenizer(gguf_path, staging)
        (staging / MARKER_FILE).write_text(
            json.dumps({"source": str(gguf_path), "bits": bits, "name": meta.get("general.name"),
                        # what the lists show; reading it from the GGUF again takes seconds (its whole vocabulary)
                        "quantization": quantization_name(_scalar(meta, "general.file_type"))}, indent=2)
        )
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report("done", 1.0)
    return dest
