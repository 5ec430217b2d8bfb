"""The one way from work to widget: workers and core callbacks post these messages; only handlers touch widgets.

A message that answers a request which a newer one can overtake (a catalog search, a model's details, a cache scan,
a scan for models) carries the generation its request started in; the handler drops it when that generation has
passed. The Embeddings pane's messages live beside it (workbench/ui/screens/embeddings_work.py). Core types are
imported for type checking only: this module is on the first frame's path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message
from textual.notifications import SeverityLevel

if TYPE_CHECKING:
    from workbench.core.hub import cache as hf_cache
    from workbench.core.hub.client import HubError, ModelDetails, SearchPage, SearchQuery
    from workbench.core.hub.downloads.jobs import JobSnapshot
    from workbench.core.models.endpoints import ConnectionReport, Endpoint
    from workbench.core.models.registry import RepoStatus
    from workbench.core.models.spec import ModelSpec
    from workbench.core.models.wait import ImportStatus


# --- the app ----------------------------------------------------------------------------------------


class ImportProgress(Message):
    """Progress of the first-start import of the default chat model."""

    def __init__(self, status: ImportStatus) -> None:
        super().__init__()
        self.status = status


class Notice(Message):
    """A word for the user from a worker; the app shows it as a notification."""

    def __init__(self, text: str, title: str = "", severity: SeverityLevel = "information",
                 timeout: float | None = None) -> None:  # fmt: skip
        super().__init__()
        self.text = text
        self.title = title
        self.severity: SeverityLevel = severity
        self.timeout = timeout


class ModelsChanged(Message):
    """The model manager's list, a model's state or the memory budget changed."""


class ModelsFound(Message):
    """Models a scan found (the Hugging Face cache, or what remote endpoints serve), to register; with the
    endpoints that could not be asked, in words."""

    def __init__(self, generation: int, specs: list[ModelSpec], problems: list[str] | None = None) -> None:
        super().__init__()
        self.generation = generation
        self.specs = specs
        self.problems = problems or []


class DownloadChanged(Message):
    """A download job changed (the queue's listener, for the app)."""

    def __init__(self, job: JobSnapshot) -> None:
        super().__init__()
        self.job = job


class EngineLinkChanged(Message):
    """The link to the engine changed state (attached, lost, stopped…): workbench.client.link.LinkStatus."""

    def __init__(self, status: object) -> None:
        super().__init__()
        self.status = status


# --- panes and their dialogs (they do not bubble: each is meant for the screen that posts it) --------


class JobChanged(Message, bubble=False):
    """A download job changed (the queue's listener, for a screen that shows jobs)."""

    def __init__(self, job: JobSnapshot) -> None:
        super().__init__()
        self.job = job


class LocalStatuses(Message, bubble=False):
    """What is on disk of the Catalog's repos, computed again after a download changed state."""

    def __init__(self, local: dict[str, RepoStatus]) -> None:
        super().__init__()
        self.local = local


class SearchDone(Message, bubble=False):
    """A catalog search finished: a page of models (with what is on disk) or the hub's error."""

    def __init__(self, generation: int, query: SearchQuery, page: int, result: SearchPage | HubError,
                 local: dict[str, RepoStatus]) -> None:  # fmt: skip
        super().__init__()
        self.generation = generation
        self.query = query
        self.page = page
        self.result = result
        self.local = local


class DetailsLoaded(Message, bubble=False):
    """One hub model's details, or the hub's error."""

    def __init__(self, generation: int, result: ModelDetails | HubError) -> None:
        super().__init__()
        self.generation = generation
        self.result = result


class CacheScanned(Message, bubble=False):
    """What the Hugging Face cache holds, or why it could not be read."""

    def __init__(self, generation: int, repos: list[hf_cache.CachedRepo], partials: list[hf_cache.PartialFile],
                 error: str = "") -> None:  # fmt: skip
        super().__init__()
        self.generation = generation
        self.repos = repos
        self.partials = partials
        self.error = error


class CacheDeleted(Message, bubble=False):
    """A deletion from the cache finished: the bytes freed, or why it failed (``refused``: a model in the files
    is in use, and nothing was deleted)."""

    def __init__(self, freed: int, error: str = "", refused: bool = False) -> None:
        super().__init__()
        self.freed = freed
        self.error = error
        self.refused = refused


class ConnectionChecked(Message, bubble=False):
    """A remote endpoint's connection test finished (keyed by model id, or by endpoint name)."""

    def __init__(self, key: str, endpoint: Endpoint, report: ConnectionReport) -> None:
        super().__init__()
        self.key = key
        self.endpoint = endpoint
        self.report = report
