"""The origin: a quart-trio app serving the live build (later issues add the APIs)."""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio

from pipeline.origin.static import LiveSite
from pipeline.store import Store

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def create_app(store: Store) -> QuartTrio:
    app = QuartTrio("flowcms.origin", static_folder=None)
    site = LiveSite(store)

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
