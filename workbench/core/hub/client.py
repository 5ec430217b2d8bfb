"""The Hugging Face catalog: search (one request per page, cached on disk for offline use) and a repo's details
(files, card, config), as rows with their memory estimates (:mod:`~workbench.core.hub.fit`).

Everything here blocks on the network: call it from a worker thread. huggingface_hub is imported on
first use, never at start-up. The token is whatever huggingface_hub finds (HF_TOKEN or the hub's login);
it is never read, shown or logged here. Failures are raised as :class:`~workbench.core.hub.errors.HubError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbench.core.hub import names as hub_names
from workbench.core.hub.errors import HubError, HubErrorKind, quiet_hub_logging, translate_error
from workbench.core.hub.fit import (
    bits_of,
    kv_estimate,
    params_from_counts,
    params_from_name,
    quantization_of,
    weights_from_safetensors,
)
from workbench.core.hub.selection import default_selection

log = logging.getLogger(__name__)

SORTS = {
    "downloads": "downloads",
    "likes": "likes",
    "trending": "trendingScore",
    "updated": "lastModified",
}
EXPAND = ["author", "downloads", "likes", "lastModified", "tags", "pipeline_tag", "library_name", "gated",
          "safetensors", "config", "trendingScore"]  # fmt: skip
REQUEST_TIMEOUT_S = 15
DETAILS_FILE_MAX_BYTES = 1024 * 1024  # a model card or config.json read for the details view; the rest is cut


@dataclass(frozen=True)
class HubModel:
    repo_id: str
    downloads: int = 0
    likes: int = 0
    last_modified: str | None = None  # ISO date
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str | None = None
    library_name: str | None = None
    gated: bool | str = False
    params: int | None = None
    quantization: str | None = None
    weights_bytes: int | None = None
    kv_bytes: int | None = None  # at the context length the row was made for
    kv_exact: bool = False  # from the model's config, not guessed from its size

    @property
    def is_mlx(self) -> bool:
        return self.library_name == "mlx" or "mlx" in self.tags

    @property
    def memory_bytes(self) -> int | None:
        if self.weights_bytes is None:
            return None
        return self.weights_bytes + (self.kv_bytes or 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HubModel:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def model_from_info(info: Any, context_length: int) -> HubModel:
    """A row from huggingface_hub's ModelInfo (a listing item or a full info)."""
    tags = list(info.tags or [])
    config = info.config if isinstance(getattr(info, "config", None), dict) else None
    quantization = quantization_of(info.id, tags, config)
    safetensors = info.safetensors
    safetensors_dict = asdict(safetensors) if safetensors is not None and not isinstance(safetensors, dict) else (
        safetensors or None)  # fmt: skip
    weights, counts = weights_from_safetensors(safetensors_dict)
    params = params_from_counts(counts, bits_of(quantization)) or params_from_name(info.id)
    if weights is None and params and bits_of(quantization):
        weights = params * bits_of(quantization) // 8  # type: ignore[operator]
    kv, exact = kv_estimate(config, params, context_length)
    last = info.last_modified.isoformat() if getattr(info, "last_modified", None) else None
    return HubModel(
        repo_id=info.id,
        downloads=info.downloads or 0,
        likes=info.likes or 0,
        last_modified=last,
        tags=tags,
        pipeline_tag=info.pipeline_tag,
        library_name=info.library_name,
        gated=info.gated or False,
        params=params,
        quantization=quantization,
        weights_bytes=weights,
        kv_bytes=kv,
        kv_exact=exact,
    )


@dataclass(frozen=True)
class RepoFile:
    path: str
    size: int | None


@dataclass(frozen=True)
class ModelDetails:
    model: HubModel
    sha: str | None
    license: str | None
    card: str  # the model card as Markdown (front matter removed)
    files: list[RepoFile]
    selected: list[str]  # what the workbench would download

    @property
    def download_bytes(self) -> int:
        sizes = {f.path: f.size or 0 for f in self.files}
        return sum(sizes[p] for p in self.selected)


