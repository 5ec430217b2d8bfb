"""The loopback hub, driven only through huggingface_hub (real HTTP on 127.0.0.1) and, for raw bytes, urllib."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

from tests.support.hub_repos import TINY_REPO_ID, make_demo_hub, make_many_repos, write_repo
from tests.support.hub_server import HubLies, LoopbackHub

GATED_ID = "meta-llama/Llama-3.2-3B-Instruct"
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(autouse=True)
def hub_client_online(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite runs huggingface_hub offline and without Xet; these tests talk to 127.0.0.1 only."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo-hub")
    make_demo_hub(root)
    return root


@pytest.fixture
def hub(demo_root: Path) -> Iterator[LoopbackHub]:
    with LoopbackHub(demo_root) as server:
        yield server


@pytest.fixture
def api(hub: LoopbackHub) -> HfApi:
    return HfApi(endpoint=hub.url, token=False)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def raw_get(url: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


# -- listing ----------------------------------------------------------------------------------------------------------


def test_list_models_search_author_filter(api: HfApi) -> None:
    qwen = {m.id for m in api.list_models(search="QWEN")}
    assert qwen == {
        "mlx-community/Qwen2.5-Coder-7B-Instruct-4bit",
        "mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit",
        "mlx-community/DeepSeek-R1-Distill-Qwen-1.5B-4bit",
        "Qwen/Qwen2.5-0.5B-Instruct",
    }
    assert {m.id for m in api.list_models(search="qwen", author="Qwen")} == {"Qwen/Qwen2.5-0.5B-Instruct"}

    mlx = [m for m in api.list_models(filter="mlx")]
    assert len(mlx) == 9 and all(m.id.startswith("mlx-community/") for m in mlx)
    assert all(m.library_name == "mlx" and "mlx" in m.tags for m in mlx)
    eight_bit = {m.id for m in api.list_models(filter=["mlx", "8-bit"])}
    assert eight_bit == {"mlx-community/SmolLM2-135M-Instruct-8bit"}
    similarity = {m.id for m in api.list_models(pipeline_tag="sentence-similarity")}
    assert similarity == {MINILM_ID, "BAAI/bge-small-en-v1.5"}
    assert {m.id for m in api.list_models(filter="gguf")} == {"bartowski/Llama-3.2-3B-Instruct-GGUF"}


def test_list_models_sorts_descending(api: HfApi) -> None:
    by_downloads = list(api.list_models(sort="downloads"))
    downloads = [m.downloads for m in by_downloads]
    assert downloads == sorted(downloads, reverse=True) and by_downloads[0].id == MINILM_ID
    likes = [m.likes for m in api.list_models(sort="likes", author="mlx-community")]
    assert likes == sorted(likes, reverse=True) and len(likes) == 9
    created = [m.created_at for m in api.list_models(sort="created_at")]
    assert created == sorted(created, reverse=True)  # type: ignore[type-var]
    modified = [m.last_modified for m in api.list_models(sort="last_modified")]
    assert modified == sorted(modified, reverse=True)  # type: ignore[type-var]
    trending = [m.trending_score for m in api.list_models(sort="trending_score")]
    assert trending == sorted(trending, reverse=True)  # type: ignore[type-var]


def test_list_models_pages_through_link_header(tmp_path: Path) -> None:
    make_many_repos(tmp_path, 45)
    with LoopbackHub(tmp_path) as hub:
        api = HfApi(endpoint=hub.url, token=False)
        everything = list(api.list_models())  # no limit: the server's 30 a page, then the Link header
        assert len(everything) == 45 and len({m.id for m in everything}) == 45
        listings = [r for r in hub.requests if r.path == "/api/models"]
        assert len(listings) == 2 and "cursor=" in listings[1].query

        hub.reset_counters()
        first = list(api.list_models(limit=20, sort="likes"))
        assert [m.likes for m in first] == list(range(44, 24, -1))
        assert len([r for r in hub.requests if r.path == "/api/models"]) == 1  # the client stops after its limit

        hub.page_size = 20
        mlx = list(api.list_models(filter="mlx", sort="downloads"))
        assert len(mlx) == 23 and all(m.library_name == "mlx" for m in mlx)
        assert [m.downloads for m in mlx] == sorted((m.downloads for m in mlx), reverse=True)

        status, headers, body = raw_get(f"{hub.url}/api/models?limit=20&filter=mlx")
        assert status == 200 and len(json.loads(body)) == 20
        assert headers["Link"].startswith(f"<{hub.url}/api/models?") and headers["Link"].endswith('>; rel="next"')


def test_expand_fields_round_trip_into_model_info(api: HfApi, demo_root: Path) -> None:
    expand = ["safetensors", "siblings", "cardData", "downloads", "likes", "usedStorage", "config", "gated", "sha"]
    (tiny,) = api.list_models(search="tiny-llama", expand=expand)  # type: ignore[arg-type]
    assert tiny.id == TINY_REPO_ID
    assert tiny.downloads == 1234 and tiny.likes == 56 and tiny.gated is False and len(tiny.sha or "") == 40
    assert tiny.safetensors is not None and tiny.safetensors.total == sum(tiny.safetensors.parameters.values())
    assert set(tiny.safetensors.parameters) == {"U32", "F32"}
    assert (
        tiny.card_data is not None and tiny.card_data.license == "apache-2.0" and tiny.card_data.library_name == "mlx"
    )
    assert tiny.config is not None and tiny.config["model_type"] == "llama" and tiny.config["num_hidden_layers"] == 2
    assert tiny.config["quantization"] == {"group_size": 32, "bits": 4}
    files = {s.rfilename for s in tiny.siblings or []}
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json"} <= files and ".hub.json" not in files
    on_disk = sum(p.stat().st_size for p in (demo_root / TINY_REPO_ID).rglob("*") if p.name != ".hub.json")
    assert tiny.used_storage == on_disk
    assert tiny.pipeline_tag is None and tiny.tags is None  # expand returns only what it names

    (coder,) = api.list_models(search="Coder-7B", expand=["safetensors", "config", "usedStorage"])
    assert coder.safetensors is not None and 1.1e9 < coder.safetensors.total < 1.3e9  # packed 4-bit, like the hub
    assert coder.config == {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "quantization_config": {"group_size": 64, "bits": 4},
        "quantization": {"group_size": 64, "bits": 4},
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "hidden_size": 3584,
    }
    assert 4.0e9 < (coder.used_storage or 0) < 4.6e9

    (full,) = api.list_models(search="all-MiniLM", full=True)
    assert full.siblings is not None and full.card_data is not None and full.last_modified is not None
    (with_card,) = api.list_models(search="all-MiniLM", cardData=True)
    assert with_card.card_data is not None and "sentence-transformers" in (with_card.card_data.tags or [])
    assert with_card.siblings is None


def test_model_info_files_metadata(api: HfApi, demo_root: Path) -> None:
    info = api.model_info(TINY_REPO_ID, files_metadata=True)
    assert info.sha is not None and info.pipeline_tag == "text-generation" and info.library_name == "mlx"
    assert "4-bit" in (info.tags or []) and info.card_data is not None
    siblings = {s.rfilename: s for s in info.siblings or []}
    weights = siblings["model.safetensors"]
    path = demo_root / TINY_REPO_ID / "model.safetensors"
    assert weights.size == path.stat().st_size and weights.lfs is not None
    assert weights.lfs.sha256 == sha256_of(path) and weights.lfs.size == weights.size
    config = siblings["config.json"]
    data = (demo_root / TINY_REPO_ID / "config.json").read_bytes()
    assert config.lfs is None and config.blob_id == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    assert api.model_info(TINY_REPO_ID, revision=info.sha).sha == info.sha
    assert api.model_info(TINY_REPO_ID, revision="main").sha == info.sha

    gated = api.model_info(GATED_ID, files_metadata=True)  # like the hub: metadata is public, files are not
    assert gated.gated == "manual"
    shards = {s.rfilename: s.size for s in gated.siblings or [] if s.rfilename.endswith(".safetensors")}
    assert set(shards) == {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
    assert 6.3e9 < sum(shards.values()) < 6.6e9  # listed sizes are the real-world ones
    assert gated.safetensors is not None and gated.safetensors.parameters == {"BF16": 3_212_749_824}


def test_commit_sha_follows_the_files(tmp_path: Path) -> None:
    folder = write_repo(tmp_path, "org/model", {"a.txt": "one"}, {"downloads": 1})
    with LoopbackHub(tmp_path) as hub:
        api = HfApi(endpoint=hub.url, token=False)
        before = api.model_info("org/model").sha
        assert api.model_info("org/model").sha == before
        (folder / "a.txt").write_text("two")
        after = api.model_info("org/model").sha
        assert after != before and len(after or "") == 40
        with pytest.raises(RevisionNotFoundError):
            api.model_info("org/model", revision=before)


def test_repo_tree_and_paths_info(api: HfApi, hub: LoopbackHub) -> None:
    tree = list(api.list_repo_tree(MINILM_ID, recursive=True))
    paths = {entry.path: entry for entry in tree}
    assert isinstance(paths["1_Pooling"], RepoFolder) and isinstance(paths["1_Pooling/config.json"], RepoFile)
    weights = paths["model.safetensors"]
    assert isinstance(weights, RepoFile) and weights.lfs is not None and weights.size == 90_864_216
    top = {entry.path for entry in api.list_repo_tree(MINILM_ID)}
    assert "1_Pooling" in top and "1_Pooling/config.json" not in top
    assert [e.path for e in api.list_repo_tree(MINILM_ID, path_in_repo="1_Pooling")] == ["1_Pooling/config.json"]
    with pytest.raises(RemoteEntryNotFoundError):
        list(api.list_repo_tree(MINILM_ID, path_in_repo="nope"))

    expanded = [e for e in api.list_repo_tree(MINILM_ID, expand=True) if isinstance(e, RepoFile)]
    assert expanded and all(e.last_commit is not None and e.security is not None for e in expanded)

    hub.tree_page_size = 3
    hub.reset_counters()
    assert sorted(e.path for e in api.list_repo_tree(MINILM_ID, recursive=True)) == sorted(paths)
    assert len([r for r in hub.requests if "/tree/" in r.path]) == 4  # 11 entries, 3 a page

    info = api.get_paths_info(MINILM_ID, ["README.md", "1_Pooling", "missing.bin"])
    assert [(type(e).__name__, e.path) for e in info] == [("RepoFile", "README.md"), ("RepoFolder", "1_Pooling")]


# -- downloads --------------------------------------------------------------------------------------------------------


def test_hf_hub_download_and_snapshot(hub: LoopbackHub, demo_root: Path, tmp_path: Path) -> None:
    source = demo_root / TINY_REPO_ID
    cache = tmp_path / "cache"
    config = Path(hf_hub_download(TINY_REPO_ID, "config.json", endpoint=hub.url, cache_dir=cache, token=False))
    weights = Path(hf_hub_download(TINY_REPO_ID, "model.safetensors", endpoint=hub.url, cache_dir=cache, token=False))
    assert config.read_bytes() == (source / "config.json").read_bytes()
    assert sha256_of(weights) == sha256_of(source / "model.safetensors")
    blob = weights.resolve()
    assert blob.parent.name == "blobs" and blob.name == sha256_of(source / "model.safetensors")  # LFS etag = sha256

    heads = [r for r in hub.requests if r.method == "HEAD"]
    assert len(heads) == 2 and all("/resolve/main/" in r.path for r in heads)

    snapshot = Path(snapshot_download(TINY_REPO_ID, endpoint=hub.url, cache_dir=cache, token=False))
    expected = sorted(
        p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file() and p.name != ".hub.json"
    )
    assert sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()) == expected
    assert sha256_of(snapshot / "model.safetensors") == sha256_of(source / "model.safetensors")
    repo_cache = cache / "models--mlx-community--tiny-llama-4bit"
    assert (repo_cache / "refs" / "main").read_text() == snapshot.name
    assert (repo_cache / "trees" / f"{snapshot.name}.json").is_file()

    from mlx_lm import load

    model, tokenizer = load(str(snapshot))
    assert model.args.hidden_size == 64 and tokenizer.encode("w1 w2")


def test_range_requests(hub: LoopbackHub, demo_root: Path) -> None:
    data = (demo_root / TINY_REPO_ID / "model.safetensors").read_bytes()
    url = hub.resolve_url(TINY_REPO_ID, "model.safetensors")

    status, headers, body = raw_get(url, {"Range": "bytes=100-199"})
    assert status == 206 and body == data[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(data)}" and headers["Content-Length"] == "100"
    status, headers, body = raw_get(url, {"Range": f"bytes={len(data) - 10}-"})
    assert status == 206 and body == data[-10:]
    status, headers, _ = raw_get(url, {"Range": f"bytes={len(data)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"

    status, headers, body = raw_get(url, {"Accept-Encoding": "gzip"})
    assert status == 200 and body == data and "Content-Encoding" not in headers
    assert headers["Accept-Ranges"] == "bytes" and headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert headers["X-Linked-Size"] == str(len(data)) and len(headers["X-Repo-Commit"]) == 40

    # The library's own header reader (safetensors metadata through Range GETs).
    metadata = HfApi(endpoint=hub.url, token=False).get_safetensors_metadata(TINY_REPO_ID)
    assert sum(metadata.parameter_count.values()) == 15680


# -- errors -----------------------------------------------------------------------------------------------------------


def test_not_found_errors(api: HfApi, hub: LoopbackHub, tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("nobody/nothing")
    hub.faults.not_found_repos.add(TINY_REPO_ID)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(TINY_REPO_ID)
    assert TINY_REPO_ID not in {m.id for m in api.list_models(author="mlx-community")}
    hub.reset_faults()

    with pytest.raises(RevisionNotFoundError):
        api.model_info(TINY_REPO_ID, revision="v9")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(TINY_REPO_ID, "config.json", revision="v9", endpoint=hub.url, cache_dir=tmp_path, token=False)
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(TINY_REPO_ID, "missing.json", endpoint=hub.url, cache_dir=tmp_path, token=False)
    status, headers, body = raw_get(hub.resolve_url(TINY_REPO_ID, "missing.json"))
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound" and len(headers["X-Repo-Commit"]) == 40
    assert "error" in json.loads(body)


def test_gated_repos_need_the_accepted_token(hub: LoopbackHub, tmp_path: Path) -> None:
    with pytest.raises(GatedRepoError) as caught:
        hf_hub_download(GATED_ID, "config.json", endpoint=hub.url, cache_dir=tmp_path, token=False)
    assert caught.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as caught:
        hf_hub_download(GATED_ID, "config.json", endpoint=hub.url, cache_dir=tmp_path, token="hf_wrong")
    assert caught.value.response.status_code == 403
    path = hf_hub_download(GATED_ID, "config.json", endpoint=hub.url, cache_dir=tmp_path, token=hub.accepted_token)
    assert json.loads(Path(path).read_text())["model_type"] == "llama"
    assert any(r.headers.get("Authorization") == "Bearer ***" for r in hub.requests)  # recorded, never in clear

    hub.faults.gated_repos.add(TINY_REPO_ID)
    with pytest.raises(GatedRepoError):
        hf_hub_download(TINY_REPO_ID, "config.json", endpoint=hub.url, cache_dir=tmp_path / "other", token=False)


def test_rate_limit_and_server_errors(api: HfApi, hub: LoopbackHub) -> None:
    hub.faults.rate_limit = 1
    hub.faults.retry_after_s = 7
    with pytest.raises(HfHubHTTPError) as caught:
        api.model_info(TINY_REPO_ID)  # model_info does not retry
    assert caught.value.response.status_code == 429 and caught.value.response.headers["Retry-After"] == "7"
    assert api.model_info(TINY_REPO_ID).id == TINY_REPO_ID  # only the next N requests

    hub.faults.server_error = 1
    with pytest.raises(HfHubHTTPError) as caught:
        api.model_info(TINY_REPO_ID)
    assert caught.value.response.status_code == 500

    hub.faults.rate_limit = 1
    hub.faults.retry_after_s = 0
    started = time.monotonic()
    assert len(list(api.list_models(author="mlx-community"))) == 9  # list_models backs off (Retry-After + 1 s)
    assert 0.9 < time.monotonic() - started < 10
    assert [r.path for r in hub.requests[-2:]] == ["/api/models", "/api/models"]

    hub.faults.server_error = 5
    hub.faults.only_path = "/resolve/"
    assert api.model_info(TINY_REPO_ID).id == TINY_REPO_ID  # only_path narrows the fault
    status, _, _ = raw_get(hub.resolve_url(TINY_REPO_ID, "config.json"))
    assert status == 500 and hub.faults.server_error == 4


# -- faults on the wire -----------------------------------------------------------------------------------------------


def test_cut_after_bytes_truncates_the_body(hub: LoopbackHub, demo_root: Path, tmp_path: Path) -> None:
    data = (demo_root / TINY_REPO_ID / "model.safetensors").read_bytes()
    hub.faults.cut_after_bytes = 1000
    hub.faults.cut_times = 1
    connection = http.client.HTTPConnection("127.0.0.1", int(hub.url.rsplit(":", 1)[1]), timeout=10)
    connection.request("GET", f"/{TINY_REPO_ID}/resolve/main/model.safetensors")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Length") == str(len(data))
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    assert caught.value.partial == data[:1000]
    connection.close()
    assert hub.faults.cut_times == 0
    assert raw_get(hub.resolve_url(TINY_REPO_ID, "model.safetensors"))[2] == data  # cut once only

    # huggingface_hub retries a cut download after a 1 s pause; it resumes with Range only past whole 10 MiB
    # chunks, so a body cut this early is fetched again from byte 0.
    hub.faults.cut_times = 1
    hub.reset_counters()
    path = hf_hub_download(TINY_REPO_ID, "model.safetensors", endpoint=hub.url, cache_dir=tmp_path, token=False)
    assert Path(path).read_bytes() == data
    gets = [r for r in hub.requests if r.method == "GET"]
    assert len(gets) == 2 and "Range" not in gets[1].headers


def test_stall_holds_the_body(hub: LoopbackHub) -> None:
    hub.faults.stall_after_bytes = 10
    hub.faults.stall_s = 5
    request = urllib.request.Request(hub.resolve_url(TINY_REPO_ID, "model.safetensors"))
    started = time.monotonic()
    with pytest.raises((TimeoutError, socket.timeout)):
        with urllib.request.urlopen(request, timeout=0.5) as response:
            response.read()
    assert time.monotonic() - started < 3
    started = time.monotonic()
    hub.stop()  # a stalled handler does not hold the server up
    assert time.monotonic() - started < 3


def test_latency_and_bandwidth(tmp_path: Path) -> None:
    big = os.urandom(1024 * 1024)
    write_repo(tmp_path, "loopback/big-file", {"blob.bin": big})
    with LoopbackHub(tmp_path) as hub:
        hub.faults.latency_s = 0.2
        started = time.monotonic()
        assert raw_get(f"{hub.url}/api/models/loopback/big-file")[0] == 200
        assert 0.2 <= time.monotonic() - started < 5
        hub.faults.latency_s = 0

        url = hub.resolve_url("loopback/big-file", "blob.bin")
        started = time.monotonic()
        assert raw_get(url)[2] == big
        unthrottled = time.monotonic() - started
        hub.faults.bandwidth_bps = 4 * 1024 * 1024  # 1 MiB in about 0.25 s
        before = hub.bytes_sent
        started = time.monotonic()
        assert raw_get(url)[2] == big
        throttled = time.monotonic() - started
        assert 0.2 <= throttled < 10 and throttled > unthrottled
        assert hub.bytes_sent - before == len(big)


# -- a lying hub ------------------------------------------------------------------------------------------------------


def test_a_lying_hub_gives_the_names_it_is_told(tmp_path: Path) -> None:
    write_repo(tmp_path, "org/model", {"config.json": "{}", "sub/a.txt": "a"}, {"downloads": 1})
    write_repo(tmp_path, "org/honest", {"config.json": "{}"}, {"downloads": 1})
    lie, absolute = "../../../../../evil.json", "/tmp/nowhere/evil.json"
    with LoopbackHub(tmp_path, revisions=("refs/pr/3",)) as hub:
        api = HfApi(endpoint=hub.url, token=False)
        honest_sha = api.model_info("org/model").sha
        hub.lies = HubLies(file_names={"config.json": lie, "sub/a.txt": absolute}, etag="../etag_evil",
                           commit="../../sha_evil", listed_hash="../hash_evil", repo="org/model")  # fmt: skip
        info = api.model_info("org/model", files_metadata=True)
        assert info.sha == "../../sha_evil"
        assert {s.rfilename for s in info.siblings or []} == {lie, absolute}
        assert {s.blob_id for s in info.siblings or []} == {"../hash_evil"}
        tree = {e["path"] for e in json.loads(raw_get(f"{hub.url}/api/models/org/model/tree/main?recursive=1")[2])}
        assert {lie, absolute} <= tree
        # what a client asks for once it has normalised the URL of the lying name, and the absolute one
        for url, content in ((f"{hub.url}/evil.json", b"{}"),
                             (f"{hub.url}/org/model/resolve/main//tmp/nowhere/evil.json", b"a")):  # fmt: skip
            status, headers, body = raw_get(url)
            assert status == 200 and body == content and headers["ETag"] == '"../etag_evil"', url
            assert headers["X-Repo-Commit"] == "../../sha_evil"
        assert raw_get(hub.resolve_url("org/model", absolute, revision="../../sha_evil"))[0] == 200
        assert api.model_info("org/honest").sha != "../../sha_evil"  # only the repo it was told to lie about
        hub.lies = HubLies()
        assert api.model_info("org/model").sha == honest_sha
        assert api.model_info("org/model", revision="refs/pr/3").sha == honest_sha  # another name for the same sha

        hub.faults.rate_limit, hub.faults.retry_after_s = 1, "Wed, 21 Oct 2015 07:28:00 GMT"
        status, headers, _ = raw_get(hub.resolve_url("org/model", "config.json"))
        assert status == 429 and headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
