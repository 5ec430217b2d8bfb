"""Ollama's /api/pull through the download queue from the loopback hub (org/repo, hf.co/org/repo, a GGUF
quantization whose architecture does not convert), and /api/delete through the registry."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import numpy as np
import ollama
import pytest

from tests.support.fake_chat import services_with_fake
from tests.support.hub_repos import make_tiny_mlx_repo, write_repo
from tests.support.hub_server import LoopbackHub
from workbench.bootstrap import Services
from workbench.core.settings.paths import AppPaths
from workbench.server.openai import build_app, listen

WAIT = 60
MLX_REPO = "test-org/tiny-mlx"
GGUF_REPO = "test-org/Qwen-Tiny-GGUF"
GGUF_FILE = "Qwen-Tiny-Q4_K_M.gguf"


def qwen_gguf(path: Path) -> Path:
    """A tiny GGUF of an architecture the import does not convert (qwen2)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_file_type(15)  # Q4_K_M
    writer.add_context_length(2048)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ollama-pull-hub")
    make_tiny_mlx_repo(root, MLX_REPO)
    gguf_path = qwen_gguf(tmp_path_factory.mktemp("gguf") / GGUF_FILE)
    write_repo(root, GGUF_REPO, {GGUF_FILE: gguf_path.read_bytes()}, {"tags": ["gguf"], "library_name": "gguf"})
    return root


@pytest.fixture
def hub(hub_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackHub]:
    """The loopback hub, with huggingface_hub allowed online (to 127.0.0.1 only) and no token."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with LoopbackHub(hub_root) as server:
        yield server


@pytest.fixture
async def api(app_paths: AppPaths, hub: LoopbackHub, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[ollama.AsyncClient, Services, str]]:  # fmt: skip
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    services, _backend = services_with_fake(app_paths)
    services.hf_cache = tmp_path / "hf-cache"
    runner, base = await listen(build_app(services), "127.0.0.1", 0)
    url = base.removesuffix("/v1")
    try:
        yield ollama.AsyncClient(host=url, timeout=WAIT), services, url
    finally:
        await runner.cleanup()
        await services.aclose()


async def test_pull_streams_progress_and_registers_the_model(api: tuple[ollama.AsyncClient, Services, str]) -> None:
    client, services, _url = api
    lines = [line async for line in await client.pull(f"hf.co/{MLX_REPO}", stream=True)]
    statuses = [line.status for line in lines]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert statuses.index("verifying sha256 digest") < statuses.index("success")
    weights = [line for line in lines if line.digest == "model.safetensors"]
    assert weights and weights[-1].total and weights[-1].completed == weights[-1].total
    assert (services.downloads.jobs()[0].repo_id, services.downloads.jobs()[0].state) == (MLX_REPO, "done")
    assert MLX_REPO in [model.model for model in (await client.list()).models]
    shown = await client.show(f"hf.co/{MLX_REPO}:latest")  # the name it was pulled with
    assert shown.details is not None and shown.details.family == "llama" and shown.details.quantization_level
    again = await client.pull(MLX_REPO)  # whole; the job is done: nothing fetched twice
    assert again.status == "success"


async def test_delete_goes_through_the_registry(api: tuple[ollama.AsyncClient, Services, str]) -> None:
    client, services, url = api
    await client.pull(MLX_REPO)
    await client.delete(MLX_REPO)
    assert MLX_REPO not in [model.model for model in (await client.list()).models]
    assert MLX_REPO not in [info.spec.id for info in services.manager.models()]
    with pytest.raises(ollama.ResponseError) as raised:
        await client.delete(MLX_REPO)
    assert raised.value.status_code == 404
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{url}/api/delete", data=json.dumps({"model": "all-MiniLM-L6-v2"})) as response:
            assert response.status == 400 and "built in" in (await response.json())["error"]


async def test_a_gguf_whose_architecture_does_not_convert_is_refused(
    api: tuple[ollama.AsyncClient, Services, str],
) -> None:
    client, services, _url = api
    with pytest.raises(ollama.ResponseError, match="architecture 'qwen2' does not convert") as raised:
        async for _line in await client.pull(f"hf.co/{GGUF_REPO}:q4_k_m", stream=True):
            pass
    assert "stays in the cache" in str(raised.value)
    job = services.downloads.jobs()[0]
    assert job.state == "done" and job.files == [GGUF_FILE]
    assert not any(info.spec.id.startswith("Qwen-Tiny") for info in services.manager.models())


async def test_names_that_are_not_hub_repos_are_refused(api: tuple[ollama.AsyncClient, Services, str]) -> None:
    client, _services, _url = api
    with pytest.raises(ollama.ResponseError, match="pulls from Hugging Face") as raised:
        await client.pull("llama3.2")
    assert raised.value.status_code == 400
    with pytest.raises(ollama.ResponseError, match="not a quantization") as raised:
        await client.pull("hf.co/org/repo:Q4 K M")
    assert raised.value.status_code == 400


@pytest.mark.real_model
async def test_a_gguf_pull_imports_the_real_smollm2_and_it_answers(
    hub_root: Path, api: tuple[ollama.AsyncClient, Services, str]
) -> None:
    """hf.co/org/repo:QUANT fetches that GGUF, imports it for MLX, and the pulled name chats (a few tokens)."""
    from workbench.core.models.local import smollm2_gguf

    repo = "test-org/SmolLM2-135M-Instruct-GGUF"
    (hub_root / repo).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(smollm2_gguf(), hub_root / repo / smollm2_gguf().name)  # SmolLM2-135M-Instruct.Q4_1.gguf
    client, _services, _url = api
    name = f"hf.co/{repo}:Q4_1"
    statuses = [line.status async for line in await client.pull(name, stream=True)]
    assert statuses[-1] == "success" and any("converting" in (status or "") for status in statuses)
    shown = await client.show(name)
    assert shown.details is not None
    assert (shown.details.family, shown.details.parameter_size, shown.details.quantization_level) == (
        "llama", "135M", "Q4_1")  # fmt: skip
    answer = await client.chat(name, messages=[{"role": "user", "content": "What is the capital of France?"}],
                               options={"temperature": 0, "num_predict": 8}, keep_alive=0)  # fmt: skip
    assert answer.message.content and answer.eval_count and answer.eval_count <= 8
    assert (await client.ps()).models == []  # keep_alive 0: unloaded with the answer
    assert "SmolLM2-135M-Instruct-GGUF-Q4_1" in [model.model for model in (await client.list()).models]
