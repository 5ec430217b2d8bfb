"""The engine's routes over the Hugging Face cache, for a face's cache view (workbench/client/remote_services.py):

- ``POST /v1/cache/delete`` ``{"repo": "org/name", "revision"?: "<commit>"}`` deletes a repo (or one revision)
  through the engine's registry, whose manager unregisters the models in those files first: 409 with the manager's
  words while one is in use (leased or loading). Answers ``{"freed": bytes}``.
- ``POST /v1/cache/clean-partials`` deletes the ``*.incomplete`` files no job of the engine's queue owns; answers
  ``{"removed": [{"path", "size_bytes", "folder_name", "etag", "from_library"}]}``.

Bodies are size-bounded JSON objects; unknown keys are refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from workbench.core.hub import names as hub_names
from workbench.core.models.spec import ModelManagerError
from workbench.server.bodies import BadRequest, read_json_object

if TYPE_CHECKING:
    from workbench.bootstrap import Services

MAX_BODY_BYTES = 4 * 1024


class CacheRoutes:
    def __init__(self, services: Services) -> None:
        self.services = services

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/cache/delete", self.delete), web.post("/v1/cache/clean-partials", self.clean)]

    async def delete(self, request: web.Request) -> web.Response:
        try:
            document = await read_json_object(request, frozenset({"repo", "revision"}), MAX_BODY_BYTES)
            if "repo" not in document:
                raise BadRequest("'repo' is missing (org/name)")
            repo = hub_names.check_repo_id(document["repo"])
            revision = document.get("revision")
            if revision is not None and (not isinstance(revision, str) or not hub_names.COMMIT.fullmatch(revision)):
                raise BadRequest("'revision' must be a commit hash (40 hex digits)")
        except BadRequest as exc:
            return _refused(str(exc), exc.status)
        except hub_names.BadName as exc:
            return _refused(str(exc))
        registry = self.services.registry
        try:
            if revision is None:
                freed = await registry.delete_repo(repo)
            else:
                freed = await registry.delete_revision(repo, revision)
        except ModelManagerError as exc:
            return _refused(str(exc), 409)
        except (ValueError, LookupError) as exc:
            return _refused(str(exc), 404)
        return web.json_response({"freed": freed})

    async def clean(self, request: web.Request) -> web.Response:
        try:
            await read_json_object(request, frozenset(), MAX_BODY_BYTES)
        except BadRequest as exc:
            return _refused(str(exc), exc.status)
        removed = self.services.downloads.clean_partial_files()
        return web.json_response({"removed": [{"path": str(p.path), "size_bytes": p.size_bytes,
                                               "folder_name": p.folder_name, "etag": p.etag,
                                               "from_library": p.from_library} for p in removed]})  # fmt: skip



def _refused(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)
