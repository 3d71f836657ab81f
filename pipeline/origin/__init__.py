"""The origin: a quart-trio app serving the live build and the delivery APIs.

The APIs (REST/JSON:API and the Flowbox feed in ``rest.py``, GraphQL in ``graphql_api.py``,
the admin endpoints of ``flowcms up`` in ``admin.py``) register their routes before the
catch-all route of the live site's files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response, request
from quart_trio import QuartTrio

from pipeline.origin import graphql_api, preview, rest
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
    rest.register(app, live)
    graphql_api.register(app, live)
    preview.register(app, store, admin_token)

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

