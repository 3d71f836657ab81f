"""Previews: any branch of the content repository, built on demand, under ``/_preview/{branch}/``.

For editors only: the edge's gateway authenticates and sets ``X-Flowcms-Role`` (it removes any
copy a client sends), and the origin also accepts the session's admin token. A branch is built
once per commit (``flowcms build --ref``, in a child process, into the same content-addressed
store, so a preview shares every unchanged blob with the live site) and never published.
Answers are ``no-store``: a preview is not for caches. ``~`` in the branch segment stands for
``/`` (``/_preview/feature~new-theme/``).
"""

from __future__ import annotations

import hmac
import json
import os
import sys
from pathlib import Path

import trio
from quart import Response, request
from quart_trio import QuartTrio

from pipeline.origin.static import LiveSite
from pipeline.source import GitSource
from pipeline.store import Store

EDITOR_ROLES = frozenset({"editor", "admin"})
BUILD_TIMEOUT_S = 600.0


class BuildSite(LiveSite):
    """A LiveSite pinned to one build instead of the live pointer."""

    def __init__(self, store: Store, build_id: str) -> None:
        super().__init__(store)
        self.build_id = build_id
        self.manifest = store.manifest(build_id)
        # a preview build changes as a whole when it is rebuilt: its folder's time is its date
        self.last_modified = int(os.stat(store.build_dir(build_id)).st_mtime)

    def refresh(self) -> None:
        return None


class Previews:
    def __init__(self, store: Store, site: Path, admin_token: str | None) -> None:
        self.store = store
        self.site = site
        self.admin_token = admin_token
        self.builds: dict[str, BuildSite] = {}  # commit -> its build
        self.lock = trio.Lock()  # one preview build at a time (they share the store's lock anyway)

    def allowed(self) -> bool:
        if request.headers.get("X-Flowcms-Role", "") in EDITOR_ROLES:
            return True
        given = request.headers.get("Authorization", "")
        return bool(self.admin_token) and given.startswith("Bearer ") and hmac.compare_digest(
            given[7:].strip().encode(), str(self.admin_token).encode())

    async def site_for(self, branch: str) -> BuildSite:
        commit = await trio.to_thread.run_sync(lambda: GitSource(self.site, branch).revision.commit)
        async with self.lock:
            cached = self.builds.get(commit)
            if cached is not None:
                return cached
            command = [sys.executable, "-m", "pipeline.cli", "--site", str(self.site), "build", "--ref", branch,
                       "--json"]
            with trio.fail_after(BUILD_TIMEOUT_S):
                result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
            if result.returncode != 0:
                raise PreviewFailed(result.stderr.decode(errors="replace").strip() or "the build failed")
            site = self.builds[commit] = BuildSite(self.store, json.loads(result.stdout)["id"])
            return site


class PreviewFailed(Exception):
    """The branch does not build: the message has the problems (path:line:column)."""


def _error(status: int, code: str, detail: str) -> Response:
    body = {"errors": [{"status": str(status), "code": code, "detail": detail}]}
    return Response(json.dumps(body), status=status,
                    headers={"Content-Type": "application/json", "Cache-Control": "no-store"})


def register(app: QuartTrio, store: Store, admin_token: str | None) -> None:
    previews = Previews(store, store.root.parent, admin_token)

    @app.route("/_preview/<branch>/", defaults={"path": ""}, methods=["GET", "HEAD"])
    @app.route("/_preview/<branch>/<path:path>", methods=["GET", "HEAD"])
    async def preview(branch: str, path: str) -> Response:
        if not previews.allowed():
            if "Authorization" not in request.headers:
                return _error(401, "UNAUTHENTICATED", "previews are for editors: an editor key or token is required")
            return _error(403, "FORBIDDEN", "previews are for editors: this token's role is not editor or admin")
        try:
            site = await previews.site_for(branch.replace("~", "/"))
        except PreviewFailed as exc:
            return _error(422, "VALIDATION_ERROR", str(exc))
        except Exception as exc:  # an unknown branch: pygit2 says which
            return _error(404, "NOT_FOUND", f"no branch {branch!r}: {exc}")
        answer = site.answer(request.method, "/" + path, request.headers.get("If-None-Match"),
                             request.headers.get("If-Modified-Since"))
        response = Response(answer.body, status=answer.status)
        for name, value in answer.headers:
            response.headers[name] = value
        if answer.status == 301:  # stay inside the preview
            response.headers["Location"] = f"/_preview/{branch}{response.headers['Location']}"
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Preview"] = f"{branch} {site.build_id}"
        return response
