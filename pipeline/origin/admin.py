"""Admin endpoints of a running stack: ``POST /api/v3/publish`` (202 + an id to poll).

Guarded by the session's admin token (``flowcms up`` prints it); compared in constant time.
A publish started here runs in the app's background and is serialised with every other
trigger by the ``Publisher``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from quart import Response, request
from quart_trio import QuartTrio

from pipeline.errors import StoreError, UnknownBuild
from pipeline.publisher import Publisher, PublishRecord

if TYPE_CHECKING:
    from pipeline.origin.lane import LaneStatistics

NO_STORE = {"Cache-Control": "no-store", "Content-Type": "application/json"}
#: Every method routes here, so a GET on a POST-only route is a 405 with Allow (seed 002's own
#: example), not the delivery API's catch-all 404.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def _error(status: int, code: str, detail: str, **headers: str) -> Response:
    body = {"errors": [{"status": str(status), "code": code, "title": code.replace("_", " ").lower(),
                        "detail": detail}]}
    return Response(json.dumps(body), status=status, headers={**NO_STORE, **headers})


def register(app: QuartTrio, publisher: Publisher, token: str, *,
             statistics: Callable[[], LaneStatistics] | None = None) -> None:
    """The admin routes; ``statistics`` (the API fast lane's) adds its counters to /metrics."""
    started: dict[str, PublishRecord | None] = {}  # request id -> record once finished
    counter = [0]

    def denied() -> Response | None:
        given = request.headers.get("Authorization", "")
        if not given.startswith("Bearer "):
            return _error(401, "UNAUTHENTICATED", "an admin token is required (Authorization: Bearer …)",
                          **{"WWW-Authenticate": 'Bearer realm="flowcms"'})
        if not hmac.compare_digest(given[7:].strip().encode(), token.encode()):
            return _error(403, "FORBIDDEN", "this token may not publish")
        return None

    def post_only() -> Response | None:
        if request.method == "POST":
            return None
        return _error(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here; use POST", Allow="POST")

    @app.route("/api/v3/publish", methods=ALL_METHODS)
    async def start_publish() -> Response:
        refusal = post_only() or denied()
        if refusal is not None:
            return refusal
        counter[0] += 1
        ident = f"req_{counter[0]:04d}"
        started[ident] = None

        async def run() -> None:
            started[ident] = await publisher.publish(f"api {ident}")

        app.add_background_task(run)
        body: dict[str, Any] = {"data": {"type": "publishes", "id": ident, "attributes": {"status": "queued"}},
                                "links": {"self": f"/api/v3/publish/{ident}"}}
        return Response(json.dumps(body), status=202,
                        headers={**NO_STORE, "Location": f"/api/v3/publish/{ident}"})

    @app.route("/api/v3/rollback", methods=ALL_METHODS)
    async def rollback() -> Response:
        """Synchronous (a rollback builds nothing): 200 with the record, 404 for an unknown build,
        422 for a malformed one, 409 when impossible (nothing to go back to)."""
        refusal = post_only() or denied()
        if refusal is not None:
            return refusal
        body = await request.get_json(force=True, silent=True) or {}
        target = body.get("build") if isinstance(body, dict) else None
        if target is not None and not isinstance(target, str):
            return _error(422, "VALIDATION_ERROR", '"build" must be a build id (a string) or absent')
        if target:
            try:
                publisher.store.resolve(target)
            except UnknownBuild as exc:
                return _error(404, "NOT_FOUND", str(exc))
            except StoreError as exc:  # an ambiguous prefix
                return _error(422, "VALIDATION_ERROR", str(exc))
        record = await publisher.rollback(target or None, "api rollback")
        if record.status == "failed":  # the record's error names the exception type: not for clients
            return _error(409, "CONFLICT", (record.error or "").partition(": ")[2] or "cannot roll back")
        return Response(json.dumps({"data": {"type": "publishes", "id": record.id, "attributes": record.to_json()}}),
                        headers=NO_STORE)

    @app.route("/metrics", methods=["GET"])
    async def metrics() -> Response:
        """Prometheus text: publishes by status, the last publish's latencies, the API answer cache."""
        text = format_metrics(publisher) + (format_lane_metrics(statistics()) if statistics else "")
        return Response(text, headers={"Content-Type": "text/plain; version=0.0.4",
                                                            "Cache-Control": "no-store"})

    @app.route("/api/v3/publish/<ident>", methods=["GET"])
    async def publish_status(ident: str) -> Response:
        refusal = denied()
        if refusal is not None:
            return refusal
        if ident not in started:
            return _error(404, "NOT_FOUND", f"no publish {ident}")
        record = started[ident]
        attributes = {"status": "running"} if record is None else record.to_json()
        return Response(json.dumps({"data": {"type": "publishes", "id": ident, "attributes": attributes}}),
                        headers=NO_STORE)


def format_metrics(publisher: Publisher) -> str:
    lines = ["# HELP flowcms_publishes_total Publishes since start, by status",
             "# TYPE flowcms_publishes_total counter"]
    for status, count in sorted(publisher.counts.items()):
        lines.append(f'flowcms_publishes_total{{status="{status}"}} {count}')
    last = publisher.last
    for name, attribute, text in (
        ("build", "build_s", "trigger to build done and pointer switched"),
        ("purge", "purge_s", "pointer switched to every edge acknowledging the purge"),
        ("first_fresh", "fresh_s", "trigger to the first fresh 200 through the edge"),
    ):
        value = getattr(last, attribute, None) if last is not None else None
        lines += [f"# HELP flowcms_last_publish_{name}_seconds Last publish: {text}",
                  f"# TYPE flowcms_last_publish_{name}_seconds gauge"]
        if value is not None:
            lines.append(f"flowcms_last_publish_{name}_seconds {value:.6f}")
    if last is not None:
        lines += ["# TYPE flowcms_last_publish_timestamp_seconds gauge",
                  f"flowcms_last_publish_timestamp_seconds {last.seen:.3f}"]
    return "\n".join(lines) + "\n"


def format_lane_metrics(stats: LaneStatistics) -> str:
    """The origin's API fast lane: answers computed, served from the per-build cache, passed to Quart."""
    cache = stats.cache
    lines = ["# HELP flowcms_origin_api_answers_total Read-API answers of the origin's fast lane, by source",
             "# TYPE flowcms_origin_api_answers_total counter",
             f'flowcms_origin_api_answers_total{{source="computed"}} {stats.computed}',
             f'flowcms_origin_api_answers_total{{source="cache"}} {cache.hits if cache else 0}',
             "# HELP flowcms_origin_passed_requests_total HTTP requests the fast lane handed to the Quart app",
             "# TYPE flowcms_origin_passed_requests_total counter",
             f"flowcms_origin_passed_requests_total {stats.passed}",
             "# HELP flowcms_origin_answer_cache_enabled Whether API answers are memoized per live build",
             "# TYPE flowcms_origin_answer_cache_enabled gauge",
             f"flowcms_origin_answer_cache_enabled {int(cache is not None)}"]
    if cache is not None:
        for name, kind, value, text in (
            ("misses_total", "counter", cache.misses, "lookups that found no answer"),
            ("stores_total", "counter", cache.stores, "answers stored"),
            ("evictions_total", "counter", cache.evictions, "answers dropped for room (LRU)"),
            ("invalidations_total", "counter", cache.invalidations, "times the live build changed"),
            ("entries", "gauge", cache.entries, "answers held"),
            ("bytes", "gauge", cache.bytes, "bytes held"),
        ):
            lines += [f"# HELP flowcms_origin_answer_cache_{name} Answer cache: {text}",
                      f"# TYPE flowcms_origin_answer_cache_{name} {kind}",
                      f"flowcms_origin_answer_cache_{name} {value}"]
    return "\n".join(lines) + "\n"
