"""The API gateway in a real edge on 127.0.0.1, over HTTP/1.1 and HTTP/2, in front of an origin stub.

Rate-limit counts that must be exact freeze the gateway's clock (``Exchange.gateway_clock``),
so a slow machine cannot refill a bucket in the middle of a test. HTTP/1.1 clients keep their
connection, so second and later requests are answered by the hit loop (``try_hit``); a first
request on a new connection goes through ``handle``; HTTP/2 hits are answered inline.
"""

from __future__ import annotations

import gzip
import json
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest
import trio
from support.loopback import (
    Answer,
    Edge,
    H1Client,
    H2Client,
    OriginStub,
    Response,
    fetch,
    start_edge,
    start_origin,
)

from edgeproxy.config import ProxyConfig
from edgeproxy.gateway import NS
from edgeproxy.gateway_config import parse_gateway
from pipeline.stack import _edge_config
from pipeline.store import Store

BOUND_S = 10.0
NOW = 1_767_225_600
SECRET = "an-hs256-secret-of-at-least-32-bytes!"
VIEWER_KEY = "fc_live_viewer_0123456789"
EDITOR_KEY = "fc_live_editor_0123456789"
ADMIN_KEY = "fc_live_admin_01234567890"
SMALL_KEY = "fc_live_small_01234567890"  # the 100-per-minute tier
PUBLIC = (b"cache-control", b"public, max-age=0, s-maxage=60")
GATEWAY = {
    "anonymous_tier": "anonymous",
    "tiers": {"anonymous": 100, "small": 100, "starter": 1000},
    "routes": [
        {"prefix": "/api/v3", "public": True},
        {"prefix": "/api/v3/admin", "min_role": "admin"},
        {"prefix": "/graphql", "min_role": "viewer"},
    ],
    "keys": [
        {"id": "viewer", "key": VIEWER_KEY, "role": "viewer", "tier": "starter"},
        {"id": "editor", "key": EDITOR_KEY, "role": "editor", "tier": "starter"},
        {"id": "admin", "key": ADMIN_KEY, "role": "admin", "tier": "starter"},
        {"id": "small", "key": SMALL_KEY, "role": "viewer", "tier": "small"},
    ],
    "jwt": {"hs256_secret": SECRET, "audience": "flowcms", "tier": "starter"},
}

Send = Callable[..., Awaitable[Response]]


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginStub:
    stub = await start_origin(nursery)
    stub.route("/api/v3/contents", Answer(headers=(PUBLIC, (b"content-type", b"application/vnd.api+json")),
                                          body=b'{"data": []}'))
    stub.route("/api/v3/admin/stats", Answer(headers=((b"cache-control", b"no-store"),), body=b"{}"))
    stub.route("/graphql", Answer(headers=((b"cache-control", b"no-store"),), body=b'{"data": {}}'))
    stub.route("/blog/post", Answer(headers=(PUBLIC,), body=b"<p>hi</p>"))
    stub.route("/%61pi/v3/%61dmin/stats", Answer(headers=(PUBLIC,), body=b"{}"))  # the stub routes raw targets
    return stub


@pytest.fixture
async def edge(nursery: trio.Nursery, origin: OriginStub) -> Edge:
    config = ProxyConfig(origin_port=origin.port, purge_token="purge-token",
                         gateway=parse_gateway(GATEWAY, source="test"))
    started = await start_edge(nursery, config)
    freeze(started, NOW * NS)
    return started


def freeze(edge: Edge, now_ns: int) -> None:
    assert edge.server.exchange is not None
    edge.server.exchange.gateway_clock = lambda: now_ns


