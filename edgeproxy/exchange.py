"""One request through the edge: purge/stats endpoints, cache policy, origin, response bytes.

Version-agnostic: it takes a parsed request (method, target, headers, body) and returns
a ``Reply`` (status, header fields, body) plus the cache bookkeeping; the protocol
adapters turn a Reply into HTTP/1.1 or HTTP/2 bytes. ``policy.choose`` decides, this
module carries the decision out (hishel's driver loop; STYLE.md 2.6 §5). Proxy error
answers are built here and nowhere else (STYLE.md 2.4 §7).

Origin fetches that may fill the cache are collapsed per cache key (``Flights``). The
first request's answer is shared with the requests that waited for it only when it was
stored and its Vary selects it for them too (what a cache hit would give them), or when it
is a shared-safe server error; otherwise each waiter asks the origin itself, so a
``private`` or ``Set-Cookie`` answer never reaches another client (Varnish's waiting list
behaves the same way). A purge that lands while a fetch is in flight marks what that
fetch stores as stale: the origin may have answered before the publish that caused it.
For the same reason a tagged purge's first fresh answer (``publish_metrics.py``) must come
from an origin request that started after it; that bookkeeping runs only where an answer
from the origin is stored, never on a cache hit.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from typing import Any

import trio

from edgeproxy import cors, policy
from edgeproxy.bus import WorkerBus
from edgeproxy.cache import VARY_ABSENT, CacheStore, Entry
from edgeproxy.config import ProxyConfig
from edgeproxy.errors import UpstreamError, UpstreamTimeout
from edgeproxy.gated import gated_hit, with_identity
from edgeproxy.gateway import (
    IDENTITY_PREFIX,
    Allow,
    Deny,
    Gateway,
    Identity,
    Route,
    check_body_size,
    is_disguised,
    max_body_bytes,
)
from edgeproxy.headers import (
    format_cache_status,
    format_http_date,
    get_all,
    get_header,
    parse_http_date,
    vary_value,
)
from edgeproxy.publish_metrics import PublishLog, merge_snapshots, summarize
from edgeproxy.purge import (
    REALM,
    PurgeSpec,
    apply_purge,
    check_token,
    parse_purge_body,
    path_of,
    spec_from_wire,
    spec_to_wire,
)
from edgeproxy.ranges import UNSATISFIABLE, asked_part
from edgeproxy.replies import (
    CONTENT_FIELDS,
    CachedObject,
    Filled,
    Reply,
    denial_reply,
    error_reply,
    has_body,
)
from edgeproxy.stats import Counters, format_json, format_prometheus, merge_numbers
from edgeproxy.upstream import Flights, OriginPool, UpstreamResponse
from edgeproxy.variants import select

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
    b"upgrade", b"proxy-authenticate", b"proxy-authorization", b"content-length",
})
# The edge sets X-Request-ID itself on every answer, and Age on every answer from the cache, so the
# origin's are dropped here (an answer passed through uncached keeps its Age: ``_origin_reply``).
# The origin's Date is kept (RFC 9110 §6.6.1, ``Exchange.origin``).
EDGE_SET_FIELDS = frozenset({b"age", b"x-request-id"})
# Client preconditions: a cache-filling fetch drops them so the origin sends a storable full
# response, and the cache then answers the precondition itself (Varnish does the same on a miss).
CONDITIONAL_FIELDS = frozenset({b"if-none-match", b"if-modified-since", b"if-match",
                                b"if-unmodified-since", b"if-range"})
STREAM_AFTER_MIN = 1 << 20  # bodies up to this are read whole even when the cache is tiny
# Purge paths arrive as JSON text; request targets are bytes with non-ASCII percent-encoded.


def client_fields(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    connection_tokens = {t.strip().lower() for n, v in headers if n == b"connection" for t in v.split(b",")}
    kept = [(n, v) for n, v in headers
            if n not in HOP_BY_HOP and n not in connection_tokens and n not in EDGE_SET_FIELDS]
    return policy.strip_for_client(kept)


class Exchange:
    """Shared state of one worker: cache, origin pool, flights, counters."""

    def __init__(self, config: ProxyConfig, nursery: trio.Nursery) -> None:
        self.config = config
        self.cache: CacheStore[CachedObject] = CacheStore(config.cache_bytes, eviction=config.eviction)
        self.pool = OriginPool(config.origin_host, config.origin_port,
                               connect_timeout=config.connect_timeout, read_timeout=config.read_timeout)
        self.fills: Flights[Filled] = Flights(nursery)
        self.refreshes: Flights[CachedObject | UpstreamResponse] = Flights(nursery)
        self.revalidating: set[bytes] = set()
        self.purge_epoch = 0  # bumped by every purge; see the module docstring
        self.counters = Counters()
        self.publishes = PublishLog()  # tagged purges and their first fresh answers
        self.nursery = nursery  # background revalidations live here (server-owned)
        self.bus: WorkerBus | None = None  # set when this is one of several workers
        # The API gateway (gateway.py) for requests under its routes; None costs one test per request.
        self.gateway = Gateway(config.gateway) if config.gateway is not None else None
        self.gateway_clock = time.time_ns  # the rate limiter's clock; tests may freeze it

    # -- entry point -------------------------------------------------------------
    async def handle(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                     body: bytes, host: bytes | None, *, rid: bytes, client: str | None = None) -> Reply:
        """Answer one request; ``rid`` is the X-Request-ID the client will see and the origin gets,
        ``client`` the peer's IP address (the gateway's per-IP bucket for anonymous requests).

        Under a gateway route the gateway decides first (a denial is answered here), its
        identity fields replace the client's X-Flowcms-* ones before the cache lookup (so a
        ``Vary`` on them works), and its X-RateLimit-* fields join every answer, hits included.
        A request there with ``Origin`` is a browser's (``cors.py``): its preflight is answered
        here, before the gateway, and every other answer gets the CORS fields.
        A PURGE carries the purge token in Authorization and is not the gateway's to judge.
        """
        gw = self.gateway
        if (gw is not None and target.startswith(gw.prefixes) and get_header(headers, b"origin") is not None
                and gw.route_for(target) is not None):
            if cors.is_preflight(method, headers):
                self.counters.requests += 1
                return Reply(204, cors.preflight_fields(headers), b"")
            reply = await self._handle(method, target, headers, body, host, rid=rid, client=client)
            reply.extra = [*reply.extra, *cors.RESPONSE_FIELDS]
            return reply
        return await self._handle(method, target, headers, body, host, rid=rid, client=client)

    async def _handle(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                      body: bytes, host: bytes | None, *, rid: bytes, client: str | None) -> Reply:
        self.counters.requests += 1
        if target.startswith(b"/.edge/"):
            return await self.internal(method, target, headers, body)
        if method == b"PURGE":
            soft = (get_header(headers, b"soft-purge") or b"0").strip().lower() in (b"1", b"true")
            return await self.purge(headers, PurgeSpec(paths=(path_of(target),), soft=soft))
        gw = self.gateway
        allowed: Allow | None = None
        if gw is not None and target.startswith(gw.prefixes):
            route = gw.route_for(target)
            if route is not None:
                decision = gw.decide(route, method, get_header(headers, b"authorization"), client,
                                     self.gateway_clock())
                if type(decision) is Deny:
                    return denial_reply(decision, route)
                assert isinstance(decision, Allow)
                allowed = decision
                headers = with_identity(headers, decision.identity)
        host = host.lower() if host else None  # host names are case-insensitive (RFC 3986 §3.2.2)
        key = b"%s%s" % (host or b"", target)
        entry = None
        if method in policy.CACHEABLE_METHODS:
            entry = self.cache.lookup(key, lambda name: _vary_getter(headers, name))
            hit = self.fresh_hit(method, headers, entry)  # the hit path: no copies, no awaits
            if hit is not None:
                if allowed is not None:
                    hit.extra = [*hit.extra, *allowed.headers]
                return hit
        if gw is not None and allowed is None and is_disguised(target):
            route = gw.route_for(target)
            if route is not None:
                return await self.disguised(gw, route, method, target, headers, body, host, rid=rid, client=client)
        # everything past here may reach the origin, which gets the request id too; X-Flowcms-*
        # identity fields come from the gateway only, never from the client (with no gateway too)
        if allowed is None:
            headers = [(n, v) for n, v in headers if n != b"x-request-id" and not n.startswith(IDENTITY_PREFIX)]
        else:
            headers = [(n, v) for n, v in headers if n != b"x-request-id"]
        headers.append((b"x-request-id", rid))
        if method in policy.CACHEABLE_METHODS:
            reply = await self.cacheable(method, target, headers, key, host, entry)
        else:
            reply = await self.forward(method, target, headers, body, host)
        if allowed is not None:
            reply.extra = [*reply.extra, *allowed.headers]
        return reply

    async def disguised(self, gw: Gateway, route: Route, method: bytes, target: bytes,
                        headers: list[tuple[bytes, bytes]], body: bytes, host: bytes | None, *, rid: bytes,
                        client: str | None) -> Reply:
        """A target outside the route prefixes that reaches a route at the origin (``/%61pi/…``):
        judged on its canonical path and passed through uncached, so no cache key outside the
        prefixes ever holds a gated answer (the hit paths check only the prefixes)."""
        decision = gw.decide(route, method, get_header(headers, b"authorization"), client, self.gateway_clock())
        if type(decision) is Deny:
            return denial_reply(decision, route)
        assert isinstance(decision, Allow)
        headers = [(n, v) for n, v in with_identity(headers, decision.identity) if n != b"x-request-id"]
        reply = await self.forward(method, target, [*headers, (b"x-request-id", rid)], body, host)
        reply.extra = [*reply.extra, *decision.headers]
        return reply

    def fresh_hit(self, method: bytes, headers: list[tuple[bytes, bytes]], entry: Entry[CachedObject] | None,
                  identity: Identity | None = None) -> Reply | None:
        """The stored answer when it is fresh for this request, else None (``cacheable`` decides).

        ``entry`` is what a lookup with this request's Vary values selected. ``identity``: the
        gateway's, when ``headers`` are still the client's (``gated.py``); only ``choose`` needs the
        copy with the identity's fields.
        """
        if entry is None or entry.stale:
            return None
        obj = entry.value
        stored = obj.stored
        if policy.is_plain(stored, vary_matched=True) and policy.is_plain_request(headers):
            plain = policy.plain_age_ttl(stored, time.time())
            if plain is None:
                return None
            self.counters.hits += 1
            return obj.for_request(headers).reply([(b"age", b"%d" % int(plain[0])),
                                                   (b"cache-status", hit_status(int(plain[1])))])
        if identity is not None:
            headers = with_identity(headers, identity)
        decision = policy.choose(method, headers, stored, time.time())
        if type(decision) is not policy.Serve:
            return None
        self.counters.hits += 1
        return self.from_cache(obj, headers, decision.age, hit_status(int(decision.ttl)), ranged=method == b"GET")

    def try_hit(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                host: bytes | None, *, client: str | None = None) -> Reply | None:
        """The fresh-hit answer without awaiting anything (HTTP/2 writes it inline), else None.

        None means: take the general path, ``handle``, which looks again and decides.
        """
        if (method != b"GET" and method != b"HEAD") or target.startswith(b"/.edge/"):
            return None
        gw = self.gateway
        if gw is not None and target.startswith(gw.prefixes):
            route = gw.route_for(target)
            if route is not None:
                found = gated_hit(self, gw, route, method, target, headers, host, client)
                return denial_reply(found, route) if isinstance(found, Deny) else found
        host = host.lower() if host else None
        entry = select(self.cache.peek_variants(b"%s%s" % (host or b"", target)), headers)
        hit = self.fresh_hit(method, headers, entry)
        if hit is not None:
            assert entry is not None
            self.cache.record_hit(entry)  # counted here only when answered: handle() counts the rest
            self.counters.requests += 1
        return hit

    def body_limit(self, method: bytes, target: bytes, fields: list[tuple[bytes, bytes]],
                   content_length: int | None) -> tuple[int, Reply | None]:
        """Under a gateway route: the body limit (10 MB JSON, 50 MB media) and, when a declared
        length is over it, the 413 to send before reading the body. Elsewhere: no gateway limit.
        A browser's request (``Origin``) gets the CORS fields on its 413 as on every answer under
        a route, so the app can read the refusal instead of seeing a network error."""
        gw = self.gateway
        if gw is None or not target.startswith(gw.prefixes):
            return 0, None
        route = gw.route_for(target)
        if route is None:
            return 0, None
        content_type = get_header(fields, b"content-type")
        limit = max_body_bytes(content_type)
        denial = check_body_size(method, target.split(b"?", 1)[0], content_type, content_length)
        if denial is None:
            return limit, None
        reply = denial_reply(denial, route)
        if get_header(fields, b"origin") is not None:
            reply.extra = [*reply.extra, *cors.RESPONSE_FIELDS]
        return limit, reply

    # -- cacheable requests ------------------------------------------------------
    async def cacheable(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                        key: bytes, host: bytes | None, entry: Entry[CachedObject] | None) -> Reply:
        now = time.time()
        obj = entry.value if entry is not None else None
        stored = obj.stored if obj is not None else None
        if obj is not None and stored is not None and entry is not None and (
                (entry.stale and not stored.stale) or (entry.invalid and not stored.invalid)):
            stored = obj.stored = policy.mark_stale(stored, invalid=entry.invalid)  # purged since it was stored
        decision = policy.choose(method, headers, stored, now)
        if isinstance(decision, policy.Serve) and obj is not None:
            self.counters.hits += 1
            return self.from_cache(obj, headers, decision.age, format_cache_status(
                hit=True, ttl=decision.ttl), ranged=method == b"GET")
        if isinstance(decision, policy.ServeStale) and obj is not None:
            self.counters.stale_served += 1
            refresh = _refresh_key(key, obj)
            if decision.revalidate_in_background and refresh not in self.revalidating:
                self.revalidating.add(refresh)  # one background refresh per stored object at a time
                self.nursery.start_soon(self.revalidate_in_background, target, headers, key, obj)
            return self.from_cache(obj, headers, decision.age, format_cache_status(
                hit=True, fwd="stale", ttl=decision.ttl, detail=decision.reason))
        if isinstance(decision, policy.GatewayTimeout):
            return error_reply(504, "ONLY_IF_CACHED", "only-if-cached: nothing usable is cached")
        if isinstance(decision, policy.Pass) or get_header(headers, b"range") is not None:
            # Pass stores nothing; a Range request that no fresh stored 200 answered (from_cache)
            # is not collapsed or stored either: its 206 answers only this request (no range merging).
            return await self.forward(method, target, headers, b"", host)
        if isinstance(decision, policy.Revalidate) and obj is not None:
            return await self.revalidate(method, target, headers, key, obj, decision)
        fwd = decision.fwd if isinstance(decision, (policy.Fetch, policy.Revalidate)) else "miss"
        if obj is None and fwd == "miss":
            fwd = "uri-miss" if not self.cache.variants(key) else "vary-miss"
        return await self.fetch(method, target, headers, key, fwd, obj)

    def from_cache(self, obj: CachedObject, headers: list[tuple[bytes, bytes]], age: float,
                   cache_status: bytes, *, ranged: bool = False) -> Reply:
        """The stored answer for this request: a 304 for a precondition that matches, and with
        ``ranged`` (a GET) the part a Range field asks of a stored 200 (``ranges.py``). A request
        that accepts gzip gets the gzip copy when there is one (``encoding.py``), whole: its Range is
        ignored (RFC 9110 §14.2 allows that), as nginx does. A part cut from the uncoded answer
        shares the copy's Last-Modified, which If-Range takes as a strong validator, and a client
        resuming a gzip download with it would join gzip bytes to plain ones."""
        extra = [(b"age", b"%d" % int(age)), (b"cache-status", cache_status)]
        chosen = obj.for_request(headers)
        if policy.not_modified(headers, obj.stored):
            return chosen.reply_304(extra)
        if ranged and chosen is obj and obj.status == 200:
            part = asked_part(headers, obj.stored, len(obj.body))
            if part == UNSATISFIABLE:
                return obj.reply_unsatisfiable(extra)
            if part is not None:
                return obj.reply_range(part[0], part[1], extra)
        return chosen.reply(extra)

    async def origin(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                     body: bytes, *, stream: bool = False) -> tuple[UpstreamResponse, float, float]:
        """One origin request. With ``stream``, a body too large for the cache is not read
        whole: the response carries its start and the rest streams through to the client."""
        self.counters.origin_requests += 1
        request_time = time.time()
        try:
            response = await self.pool.request(method, target, _origin_fields(headers), body,
                                               stream_after=max(self.cache.max_entry_bytes, STREAM_AFTER_MIN) if stream else None)
        except UpstreamError:
            self.counters.origin_errors += 1
            raise
        response_time = time.time()
        dates = get_all(response.headers, b"date")
        if len(dates) != 1 or parse_http_date(dates[0]) is None:
            # RFC 9110 §6.6.1: a recipient that caches or forwards a response without Date adds
            # the time it was received (and MAY replace an invalid one; several lines of a singleton
            # field are one invalid value). A cache never changes a stored Date (RFC 9111 §4), so the
            # answers made from this response carry this one, not the time they are sent.
            response.headers[:] = [f for f in response.headers if f[0] != b"date"]
            response.headers.append((b"date", format_http_date(response_time)))
        return response, request_time, response_time

    async def fetch(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], key: bytes,
                    fwd: str, stale: CachedObject | None) -> Reply:
        """A miss (or a stale object without validators): one collapsed, cache-filling GET."""
        self.counters.misses += 1
        try:
            filled, collapsed = await self.fills.run(key, lambda: self._fill(target, headers, key))
            if collapsed:
                self.counters.collapsed += 1
                if not _can_share(filled, headers):
                    filled, collapsed = await self._fill(target, headers, key), False
        except UpstreamError as exc:
            return self.origin_failed(exc, stale, headers)
        response = filled.response
        if response.status >= 500 and stale is not None:
            reply = self.origin_failed(UpstreamError(f"origin answered {response.status}"), stale, headers,
                                       response=response)
            if reply.stream is None:
                await response.aclose()
            return reply
        status = format_cache_status(fwd=fwd, stored=filled.obj is not None and not collapsed,
                                     collapsed=collapsed)
        if filled.obj is not None:
            return self.from_cache(filled.obj, headers, policy.current_age(filled.obj.stored, time.time()), status)
        not_modified = _not_modified_reply(headers, response, status)
        if not_modified is not None:
            return not_modified  # the fill dropped the client's precondition; answer it here
        return _origin_reply(method, response, status)

    async def _fill(self, target: bytes, headers: list[tuple[bytes, bytes]], key: bytes) -> Filled:
        request = [(n, v) for n, v in headers if n not in CONDITIONAL_FIELDS]
        epoch = self.purge_epoch
        response, t0, t1 = await self.origin(b"GET", target, request, b"", stream=True)
        obj = self.store_response(key, target, request, response, t0, t1, stale=epoch != self.purge_epoch)
        if obj is not None and self.publishes.pending:
            self.stored_fresh(target, obj, epoch, t1)
        return Filled(response, obj)

    def stored_fresh(self, target: bytes, obj: CachedObject, epoch: int, at: float) -> None:
        """An origin answer was stored: the first fresh 200 of a waiting publish? Other workers
        hear of it, so every worker's log has the earliest one (``publish_metrics.py``)."""
        if obj.status != 200:
            return
        firsts = self.publishes.served_fresh(path_of(target), obj.stored.surrogate_keys, epoch=epoch, now=at)
        if firsts and self.bus is not None:
            self.nursery.start_soon(self.bus.fan_out, "publish_fresh", {"ids": firsts, "at": at})

    def store_response(self, key: bytes, target: bytes, request_headers: list[tuple[bytes, bytes]],
                       response: UpstreamResponse, t0: float, t1: float, *,
                       stale: bool = False) -> CachedObject | None:
        """Store the response when RFC 9111 allows it and it fits; the stored object or None."""
        if response.rest is not None or not policy.is_storable(b"GET", request_headers, response.status,
                                                               response.headers):
            return None  # a streamed body is larger than any object the cache may hold
        size = len(response.body) + sum(len(n) + len(v) + 4 for n, v in response.headers)
        if size > self.cache.max_entry_bytes:
            return None
        stored = policy.make_stored(b"GET", request_headers, response.status, response.headers, t0, t1)
        fields = client_fields(response.headers)
        if has_body(response.status):
            fields.append((b"content-length", b"%d" % len(response.body)))
        obj = CachedObject.made(stored, response.status, fields, response.body, gzip=self.config.gzip)
        if obj.gz is not None:
            coded_size = len(obj.gz.body) + sum(len(n) + len(v) + 4 for n, v in obj.gz.fields)
            if size + coded_size > self.cache.max_entry_bytes:  # the copy must not cost the answer its place
                obj = CachedObject(stored, response.status, fields, response.body)
            else:
                size += coded_size
        vary = stored.vary if stored.vary != "*" else ()
        values = tuple(VARY_ABSENT if v is None else v for v in stored.vary_values)
        refused = self.cache.store(Entry(
            key=key, path=target.split(b"?", 1)[0], vary=tuple(vary) or None, vary_values=values,
            value=obj, size=size, surrogate_keys=stored.surrogate_keys, stale=stale)) is None
        return None if refused else obj

    async def revalidate(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], key: bytes,
                         obj: CachedObject, decision: policy.Revalidate) -> Reply:
        """A conditional request for a stored object, collapsed per object; 304 freshens it."""
        self.counters.revalidations += 1
        try:
            outcome, _ = await self.refreshes.run(
                _refresh_key(key, obj),
                lambda: self._refresh(target, headers, key, obj, decision.conditional_headers))
        except UpstreamError as exc:
            return self.origin_failed(exc, obj, headers)
        if isinstance(outcome, UpstreamResponse):  # the origin answered with a server error
            return self.origin_failed(UpstreamError(f"origin answered {outcome.status}"), obj, headers,
                                      response=outcome)
        status = format_cache_status(fwd=decision.fwd, stored=True)
        return self.from_cache(outcome, headers, policy.current_age(outcome.stored, time.time()), status)

    async def _refresh(self, target: bytes, headers: list[tuple[bytes, bytes]], key: bytes,
                       obj: CachedObject, conditional: list[tuple[bytes, bytes]]) -> CachedObject | UpstreamResponse:
        """Revalidate ``obj``: the refreshed object, or the origin's 5xx for the caller to handle."""
        request = [(n, v) for n, v in headers if n not in CONDITIONAL_FIELDS and n != b"range"]  # the whole answer
        epoch = self.purge_epoch
        response, t0, t1 = await self.origin(b"GET", target, request + conditional, b"")
        if response.status == 304 and policy.can_update_from_304(obj.stored, response.headers):
            self.counters.revalidated_unchanged += 1
            self._freshen(key, obj, response, t0, t1, purged=epoch != self.purge_epoch)
            return obj
        if response.status == 304:
            # RFC 9111 §4.3.4: this 304 selects no stored response; ask again without validators.
            response, t0, t1 = await self.origin(b"GET", target, request, b"")
        if response.status >= 500:
            return response
        fresh = self.store_response(key, target, request, response, t0, t1, stale=epoch != self.purge_epoch)
        if fresh is not None and self.publishes.pending:
            self.stored_fresh(target, fresh, epoch, t1)
        if fresh is None:
            # The new answer may not be stored: the old one must not be served any more either.
            self.cache.remove(key)
            fresh = CachedObject(policy.make_stored(b"GET", request, response.status, response.headers, t0, t1),
                                 response.status, [*client_fields(response.headers), (b"content-length", b"%d" % len(response.body))], response.body)
        return fresh

    def _freshen(self, key: bytes, obj: CachedObject, response: UpstreamResponse, t0: float, t1: float, *,
                 purged: bool) -> None:
        """Merge a 304 into ``obj`` (RFC 9111 §4.3.4) and clear its soft-purge mark. Each field the
        304 carries replaces the stored lines of that name, except Content-Length, Content-Range, Vary
        (§3.2) and Set-Cookie (``policy.NOT_UPDATED_FIELDS``): a new Content-Type or Date included."""
        obj.stored = policy.update_from_304(obj.stored, response.headers, t0, t1)
        updated = {n for n, _ in response.headers}
        kept = policy.NOT_UPDATED_FIELDS
        obj.update_fields([f for f in obj.fields if f[0] not in updated or f[0] in kept] + [
            f for f in client_fields(response.headers) if f[0] not in kept])
        if purged:
            invalid = any(e.invalid for e in self.cache.variants(key) if e.value is obj)
            obj.stored = policy.mark_stale(obj.stored, invalid=invalid)  # purged again while we asked: stay stale
            return
        for entry in self.cache.variants(key):
            if entry.value is obj:
                entry.stale = entry.invalid = False

    async def revalidate_in_background(self, target: bytes, headers: list[tuple[bytes, bytes]],
                                       key: bytes, obj: CachedObject) -> None:
        """RFC 5861 §3: refresh a stale object served under stale-while-revalidate."""
        refresh = _refresh_key(key, obj)
        try:
            self.counters.revalidations += 1
            conditional = policy.conditional_headers(obj.stored)
            await self.refreshes.run(refresh, lambda: self._refresh(target, headers, key, obj, conditional))
        except UpstreamError as exc:
            log.warning("background revalidation of %r failed: %s", key, exc)
        except Exception:  # a failed background refresh must not kill the server
            log.exception("background revalidation of %r failed", key)
        finally:
            self.revalidating.discard(refresh)

    def origin_failed(self, exc: UpstreamError, obj: CachedObject | None, headers: list[tuple[bytes, bytes]],
                      *, response: UpstreamResponse | None = None) -> Reply:
        """Stale-if-error when allowed (RFC 5861 §4), else the origin's own 5xx, else 502/504."""
        now = time.time()
        if obj is not None and policy.can_serve_stale_on_error(obj.stored, headers, now):
            self.counters.stale_if_error += 1
            status = format_cache_status(hit=True, fwd="stale", detail="stale-if-error")
            return self.from_cache(obj, headers, policy.current_age(obj.stored, now), status)
        if response is not None:
            return _origin_reply(b"GET", response, format_cache_status(fwd="stale", fwd_status=response.status))
        # the operator's log names the origin and the failure; the client hears no internals (seed 002)
        log.warning("origin %s failed: %s", self.config.origin, exc)
        if obj is not None and (obj.stored.directives.must_revalidate or obj.stored.directives.proxy_revalidate):
            # RFC 9111 §5.2.2.2: a stale must-revalidate response that cannot be revalidated is a 504.
            return error_reply(504, "GATEWAY_TIMEOUT",
                               "the stored response must be revalidated and the origin could not be reached")
        if isinstance(exc, UpstreamTimeout):
            return error_reply(504, "GATEWAY_TIMEOUT", "the origin did not answer in time; retry shortly")
        return error_reply(502, "BAD_GATEWAY", "the origin is unavailable; retry shortly")

    # -- uncacheable requests ------------------------------------------------------
    async def forward(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                      body: bytes, host: bytes | None) -> Reply:
        """Pass the request through; a successful unsafe method invalidates (RFC 9111 §4.4)."""
        self.counters.passes += 1
        try:
            response, _, _ = await self.origin(method, target, headers, body, stream=method != b"HEAD")
        except UpstreamError as exc:
            return self.origin_failed(exc, None, headers)
        for invalid in policy.invalidation_targets(method, response.status, target, response.headers,
                                                   authority=host):
            self.cache.purge_path(invalid.split(b"?", 1)[0], soft=False)
        fwd = "bypass" if method in policy.CACHEABLE_METHODS else "method"
        return _origin_reply(method, response, format_cache_status(fwd=fwd))

    # -- purge and introspection ----------------------------------------------------
    async def purge(self, headers: list[tuple[bytes, bytes]], spec: PurgeSpec | None,
                    body_error: str | None = None) -> Reply:
        """Authenticate first (strangers learn nothing about the body), then purge here and,
        with several workers, in every other worker before answering (``bus.py``)."""
        denial = check_token(self.config.purge_token, get_header(headers, b"authorization"))
        if denial is not None:
            reply = error_reply(denial.status, denial.code, denial.message)
            if denial.status == 401:
                reply.fields.append((b"www-authenticate", REALM))
            return reply
        if spec is None:
            return error_reply(400, "BAD_REQUEST", f"invalid purge body: {body_error}")
        self.counters.purges += 1
        received = time.time()  # every worker times the publish from this arrival
        count = self.purge_here(spec, received)
        workers, missed = 1, 0
        if self.bus is not None:
            results, missed = await self.bus.fan_out("purge", {**spec_to_wire(spec), "received": received})
            count += sum(int(r.get("purged", 0)) for r in results)
            workers = self.bus.workers
        data: dict[str, object] = {"purged": count, "soft": spec.soft, "invalidate": spec.invalidate,
                                   "workers": workers}
        fields = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        if missed:
            data.update(errors=[{"status": "503", "code": "PURGE_INCOMPLETE",
                                 "detail": f"{missed} of {workers} workers did not confirm the purge; retry it"}])
            return Reply(503, fields, json.dumps(data).encode())
        return Reply(200, fields, json.dumps(data).encode())

    def purge_here(self, spec: PurgeSpec, received: float) -> int:
        self.purge_epoch += 1
        if spec.publish is not None:
            self.publishes.purged(spec, epoch=self.purge_epoch, received=received)
        count = apply_purge(self.cache, spec)
        self.counters.purged_objects += count
        return count

    def bus_request(self, op: str, data: dict[str, Any]) -> dict[str, Any]:
        """Another worker's fan-out, relayed by the supervisor (``bus.py``)."""
        if op == "purge":
            return {"purged": self.purge_here(spec_from_wire(data), float(data["received"]))}
        if op == "publish_fresh":
            for ident in data["ids"]:
                self.publishes.heard_fresh(str(ident), float(data["at"]))
            return {}
        if op == "stats":
            return {"counters": self.counters.snapshot(), "cache": dataclasses.asdict(self.cache.statistics()),
                    "publish": self.publishes.snapshot()}
        raise ValueError(f"unknown bus operation {op!r}")

    async def internal(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                       body: bytes) -> Reply:
        path = target.split(b"?", 1)[0]
        if path == b"/.edge/purge":
            if method != b"POST":
                reply = error_reply(405, "METHOD_NOT_ALLOWED", "use POST")
                reply.fields.append((b"allow", b"POST"))
                return reply
            try:
                spec = parse_purge_body(body)
            except ValueError as exc:
                return await self.purge(headers, None, str(exc))
            return await self.purge(headers, spec)
        if method not in policy.CACHEABLE_METHODS:
            reply = error_reply(405, "METHOD_NOT_ALLOWED", "use GET")
            reply.fields.append((b"allow", b"GET, HEAD"))
            return reply
        if path not in (b"/.edge/stats", b"/.edge/metrics"):
            return error_reply(404, "NOT_FOUND", "no such edge endpoint")
        counters = self.counters.snapshot()
        cache = dataclasses.asdict(self.cache.statistics())
        publish = self.publishes.snapshot()
        if self.bus is not None:  # every worker's numbers, summed; publishes joined per id
            results, _missed = await self.bus.fan_out("stats", {})
            counters = merge_numbers([counters, *(r["counters"] for r in results)])
            cache = merge_numbers([cache, *(r["cache"] for r in results)])
            cache["workers"] = 1 + len(results)
            publish = merge_snapshots([publish, *(r["publish"] for r in results if "publish" in r)])
        gateway = dataclasses.asdict(self.gateway.statistics()) if self.gateway is not None else None
        summary = summarize(publish)
        if path == b"/.edge/stats":
            return Reply(200, [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
                         format_json(counters, cache, gateway, summary))
        return Reply(200, [(b"content-type", b"text/plain; version=0.0.4"), (b"cache-control", b"no-store")],
                     format_prometheus(counters, cache, gateway, summary))


def _can_share(filled: Filled, headers: list[tuple[bytes, bytes]]) -> bool:
    """May a request collapsed into another's fetch get its answer? See the module docstring."""
    if filled.obj is not None:
        return policy.vary_matches(filled.obj.stored, headers)
    response = filled.response
    if response.rest is not None:
        return False  # a streamed body can be read once, by the request that started the fetch
    directives, _ = policy.effective_directives(response.headers)
    return (response.status >= 500 and not directives.private
            and get_header(response.headers, b"set-cookie") is None)


def _origin_reply(method: bytes, response: UpstreamResponse, cache_status: bytes) -> Reply:
    """The origin's answer as is (minus hop-by-hop and edge-only fields); an Age from a cache
    upstream goes on with it (RFC 9111 §5.1: only an answer from our cache gets our own)."""
    fields = client_fields(response.headers)
    fields += [(n, v) for n, v in response.headers if n == b"age"]
    if method == b"HEAD":
        length = get_header(response.headers, b"content-length")  # the GET's length (RFC 9110 §8.6)
        if length is not None and has_body(response.status):
            fields.append((b"content-length", length))
    elif response.rest is not None:
        if response.length is not None:
            fields.append((b"content-length", b"%d" % response.length))
        return Reply(response.status, fields, response.body, extra=[(b"cache-status", cache_status)],
                     stream=response.rest, length=response.length, dated=True)
    elif has_body(response.status):
        fields.append((b"content-length", b"%d" % len(response.body)))
    return Reply(response.status, fields, response.body, extra=[(b"cache-status", cache_status)], dated=True)


def _not_modified_reply(headers: list[tuple[bytes, bytes]], response: UpstreamResponse,
                        cache_status: bytes) -> Reply | None:
    """A 304 for a client precondition that matches an answer the cache did not store.

    Cache-filling fetches drop the client's preconditions (so the origin sends a storable
    full response); when that response is not stored after all (no room, ``no-store``), the
    precondition still deserves its answer (RFC 9110 §13.2.2).
    """
    if response.status != 200 or response.rest is not None or not any(n in CONDITIONAL_FIELDS for n, _ in headers):
        return None
    now = time.time()
    stored = policy.make_stored(b"GET", [], response.status, response.headers, now, now)
    if not policy.not_modified(headers, stored):
        return None
    fields = [(n, v) for n, v in client_fields(response.headers) if n not in CONTENT_FIELDS]
    return Reply(304, fields, b"", extra=[(b"cache-status", cache_status)], dated=True)


def _refresh_key(key: bytes, obj: CachedObject) -> bytes:
    """Revalidations collapse per stored object (one variant), never across variants: a 304 for
    one variant's ETag says nothing about another's (RFC 9111 §4.3.4). The flight holds ``obj``,
    so its id cannot be reused while the key is in use."""
    return b"%s #%x" % (key, id(obj))


@functools.lru_cache(maxsize=4096)
def hit_status(ttl: int) -> bytes:
    """``Cache-Status`` of a fresh hit; formatted once per distinct ttl second."""
    return format_cache_status(hit=True, ttl=ttl)


def _vary_getter(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    value = vary_value(headers, name)
    return VARY_ABSENT if value is None else value


def _origin_fields(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    connection_tokens = {t.strip().lower() for n, v in headers if n == b"connection" for t in v.split(b",")}
    return [(n, v) for n, v in headers if n not in HOP_BY_HOP and n not in connection_tokens
            and n not in (b"host", b"expect") and not n.startswith(b":")] + [(b"via", b"1.1 edgeproxy")]