def strip_front_matter(markdown: str) -> str:
    if markdown.startswith("---"):
        end = markdown.find("\n---", 3)
        if end != -1:
            return markdown[end + 4 :].lstrip("\n")
    return markdown


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    mlx_only: bool = True
    task: str | None = None
    author: str | None = None
    sort: str = "downloads"
    page_size: int = 30

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SearchPage:
    query: SearchQuery
    page: int
    models: list[HubModel]
    has_next: bool
    fetched_at: float
    from_cache: bool = False

    def age_s(self, now: float | None = None) -> float:
        return (now if now is not None else time.time()) - self.fetched_at


class HubCatalog:
    """Search and details against one hub endpoint, with results kept on disk for offline use."""

    def __init__(self, cache_dir: Path, endpoint: str | None = None, context_length: int = 4096) -> None:
        self.cache_dir = Path(cache_dir)
        self.endpoint = endpoint
        self.context_length = context_length
        self._pages: dict[tuple[str, int], SearchPage] = {}
        self._next_urls: dict[tuple[str, int], str] = {}

    def _api(self) -> Any:
        quiet_hub_logging()
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint)

    def search(self, query: SearchQuery, page: int = 0) -> SearchPage:
        """One page of results; on failure, the cached page with ``from_cache`` set, else a HubError."""
        key = (query.key(), page)
        if key in self._pages:
            return self._pages[key]
        try:
            models, has_next = self._fetch_page(query, page)
        except Exception as exc:
            error = translate_error(exc)
            cached = self._read_cache(query, page)
            if cached is not None and error.kind in (HubErrorKind.OFFLINE, HubErrorKind.SERVER,
                                                     HubErrorKind.RATE_LIMITED):  # fmt: skip
                log.info("hub search failed (%s); serving the cached page", error.kind)
                return cached
            raise error from exc
        result = SearchPage(query=query, page=page, models=models, has_next=has_next, fetched_at=time.time())
        self._pages[key] = result
        self._write_cache(result)
        return result

    def list_params(self, query: SearchQuery) -> list[tuple[str, Any]]:
        """The query string ``HfApi.list_models`` would send for this search."""
        params: list[tuple[str, Any]] = [("sort", SORTS.get(query.sort, "downloads")), ("direction", -1),
                                         ("limit", query.page_size)]  # fmt: skip
        if query.text:
            params.append(("search", query.text))
        if query.author:
            params.append(("author", query.author))
        if query.mlx_only:
            params.append(("filter", "mlx"))
        if query.task:
            params.append(("pipeline_tag", query.task))
        params += [("expand", name) for name in EXPAND]
        return params

    def _fetch_page(self, query: SearchQuery, page: int) -> tuple[list[HubModel], bool]:
        """One request per page, following the hub's Link header from the page before.

        Built on huggingface_hub's session, headers (the token) and errors, but without its retry loop:
        that waits up to ~25 s on a refused connection, a 429 or a 5xx, while a person looks at the
        screen. Here a failure shows at once, with a retry key."""
        quiet_hub_logging()
        from huggingface_hub.hf_api import ModelInfo
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        qkey = query.key()
        if page == 0:
            url, params = f"{self._endpoint()}/api/models", self.list_params(query)
        elif (qkey, page) in self._next_urls:
            url, params = self._next_urls[(qkey, page)], None
        else:  # jumped ahead: walk the pages before it
            self._fetch_page(query, page - 1)
            url, params = self._next_urls[(qkey, page)], None
        response = get_session().get(url, params=params, headers=build_hf_headers(), timeout=REQUEST_TIMEOUT_S)
        hf_raise_for_status(response)
        next_url = response.links.get("next", {}).get("url")
        if next_url:
            self._next_urls[(qkey, page + 1)] = next_url
        models = [model_from_info(ModelInfo(**{"siblings": None, **item}), self.context_length)
                  for item in response.json()]  # fmt: skip
        return models, next_url is not None

    def _endpoint(self) -> str:
        from huggingface_hub import constants

        return (self.endpoint or constants.ENDPOINT).rstrip("/")

    def details(self, repo_id: str) -> ModelDetails:
        """The repo's files, card and config. The card and config are read into memory, never into the cache: the
        names the hub gives (its commit, the files' ETags) stay out of paths."""
        try:
            info = self._api().model_info(repo_id, files_metadata=True, expand=None)
            sha = hub_names.check_commit(info.sha) if info.sha is not None else None
            files = [RepoFile(s.rfilename, s.size) for s in (info.siblings or [])]
            paths = [f.path for f in files]
            card, config = "", None
            for name in ("README.md", "config.json"):
                if name not in paths:
                    continue
                text = self._read_text(repo_id, name, sha)
                if text is None:
                    continue
                if name == "README.md":
                    card = strip_front_matter(text)
                else:
                    try:
                        loaded = json.loads(text)
                    except ValueError:
                        log.info("details of %s: config.json is not JSON", repo_id)
                        continue
                    config = loaded if isinstance(loaded, dict) else None
        except hub_names.BadName as exc:
            raise HubError(HubErrorKind.OTHER, f"{repo_id}: refused: {exc}") from exc
        except Exception as exc:
            raise translate_error(exc, repo_id) from exc
        model = model_from_info(info, self.context_length)
        if config is not None:
            kv, exact = kv_estimate(config, model.params, self.context_length)
            quantization = quantization_of(repo_id, model.tags, config)
            model = HubModel(**{**model.to_dict(), "kv_bytes": kv, "kv_exact": exact, "quantization": quantization})
        card_data = info.card_data.to_dict() if getattr(info, "card_data", None) else {}
        return ModelDetails(model=model, sha=sha, license=card_data.get("license"), card=card,
                            files=files, selected=default_selection(paths))  # fmt: skip

    def _read_text(self, repo_id: str, name: str, revision: str | None) -> str | None:
        """A small text file of the repo (at most DETAILS_FILE_MAX_BYTES of it), or None if the hub has none."""
        from huggingface_hub import hf_hub_url
        from huggingface_hub.errors import EntryNotFoundError
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        url = hf_hub_url(repo_id, name, revision=revision, endpoint=self.endpoint)
        headers = {**build_hf_headers(), "Accept-Encoding": "identity"}
        body = bytearray()
        with get_session().stream("GET", url, headers=headers, timeout=REQUEST_TIMEOUT_S,
                                  follow_redirects=True) as response:  # fmt: skip
            try:
                if response.status_code >= 400:
                    response.read()
                hf_raise_for_status(response)
            except EntryNotFoundError:
                return None
            for chunk in response.iter_bytes():
                body += chunk[: DETAILS_FILE_MAX_BYTES - len(body)]
                if len(body) >= DETAILS_FILE_MAX_BYTES:
                    break
        return body.decode("utf-8", errors="replace")

    # --- disk cache ---

    def _cache_file(self, query: SearchQuery, page: int) -> Path:
        return self.cache_dir / f"search-{query.key()}-{page}.json"

    def _write_cache(self, result: SearchPage) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            data = {"fetched_at": result.fetched_at, "has_next": result.has_next,
                    "models": [m.to_dict() for m in result.models]}  # fmt: skip
            path = self._cache_file(result.query, result.page)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(path)
        except OSError as exc:
            log.warning("cannot cache search results: %s", exc)

    def _read_cache(self, query: SearchQuery, page: int) -> SearchPage | None:
        try:
            data = json.loads(self._cache_file(query, page).read_text())
            models = [HubModel.from_dict(m) for m in data["models"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return SearchPage(query=query, page=page, models=models, has_next=bool(data.get("has_next")),
                          fetched_at=float(data["fetched_at"]), from_cache=True)  # fmt: skip

    def last_cached(self, query: SearchQuery) -> SearchPage | None:
        """The first page as last seen, without touching the network (for an instant first paint)."""
        return self._read_cache(query, 0)