@pytest.fixture(params=["h1", "h2"])
async def send(request: pytest.FixtureRequest, nursery: trio.Nursery, edge: Edge) -> AsyncIterator[Send]:
    """One client connection, HTTP/1.1 (keep-alive, so the hit loop answers hits) or HTTP/2."""
    client: H1Client | H2Client
    if request.param == "h1":
        client = await H1Client.connect(edge.port)
    else:
        client = await H2Client.connect(nursery, edge.port)

    async def send(method: str, path: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> Response:
        with trio.fail_after(BOUND_S):
            return await client.request(method, path, headers, body)

    yield send
    await client.aclose()


def key(credential: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {credential}")


def token(**claims: Any) -> str:
    return jwt.encode({"sub": "user-7", "role": "editor", "aud": "flowcms", "exp": NOW + 60, **claims}, SECRET,
                      algorithm="HS256")


def remaining(response: Response) -> int:
    return int(response.header("x-ratelimit-remaining") or b"-1")


def only_error(response: Response) -> dict[str, Any]:
    document = response.json()
    assert response.header("cache-control") == b"no-store"
    assert len(document["errors"]) == 1
    error: dict[str, Any] = document["errors"][0]
    return error


async def test_no_credentials_get_401_in_the_api_style(send: Send, origin: OriginStub) -> None:
    """JSON:API errors[] for REST routes, GraphQL errors[].extensions for /graphql; a bare Bearer challenge."""
    rest = await send("GET", "/api/v3/admin/stats")
    assert rest.status == 401
    assert rest.header("content-type") == b"application/vnd.api+json"
    assert rest.header("www-authenticate") == b'Bearer realm="flowcms"'
    assert only_error(rest) == {"status": "401", "code": "UNAUTHENTICATED", "title": "Authentication required",
                                "detail": "this API needs Authorization: Bearer <API key or token>"}
    graphql = await send("POST", "/graphql", [("content-type", "application/json")], b'{"query": "{ a }"}')
    assert graphql.status == 401
    assert graphql.header("content-type") == b"application/json"
    assert "data" not in graphql.json()  # refused before execution (GraphQL spec §7.1.1)
    assert only_error(graphql) == {"message": "this API needs Authorization: Bearer <API key or token>",
                                   "extensions": {"code": "UNAUTHENTICATED", "statusCode": 401}}
    assert origin.count("/api/v3/admin/stats") == origin.count("/graphql") == 0


async def test_bad_key_gets_401(send: Send, origin: OriginStub) -> None:
    response = await send("GET", "/api/v3/admin/stats", [key("fc_live_nobody_0123456789")])
    assert response.status == 401
    assert response.header("www-authenticate") == b'Bearer realm="flowcms", error="invalid_token"'
    assert only_error(response)["detail"] == "the API key is not valid"
    assert origin.count("/api/v3/admin/stats") == 0


async def test_wrong_role_gets_403(send: Send, origin: OriginStub) -> None:
    response = await send("GET", "/api/v3/admin/stats", [key(EDITOR_KEY)])
    assert response.status == 403
    assert response.header("www-authenticate") == b'Bearer realm="flowcms", error="insufficient_scope"'
    assert only_error(response)["code"] == "FORBIDDEN"
    ok = await send("GET", "/api/v3/admin/stats", [key(ADMIN_KEY)])
    assert ok.status == 200
    assert origin.count("/api/v3/admin/stats") == 1


async def test_expired_jwt_gets_401_and_a_valid_one_passes(send: Send, origin: OriginStub) -> None:
    expired = await send("POST", "/graphql", [("authorization", f"Bearer {token(exp=NOW - 1)}")], b"{}")
    assert expired.status == 401
    assert only_error(expired)["extensions"] == {"code": "UNAUTHENTICATED", "statusCode": 401}
    assert "expired" in only_error(expired)["message"]
    valid = await send("POST", "/graphql", [("authorization", f"Bearer {token()}")], b"{}")
    assert valid.status == 200
    seen = origin.requests_for("/graphql")
    assert len(seen) == 1
    assert (seen[0].header(b"x-flowcms-subject"), seen[0].header(b"x-flowcms-role")) == (b"user-7", b"editor")
    assert seen[0].header(b"x-flowcms-key-id") is None


async def test_a_token_that_expires_between_two_hits_is_refused(send: Send, edge: Edge) -> None:
    """Over HTTP/2 a repeated request reuses its parsed head, and the hit lane remembers what it
    selected for it; a JWT is still checked on every request (its exp), an API key's identity too."""
    bearer = ("authorization", f"Bearer {token(exp=NOW + 60)}")
    answers = [await send("GET", "/api/v3/contents", [bearer]) for _ in range(3)]
    keyed = [await send("GET", "/api/v3/contents", [key(VIEWER_KEY)]) for _ in range(3)]
    freeze(edge, (NOW + 61) * NS)
    expired = await send("GET", "/api/v3/contents", [bearer])
    still_keyed = await send("GET", "/api/v3/contents", [key(VIEWER_KEY)])
    assert [a.status for a in answers] == [200, 200, 200]
    assert "hit" in (answers[2].header("cache-status") or b"").decode()
    assert [a.status for a in keyed] == [200, 200, 200]
    assert [remaining(a) for a in keyed] == [999, 998, 997]  # charged every time
    assert expired.status == 401
    assert only_error(expired)["code"] == "UNAUTHENTICATED"
    assert "expired" in only_error(expired)["detail"]
    assert still_keyed.status == 200
    assert remaining(still_keyed) == 999  # 61 s later the bucket is full again: the burst, minus this one


async def test_public_route_anonymous_reads_are_counted_per_ip(send: Send, edge: Edge, origin: OriginStub) -> None:
    first = await send("GET", "/api/v3/contents")
    second = await send("GET", "/api/v3/contents")
    assert (first.status, second.status) == (200, 200)
    assert first.header("x-ratelimit-limit") == b"100"
    assert (remaining(first), remaining(second)) == (99, 98)
    assert first.header("x-ratelimit-reset") == b"%d" % (NOW + 1)  # 0.6 s later the bucket is full again
    again = await fetch(edge.port, "GET", "/api/v3/contents")  # another connection from the same address
    assert remaining(again) == 97
    posted = await send("POST", "/api/v3/contents", body=b"{}")
    assert posted.status == 401  # anonymous writes are not allowed, even on a public route
    # the per-IP bucket follows the address the connection code passes in
    exchange = edge.server.exchange
    assert exchange is not None
    other = await exchange.handle(b"GET", b"/api/v3/contents", [(b"host", b"edge.test")], b"", b"edge.test",
                                  rid=b"r1", client="198.51.100.7")
    assert (other.status, dict(other.extra)[b"x-ratelimit-remaining"]) == (200, b"99")
    assert origin.requests_for("/api/v3/contents")[0].header(b"x-flowcms-role") is None


async def test_post_reads_route_lets_anonymous_clients_post_queries(nursery: trio.Nursery,
                                                                      origin: OriginStub) -> None:
    """flowcms up's /graphql route: anonymous POSTs are reads there (per-IP limit, no identity
    fields for the origin); other methods still need a credential, as does POST on a route without it."""
    gateway = {**GATEWAY, "routes": [{"prefix": "/graphql", "public": True, "post_reads": True},
                                     {"prefix": "/api/v3", "public": True}]}
    edge = await start_edge(nursery, ProxyConfig(origin_port=origin.port, purge_token="purge-token",
                                                 gateway=parse_gateway(gateway, source="test")))
    freeze(edge, NOW * NS)
    body = b'{"query": "{ authors { id } }"}'
    posted = await fetch(edge.port, "POST", "/graphql", [("content-type", "application/json")], body)
    assert posted.status == 200
    assert (posted.header("x-ratelimit-limit"), remaining(posted)) == (b"100", 99)
    seen = origin.requests_for("/graphql")
    assert len(seen) == 1
    assert seen[0].header(b"x-flowcms-role") is None
    assert seen[0].body == body
    assert (await fetch(edge.port, "PUT", "/graphql", body=body)).status == 401
    refused = await fetch(edge.port, "POST", "/api/v3/contents", [("content-type", "application/json")], b"{}")
    assert refused.status == 401
    assert len(origin.requests_for("/graphql")) == 1


async def test_browsers_on_other_sites_get_cors(send: Send, edge: Edge, origin: OriginStub) -> None:
    """Fetch §4.8: a preflight (no credentials) is answered at the edge, uncharged, without the
    origin; every answer to a request with Origin carries the CORS fields, cache hits and denials
    included; a request without Origin gets none, and neither does a page outside the routes."""
    site = ("origin", "https://app.example")
    preflight = await send("OPTIONS", "/api/v3/contents", [site, ("access-control-request-method", "GET"),
                                                           ("access-control-request-headers", "Authorization, If-None-Match")])
    assert preflight.status == 204
    assert preflight.header("access-control-allow-origin") == b"*"
    assert preflight.header("access-control-allow-headers") == b"authorization, if-none-match"
    assert b"GET" in (preflight.header("access-control-allow-methods") or b"")
    assert preflight.header("access-control-max-age") == b"86400"
    assert preflight.header("x-ratelimit-remaining") is None  # not charged
    odd = await send("OPTIONS", "/graphql", [site, ("access-control-request-method", "POST"),
                                             ("access-control-request-headers", "x\u00ff, (bad)")])
    assert odd.header("access-control-allow-headers") == b"authorization, content-type, if-none-match, " \
        b"if-modified-since, x-request-id"
    assert origin.requests_for("/api/v3/contents") == []
    answers = [await send("GET", "/api/v3/contents", [site, key(VIEWER_KEY)]) for _ in range(2)]
    for answer in answers:
        assert answer.status == 200
        assert answer.header("access-control-allow-origin") == b"*"
        assert b"x-ratelimit-remaining" in (answer.header("access-control-expose-headers") or b"")
        assert answer.header("x-ratelimit-limit") == b"1000"
    assert b"hit" in (answers[1].header("cache-status") or b"")
    assert remaining(answers[0]) - remaining(answers[1]) == 1  # the hit is charged too
    assert len(origin.requests_for("/api/v3/contents")) == 1
    denied = await send("GET", "/api/v3/admin/stats", [site])
    assert denied.status == 401
    assert denied.header("access-control-allow-origin") == b"*"
    plain = await send("GET", "/api/v3/contents", [key(VIEWER_KEY)])
    assert plain.status == 200
    assert plain.header("access-control-allow-origin") is None
    page = await send("GET", "/blog/post", [site])
    assert page.status == 200
    assert page.header("access-control-allow-origin") is None


async def test_a_method_the_route_does_not_serve_is_a_405_at_the_edge(nursery: trio.Nursery,
                                                                      origin: OriginStub) -> None:
    """Seed 002's 405 with Allow, for anonymous and keyed clients alike, before credentials and
    without the origin; GraphQL's in its own error shape; preflights and reads unchanged."""
    gateway = {**GATEWAY, "routes": [{"prefix": "/api/v3", "public": True, "methods": ["GET"]},
                                     {"prefix": "/graphql", "public": True, "post_reads": True,
                                      "methods": ["GET", "POST"]}]}
    edge = await start_edge(nursery, ProxyConfig(origin_port=origin.port, purge_token="purge-token",
                                                 gateway=parse_gateway(gateway, source="test")))
    freeze(edge, NOW * NS)
    for method, headers in (("POST", []), ("PUT", []), ("DELETE", [key(ADMIN_KEY)])):
        r = await fetch(edge.port, method, "/api/v3/contents",
                        [("content-type", "application/vnd.api+json"), *headers], b"{}")
        assert (r.status, r.header("allow")) == (405, b"GET, HEAD"), method
        assert json.loads(r.body)["errors"][0]["code"] == "METHOD_NOT_ALLOWED"
        assert r.header("x-ratelimit-limit") is None  # refused before anyone is charged
    gql = await fetch(edge.port, "PUT", "/graphql", [("content-type", "application/json")], b"{}")
    assert (gql.status, gql.header("allow")) == (405, b"GET, POST, HEAD")
    assert json.loads(gql.body)["errors"][0]["extensions"] == {"code": "VALIDATION_ERROR", "statusCode": 405}
    preflight = await fetch(edge.port, "OPTIONS", "/api/v3/contents",
                            [("origin", "https://app.example"), ("access-control-request-method", "GET")])
    assert preflight.status == 204
    assert (await fetch(edge.port, "GET", "/api/v3/contents")).status == 200
    assert (await fetch(edge.port, "POST", "/graphql", [("content-type", "application/json")], b"{}")).status == 200
    assert len(origin.requests_for("/api/v3/contents")) == 1


def test_flowcms_up_opens_graphql_posts_and_nothing_else(tmp_path: Path) -> None:
    """The gateway ``flowcms up`` writes: /graphql reads by POST too; no other route does; the
    read-only APIs refuse other methods with a 405 at the edge."""
    with open(_edge_config(Store(tmp_path / "state"), "t" * 32), "rb") as f:
        config = parse_gateway(tomllib.load(f)["gateway"], source="edge.toml")
    assert {r.prefix for r in config.routes if r.post_reads} == {"/graphql"}
    assert next(r for r in config.routes if r.prefix == "/graphql").public
    methods = {r.prefix: r.methods for r in config.routes}
    assert methods["/api/v3"] == methods["/public/feed"] == methods["/v1/flow"] == methods["/v3"] == ("GET", "HEAD")
    assert methods["/graphql"] == ("GET", "POST", "OPTIONS", "HEAD")  # OPTIONS: the origin answers it with Allow
    assert methods["/api/v3/rollback"] == ("POST",)


async def test_cache_hits_are_still_authenticated_and_counted(send: Send, edge: Edge, origin: OriginStub) -> None:
    """A HIT costs a request like a miss does, and an unauthenticated client gets no HIT at all."""
    miss = await send("GET", "/api/v3/contents", [key(VIEWER_KEY)])
    hit = await send("GET", "/api/v3/contents", [key(VIEWER_KEY)])
    new_connection_hit = await fetch(edge.port, "GET", "/api/v3/contents", [key(VIEWER_KEY)])  # via handle()
    assert (miss.status, hit.status, new_connection_hit.status) == (200, 200, 200)
    assert "hit" not in (miss.header("cache-status") or b"").decode()
    assert "hit" in (hit.header("cache-status") or b"").decode()
    assert "hit" in (new_connection_hit.header("cache-status") or b"").decode()
    assert [remaining(r) for r in (miss, hit, new_connection_hit)] == [999, 998, 997]
    assert hit.header("x-ratelimit-limit") == b"1000"
    assert origin.count("/api/v3/contents") == 1
    denied = await send("GET", "/api/v3/contents", [key("fc_live_nobody_0123456789")])
    assert denied.status == 401
    assert denied.header("cache-status") is None


async def test_api_hits_go_out_gzip_coded_and_still_counted(send: Send, origin: OriginStub) -> None:
    """An API answer's gzip copy (edgeproxy/encoding.py) is sent through the same gateway: the hit lanes
    (HTTP/1.1 and HTTP/2) charge it, add X-RateLimit-* and keep the identity's Vary fields."""
    document = b'{"data": [%s]}' % b", ".join(b'{"type": "contents", "id": "cnt_%d", "title": "Post"}' % i
                                              for i in range(40))
    origin.route("/api/v3/posts", Answer(headers=(PUBLIC, (b"content-type", b"application/vnd.api+json"),
                                                  (b"vary", b"Accept, X-Flowcms-Role")), body=document))
    miss = await send("GET", "/api/v3/posts", [key(VIEWER_KEY), ("accept-encoding", "gzip, deflate")])
    hit = await send("GET", "/api/v3/posts", [key(VIEWER_KEY), ("accept-encoding", "gzip, deflate")])
    plain = await send("GET", "/api/v3/posts", [key(VIEWER_KEY)])
    for answer in (miss, hit):
        assert answer.header("content-encoding") == b"gzip"
        assert gzip.decompress(answer.body) == document
    assert "hit" in (hit.header("cache-status") or b"").decode()
    assert (plain.body, plain.header("content-encoding")) == (document, None)
    assert [remaining(r) for r in (miss, hit, plain)] == [999, 998, 997]
    assert {r.header("vary") for r in (miss, hit, plain)} == {b"Accept, X-Flowcms-Role, Accept-Encoding"}
    assert origin.count("/api/v3/posts") == 1


async def test_over_the_limit_gets_429_with_retry_after(send: Send, edge: Edge) -> None:
    answers = [await send("GET", "/api/v3/contents", [key(SMALL_KEY)]) for _ in range(101)]
    assert [a.status for a in answers[:100]] == [200] * 100
    over = answers[100]
    assert over.status == 429
    assert over.header("retry-after") == b"1"
    assert (over.header("x-ratelimit-limit"), over.header("x-ratelimit-remaining")) == (b"100", b"0")
    assert over.header("x-ratelimit-reset") == b"%d" % (NOW + 60)
    error = only_error(over)
    assert (error["status"], error["code"], error["title"]) == ("429", "RATE_LIMITED", "Too many requests")
    freeze(edge, NOW * NS + 600_000_000)  # one emission interval later: exactly one more
    assert (await send("GET", "/api/v3/contents", [key(SMALL_KEY)])).status == 200
    assert (await send("GET", "/api/v3/contents", [key(SMALL_KEY)])).status == 429


async def test_graphql_429_is_a_graphql_error(send: Send) -> None:
    answers = [await send("POST", "/graphql", [key(SMALL_KEY)], b"{}") for _ in range(101)]
    assert answers[-1].status == 429
    assert answers[-1].json() == {"errors": [{"message": answers[-1].json()["errors"][0]["message"],
                                                            "extensions": {"code": "RATE_LIMITED",
                                                                           "statusCode": 429}}]}


@pytest.mark.parametrize("protocol", ["h1", "h2"])
async def test_exact_under_concurrency(nursery: trio.Nursery, edge: Edge, origin: OriginStub, protocol: str) -> None:
    """50 concurrent clients send 200 requests against 100 per minute: exactly 100 pass, 100 get 429."""
    statuses: list[int] = []

    async def h1_client() -> None:
        client = await H1Client.connect(edge.port)
        for _ in range(4):  # one after the other: the second and later are answered by the hit loop
            response = await client.request("GET", "/api/v3/contents", [key(SMALL_KEY)])
            statuses.append(response.status)
        await client.aclose()

    async def h2_client() -> None:
        client = await H2Client.connect(nursery, edge.port)
        streams = [await client.start_request("GET", "/api/v3/contents", [key(SMALL_KEY)]) for _ in range(4)]
        statuses.extend([(await client.response(stream)).status for stream in streams])
        await client.aclose()

    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as clients:
            for _ in range(50):
                clients.start_soon(h1_client if protocol == "h1" else h2_client)
    assert len(statuses) == 200
    assert (statuses.count(200), statuses.count(429)) == (100, 100)
    assert origin.count("/api/v3/contents") == 1  # the rest were hits or collapsed into the first fetch


async def test_client_sent_identity_fields_are_replaced(send: Send, origin: OriginStub) -> None:
    """Only the gateway says who is asking: every client-sent X-Flowcms-* is dropped first."""
    forged = [("x-flowcms-role", "admin"), ("x-flowcms-subject", "mallory"), ("x-flowcms-key-id", "admin"),
              ("X-Flowcms-Tenant", "other")]
    response = await send("POST", "/graphql", [key(VIEWER_KEY), *forged], b"{}")
    assert response.status == 200
    seen = origin.requests_for("/graphql")[0]
    assert [(n, v) for n, v in seen.headers if n.startswith(b"x-flowcms-")] == [
        (b"x-flowcms-subject", b"key:viewer"), (b"x-flowcms-role", b"viewer"), (b"x-flowcms-key-id", b"viewer")]
    await send("GET", "/api/v3/contents", forged)  # anonymous: no identity at all
    await send("GET", "/blog/post", forged)  # outside the gateway's routes too
    for path in ("/api/v3/contents", "/blog/post"):
        assert not [n for n, _ in origin.requests_for(path)[0].headers if n.startswith(b"x-flowcms-")]


async def test_identity_fields_select_vary_variants(send: Send, origin: OriginStub) -> None:
    """An origin answer that varies on X-Flowcms-Role is kept per role: the identity is set before the lookup."""
    origin.route("/api/v3/me", lambda request: Answer(
        headers=(PUBLIC, (b"vary", b"X-Flowcms-Role")), body=request.header(b"x-flowcms-role") or b"anonymous"))
    bodies = [(await send("GET", "/api/v3/me", [key(k)])).body for k in (VIEWER_KEY, EDITOR_KEY, VIEWER_KEY)]
    forged = await send("GET", "/api/v3/me", [key(VIEWER_KEY), ("x-flowcms-role", "editor")])
    assert bodies == [b"viewer", b"editor", b"viewer"]
    assert forged.body == b"viewer"
    assert origin.count("/api/v3/me") == 2


async def test_disguised_paths_meet_their_route(send: Send, origin: OriginStub) -> None:
    """``/%61pi/v3/admin/…`` is the origin's /api/v3/admin/…: judged by that route, and never cached."""
    anonymous = await send("GET", "/%61pi/v3/admin/stats")
    assert anonymous.status == 401
    admin = [await send("GET", "/%61pi/v3/%61dmin/stats", [key(ADMIN_KEY)]) for _ in range(2)]
    assert [r.status for r in admin] == [200, 200]
    assert all("hit" not in (r.header("cache-status") or b"").decode() for r in admin)
    assert [remaining(r) for r in admin] == [999, 998]
    assert origin.requests_for("/%61pi/v3/%61dmin/stats")[0].header(b"x-flowcms-role") == b"admin"
    dots = await send("GET", "/blog/../api/v3/admin/stats", [key(VIEWER_KEY)])
    assert dots.status == 403


async def test_purge_keeps_its_own_token(send: Send, origin: OriginStub) -> None:
    """PURGE carries the purge token in Authorization: the gateway does not judge it."""
    await send("GET", "/api/v3/contents", [key(VIEWER_KEY)])
    purged = await send("PURGE", "/api/v3/contents", [("authorization", "Bearer purge-token")])
    assert (purged.status, purged.json()["purged"]) == (200, 1)


async def test_h2_hit_too_large_to_send_inline_is_charged_once(nursery: trio.Nursery, edge: Edge,
                                                               origin: OriginStub) -> None:
    """A hit over the stream window is answered by handle(), which must not charge it a second time."""
    body = b"x" * 200_000  # past the client's 64 KiB initial window: no inline answer
    origin.route("/api/v3/big", Answer(headers=(PUBLIC,), body=body))
    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, edge.port)
        answers = [await client.request("GET", "/api/v3/big", [key(VIEWER_KEY)]) for _ in range(3)]
        await client.aclose()
    assert [len(a.body) for a in answers] == [len(body)] * 3
    assert "hit" in (answers[2].header("cache-status") or b"").decode()
    assert [remaining(a) for a in answers] == [999, 998, 997]


async def test_without_a_gateway_identity_fields_are_still_dropped(nursery: trio.Nursery, origin: OriginStub) -> None:
    """An origin trusts X-Flowcms-*: with no gateway configured nobody may set them."""
    edge = await start_edge(nursery, ProxyConfig(origin_port=origin.port))
    response = await fetch(edge.port, "GET", "/api/v3/contents", [("x-flowcms-role", "admin")])
    assert (response.status, response.header("x-ratelimit-limit")) == (200, None)
    assert origin.requests_for("/api/v3/contents")[0].header(b"x-flowcms-role") is None


def test_gateway_table_round_trips_through_json() -> None:
    """What ``--workers`` sends its workers (JSON of asdict) rebuilds the same gateway settings."""
    import dataclasses

    config = ProxyConfig(gateway=parse_gateway(GATEWAY, source="test"))
    assert ProxyConfig(**json.loads(json.dumps(dataclasses.asdict(config)))) == config


async def test_anonymous_buckets_follow_the_real_client_address(edge: Edge) -> None:
    """Two loopback addresses, two buckets: the connection code passes the peer's address."""

    async def get_from(address: str) -> Response:
        sock = trio.socket.socket()
        await sock.bind((address, 0))
        await sock.connect(("127.0.0.1", edge.port))
        client = H1Client(trio.SocketStream(sock))
        try:
            with trio.fail_after(BOUND_S):
                return await client.request("GET", "/api/v3/contents")
        finally:
            await client.aclose()

    first = await get_from("127.0.0.1")
    other = await get_from("127.0.0.2")
    again = await get_from("127.0.0.1")
    assert (remaining(first), remaining(other), remaining(again)) == (99, 99, 98)


async def test_h1_body_over_the_limit_is_refused_before_it_is_read(edge: Edge, origin: OriginStub) -> None:
    """A declared 11 MiB JSON body: 413 after the head alone (the client never sends the body);
    a browser's (Origin) with the CORS fields, so the app can read it."""
    stream = await trio.open_tcp_stream("127.0.0.1", edge.port)
    try:
        with trio.fail_after(BOUND_S):
            await stream.send_all(b"POST /api/v3/contents HTTP/1.1\r\nhost: edge.test\r\n"
                                  b"authorization: Bearer " + EDITOR_KEY.encode() + b"\r\n"
                                  b"origin: https://app.example\r\n"
                                  b"content-type: application/json\r\ncontent-length: 11534336\r\n\r\n")
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    finally:
        await stream.aclose()
    assert data.startswith(b"HTTP/1.1 413")
    assert b"PAYLOAD_TOO_LARGE" in data
    assert b"\r\naccess-control-allow-origin: *\r\n" in data.lower()
    assert origin.count("/api/v3/contents") == 0


async def test_h1_chunked_body_growing_past_the_limit_gets_413(edge: Edge, origin: OriginStub) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", edge.port)
    piece = b"x" * (1 << 20)
    data = b""

    async def upload() -> None:
        try:
            for _ in range(12):  # 12 MiB, past the 10 MiB limit for JSON
                await stream.send_all(b"%x\r\n%s\r\n" % (len(piece), piece))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the edge answered and closed while we were still sending

    try:
        with trio.fail_after(BOUND_S):
            await stream.send_all(b"POST /api/v3/contents HTTP/1.1\r\nhost: edge.test\r\n"
                                  b"authorization: Bearer " + EDITOR_KEY.encode() + b"\r\n"
                                  b"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(upload)
                while chunk := await stream.receive_some(65536):
                    data += chunk
                nursery.cancel_scope.cancel()
    finally:
        await stream.aclose()
    assert data.startswith(b"HTTP/1.1 413")
    assert b"access-control-allow-origin" not in data.lower()  # no Origin, no CORS fields
    assert origin.count("/api/v3/contents") == 0


async def test_h2_body_over_the_limit_is_refused_from_its_headers(edge: Edge, origin: OriginStub) -> None:
    from support.rawh2 import RawH2

    client = await RawH2.connect(edge.port)
    try:
        with trio.fail_after(BOUND_S):
            await client.handshake()
            sid = client.new_stream_id()
            await client.headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"edge.test"),
                                       (b":path", b"/api/v3/contents"), (b"content-type", b"application/json"),
                                       (b"authorization", b"Bearer " + EDITOR_KEY.encode()),
                                       (b"origin", b"https://app.example"),
                                       (b"content-length", b"11534336")], end_stream=False)
            answer = await client.response(sid)
    finally:
        await client.aclose()
    assert answer.status == 413
    assert b"PAYLOAD_TOO_LARGE" in answer.body
    assert answer.header(b"access-control-allow-origin") == b"*"
    assert origin.count("/api/v3/contents") == 0


def test_a_gateway_with_several_workers_is_refused() -> None:
    from edgeproxy.config import apply
    from edgeproxy.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[gateway\] needs workers = 1"):
        apply(ProxyConfig(), {"workers": 2, "gateway": GATEWAY}, source="test")
