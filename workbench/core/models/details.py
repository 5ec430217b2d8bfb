"""What a model is, as the model lists of the APIs describe it (Ollama's /api/tags and /api/show): family,
parameter count, quantization, context length, chat template and default sampling parameters.

Read from the files only, never by loading the model: config.json, generation_config.json, tokenizer_config.json
(or chat_template.jinja), the safetensors headers (tensor shapes) and, for a GGUF file or a folder imported from one
(its workbench-import.json names the source), the GGUF metadata. Every reader forgives what it cannot read: a
missing or broken file leaves its fields empty.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.core.models.gguf_import import MARKER_FILE, is_gguf, quantization_name

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 100 * 1024 * 1024  # a safetensors header larger than this is not one
MAX_JSON_BYTES = 20 * 1024 * 1024
# generation_config.json key -> the name Ollama's parameters use
PARAMETER_NAMES = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repeat_penalty",
}


@dataclass(frozen=True)
class ModelDetails:
    format: str = ""  # "gguf", "safetensors", "remote"
    family: str = ""  # the architecture: "llama", "bert"
    parameter_count: int | None = None
    quantization_level: str = ""  # "Q4_1", "4-bit", "F16"
    context_length: int | None = None
    template: str = ""  # the chat template (Jinja)
    parameters: dict[str, Any] = field(default_factory=dict)  # default sampling, by Ollama's names
    info: dict[str, Any] = field(default_factory=dict)  # Ollama's model_info: "general.architecture", ...

    @property
    def parameter_size(self) -> str:
        """``135M``, ``7.6B``; "" when unknown."""
        return format_parameter_count(self.parameter_count)


def format_parameter_count(count: int | None) -> str:
    if not count:
        return ""
    if count >= 1e9:
        return f"{count / 1e9:.1f}B"
    if count >= 1e6:
        return f"{count / 1e6:.0f}M"
    return f"{count / 1e3:.0f}K"


def model_details(path: Path) -> ModelDetails:
    """The details of the model at ``path`` (a model folder or a .gguf file)."""
    try:
        if path.is_file() and is_gguf(path):
            return _gguf_details(path)
        if path.is_dir():
            return _folder_details(path)
    except OSError as exc:
        log.info("cannot read the details of %s: %s", path, exc)
    return ModelDetails()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return {}
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _folder_details(folder: Path) -> ModelDetails:
    config = _read_json(folder / "config.json")
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    family = config.get("model_type") or text_config.get("model_type") or ""
    context = config.get("max_position_embeddings") or text_config.get("max_position_embeddings")
    quantization = config.get("quantization") or config.get("quantization_config") or {}
    bits = quantization.get("bits") if isinstance(quantization, dict) else None
    marker = _read_json(folder / MARKER_FILE)
    source = _gguf_source(marker)
    recorded = marker.get("quantization") if isinstance(marker.get("quantization"), str) else ""
    # the GGUF's header only where the import did not record its quantization (an import by an older workbench)
    gguf = _gguf_details(source) if source is not None and not recorded else None
    if recorded and source is not None:
        level = recorded
    elif gguf is not None and gguf.quantization_level:
        level = gguf.quantization_level
    elif isinstance(bits, int):
        level = f"{bits}-bit"
    else:
        level = str(config.get("torch_dtype") or config.get("dtype") or "").upper().replace("FLOAT", "F")
        level = {"BF": "BF16"}.get(level, level).replace("BFLOAT16", "BF16")
    count = _safetensors_parameters(folder, quantization if isinstance(quantization, dict) else {})
    if count is None and gguf is not None:
        count = gguf.parameter_count
    info = {"general.architecture": family, "general.parameter_count": count,
            f"{family}.context_length": context if isinstance(context, int) else None}  # fmt: skip
    return ModelDetails(
        format="gguf" if source is not None else "safetensors" if any(folder.glob("*.safetensors")) else "",
        family=str(family),
        parameter_count=count,
        quantization_level=level,
        context_length=context if isinstance(context, int) else None,
        template=_chat_template(folder),
        parameters=_parameters(_read_json(folder / "generation_config.json")),
        info={key: value for key, value in info.items() if value not in (None, "")},
    )


def _gguf_source(marker: dict[str, Any]) -> Path | None:
    """The GGUF file an imported folder came from (its import marker says), while it is still there."""
    source = marker.get("source")
    if isinstance(source, str) and (path := Path(source)).is_file() and is_gguf(path):
        return path
    return None


def _chat_template(folder: Path) -> str:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        try:
            return jinja.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return ""
    template = _read_json(folder / "tokenizer_config.json").get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), "")
    return template if isinstance(template, str) else ""


def _parameters(generation: dict[str, Any]) -> dict[str, Any]:
    return {name: generation[key] for key, name in PARAMETER_NAMES.items()
            if isinstance(generation.get(key), int | float) and not isinstance(generation.get(key), bool)}  # fmt: skip


def _safetensors_parameters(folder: Path, quantization: dict[str, Any]) -> int | None:
    """The parameter count from the tensor shapes; a quantized weight (with .scales beside it) holds as many values
    per row as its scales times the group size (mlx-lm's quantization config, per layer where it says)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    shapes: dict[str, list[int]] = {}
    for file in files:
        header = _safetensors_header(file)
        if header is None:
            return None
        shapes |= {name: tensor.get("shape") or [] for name, tensor in header.items()
                   if name != "__metadata__" and isinstance(tensor, dict)}  # fmt: skip
    total = 0
    for name, shape in shapes.items():
        if name.endswith((".scales", ".biases")):
            continue
        module = name.removesuffix(".weight")
        scales = shapes.get(module + ".scales")
        if scales and shape:
            layer = quantization.get(module) if isinstance(quantization.get(module), dict) else quantization
            group = layer.get("group_size", quantization.get("group_size", 64))
            total += math.prod(shape[:-1]) * scales[-1] * (group if isinstance(group, int) else 64)
        else:
            total += math.prod(shape)
    return total or None


def _safetensors_header(file: Path) -> dict[str, Any] | None:
    try:
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > MAX_HEADER_BYTES:
                return None
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error):
        return None
    return header if isinstance(header, dict) else None


def _gguf_details(path: Path) -> ModelDetails:
    try:
        from gguf import GGUFReader  # gguf-py reads the header through a memory map

        reader = GGUFReader(str(path))
    except Exception as exc:  # a truncated or foreign file: gguf-py raises ValueError, struct errors, ...
        log.info("cannot read the GGUF header of %s: %s", path, exc)
        return ModelDetails(format="gguf")
    meta: dict[str, Any] = {}
    for key, value in reader.fields.items():
        if key.startswith("GGUF.") or (key.startswith("tokenizer.ggml.") and key != "tokenizer.ggml.model"):
            continue
        try:
            meta[key] = value.contents()
        except Exception:  # an exotic type: leave it out
            continue
    architecture = str(meta.get("general.architecture") or "")
    file_type = meta.get("general.file_type")
    level = quantization_name(file_type) if isinstance(file_type, int) else ""
    count = sum(int(math.prod(tensor.shape)) for tensor in reader.tensors) or None
    context = meta.get(f"{architecture}.context_length")
    template = meta.pop("tokenizer.chat_template", "")
    info = {key: value for key, value in meta.items() if isinstance(value, str | int | float | bool)}
    info["general.parameter_count"] = count
    return ModelDetails(format="gguf", family=architecture, parameter_count=count, quantization_level=level,
                        context_length=context if isinstance(context, int) else None,
                        template=template if isinstance(template, str) else "", info=info)  # fmt: skip


__all__ = ["ModelDetails", "format_parameter_count", "model_details"]
