"""The origin: a quart-trio app serving the live build and the delivery APIs.

The APIs (REST/JSON:API and the Flowbox feed in ``rest.py``, GraphQL in ``graphql_api.py``)
register their routes on the app before the catch-all route of the live site's files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from quart import Response, request
from quart_trio import QuartTrio

from pipeline.origin.live import LiveIndex
from pipeline.origin.static import LiveSite
from pipeline.store import Store

if TYPE_CHECKING:
    from pipeline.publisher import Publisher

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def create_app(store: Store, *, publisher: Publisher | None = None, admin_token: str | None = None) -> QuartTrio:
    """The origin app; with a publisher and a token (``flowcms up``) also the admin endpoints."""
    app = QuartTrio("flowcms.origin", static_folder=None)
    site = LiveSite(store)
    live = LiveIndex(store)
    if publisher is not None and admin_token:
        from pipeline.origin import admin

        admin.register(app, publisher, admin_token)
    for register in _api_modules():
        register(app, live)

    @app.route("/", defaults={"path": ""}, methods=ALL_METHODS)
    @app.route("/<path:path>", methods=ALL_METHODS)
    async def live_file(path: str) -> Response:
        answer = site.answer(request.method, request.path, request.headers.get("If-None-Match"))
        response = Response(answer.body, status=answer.status)
        if answer.status in (301, 304):
            # RFC 9110 §15.4.5: a 304 carries validators and caching headers, no content headers
            del response.headers["Content-Type"]
        for name, value in answer.headers:
            response.headers[name] = value
        if answer.status == 304:
            del response.headers["Content-Length"]
        return response

    return app


def _api_modules() -> list[Callable[[QuartTrio, LiveIndex], None]]:
    """Each API module's ``register(app, live)``; a module not written yet is simply absent."""
    import importlib

    found = []
    for name in ("pipeline.origin.rest", "pipeline.origin.graphql_api"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        found.append(module.register)
    return found
