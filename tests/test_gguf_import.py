"""GGUF import: the row un-permutation, clear errors that leave nothing behind, and real imports of SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from workbench.core.models.gguf_import import (
    NotAGgufError,
    UnsupportedArchitectureError,
    import_gguf,
    mlx_name,
    unpermute_rows,
)


def permute_like_llama_cpp(rows: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's converter: each head's rows go from (2, half) to (half, 2)."""
    shape = rows.shape
    return rows.reshape(n_heads, 2, shape[0] // n_heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def test_unpermute_undoes_llama_cpp_row_order() -> None:
    original = np.arange(12 * 4).reshape(12, 4)
    assert np.array_equal(unpermute_rows(permute_like_llama_cpp(original, 3), 3), original)


def test_tensor_names_map_to_mlx_lm_llama() -> None:
    assert mlx_name("blk.3.attn_q.scales") == "model.layers.3.self_attn.q_proj.scales"
    assert mlx_name("blk.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm.weight"
    assert mlx_name("token_embd.biases") == "model.embed_tokens.biases"
    assert mlx_name("output_norm.weight") == "model.norm.weight"
    assert mlx_name("output.weight") == "lm_head.weight"
    assert mlx_name("rope_freqs.weight") is None


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_file_that_is_not_gguf_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 definitely a zip file")
    out = tmp_path / "models"
    with pytest.raises(NotAGgufError, match="not a GGUF file"):
        import_gguf(fake, out / "fake")
    assert leftovers(out) == []


def write_gguf(path: Path, arch: str, sampling: dict[str, float] | None = None) -> Path:
    """A complete one-layer float32 llama (or another architecture's name on the same tensors); ``sampling``
    adds llama.cpp's general.sampling.* keys (floats, except top_k)."""
    import gguf

    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_context_length(128)
    writer.add_embedding_length(32)
    writer.add_feed_forward_length(64)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_token_list([f"t{i}" for i in range(8)])
    for key, value in (sampling or {}).items():
        (writer.add_uint32 if key == "top_k" else writer.add_float32)(f"general.sampling.{key}", value)
    shapes = {
        "token_embd.weight": (8, 32), "output_norm.weight": (32,), "blk.0.attn_norm.weight": (32,),
        "blk.0.ffn_norm.weight": (32,), "blk.0.attn_q.weight": (32, 32), "blk.0.attn_k.weight": (32, 32),
        "blk.0.attn_v.weight": (32, 32), "blk.0.attn_output.weight": (32, 32),
        "blk.0.ffn_gate.weight": (64, 32), "blk.0.ffn_up.weight": (64, 32), "blk.0.ffn_down.weight": (32, 64),
    }  # fmt: skip
    for name, shape in shapes.items():
        writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_an_architecture_that_cannot_be_converted_is_refused(tmp_path: Path) -> None:
    source = write_gguf(tmp_path / "bert.gguf", "bert")
    out = tmp_path / "models"
    with pytest.raises(UnsupportedArchitectureError, match="'bert' cannot be converted"):
        import_gguf(source, out / "bert")
    assert leftovers(out) == []


def test_a_failure_midway_leaves_nothing_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import workbench.core.models.gguf_import as module

    def broken_tokenizer(gguf_path: Path, out_dir: Path) -> None:
        (out_dir / "tokenizer.json").write_text("{")
        raise OSError("disk full")

    monkeypatch.setattr(module, "_save_tokenizer", broken_tokenizer)
    source = write_gguf(tmp_path / "tiny.gguf", "llama")
    out = tmp_path / "models"
    with pytest.raises(OSError, match="disk full"):
        import_gguf(source, out / "tiny")
    assert leftovers(out) == []


def test_a_float_gguf_converts_with_quantized_linear_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import workbench.core.models.gguf_import as module

    monkeypatch.setattr(module, "_save_tokenizer", lambda gguf_path, out_dir: None)
    folder = import_gguf(write_gguf(tmp_path / "tiny.gguf", "llama"), tmp_path / "models" / "tiny", bits=4)
    config = json.loads((folder / "config.json").read_text())
    assert config["num_attention_heads"] == 2 and config["tie_word_embeddings"] is True
    assert config["quantization"] == {"group_size": 32, "bits": 4}
    assert (folder / "model.safetensors").is_file()


def test_generation_config_takes_the_ggufs_sampling_keys_over_the_defaults_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workbench.core.models.gguf_import as module

    monkeypatch.setattr(module, "_save_tokenizer", lambda gguf_path, out_dir: None)
    plain = import_gguf(write_gguf(tmp_path / "plain.gguf", "llama"), tmp_path / "models" / "plain")
    assert not (plain / "generation_config.json").exists()  # nothing to say: the app's defaults apply
    source = write_gguf(tmp_path / "tuned.gguf", "llama", {"temp": 0.5, "top_k": 20})
    folder = import_gguf(source, tmp_path / "models" / "tuned", generation={"temperature": 0.1, "top_p": 0.8})
    written = json.loads((folder / "generation_config.json").read_text())
    assert written["do_sample"] is True and written["temperature"] == 0.5  # the file's own value wins
    assert (written["top_k"], written["top_p"]) == (20, 0.8)
    greedy = import_gguf(write_gguf(tmp_path / "g.gguf", "llama"), tmp_path / "models" / "g",
                         generation={"temperature": 0})  # fmt: skip
    written = json.loads((greedy / "generation_config.json").read_text())
    assert written["do_sample"] is False and "temperature" not in written  # as transformers wants greedy said


@pytest.mark.real_model
def test_smollm2_import_keeps_the_native_4bit_blocks(smollm2_dir: Path) -> None:
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["quantization"]["bits"] == 4 and config["quantization"]["group_size"] == 32
    assert config["quantization"]["model.embed_tokens"] == {"group_size": 32, "bits": 8}  # Q8_0 stays 8-bit
    assert config["rope_theta"] == 100000.0 and config["tie_word_embeddings"] is True
    from workbench.core.chat.model_sampling import sampling_from_generation_config
    from workbench.core.models.local import EMBEDDED_CHAT_GENERATION

    generation = json.loads((smollm2_dir / "generation_config.json").read_text())
    wanted = sampling_from_generation_config(EMBEDDED_CHAT_GENERATION)
    assert sampling_from_generation_config(generation) == wanted and wanted
    template = (smollm2_dir / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template
    assert json.loads((smollm2_dir / "workbench-import.json").read_text())["quantization"] == "Q4_1"
    assert not list(smollm2_dir.parent.glob(".*partial"))


@pytest.mark.real_model
def test_8_and_16_bit_imports_load(tmp_path: Path) -> None:
    import mlx.core as mx
    import mlx_lm

    from workbench.core.models.local import smollm2_gguf

    for bits in (8, 16):
        folder = import_gguf(smollm2_gguf(), tmp_path / f"smol-{bits}", bits=bits)
        config = json.loads((folder / "config.json").read_text())
        model, _tokenizer = mlx_lm.load(str(folder))
        q_proj = model.model.layers[0].self_attn.q_proj
        if bits == 8:
            assert config["quantization"]["bits"] == 8 and q_proj.bits == 8
        else:
            assert "quantization" not in config and q_proj.weight.dtype == mx.float16
        del model
