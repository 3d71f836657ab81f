"""Fresh cache hits written straight to HTTP/1.1 bytes: the hit loop's lane for the common case.

Why: a hit through ``Exchange.try_hit`` builds a ``Reply`` with a list of extra fields, and
``server.serialize_parts`` joins a list of pieces from it; under a gateway route ``gated_hit``
adds the X-RateLimit-* tuples on top. bench/api.py measured API hits at ~0.6x the requests/s of
static hits over HTTP/1.1 (HOTPATH.md: per-request Python work decides HTTP/1.1 throughput).
Nothing in such an answer needs an object per request: the cached object's status line and
fields are serialized once (``CachedObject.h1_head``), and what changes per request (Date,
X-Request-ID, Age, Cache-Status, the X-RateLimit-* numbers) is one ``bytes %`` format here.

What takes the lane: a GET or HEAD with none of ``policy.POLICY_REQUEST_FIELDS`` (no request
directive, no precondition) whose selected variant is fresh and ``policy.is_plain`` (what
``Exchange.fresh_hit`` answers without ``policy.choose``), under a gateway route or outside
every route. The answer is byte for byte the one ``serialize_parts(try_hit(...))`` writes, fields
in the same order (tests compare the two). Under a route the gateway authenticates first (its
denial is answered here, as ``gated_hit`` would), and the rate limit is charged only once the
cache answers. Anything else returns None before anything is counted or charged, and the hit
loop asks ``Exchange.try_hit``, which decides as it always did.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgeproxy.cache import VARY_ABSENT
from edgeproxy.exchange import hit_status
from edgeproxy.gated import identity_vary
from edgeproxy.gateway import Deny, Identity, Route
from edgeproxy.headers import vary_value
from edgeproxy.policy import POLICY_REQUEST_FIELDS, is_plain, serve_plain
from edgeproxy.replies import Reply, choose_request_id, denial_reply, has_body
from edgeproxy.server import DATES, serialize_parts

if TYPE_CHECKING:
    from edgeproxy.exchange import Exchange

Fields = list[tuple[bytes, bytes]]
# head bytes, body (empty for HEAD and bodiless statuses), status, the X-Request-ID sent
Answer = tuple[bytes, bytes, int, bytes]

# What serialize_parts appends to a cached reply's head, in its order: Date, X-Request-ID, then
# the reply's extra fields (fresh_hit's Age and Cache-Status, then gated_hit's X-RateLimit-*).
_TAIL = b"%sdate: %s\r\nx-request-id: %s\r\nage: %d\r\ncache-status: %s\r\n\r\n"
_GATED_TAIL = (b"%sdate: %s\r\nx-request-id: %s\r\nage: %d\r\ncache-status: %s\r\nx-ratelimit-limit: %d\r\n"
               b"x-ratelimit-remaining: %d\r\nx-ratelimit-reset: %d\r\n\r\n")


def h1_hit(exchange: Exchange, method: bytes, target: bytes, fields: Fields, host: bytes | None,
           client: str | None) -> Answer | None:
    """The answer to a plain fresh hit (or the gateway's denial of the request), else None: then
    nothing was counted or charged, and ``Exchange.try_hit`` decides.

    Args:
        method: b"GET" or b"HEAD" (the hit loop checks).
        fields: the request's header fields as parsed (lowercase names).
        client: the peer's address, the gateway's per-IP bucket for anonymous reads.
    """
    if target.startswith(b"/.edge/"):
        return None
    authorization = given_rid = None
    several_rids = False
    policy_fields = POLICY_REQUEST_FIELDS
    for name, value in fields:  # one pass for the policy, the gateway and the request id
        if name in policy_fields:
            return None  # a request directive or a precondition: policy.choose decides (try_hit)
        if name == b"authorization":
            if authorization is None:
                authorization = value  # a singleton field: the first line counts (get_header)
        elif name == b"x-request-id":
            several_rids = given_rid is not None  # joined lines are never well-formed
            given_rid = value
    identity: Identity | None = None
    route: Route | None = None
    now_ns = 0
    gw = exchange.gateway
    if gw is not None and target.startswith(gw.prefixes):
        route = gw.route_for(target)
        if route is not None:
            now_ns = exchange.gateway_clock()
            found = gw.authenticate(route, method, authorization, client, now_ns)
            if type(found) is Deny:
                exchange.counters.requests += 1
                return _denied(found, route, method, choose_request_id(None if several_rids else given_rid))
            assert isinstance(found, Identity)
            identity = found
    host = host.lower() if host else None  # host names are case-insensitive (RFC 3986 §3.2.2)
    key = b"%s%s" % (host or b"", target)
    cache = exchange.cache
    entry = cache.peek(key, _vary_getter(fields) if identity is None else identity_vary(fields, identity))
    if entry is None or entry.stale:
        return None
    obj = entry.value
    if not is_plain(obj.stored, vary_matched=True):
        return None
    plain = serve_plain(obj.stored, time.time())
    if plain is None:
        return None
    # The cache answers: count it, and charge it to the identity's bucket (a 429 is not a hit).
    counters = exchange.counters
    counters.requests += 1
    rid = choose_request_id(None if several_rids else given_rid)
    if identity is None:
        head = _TAIL % (obj.head or obj.h1_head(), DATES.get(), rid, int(plain.age), hit_status(int(plain.ttl)))
    else:
        assert gw is not None
        assert route is not None
        taken = gw.charge_counts(identity, now_ns)
        if type(taken) is Deny:
            return _denied(taken, route, method, rid)
        assert isinstance(taken, tuple)
        head = _GATED_TAIL % (obj.head or obj.h1_head(), DATES.get(), rid, int(plain.age),
                              hit_status(int(plain.ttl)), identity.per_minute, taken[0], taken[1])
    counters.hits += 1
    cache.record_hit(entry)
    return head, obj.body if method != b"HEAD" and has_body(obj.status) else b"", obj.status, rid


def _vary_getter(fields: Fields) -> Callable[[bytes], bytes]:
    """The cache's ``request_vary_getter`` of the client's own fields (outside the gateway)."""

    def getter(name: bytes) -> bytes:
        value = vary_value(fields, name)
        return VARY_ABSENT if value is None else value

    return getter


def _denied(deny: Deny, route: Route, method: bytes, rid: bytes) -> Answer:
    """The gateway's denial, answered as the general path answers it."""
    reply: Reply = denial_reply(deny, route)
    head, body = serialize_parts(reply, rid, head_only=method == b"HEAD", close=False)
    return head, body, reply.status, rid
