"""The origin: a quart-trio app serving the live build and the delivery APIs.

The APIs (REST/JSON:API and the Flowbox feed in ``rest.py``, GraphQL in ``graphql_api.py``,
the admin endpoints of ``flowcms up`` in ``admin.py``) register their routes before the
catch-all route of the live site's files. In front of Quart sits the ASGI fast lane
(``lane.py``): GET/HEAD of the read APIs, answered from the per-build answer cache
(``answer_cache.py``) or by the same handlers without Quart's request machinery.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import quote

from quart import Response, request
from quart_trio import QuartTrio

from pipeline.origin import graphql_api, preview, rest
from pipeline.origin.answer_cache import AnswerCache
from pipeline.origin.jsonapi import Answer
from pipeline.origin.lane import FastLane
from pipeline.origin.live import LiveIndex
from pipeline.origin.static import NOT_FOUND_CACHE_CONTROL, LiveSite
from pipeline.store import Store

if TYPE_CHECKING:
    from pipeline.publisher import Publisher

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
#: Set to 0/off/false/no to serve every API request computed (measuring the uncached path).
ANSWER_CACHE_ENV = "FLOWCMS_ANSWER_CACHE"
LANE_EXTENSION = "flowcms.lane"  # app.extensions key of the FastLane (its statistics())


def answer_cache_enabled(flag: bool | None = None) -> bool:
    """``flag`` when given, else the ``FLOWCMS_ANSWER_CACHE`` environment variable (default on)."""
    if flag is not None:
        return flag
    return os.environ.get(ANSWER_CACHE_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def api_host_alias(path: str, query: bytes) -> Answer:
    """Seed 000 fetches ``https://api.flowcms.io/v3/posts`` (the API host's view of
    ``/api/v3/posts``): where the site has no page at a ``/v3/`` path, a GET or HEAD gets a 308
    to the ``/api/v3/`` URL, its query kept (the delivery API is read-only: other methods get
    the site's 405). A page there wins, so no site loses a URL."""
    target = quote("/api" + path, safe="/:@!$&'()*+,;=-._~") + ("?" + query.decode("latin-1") if query else "")
    return Answer(308, [("Location", target), ("Cache-Control", NOT_FOUND_CACHE_CONTROL),
                        ("Content-Type", "text/plain; charset=utf-8")], f"308: see {target}\n".encode())


def create_app(store: Store, *, publisher: Publisher | None = None, admin_token: str | None = None,
               answer_cache: bool | None = None) -> QuartTrio:
    """The origin app; with a publisher and a token (``flowcms up``) also the admin endpoints.

    ``answer_cache``: memoize API answers per live build (None: ``answer_cache_enabled()``).
    """
    app = QuartTrio("flowcms.origin", static_folder=None)
    site = LiveSite(store)
    live = LiveIndex(store)
    rest_api = rest.RestApi(live)
    graphql = graphql_api.GraphQLApi(live)
    cache = AnswerCache() if answer_cache_enabled(answer_cache) else None
    lane = FastLane(app.asgi_app, live=live, rest=rest_api, graphql=graphql, cache=cache)
    if publisher is not None and admin_token:
        from pipeline.origin import admin

        admin.register(app, publisher, admin_token, statistics=lane.statistics)
    rest.register(app, rest_api)
    graphql_api.register(app, graphql)
    preview.register(app, store, admin_token)

    @app.route("/", defaults={"path": ""}, methods=ALL_METHODS)
    @app.route("/<path:path>", methods=ALL_METHODS)
    async def live_file(path: str) -> Response:
        api_media_type = rest.api_space(request.path)
        if api_media_type is not None:
            return await rest.unrouted(rest_api, api_media_type)
        if request.path.startswith("/graphql/"):
            return graphql_api.unrouted(request.path, request.headers.get("Accept"))
        answer = site.answer(request.method, request.path, request.headers.get("If-None-Match"),
                             request.headers.get("If-Modified-Since"))
        if answer.status == 404 and request.path.startswith("/v3/"):
            answer = api_host_alias(request.path, request.query_string)
        response = Response(answer.body, status=answer.status)
        if answer.status in (301, 304):
            # RFC 9110 §15.4.5: a 304 carries validators and caching headers, no content headers
            del response.headers["Content-Type"]
        for name, value in answer.headers:
            response.headers[name] = value
        if answer.status == 304:
            del response.headers["Content-Length"]
        return response

    # Quart's middleware seam: the app stays a QuartTrio (url_map, test client), requests meet the lane first.
    app.asgi_app = lane  # type: ignore[method-assign]
    app.extensions[LANE_EXTENSION] = lane
    return app
