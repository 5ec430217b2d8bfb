"""The catalog core against the loopback hub: rows, filters, sort, paging, details, cache, errors."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from tests.support.hub_repos import TINY_REPO_ID
from tests.support.hub_server import HubLies, LoopbackHub
from workbench.core.hub.client import HubCatalog, SearchQuery
from workbench.core.hub.errors import HubError, HubErrorKind, parse_retry_after
from workbench.core.hub.fit import FitVerdict, fit_verdict, params_from_name, quantization_of
from workbench.core.hub.selection import default_selection
from workbench.core.models.memory import GB

GATED_ID = "meta-llama/Llama-3.2-3B-Instruct"


def catalog_for(hub: LoopbackHub, tmp_path: Path) -> HubCatalog:
    return HubCatalog(tmp_path / "hub-cache", endpoint=hub.url, context_length=4096)


def test_search_gives_mlx_rows_sorted_by_downloads_with_sizes(online_hub: LoopbackHub, tmp_path: Path) -> None:
    page = catalog_for(online_hub, tmp_path).search(SearchQuery(text="instruct"))
    ids = [m.repo_id for m in page.models]
    assert ids and all(m.is_mlx for m in page.models)
    assert [m.downloads for m in page.models] == sorted((m.downloads for m in page.models), reverse=True)
    coder = next(m for m in page.models if m.repo_id == "mlx-community/Qwen2.5-Coder-7B-Instruct-4bit")
    assert coder.quantization == "4-bit"
    assert coder.params and 6e9 < coder.params < 9e9
    assert coder.weights_bytes and 3.5 * GB < coder.weights_bytes < 5 * GB
    assert coder.kv_exact and coder.kv_bytes and coder.kv_bytes > 0  # the loopback sends layer counts


def test_filters_sort_and_author(online_hub: LoopbackHub, tmp_path: Path) -> None:
    catalog = catalog_for(online_hub, tmp_path)
    everything = catalog.search(SearchQuery(mlx_only=False, page_size=100))
    mlx = catalog.search(SearchQuery(mlx_only=True, page_size=100))
    assert GATED_ID in [m.repo_id for m in everything.models]
    assert GATED_ID not in [m.repo_id for m in mlx.models]
    by_likes = catalog.search(SearchQuery(sort="likes", page_size=100))
    assert [m.likes for m in by_likes.models] == sorted((m.likes for m in by_likes.models), reverse=True)
    authored = catalog.search(SearchQuery(mlx_only=False, author="meta-llama", page_size=100))
    assert authored.models and all(m.repo_id.startswith("meta-llama/") for m in authored.models)
    embedders = catalog.search(SearchQuery(mlx_only=False, task="sentence-similarity", page_size=100))
    assert all(m.pipeline_tag == "sentence-similarity" for m in embedders.models)


def test_paging_follows_the_link_header(online_hub: LoopbackHub, tmp_path: Path) -> None:
    catalog = catalog_for(online_hub, tmp_path)
    query = SearchQuery(mlx_only=False, page_size=20)
    seen: list[str] = []
    page, n = catalog.search(query, 0), 0
    while True:
        seen += [m.repo_id for m in page.models]
        if not page.has_next:
            break
        n += 1
        page = catalog.search(query, n)
    assert n >= 2 and len(seen) == len(set(seen)) >= 50
    assert any("cursor" in r.query for r in online_hub.requests if r.path == "/api/models")


def test_results_are_served_from_disk_when_the_hub_is_gone(demo_hub_root: Path, tmp_path: Path,
                                                           online_hub: LoopbackHub) -> None:  # fmt: skip
    query = SearchQuery(text="qwen")
    fresh = catalog_for(online_hub, tmp_path).search(query)
    url = online_hub.url
    online_hub.stop()
    offline = HubCatalog(tmp_path / "hub-cache", endpoint=url).search(query)
    assert offline.from_cache and [m.repo_id for m in offline.models] == [m.repo_id for m in fresh.models]
    assert offline.age_s() < 60
    with pytest.raises(HubError) as refused:
        HubCatalog(tmp_path / "hub-cache", endpoint=url).search(SearchQuery(text="never searched"))
    assert refused.value.kind is HubErrorKind.OFFLINE


def test_rate_limit_and_server_errors_are_reported_at_once(online_hub: LoopbackHub, tmp_path: Path) -> None:
    online_hub.faults.rate_limit, online_hub.faults.retry_after_s = 1, 7
    with pytest.raises(HubError) as limited:
        catalog_for(online_hub, tmp_path).search(SearchQuery())
    assert limited.value.kind is HubErrorKind.RATE_LIMITED and limited.value.retry_after_s == 7
    assert "7 s" in str(limited.value)
    online_hub.faults.server_error = 1
    with pytest.raises(HubError) as broken:
        catalog_for(online_hub, tmp_path / "other").search(SearchQuery())
    assert broken.value.kind is HubErrorKind.SERVER and "500" in str(broken.value)
    page = catalog_for(online_hub, tmp_path / "third").search(SearchQuery())  # the retry works
    assert page.models


def test_details_card_files_and_download_size(online_hub: LoopbackHub, tmp_path: Path) -> None:
    details = catalog_for(online_hub, tmp_path).details(TINY_REPO_ID)
    assert details.license == "apache-2.0"
    assert details.card and not details.card.startswith("---")
    paths = [f.path for f in details.files]
    assert "model.safetensors" in paths and "config.json" in paths
    assert "model.safetensors" in details.selected and "README.md" in details.selected
    sizes = {f.path: f.size for f in details.files}
    assert details.download_bytes == sum(sizes[p] or 0 for p in details.selected) > 0
    assert details.model.kv_exact


def test_gated_and_missing_repos_say_what_to_do(online_hub: LoopbackHub, tmp_path: Path) -> None:
    catalog = catalog_for(online_hub, tmp_path)
    with pytest.raises(HubError) as gated:
        catalog.details(GATED_ID)
    assert gated.value.kind is HubErrorKind.GATED
    assert "accept its licence" in str(gated.value) and "HF_TOKEN" in str(gated.value)
    with pytest.raises(HubError) as missing:
        catalog.details("nobody/nothing-here")
    assert missing.value.kind is HubErrorKind.NOT_FOUND


def test_the_token_is_never_shown_or_logged(
    online_hub: LoopbackHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "hf_wrong_secret_0123456789"
    monkeypatch.setenv("HF_TOKEN", secret)
    caplog.set_level(logging.DEBUG)
    catalog = catalog_for(online_hub, tmp_path)
    messages = []
    for call in (lambda: catalog.details(GATED_ID), lambda: catalog.details("nobody/nothing-here")):
        try:
            call()
        except HubError as exc:
            messages.append(str(exc))
    assert messages and all(secret not in m for m in messages)
    assert secret not in caplog.text
    assert any(r.headers.get("Authorization") == "Bearer ***" for r in online_hub.requests)  # it was sent


def test_searches_do_not_block_each_other(online_hub: LoopbackHub, tmp_path: Path) -> None:
    online_hub.faults.latency_s = 0.2
    catalog = catalog_for(online_hub, tmp_path)
    results: list[int] = []
    threads = [threading.Thread(target=lambda t=t: results.append(len(catalog.search(SearchQuery(text=t)).models)))
               for t in ("qwen", "llama")]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 2


def test_verdicts_and_listing_arithmetic() -> None:
    assert fit_verdict(5 * GB, 10 * GB) is FitVerdict.FITS
    assert fit_verdict(9 * GB, 10 * GB) is FitVerdict.TIGHT
    assert fit_verdict(11 * GB, 10 * GB) is FitVerdict.WONT_FIT
    assert fit_verdict(None, 10 * GB) is FitVerdict.UNKNOWN
    assert params_from_name("mlx-community/Qwen2.5-Coder-7B-Instruct-4bit") == 7_000_000_000
    assert params_from_name("mlx-community/SmolLM2-135M-Instruct") == 135_000_000
    assert quantization_of("x/Llama-3.2-3B-Instruct-4bit", [], None) == "4-bit"
    assert quantization_of("x/model", [], {"quantization": {"bits": 8, "group_size": 64}}) == "8-bit"
    assert default_selection(["model.safetensors", "config.json", "model.gguf", "modeling.py", "README.md",
                              "tokenizer.json", "pytorch_model.bin"]) == [
        "model.safetensors", "config.json", "README.md", "tokenizer.json"]  # fmt: skip


@pytest.mark.parametrize("lie", ["etag", "commit"])
def test_details_from_a_lying_hub_write_nothing_outside_the_cache(
    online_hub: LoopbackHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lie: str
) -> None:
    import huggingface_hub.constants as constants

    sandbox = tmp_path / "sandbox"
    cache = sandbox / "a" / "b" / "c" / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # where a download would land (and escape from)
    online_hub.lies = HubLies(etag="../../../../evil_etag") if lie == "etag" else HubLies(commit="../../../evil_sha")
    catalog = catalog_for(online_hub, tmp_path)
    if lie == "etag":  # the card and config are read into memory: the ETag names nothing
        details = catalog.details(TINY_REPO_ID)
        assert details.card and details.model.kv_exact
    else:
        with pytest.raises(HubError) as refused:
            catalog.details(TINY_REPO_ID)
        assert "refused" in str(refused.value) and "'../../../evil_sha'" in str(refused.value)
    assert not [p for p in sandbox.rglob("*") if "evil" in p.name]
    assert not cache.exists()


def test_retry_after_is_seconds_or_an_http_date_and_nothing_else() -> None:
    assert parse_retry_after("86400") == 86400 and parse_retry_after(" 7 ") == 7
    now = 1_445_412_000.0  # 07:20:00 GMT on the date below
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 480
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now + 3600) == 0  # in the past: now
    for junk in ("-1", "nan", "inf", "1" * 400, "soon", "", "Wed, 21 Oct 2015 07:28:00"):
        assert parse_retry_after(junk) is None, junk
