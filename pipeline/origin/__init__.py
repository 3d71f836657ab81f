"""The origin: a quart-trio app serving the live build (later issues add the APIs)."""

from __future__ import annotations

from quart import Response, request
from quart_trio import QuartTrio

from pipeline.origin.static import LiveSite
from pipeline.store import Store


def create_app(store: Store) -> QuartTrio:
    app = QuartTrio("flowcms.origin", static_folder=None)
    site = LiveSite(store)

    @app.route("/", defaults={"path": ""}, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
    @app.route("/<path:path>", methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
    async def live_file(path: str) -> Response:
        answer = site.answer(request.method, request.path, request.headers.get("If-None-Match"))
        response = Response(answer.body, status=answer.status)
        for name, value in answer.headers:
            response.headers[name] = value
        if request.method == "HEAD" and answer.status == 200:
            response.headers["Content-Length"] = dict(answer.headers)["Content-Length"]
        return response

    return app
