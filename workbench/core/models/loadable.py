"""Which backend can load a model folder (a cache snapshot, an import), and when none can, why: read from the
files alone, without importing mlx-lm or sentence-transformers. The registry asks this for every folder it lists,
so the Catalog's "downloaded", the Models view, `workbench ls` and the cache view share one rule."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.core.models.backends import mlx_lm, sentence_transformers

# mlx_lm.utils.MODEL_REMAPPING (mlx-lm 0.32): model types it loads with another architecture's module.
MLX_LM_REMAPPING = {
    "mistral": "llama",
    "llava": "mistral3",
    "phi-msft": "phixtral",
    "falcon_mamba": "mamba",
    "joyai_llm_flash": "deepseek_v3",
    "kimi_k2": "deepseek_v3",
    "qwen2_5_vl": "qwen2_vl",
    "minimax_m2": "minimax",
    "iquestcoder": "llama",
    "xverse": "llama",
    "gemma4_unified": "gemma4",
    "deepseek_v41_text": "deepseek_v41",
}
SENTENCE_TRANSFORMERS_MARKERS = ("modules.json", "config_sentence_transformers.json")
TORCH_WEIGHTS = ("*.bin", "*.pt", "*.pth")


@dataclass(frozen=True)
class Loadability:
    kind: str | None  # the backend that loads the folder ("mlx-lm", "sentence-transformers"), None: none can
    why: str = ""  # when none can, what is missing or unsupported, in words

    @property
    def loadable(self) -> bool:
        return self.kind is not None


def loadability(folder: Path) -> Loadability:
    """Who loads ``folder``: a sentence-transformers embedder (modules.json and safetensors weights), else a chat
    model mlx-lm has an architecture for (config.json, top-level safetensors); otherwise why not."""
    if is_sentence_transformers_snapshot(folder):
        return Loadability(sentence_transformers.KIND)
    if not folder.is_dir() or not any(folder.iterdir()):
        return Loadability(None, "no files")
    config_path = folder / "config.json"
    if not config_path.is_file():
        if any(folder.glob("*.gguf")):
            return Loadability(None, "GGUF files only: `workbench import-gguf FILE` converts one for MLX")
        return Loadability(None, "no config.json")
    if not any(folder.glob("*.safetensors")):
        if any(any(folder.glob(pattern)) for pattern in TORCH_WEIGHTS):
            return Loadability(None, "PyTorch weights only: MLX needs safetensors")
        return Loadability(None, "no safetensors weights")
    if any((folder / marker).exists() for marker in SENTENCE_TRANSFORMERS_MARKERS):
        return Loadability(None, "a sentence-transformers repo without modules.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return Loadability(None, f"unreadable config.json: {exc}")
    model_type = _model_type(config) if isinstance(config, dict) else None
    if model_type is None:
        return Loadability(None, "config.json names no model_type")
    if not mlx_lm_installed():
        return Loadability(None, "mlx-lm is not installed")
    if not mlx_lm_supports(model_type):
        return Loadability(None, f"mlx-lm has no architecture for model_type {model_type!r}")
    return Loadability(mlx_lm.KIND)


def is_sentence_transformers_snapshot(folder: Path) -> bool:
    return (folder / "modules.json").is_file() and any(folder.rglob("*.safetensors"))


def is_mlx_model_dir(path: Path) -> bool:
    """A finished MLX folder of ours (an import writes its weights last)."""
    return (path / "config.json").is_file() and any(path.glob("model*.safetensors"))


def _model_type(config: dict[str, Any]) -> str | None:
    model_type = config.get("model_type")
    text_config = config.get("text_config")
    if not isinstance(model_type, str) and isinstance(text_config, dict):
        model_type = text_config.get("model_type")
    return model_type if isinstance(model_type, str) else None


def _mlx_lm_roots() -> list[Path]:
    spec = importlib.util.find_spec("mlx_lm")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(root) for root in spec.submodule_search_locations]


def mlx_lm_installed() -> bool:
    return bool(_mlx_lm_roots())


def mlx_lm_supports(model_type: str | None) -> bool:
    """Whether mlx-lm has an architecture module for ``model_type``, found without importing mlx-lm."""
    if not model_type:
        return False
    module = MLX_LM_REMAPPING.get(model_type, model_type)
    return any((root / "models" / f"{module}.py").is_file() for root in _mlx_lm_roots())
