"""Fixture repos for the loopback hub (``tests.support.hub_server``): one real tiny MLX model and a demo catalog.

A repo is a folder ``<root>/<org>/<name>/`` plus an optional ``.hub.json`` with what is not a file (downloads,
likes, dates, tags, gated, and ``file_sizes`` for placeholder files). The demo repos other than the tiny model hold
placeholder weights: safetensors files whose headers declare realistic tensors (so parameter counts are real) but
carry no data, listed with their real-world sizes through ``file_sizes``. They are for browsing, not for loading.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.hub_server import METADATA_FILE, SAFETENSORS_DTYPE_BYTES, RepoStore
from tests.support.tiny_models import make_tiny_llama

TINY_REPO_ID = "mlx-community/tiny-llama-4bit"
TensorSpec = tuple[str, tuple[int, ...]]  # (safetensors dtype, shape)


# --------------------------------------------------------------------------------------------------------------------
# Writing repos


def write_repo(
    root: Path, repo_id: str, files: Mapping[str, bytes | str], meta: Mapping[str, Any] | None = None
) -> Path:
    """Write ``files`` (path in repo → content) and the ``.hub.json`` metadata; returns the repo folder."""
    folder = Path(root) / repo_id
    folder.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
    if meta is not None:
        write_metadata(folder, meta)
    return folder


def write_metadata(folder: Path, meta: Mapping[str, Any]) -> None:
    (Path(folder) / METADATA_FILE).write_text(json.dumps(dict(meta), indent=2), encoding="utf-8")


def model_card(front_matter: Mapping[str, Any], body: str) -> str:
    """A README.md with YAML front matter (simple scalars and lists only)."""
    lines = ["---"]
    for key, value in front_matter.items():
        if isinstance(value, list | tuple):
            lines.append(f"{key}:")
            lines.extend(f"- {item}" for item in value)
        else:
            lines.append(f"{key}: {value}")
    lines += ["---", "", body.strip(), ""]
    return "\n".join(lines)


def header_only_safetensors(tensors: Mapping[str, TensorSpec], metadata: Mapping[str, str] | None = None) -> bytes:
    """A safetensors header declaring ``tensors``, without their data: returns the bytes to write.

    The full size such a file would have is ``declared_safetensors_size(...)``.
    """
    header: dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        nbytes = math.prod(shape) * SAFETENSORS_DTYPE_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def declared_safetensors_size(header_bytes: bytes) -> int:
    """The size of the complete file whose header ``header_bytes`` is."""
    header = json.loads(header_bytes[8:])
    data = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    return len(header_bytes) + data


def placeholder_gguf() -> bytes:
    """An empty GGUF v3 file (magic, version, no tensors, no metadata)."""
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 0)


# --------------------------------------------------------------------------------------------------------------------
# Tensor layouts


@dataclass(frozen=True)
class DecoderShape:
    """The shape of a llama-family decoder, enough to declare its tensors and write its config.json."""

    model_type: str
    architecture: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    head_dim: int | None = None
    tie: bool = True
    qkv_bias: bool = False
    extra_norms: tuple[str, ...] = ()
    context: int = 32768
    rope_theta: float = 1_000_000.0

    @property
    def dim(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def config(self, *, dtype: str = "bfloat16", bits: int | None = None, group_size: int = 64) -> dict[str, Any]:
        config: dict[str, Any] = {
            "architectures": [self.architecture],
            "model_type": self.model_type,
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "max_position_embeddings": self.context,
            "rms_norm_eps": 1e-6,
            "rope_theta": self.rope_theta,
            "tie_word_embeddings": self.tie,
            "torch_dtype": dtype,
            "vocab_size": self.vocab,
        }
        if self.head_dim is not None:
            config["head_dim"] = self.head_dim
        if bits is not None:
            config["quantization"] = {"group_size": group_size, "bits": bits}
            config["quantization_config"] = {"group_size": group_size, "bits": bits}
        return config

    def tensors(self, *, dtype: str = "BF16", bits: int | None = None, group_size: int = 64) -> dict[str, TensorSpec]:
        """Tensor names and shapes as mlx-lm (quantized: packed U32 weights plus scales and biases) or transformers
        write them."""
        out: dict[str, TensorSpec] = {}

        def linear(name: str, n_in: int, n_out: int, bias: bool = False) -> None:
            if bits is None:
                out[f"{name}.weight"] = (dtype, (n_out, n_in))
            else:
                out[f"{name}.weight"] = ("U32", (n_out, n_in * bits // 32))
                out[f"{name}.scales"] = (dtype, (n_out, n_in // group_size))
                out[f"{name}.biases"] = (dtype, (n_out, n_in // group_size))
            if bias:
                out[f"{name}.bias"] = (dtype, (n_out,))

        linear("model.embed_tokens", self.hidden, self.vocab)
        q, kv = self.heads * self.dim, self.kv_heads * self.dim
        for i in range(self.layers):
            layer = f"model.layers.{i}"
            for norm in ("input_layernorm", "post_attention_layernorm", *self.extra_norms):
                out[f"{layer}.{norm}.weight"] = (dtype, (self.hidden,))
            linear(f"{layer}.self_attn.q_proj", self.hidden, q, self.qkv_bias)
            linear(f"{layer}.self_attn.k_proj", self.hidden, kv, self.qkv_bias)
            linear(f"{layer}.self_attn.v_proj", self.hidden, kv, self.qkv_bias)
            linear(f"{layer}.self_attn.o_proj", q, self.hidden)
            linear(f"{layer}.mlp.gate_proj", self.hidden, self.intermediate)
            linear(f"{layer}.mlp.up_proj", self.hidden, self.intermediate)
            linear(f"{layer}.mlp.down_proj", self.intermediate, self.hidden)
        out["model.norm.weight"] = (dtype, (self.hidden,))
        if not self.tie:
            linear("lm_head", self.hidden, self.vocab)
        return out


QWEN25_7B = DecoderShape("qwen2", "Qwen2ForCausalLM", 3584, 28, 28, 4, 18944, 152064, tie=False, qkv_bias=True)
QWEN25_1_5B = DecoderShape("qwen2", "Qwen2ForCausalLM", 1536, 28, 12, 2, 8960, 151936, qkv_bias=True)
QWEN25_0_5B = DecoderShape("qwen2", "Qwen2ForCausalLM", 896, 24, 14, 2, 4864, 151936, qkv_bias=True)
R1_DISTILL_1_5B = DecoderShape(
    "qwen2", "Qwen2ForCausalLM", 1536, 28, 12, 2, 8960, 151936, tie=False, qkv_bias=True, context=131072
)
LLAMA32_3B = DecoderShape(
    "llama", "LlamaForCausalLM", 3072, 28, 24, 8, 8192, 128256, head_dim=128, context=131072, rope_theta=500000.0
)
LLAMA32_1B = DecoderShape(
    "llama", "LlamaForCausalLM", 2048, 16, 32, 8, 8192, 128256, head_dim=64, context=131072, rope_theta=500000.0
)
MISTRAL_7B = DecoderShape("mistral", "MistralForCausalLM", 4096, 32, 32, 8, 14336, 32768, head_dim=128, tie=False)
GEMMA2_2B = DecoderShape(
    "gemma2",
    "Gemma2ForCausalLM",
    2304,
    26,
    8,
    4,
    9216,
    256000,
    head_dim=256,
    extra_norms=("pre_feedforward_layernorm", "post_feedforward_layernorm"),
    context=8192,
    rope_theta=10000.0,
)
SMOLLM2_135M = DecoderShape("llama", "LlamaForCausalLM", 576, 30, 9, 3, 1536, 49152, context=8192, rope_theta=100000.0)


def bert_tensors(hidden: int, layers: int, intermediate: int, vocab: int = 30522) -> dict[str, TensorSpec]:
    """A BERT encoder as sentence-transformers checkpoints store it (float32)."""
    out: dict[str, TensorSpec] = {
        "embeddings.word_embeddings.weight": ("F32", (vocab, hidden)),
        "embeddings.position_embeddings.weight": ("F32", (512, hidden)),
        "embeddings.token_type_embeddings.weight": ("F32", (2, hidden)),
        "embeddings.LayerNorm.weight": ("F32", (hidden,)),
        "embeddings.LayerNorm.bias": ("F32", (hidden,)),
    }
    for i in range(layers):
        layer = f"encoder.layer.{i}"
        for name, n_in, n_out in (
            ("attention.self.query", hidden, hidden),
            ("attention.self.key", hidden, hidden),
            ("attention.self.value", hidden, hidden),
            ("attention.output.dense", hidden, hidden),
            ("intermediate.dense", hidden, intermediate),
            ("output.dense", intermediate, hidden),
        ):
            out[f"{layer}.{name}.weight"] = ("F32", (n_out, n_in))
            out[f"{layer}.{name}.bias"] = ("F32", (n_out,))
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            out[f"{layer}.{norm}.weight"] = ("F32", (hidden,))
            out[f"{layer}.{norm}.bias"] = ("F32", (hidden,))
    out["pooler.dense.weight"] = ("F32", (hidden, hidden))
    out["pooler.dense.bias"] = ("F32", (hidden,))
    return out


# --------------------------------------------------------------------------------------------------------------------
# Builders


def make_tiny_mlx_repo(
    root: Path,
    repo_id: str = TINY_REPO_ID,
    *,
    bits: int | None = 4,
    hidden: int = 64,
    layers: int = 2,
    seed: int = 0,
    downloads: int = 1234,
    likes: int = 56,
    gated: bool | str = False,
    last_modified: str = "2025-01-15T10:00:00.000Z",
    created_at: str = "2025-01-10T09:00:00.000Z",
) -> Path:
    """A real random-weight MLX llama that mlx-lm loads, as a hub repo; returns its folder."""
    folder = make_tiny_llama(Path(root) / repo_id, hidden=hidden, layers=layers, seed=seed, bits=bits)
    quant = [f"{bits}-bit"] if bits else []
    (folder / "README.md").write_text(
        model_card(
            {
                "license": "apache-2.0",
                "library_name": "mlx",
                "tags": ["mlx", *quant],
                "pipeline_tag": "text-generation",
            },
            f"# {repo_id}\n\nA tiny random-weight llama for tests ({hidden} hidden, {layers} layers).",
        ),
        encoding="utf-8",
    )
    write_metadata(
        folder,
        {
            "downloads": downloads,
            "likes": likes,
            "trendingScore": 3,
            "tags": ["mlx", "safetensors", "llama", "text-generation", *quant, "license:apache-2.0"],
            "library_name": "mlx",
            "pipeline_tag": "text-generation",
            "lastModified": last_modified,
            "createdAt": created_at,
            "gated": gated,
        },
    )
    return folder


def _tokenizer_files(chat_template: str, vocab: int) -> dict[str, bytes | str]:
    return {
        "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab_size": vocab}}),
        "tokenizer_config.json": json.dumps({"chat_template": chat_template, "model_max_length": 131072}),
        "special_tokens_map.json": json.dumps({"bos_token": "<s>", "eos_token": "</s>"}),
    }


def make_mlx_placeholder_repo(
    root: Path,
    repo_id: str,
    shape: DecoderShape,
    *,
    bits: int = 4,
    base_model: str,
    license: str = "apache-2.0",
    tokenizer_size: int = 7_031_645,
    **meta: Any,
) -> Path:
    """An mlx-community style quantized repo with a header-only ``model.safetensors`` and realistic listed sizes."""
    weights = header_only_safetensors(shape.tensors(bits=bits), {"format": "mlx"})
    tags = ["mlx", "safetensors", shape.model_type, "text-generation", "conversational", f"{bits}-bit"]
    files: dict[str, bytes | str] = {
        "README.md": model_card(
            {
                "license": license,
                "base_model": base_model,
                "library_name": "mlx",
                "pipeline_tag": "text-generation",
                "tags": ["mlx", "chat"],
            },
            f"# {repo_id}\n\nThe model [{repo_id}](https://huggingface.co/{repo_id}) was converted to MLX format "
            f"from [{base_model}](https://huggingface.co/{base_model}) using mlx-lm.\n\n"
            "```bash\npip install mlx-lm\nmlx_lm.generate --model " + repo_id + ' --prompt "hello"\n```',
        ),
        "config.json": json.dumps(shape.config(bits=bits), indent=2),
        "model.safetensors": weights,
        **_tokenizer_files("{% for m in messages %}{{ m['content'] }}{% endfor %}", shape.vocab),
    }
    metadata = {
        "tags": [*tags, f"base_model:{base_model}", f"license:{license}"],
        "library_name": "mlx",
        "pipeline_tag": "text-generation",
        "file_sizes": {"model.safetensors": declared_safetensors_size(weights), "tokenizer.json": tokenizer_size},
        **meta,
    }
    return write_repo(root, repo_id, files, metadata)


def make_transformers_placeholder_repo(
    root: Path,
    repo_id: str,
    shape: DecoderShape,
    *,
    shards: int = 1,
    license: str,
    tokenizer_size: int,
    extra_tags: tuple[str, ...] = (),
    **meta: Any,
) -> Path:
    """A transformers (bf16) repo; with ``shards`` > 1 its weights are split like ``save_pretrained`` does."""
    tensors = shape.tensors()
    names = list(tensors)
    per_shard = math.ceil(len(names) / shards)
    files: dict[str, bytes | str] = {}
    sizes: dict[str, int] = {"tokenizer.json": tokenizer_size}
    weight_map: dict[str, str] = {}
    for i in range(shards):
        part = {name: tensors[name] for name in names[i * per_shard : (i + 1) * per_shard]}
        filename = "model.safetensors" if shards == 1 else f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        header = header_only_safetensors(part)
        files[filename] = header
        sizes[filename] = declared_safetensors_size(header)
        weight_map.update(dict.fromkeys(part, filename))
    if shards > 1:
        total = sum(size for name, size in sizes.items() if name.endswith(".safetensors"))
        files["model.safetensors.index.json"] = json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2
        )
    files["config.json"] = json.dumps(shape.config(), indent=2)
    files["generation_config.json"] = json.dumps({"do_sample": True, "temperature": 0.6, "top_p": 0.9})
    files.update(_tokenizer_files("{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}", shape.vocab))
    files["README.md"] = model_card(
        {
            "license": license,
            "library_name": "transformers",
            "pipeline_tag": "text-generation",
            "language": ["en"],
            "tags": [shape.model_type, *extra_tags],
        },
        f"# {repo_id.split('/')[1]}\n\nAn instruction-tuned {shape.model_type} model.",
    )
    metadata = {
        "tags": [
            "transformers",
            "safetensors",
            shape.model_type,
            "text-generation",
            "conversational",
            *extra_tags,
            "en",
            f"license:{license}",
        ],
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "file_sizes": sizes,
        **meta,
    }
    return write_repo(root, repo_id, files, metadata)


def make_sentence_transformers_repo(
    root: Path, repo_id: str, *, hidden: int, layers: int, intermediate: int, **meta: Any
) -> Path:
    """A sentence-transformers BERT encoder repo (header-only float32 weights)."""
    weights = header_only_safetensors(bert_tensors(hidden, layers, intermediate))
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": hidden // 32,
        "intermediate_size": intermediate,
        "max_position_embeddings": 512,
        "vocab_size": 30522,
        "torch_dtype": "float32",
    }
    files: dict[str, bytes | str] = {
        "README.md": model_card(
            {
                "license": "apache-2.0",
                "library_name": "sentence-transformers",
                "pipeline_tag": "sentence-similarity",
                "language": ["en"],
                "tags": ["sentence-transformers", "feature-extraction", "sentence-similarity"],
            },
            f"# {repo_id.split('/')[1]}\n\nMaps sentences to a {hidden}-dimensional dense vector space.",
        ),
        "config.json": json.dumps(config, indent=2),
        "model.safetensors": weights,
        "modules.json": json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]
        ),
        "sentence_bert_config.json": json.dumps({"max_seq_length": 256, "do_lower_case": False}),
        "config_sentence_transformers.json": json.dumps({"__version__": {"sentence_transformers": "2.0.0"}}),
        "1_Pooling/config.json": json.dumps({"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True}),
        "vocab.txt": "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) + "\n",
        "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "WordPiece"}}),
    }
    metadata = {
        "tags": [
            "sentence-transformers",
            "pytorch",
            "safetensors",
            "bert",
            "feature-extraction",
            "sentence-similarity",
            "en",
            "license:apache-2.0",
        ],
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "file_sizes": {"model.safetensors": declared_safetensors_size(weights), "tokenizer.json": 466_247},
        **meta,
    }
    return write_repo(root, repo_id, files, metadata)


def make_gguf_repo(root: Path, repo_id: str, base_model: str, quants: Mapping[str, int], **meta: Any) -> Path:
    """A bartowski-style GGUF repo: one placeholder ``.gguf`` per quantization (name → listed size)."""
    stem = repo_id.split("/")[1].removesuffix("-GGUF")
    files: dict[str, bytes | str] = {f"{stem}-{quant}.gguf": placeholder_gguf() for quant in quants}
    files["README.md"] = model_card(
        {
            "base_model": base_model,
            "license": "llama3.2",
            "pipeline_tag": "text-generation",
            "quantized_by": "bartowski",
            "tags": ["llama", "gguf"],
        },
        f"# Llamacpp imatrix Quantizations of {stem}\n\n"
        + "\n".join(f"- {stem}-{quant}.gguf ({size / 1e9:.2f} GB)" for quant, size in quants.items()),
    )
    metadata = {
        "tags": ["gguf", "llama", "text-generation", f"base_model:{base_model}", "license:llama3.2", "conversational"],
        "pipeline_tag": "text-generation",
        "file_sizes": {f"{stem}-{quant}.gguf": size for quant, size in quants.items()},
        **meta,
    }
    return write_repo(root, repo_id, files, metadata)


def make_demo_hub(root: Path) -> list[str]:
    """The tiny MLX repo plus a dozen browsable repos with realistic ids, shapes, sizes and metadata."""
    root = Path(root)
    make_tiny_mlx_repo(root)
    make_mlx_placeholder_repo(
        root,
        "mlx-community/Qwen2.5-Coder-7B-Instruct-4bit",
        QWEN25_7B,
        base_model="Qwen/Qwen2.5-Coder-7B-Instruct",
        downloads=48_213,
        likes=38,
        trendingScore=12,
        lastModified="2024-11-12T08:41:23.000Z",
        createdAt="2024-09-18T22:05:11.000Z",
    )
    make_mlx_placeholder_repo(
        root,
        "mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit",
        QWEN25_1_5B,
        base_model="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        downloads=9_874,
        likes=7,
        trendingScore=2,
        lastModified="2024-11-12T08:12:02.000Z",
        createdAt="2024-09-18T21:40:54.000Z",
    )
    make_mlx_placeholder_repo(
        root,
        "mlx-community/Llama-3.2-3B-Instruct-4bit",
        LLAMA32_3B,
        base_model="meta-llama/Llama-3.2-3B-Instruct",
        license="llama3.2",
        tokenizer_size=17_209_920,
        downloads=187_352,
        likes=94,
        trendingScore=21,
        lastModified="2024-10-02T13:15:47.000Z",
        createdAt="2024-09-25T18:56:02.000Z",
    )
    make_mlx_placeholder_repo(
        root,
        "mlx-community/Llama-3.2-1B-Instruct-4bit",
        LLAMA32_1B,
        base_model="meta-llama/Llama-3.2-1B-Instruct",
        license="llama3.2",
        tokenizer_size=17_209_920,
        downloads=93_115,
        likes=51,
        trendingScore=9,
        lastModified="2024-10-02T13:10:11.000Z",
        createdAt="2024-09-25T18:49:30.000Z",
    )
    make_mlx_placeholder_repo(
        root,
        "mlx-community/Mistral-7B-Instruct-v0.3-4bit",
        MISTRAL_7B,
        base_model="mistralai/Mistral-7B-Instruct-v0.3",
        tokenizer_size=3_671_473,
        downloads=61_402,
        likes=29,
        trendingScore=4,
        lastModified="2024-05-23T06:51:39.000Z",
        createdAt="2024-05-22T16:37:08.000Z",
    )
    make_mlx_placeholder_repo(
        root,
        "mlx-community/gemma-2-2b-it-4bit",
        GEMMA2_2B,
        base_model="google/gemma-2-2b-it",
        license="gemma",
        tokenizer_size=17_525_357,
        downloads=22_730,
        likes=15,
        trendingScore=1,
        lastModified="2024-08-01T09:22:15.000Z",
        createdAt="2024-07-31T18:03:44.000Z",
    )
    make_mlx_placeholder_repo(
        root,
        "mlx-community/SmolLM2-135M-Instruct-8bit",
        SMOLLM2_135M,
        bits=8,
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        tokenizer_size=2_104_556,
        downloads=3_310,
        likes=4,
        trendingScore=1,
        lastModified="2024-11-05T11:30:00.000Z",
        createdAt="2024-11-01T10:12:45.000Z",
    )
    make_mlx_placeholder_repo(
        root,
        "mlx-community/DeepSeek-R1-Distill-Qwen-1.5B-4bit",
        R1_DISTILL_1_5B,
        base_model="deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
        license="mit",
        downloads=120_544,
        likes=62,
        trendingScore=30,
        lastModified="2025-01-21T07:49:12.000Z",
        createdAt="2025-01-20T18:22:37.000Z",
    )
    make_transformers_placeholder_repo(
        root,
        "meta-llama/Llama-3.2-3B-Instruct",
        LLAMA32_3B,
        shards=2,
        license="llama3.2",
        tokenizer_size=17_209_920,
        extra_tags=("facebook", "meta", "pytorch", "llama-3"),
        author="meta-llama",
        gated="manual",
        downloads=1_523_118,
        likes=1_402,
        trendingScore=45,
        lastModified="2024-10-24T15:07:29.000Z",
        createdAt="2024-09-18T15:19:20.000Z",
    )
    make_transformers_placeholder_repo(
        root,
        "Qwen/Qwen2.5-0.5B-Instruct",
        QWEN25_0_5B,
        license="apache-2.0",
        tokenizer_size=7_031_645,
        extra_tags=("chat",),
        downloads=812_904,
        likes=301,
        trendingScore=17,
        lastModified="2024-09-25T12:32:56.000Z",
        createdAt="2024-09-16T11:55:40.000Z",
    )
    make_sentence_transformers_repo(
        root,
        "sentence-transformers/all-MiniLM-L6-v2",
        hidden=384,
        layers=6,
        intermediate=1536,
        downloads=96_120_733,
        likes=3_512,
        trendingScore=40,
        lastModified="2024-11-01T10:26:30.000Z",
        createdAt="2022-03-02T23:29:05.000Z",
    )
    make_sentence_transformers_repo(
        root,
        "BAAI/bge-small-en-v1.5",
        hidden=384,
        layers=12,
        intermediate=1536,
        downloads=4_812_355,
        likes=318,
        trendingScore=8,
        lastModified="2024-02-22T03:36:23.000Z",
        createdAt="2023-09-12T05:20:55.000Z",
    )
    make_gguf_repo(
        root,
        "bartowski/Llama-3.2-3B-Instruct-GGUF",
        "meta-llama/Llama-3.2-3B-Instruct",
        {"Q4_K_M": 2_019_377_696, "Q5_K_M": 2_322_154_016, "Q8_0": 3_421_899_296},
        gguf={"total": 3_212_749_888, "architecture": "llama", "context_length": 131072},
        downloads=201_877,
        likes=133,
        trendingScore=6,
        lastModified="2024-09-27T04:43:03.000Z",
        createdAt="2024-09-25T18:14:58.000Z",
    )
    return RepoStore(root).repo_ids()


def make_many_repos(root: Path, n: int, org: str = "loopback") -> list[str]:
    """``n`` small repos ``<org>/model-000``... with varied downloads, likes and dates (for paging and sorting)."""
    ids = []
    for i in range(n):
        repo_id = f"{org}/model-{i:03d}"
        library = "mlx" if i % 2 == 0 else "transformers"
        write_repo(
            root,
            repo_id,
            {
                "README.md": model_card({"license": "mit", "library_name": library}, f"# {repo_id}"),
                "config.json": json.dumps({"model_type": "llama", "num_hidden_layers": 2 + i % 4}),
            },
            {
                "downloads": (i * 7919) % 1000,
                "likes": i,
                "trendingScore": n - i,
                "tags": [library, "text-generation"],
                "library_name": library,
                "pipeline_tag": "text-generation",
                "lastModified": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00.000Z",
                "createdAt": f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00.000Z",
            },
        )
        ids.append(repo_id)
    return ids
