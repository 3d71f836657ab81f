"""Is this request a plain fresh hit? The decision the HTTP/1.1 and HTTP/2 hit lanes share.

Why: both lanes (``h1lane.py``, ``h2lane.py``) answer the common case without a ``Reply``: a GET
or HEAD with none of ``policy.POLICY_REQUEST_FIELDS`` (no request directive, no precondition, no Range)
whose selected variant is fresh and ``policy.is_plain`` (what ``Exchange.fresh_hit`` answers
without ``policy.choose``), under a gateway route or outside every route. What they send is the
same answer in two wire formats, so who is asking, which variant answers, what is counted and
what is charged are decided once, here, and each lane only formats the outcome.

Order matters for exact counts: under a route the gateway authenticates first (its denial is an
answer: counted, never charged); then the cache must answer, and the body must fit ``room`` (the
HTTP/2 flow-control windows); only then is the request counted and charged to the identity's
bucket. Anything else returns None before anything is counted or charged, and the caller asks
``Exchange.try_hit``, which decides as it always did.

HTTP/2 keeps one parsed head per distinct header block of a connection (a client repeating a
request sends the same block), and the head remembers what was selected for it (``LaneMemo``):
the field scan's findings, the identity, the cache entry. The next request with that head skips
the scan, the route match, the key lookup, the cache key and the Vary selection: through h2load
that was ~10% of an API hit (stop 18, bench/api.md). It is remembered only when none of it can
change but the store: outside every route, or for a remembered API key (its identity is fixed
for the process; JWTs and anonymous reads go through ``Gateway.authenticate`` every time). The
store's ``generation`` changes whenever an entry enters or leaves it, and a memo of another
generation is not used; a soft purge marks the entry stale, which is checked on every request
as before. Freshness, the body's room, counting and the charge are decided per request.
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Protocol

from edgeproxy.cache import Entry
from edgeproxy.gateway import IDENTITY_PREFIX, Deny, Identity, Route
from edgeproxy.policy import POLICY_REQUEST_FIELDS, plain_age_ttl
from edgeproxy.replies import CachedObject, choose_request_id, has_body
from edgeproxy.variants import select

if TYPE_CHECKING:
    from edgeproxy.exchange import Exchange

Fields = list[tuple[bytes, bytes]]
# A hit: the object, the body to send (empty for HEAD and bodiless statuses), Age, the ttl of its
# Cache-Status, the X-Request-ID to send, and under a gateway route the X-RateLimit-* numbers
# (limit, remaining, reset epoch second); limit 0 outside every route.
Hit = tuple[CachedObject, bytes, int, int, bytes, int, int, int]
# The gateway's denial of the request under its route, with the X-Request-ID to send.
Denied = tuple[Deny, Route, bytes]
NO_ROOM_LIMIT = 1 << 62  # HTTP/1.1 has no flow control: any body fits


class LaneMemo(Protocol):
    """A request head that can remember this module's selection for the next request it makes:
    (the store's generation, the identity, a weak reference to the entry, the X-Request-ID given,
    whether on several lines, the Accept-Encoding). ``h2wire.RequestHead`` is one."""

    lane: tuple[int, Identity | None, weakref.ref[Entry[CachedObject]], bytes | None, bool, bytes | None] | None


def plain_hit(exchange: Exchange, method: bytes, target: bytes, fields: Fields, host: bytes | None,
              client: str | None, room: int = NO_ROOM_LIMIT, head: LaneMemo | None = None) -> Hit | Denied | None:
    """A plain fresh hit (counted, and charged under a route), the gateway's denial (counted), or
    None: then nothing was counted or charged, and ``Exchange.try_hit`` decides.

    Args:
        method: b"GET" or b"HEAD" (the callers check).
        fields: the request's header fields as parsed (lowercase names).
        client: the peer's address, the gateway's per-IP bucket for anonymous reads.
        room: the most body bytes that may be sent now (HTTP/2: the smaller flow-control window);
            a larger body returns None before anything is counted.
        head: where this request's selection may be remembered (HTTP/2's request head, kept per
            distinct header block): ``method``, ``target``, ``fields`` and ``host`` are its own.
    """
    if target.startswith(b"/.edge/"):
        return None
    cache = exchange.cache
    gw = exchange.gateway
    route: Route | None = None
    memo = head.lane if head is not None else None
    if memo is not None and memo[0] == cache.generation:  # this head's selection still holds
        _, identity, entry_ref, given_rid, several_rids, accept_encoding = memo
        entry = entry_ref()  # still stored (the generation says so), so still there
        now_ns = exchange.gateway_clock() if identity is not None else 0
    else:
        authorization = given_rid = accept_encoding = None
        several_rids = from_browser = False
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
            elif name == b"accept-encoding":
                accept_encoding = value if accept_encoding is None else accept_encoding + b", " + value
            elif name == b"origin":
                from_browser = True
        identity = None
        now_ns = 0
        if gw is not None and target.startswith(gw.prefixes):
            if authorization is not None and not from_browser:
                identity = gw.remembered_reader(target, method, authorization)  # the common case, in one call
            if identity is None:
                route = gw.route_for(target)
                if route is not None:
                    if from_browser:
                        return None  # under a route it gets the CORS fields: Exchange.handle adds them
                    now_ns = exchange.gateway_clock()
                    found = gw.authenticate(route, method, authorization, client, now_ns)
                    if type(found) is Deny:
                        exchange.counters.requests += 1
                        return found, route, choose_request_id(None if several_rids else given_rid)
                    assert isinstance(found, Identity)
                    identity = found
            else:
                now_ns = exchange.gateway_clock()
        host = host.lower() if host else None  # host names are case-insensitive (RFC 3986 §3.2.2)
        variants = cache.peek_variants(b"%s%s" % (host or b"", target))
        entry = select(variants, fields) if identity is None else select(variants, fields, identity.vary_values,
                                                                         IDENTITY_PREFIX)
        if head is not None and entry is not None and route is None:
            # No route, or a remembered API key (whose identity never changes): nothing here depended
            # on more than the head and the store's contents (see the module docstring).
            # A weak reference: a head kept by a long connection must not keep an evicted answer alive.
            head.lane = (cache.generation, identity, weakref.ref(entry), given_rid, several_rids, accept_encoding)
    if entry is None or entry.stale:
        return None
    obj = entry.value
    plain = plain_age_ttl(obj.stored, time.time())
    if plain is None:
        return None  # stale, or no-cache (not is_plain): policy.choose decides (try_hit)
    if obj.gz is not None:
        obj = obj.coded_for(accept_encoding)  # the gzip copy for a client that takes it (encoding.py)
    body = obj.body if method != b"HEAD" and has_body(obj.status) else b""
    if len(body) > room:
        return None
    # The cache answers: count it, and charge it to the identity's bucket (a 429 is not a hit).
    counters = exchange.counters
    counters.requests += 1
    rid = choose_request_id(None if several_rids else given_rid)
    if identity is None:
        hit: Hit = (obj, body, int(plain[0]), int(plain[1]), rid, 0, 0, 0)
    else:
        assert gw is not None
        taken = gw.charge_counts(identity, now_ns)
        if type(taken) is Deny:
            return taken, route or gw.route_for(target), rid  # type: ignore[return-value]  (a route: charged)
        assert isinstance(taken, tuple)
        hit = (obj, body, int(plain[0]), int(plain[1]), rid, identity.per_minute, taken[0], taken[1])
    counters.hits += 1
    cache.record_hit(entry)
    return hit

