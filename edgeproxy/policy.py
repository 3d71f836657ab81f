"""RFC 9111 shared-cache policy as pure functions of (request, stored response, now).

Theory of operation
-------------------
The exchange driver asks three questions and executes the answers; this module owns none
of the I/O and never reads a clock (``now`` is epoch seconds, passed in):

1. A request arrives: ``choose(method, request_headers, stored, now)`` returns a
   ``Decision``: ``Serve``, ``ServeStale`` (maybe revalidating in the background),
   ``Revalidate`` (conditional request), ``Fetch`` (answer may be stored), ``Pass`` (store
   nothing, do not collapse) or ``GatewayTimeout`` (``only-if-cached``, nothing usable: 504).
2. A response arrives: ``is_storable`` then ``make_stored``; a 304 is merged by
   ``update_from_304``; an error may be hidden if ``can_serve_stale_on_error``; an unsafe
   method's success invalidates ``invalidation_targets(...)``.
3. A response leaves: ``not_modified`` decides a client 304, ``serve_headers`` strips edge-only
   fields and sets ``Age``, ``format_cache_status`` (headers.py, re-exported) writes RFC 9211.

Response directives come from the first non-empty of ``CDN-Cache-Control`` (RFC 9213),
``Surrogate-Control`` and ``Cache-Control``; a targeted field, when used, replaces both
``Cache-Control`` and ``Expires`` (RFC 9213 §2.1). ``Stored.directives_source`` records which.

Choices where the RFCs leave room (each also noted at its branch):

- Qualified ``no-cache="f"`` is treated as unqualified (always revalidate), and qualified
  ``private="f"`` as unqualified (never stored): both are the conservative reading.
- ``Set-Cookie`` responses are never stored, as Varnish's builtin VCL does.
- 206 is heuristically cacheable (RFC 9110 §15.1) but never stored: we do not merge ranges. A
  stored 200 answers single byte-range requests itself (``ranges.py``, ``Exchange.from_cache``).
  HEAD responses are not stored either; a HEAD request is served from a stored GET response
  and on a miss the shell may fetch with GET to fill the cache (Varnish does).
- ``s-maxage`` implies ``proxy-revalidate`` (RFC 9111 §5.2.2.10), so a client's
  ``max-stale`` never gets a stale ``s-maxage`` response; the origin's own RFC 5861
  ``stale-while-revalidate`` / ``stale-if-error`` in the same field still apply, because
  they are explicit permission (RFC 9111 §4.2.4 names them) and our origin sends exactly
  ``s-maxage`` + SWR + SIE. Explicit ``must-revalidate`` / ``proxy-revalidate`` forbid all
  stale serving, RFC 5861 windows included.
- A soft-purged entry (``stale=True``) counts as stale by 0 s: it revalidates before being
  served, unless a SWR window lets it be served while revalidating (what soft purge is for).
  An invalidated one (``invalid=True``, RFC 9111 §4.4 "in need of a mandatory validation")
  is never served before the revalidation is answered, but ``stale-if-error`` may still
  answer with it when the origin fails (nothing is lost to a publish during an outage).
- A request ``no-store`` may still be answered by a fresh stored response (RFC 9111
  §5.2.1.5 allows it); anything that would reach the origin becomes ``Pass``.
- Stale windows are inclusive: stale by at most N seconds (RFC 5861 §3, §4; §5.2.1.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

from edgeproxy.headers import (
    CACHE_NAME,
    NO_DIRECTIVES,
    CacheDirectives,
    ETag,
    Headers,
    format_cache_status,
    format_delta_seconds,
    format_etag,
    format_http_date,
    get_all,
    get_header,
    is_pragma_no_cache,
    normalise_vary_values,
    parse_age,
    parse_cache_control,
    parse_etag,
    parse_http_date,
    parse_if_none_match,
    parse_surrogate_keys,
    parse_targeted_cache_control,
    parse_vary,
    strip_hop_by_hop,
    strong_match,
    weak_match,
)

# The public API; CACHE_NAME and format_cache_status (a field serializer, in headers.py) are
# re-exported so the exchange gets a decision and its Cache-Status from one module.
__all__ = [
    "CACHEABLE_METHODS", "CACHE_NAME", "SAFE_METHODS", "Decision", "Fetch", "Fields", "Fwd",
    "GatewayTimeout", "Pass", "Revalidate", "Serve", "ServeStale", "Stored", "can_serve_stale_on_error",
    "can_update_from_304", "choose", "conditional_headers", "current_age", "effective_directives",
    "format_cache_status", "freshness_lifetime", "invalidated_by", "invalidation_targets", "is_fresh",
    "is_storable", "make_stored", "mark_stale", "not_modified", "request_directives", "serve_headers",
    "strip_for_client", "update_from_304", "vary_matches",
]

# Methods whose responses a stored response can answer (RFC 9111 §4; RFC 9110 §9.3.1-2).
CACHEABLE_METHODS = frozenset({b"GET", b"HEAD"})
# Safe methods never invalidate (RFC 9110 §9.2.1); every other method does (RFC 9111 §4.4).
SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})
# RFC 9110 §15.1: status codes cacheable by default (heuristic freshness allowed).
HEURISTICALLY_CACHEABLE_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
# Status codes whose caching rules we implement (for must-understand, RFC 9111 §5.2.2.3).
UNDERSTOOD_STATUSES = frozenset({200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501})
# RFC 9111 §4.2.2: "a typical setting of this fraction might be 10%".
HEURISTIC_FRACTION = 0.1
# One day: RFC 7234 §4.2.2 required a warning past 24 h of heuristic freshness; we never go past.
HEURISTIC_MAX_S = 86400.0
# Targeted fields in precedence order (RFC 9213 §2.1 target list); Cache-Control is the fallback.
TARGETED_FIELDS = (b"cdn-cache-control", b"surrogate-control")
# RFC 9111 §3.1: proxy-specific fields are not stored.
NOT_STORED_FIELDS = frozenset({b"proxy-authenticate", b"proxy-authentication-info", b"proxy-authorization"})
# RFC 9111 §3.2: fields a 304 does not update (Content-Length; Content-Range, processed by us;
# Vary, which the stored variant's selection depends upon), and Set-Cookie: a stored answer never
# has one (not storable, see the module docstring), and one merged from a revalidating 304 would go
# to every client that the object answers afterwards.
NOT_UPDATED_FIELDS = frozenset({b"content-length", b"content-range", b"vary", b"set-cookie"})
# Edge-only fields, consumed here and removed before the client sees the response (Fastly's and
# Varnish's convention for Surrogate-*). CDN-Cache-Control is forwarded: RFC 9213 §3, "CDN caches
# that use CDN-Cache-Control will typically forward this header so that downstream CDN caches can
# use it as well" (an edge behind another CDN is one such chain).
EDGE_ONLY_FIELDS = frozenset({b"surrogate-key", b"surrogate-control"})
# Placeholder authority for origin-form targets; ".invalid" never resolves (RFC 6761 §6.4).
_UNKNOWN_AUTHORITY = "edgeproxy.invalid"

Fields = Sequence[tuple[bytes, bytes]]
"""Header fields as received: any sequence of (lowercase name, value) pairs."""
Fwd = Literal["bypass", "method", "uri-miss", "vary-miss", "miss", "request", "stale"]
"""RFC 9211 §2.2 ``fwd`` values this module produces."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """A stored response's metadata, parsed once at store time (the body lives in cache.py)."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    """Response header fields as stored: hop-by-hop and proxy fields removed, Date ensured."""
    request_time: float
    response_time: float
    date_value: float
    """Parsed Date; the receive time when Date was absent or invalid (RFC 9110 §6.6.1)."""
    age_value: int
    """Parsed Age; 0 when absent or invalid (RFC 9111 §4.2.3, §5.1)."""
    expires: float | None
    """Expires for freshness: -inf when invalid (§5.3), None when absent or a targeted field is used."""
    last_modified: float | None
    etag: ETag | None
    directives: CacheDirectives
    directives_source: bytes = b"cache-control"
    """Field the directives came from: cdn-cache-control, surrogate-control or cache-control."""
    vary: tuple[bytes, ...] | Literal["*"] = ()
    vary_values: tuple[bytes | None, ...] = ()
    """The request's normalised values of the Vary fields; None where the field was absent."""
    stale: bool = False
    """Soft-purged: must be revalidated before it is served as fresh."""
    invalid: bool = False
    """Invalidated (RFC 9111 §4.4): not even served stale while it is revalidated."""
    surrogate_keys: tuple[bytes, ...] = ()
    # Computed once here, not on every hit (a Stored never changes; ``replace`` computes them again):
    born: float = field(init=False, repr=False, compare=False)
    """``response_time`` minus the corrected initial age (§4.2.3): the time the response's age was 0."""
    lifetime: float = field(init=False, repr=False, compare=False)
    """``freshness_lifetime`` (§4.2.1)."""

    def __post_init__(self) -> None:
        expected = 0 if self.vary == "*" else len(self.vary)
        if len(self.vary_values) != expected:
            raise ValueError(f"{len(self.vary_values)} vary values for Vary {self.vary!r}")
        apparent_age = max(0.0, self.response_time - self.date_value)
        response_delay = self.response_time - self.request_time
        corrected_age_value = self.age_value + response_delay
        object.__setattr__(self, "born", self.response_time - max(apparent_age, corrected_age_value))
        object.__setattr__(self, "lifetime", freshness_lifetime(self))


@dataclass(frozen=True, slots=True, kw_only=True)
class Serve:
    """Answer with the stored response: it is fresh and acceptable to this request."""

    age: float
    ttl: float
    """Remaining freshness, seconds (positive)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeStale:
    """Answer with the stale stored response, which this request or the origin allows."""

    age: float
    ttl: float
    """Remaining freshness, seconds (zero or negative)."""
    revalidate_in_background: bool
    reason: Literal["swr", "max-stale"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Revalidate:
    """Send the request upstream with these validators added; a 304 refreshes the entry."""

    conditional_headers: list[tuple[bytes, bytes]]
    fwd: Fwd


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetch:
    """Send the request upstream unconditionally; the answer may be stored (and collapsed)."""

    fwd: Fwd = "miss"


@dataclass(frozen=True, slots=True, kw_only=True)
class Pass:
    """Forward the request; store nothing from the exchange and do not collapse it."""

    reason: Literal["method", "request-no-store"]

    @property
    def fwd(self) -> Fwd:
        return "method" if self.reason == "method" else "bypass"


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayTimeout:
    """``only-if-cached`` without a usable stored response: answer 504 (RFC 9111 §5.2.1.7)."""


Decision = Serve | ServeStale | Revalidate | Fetch | Pass | GatewayTimeout

_PASS_METHOD = Pass(reason="method")
_PASS_NO_STORE = Pass(reason="request-no-store")
_GATEWAY_TIMEOUT = GatewayTimeout()
_PRAGMA_NO_CACHE = CacheDirectives(no_cache=True)


# --- parsing once ----------------------------------------------------------------------------

def effective_directives(response_headers: Fields) -> tuple[CacheDirectives, bytes]:
    """The response directives a shared CDN cache obeys, and the field they came from."""
    for name in TARGETED_FIELDS:
        values = get_all(response_headers, name)
        # RFC 9213 §2.2: the first targeted field with a valid, non-empty value replaces
        # Cache-Control (and Expires); an invalid one is ignored, as if absent.
        if values and b",".join(values).strip(b" \t,"):
            if name == b"surrogate-control":  # Edge Architecture 1.0, not a Structured Field
                return parse_cache_control(values), name
            directives = parse_targeted_cache_control(values)
            if directives is not None:
                return directives, name
    return parse_cache_control(get_all(response_headers, b"cache-control")), b"cache-control"


def request_directives(request_headers: Fields) -> CacheDirectives:
    """Request Cache-Control; ``Pragma: no-cache`` counts only when it is absent (RFC 9111 §5.4)."""
    values = get_all(request_headers, b"cache-control")
    if values:
        return parse_cache_control(values)
    if is_pragma_no_cache(get_header(request_headers, b"pragma")):
        return _PRAGMA_NO_CACHE
    return NO_DIRECTIVES


def is_storable(method: bytes, request_headers: Fields, status: int, response_headers: Fields) -> bool:
    """May a shared cache store this response (RFC 9111 §3)? See the module docstring for choices."""
    if method != b"GET":
        return False  # §3 / §4.3.5: only GET is stored here; HEAD responses can only freshen.
    if not 200 <= status <= 599 or status in (206, 304):
        return False  # §3: final status only; 206 (no range merging) and 304 (§4.3.4) are not stored.
    directives, source = effective_directives(response_headers)
    if request_directives(request_headers).no_store:
        return False  # §5.2.1.5: nothing from a no-store request is stored.
    if directives.must_understand:
        if status not in UNDERSTOOD_STATUSES:
            return False  # §5.2.2.3: must-understand limits storage to understood status codes...
    elif directives.no_store:
        return False  # ...and overrides no-store for them; otherwise no-store forbids storage (§5.2.2.5).
    if directives.private:
        return False  # §5.2.2.7: a shared cache never stores private (qualified treated as unqualified).
    if get_header(request_headers, b"authorization") is not None and not (
        directives.public or directives.must_revalidate or directives.s_maxage is not None
    ):
        return False  # §3.5: authorised responses need public, must-revalidate or s-maxage.
    if get_header(response_headers, b"set-cookie") is not None:
        return False  # Varnish's default: a response setting a cookie is somebody's, never shared.
    if parse_vary(get_all(response_headers, b"vary")) == "*":
        return False  # §4.1: Vary: * never matches, so storing it is waste.
    return (
        directives.public
        or directives.max_age is not None
        or directives.s_maxage is not None
        or (source == b"cache-control" and get_header(response_headers, b"expires") is not None)
        or status in HEURISTICALLY_CACHEABLE_STATUSES
    )  # §3: explicit freshness, public, or a heuristically cacheable status.


def make_stored(method: bytes, request_headers: Fields, status: int, response_headers: Fields,
        request_time: float, response_time: float) -> Stored:
    """Parse a response that ``is_storable`` accepted into ``Stored``.

    Args:
        request_time: when the request was sent upstream (§4.2.3 ``request_time``).
        response_time: when the response head was received (§4.2.3 ``response_time``).

    Raises:
        ValueError: ``method`` is not GET (a caller bug: is_storable refuses the rest).
    """
    if method != b"GET":
        raise ValueError(f"only responses to GET are stored, not {method!r}")
    headers = [(k, v) for k, v in strip_hop_by_hop(response_headers) if k not in NOT_STORED_FIELDS]
    vary = parse_vary(get_all(headers, b"vary"))
    vary_values = () if vary == "*" else normalise_vary_values(vary, request_headers)
    return _build(status, headers, request_time, response_time, vary, vary_values)


def _build(status: int, headers: Headers, request_time: float, response_time: float,
        vary: tuple[bytes, ...] | Literal["*"], vary_values: tuple[bytes | None, ...]) -> Stored:
    date_value = parse_http_date(get_header(headers, b"date") or b"")
    if date_value is None:
        # RFC 9110 §6.6.1: a recipient with a clock adds Date (and MAY replace an invalid one).
        date_value = response_time
        headers = [(k, v) for k, v in headers if k != b"date"] + [(b"date", format_http_date(response_time))]
    directives, source = effective_directives(headers)
    expires = None
    raw_expires = get_header(headers, b"expires")
    if raw_expires is not None and source == b"cache-control":  # RFC 9213 §2.1 ignores Expires too.
        # RFC 9111 §5.3: an invalid Expires (e.g. "0") means "already expired".
        expires = parse_http_date(raw_expires)
        if expires is None:
            expires = -math.inf
    raw_last_modified = get_header(headers, b"last-modified")
    return Stored(
        status=status,
        headers=tuple(headers),
        request_time=request_time,
        response_time=response_time,
        date_value=date_value,
        age_value=parse_age(get_header(headers, b"age")) or 0,
        expires=expires,
        last_modified=None if raw_last_modified is None else parse_http_date(raw_last_modified),
        etag=parse_etag(get_header(headers, b"etag")),
        directives=directives,
        directives_source=source,
        vary=vary,
        vary_values=vary_values,
        surrogate_keys=parse_surrogate_keys(get_all(headers, b"surrogate-key")),
    )


def mark_stale(stored: Stored, *, invalid: bool = False) -> Stored:
    """The soft-purged copy of ``stored``: kept, but revalidated before it is served fresh;
    ``invalid`` (an invalidation): not served stale while revalidating either."""
    return replace(stored, stale=True, invalid=invalid or stored.invalid)


# --- freshness and age -----------------------------------------------------------------------

def freshness_lifetime(stored: Stored) -> float:
    """Seconds the response is fresh for, measured from its generation (RFC 9111 §4.2.1)."""
    directives = stored.directives
    if directives.s_maxage is not None:
        return float(directives.s_maxage)  # §4.2.1: a shared cache prefers s-maxage...
    if directives.max_age is not None:
        return float(directives.max_age)  # ...then max-age...
    if stored.expires is not None:
        return max(0.0, stored.expires - stored.date_value)  # ...then Expires minus Date.
    if stored.last_modified is not None and (
        stored.status in HEURISTICALLY_CACHEABLE_STATUSES or directives.public
    ):
        # §4.2.2: heuristic freshness, a fraction of the time since Last-Modified, capped.
        return min(HEURISTIC_FRACTION * max(0.0, stored.date_value - stored.last_modified), HEURISTIC_MAX_S)
    return 0.0


def current_age(stored: Stored, now: float) -> float:
    """The response's age in seconds at ``now`` (RFC 9111 §4.2.3): the corrected initial age plus
    the resident time, ``now - response_time``; ``Stored.born`` holds ``response_time`` minus the former."""
    return now - stored.born


def _ttl(stored: Stored, age: float) -> float:
    """Remaining freshness; a soft-purged entry has none left."""
    ttl = stored.lifetime - age
    return min(ttl, 0.0) if stored.stale else ttl


def is_fresh(stored: Stored, now: float) -> bool:
    """``freshness_lifetime > current_age`` and not soft-purged (RFC 9111 §4.2)."""
    return _ttl(stored, current_age(stored, now)) > 0


def vary_matches(stored: Stored, request_headers: Fields) -> bool:
    """Do the request's Vary-nominated fields match the stored ones (RFC 9111 §4.1)?"""
    if stored.vary == "*":
        return False  # §4.1: "*" always fails to match.
    return normalise_vary_values(stored.vary, request_headers) == stored.vary_values


def conditional_headers(stored: Stored) -> list[tuple[bytes, bytes]]:
    """Validators for revalidating ``stored`` (RFC 9111 §4.3.1): ETag first, Last-Modified too."""
    headers = []
    if stored.etag is not None:
        headers.append((b"if-none-match", format_etag(stored.etag)))
    if stored.last_modified is not None:
        # §4.3.1: send the Last-Modified value as received, not a re-formatted date.
        headers.append((b"if-modified-since", get_header(stored.headers, b"last-modified") or b""))
    return headers


#: Request fields that can change how a stored response may be used: request directives
#: (§5.2.1, Pragma §5.4), preconditions the cache answers (§4.3.2), and Range (a part of a
#: stored 200, ``Exchange.from_cache``). The plain hit paths leave requests with any of them to ``choose``.
POLICY_REQUEST_FIELDS = frozenset({b"cache-control", b"pragma", b"if-none-match", b"if-modified-since", b"range"})


def is_plain(stored: Stored, *, vary_matched: bool = False) -> bool:
    """No response ``no-cache``, and no Vary or one the caller has matched: then only freshness
    decides for a plain request (``is_plain_request``).

    ``vary_matched`` says ``vary_matches(stored, request)`` holds, as it does for the entry a
    cache lookup selected with the request's normalised Vary values (RFC 9111 §4.1): ``choose``
    would check the same again. Authorization changes nothing here: RFC 9111 §3.5 is about
    storing, and ``is_storable`` kept out what a shared cache may not reuse for it.
    """
    return (vary_matched or not stored.vary) and not stored.directives.no_cache


def is_plain_request(request_headers: Fields) -> bool:
    """None of POLICY_REQUEST_FIELDS: no request directive, precondition or Range for the cache to weigh."""
    fields = POLICY_REQUEST_FIELDS
    for name, _ in request_headers:  # noqa: SIM110 — a plain loop: all() over a generator costs more here
        if name in fields:
            return False
    return True


def plain_age_ttl(stored: Stored, now: float) -> tuple[float, float] | None:
    """``choose`` for an ``is_plain_request`` GET/HEAD and the variant a lookup selected (its Vary
    matched): the Serve's (age, ttl) while fresh, else None (then ``choose`` decides). It checks the
    rest of ``is_plain`` too: a ``no-cache`` response gives None. The hit path's short cut, as a tuple
    (a frozen Serve costs ~0.3 µs to build, a tenth of a static hit's Python work); the property tests
    check it against ``choose``."""
    if stored.stale or stored.directives.no_cache:
        return None
    age = now - stored.born
    ttl = stored.lifetime - age
    return (age, ttl) if ttl > 0 else None


# --- the decision ----------------------------------------------------------------------------

def choose(method: bytes, request_headers: Fields, stored: Stored | None, now: float) -> Decision:
    """Decide how to answer a request given the selected stored response (or None).

    ``stored`` is the variant the cache selected for this request; its Vary match is checked
    again here. The returned decision's ``fwd`` feeds ``format_cache_status``.
    """
    if method not in CACHEABLE_METHODS:
        return _PASS_METHOD  # §4: only GET/HEAD are answered from the cache.
    request = request_directives(request_headers)
    if stored is None:
        return _forward(request, None, "miss")
    if not vary_matches(stored, request_headers):
        return _forward(request, None, "vary-miss")  # §4.1
    if request.no_cache:
        return _forward(request, stored, "request")  # §5.2.1.4: the client wants validation.
    directives = stored.directives
    if directives.no_cache:
        return _forward(request, stored, "stale")  # §5.2.2.4: always validate (qualified too).
    age = current_age(stored, now)
    ttl = _ttl(stored, age)
    client_accepts_age = request.max_age is None or age <= request.max_age  # §5.2.1.1
    if ttl > 0:
        if client_accepts_age and (request.min_fresh is None or ttl >= request.min_fresh):  # §5.2.1.3
            return Serve(age=age, ttl=ttl)
        return _forward(request, stored, "request")
    staleness = -ttl
    # §4.2.4, §5.2.2.2, §5.2.2.8; an invalidated entry needs a mandatory validation (§4.4)
    if not (directives.must_revalidate or directives.proxy_revalidate or stored.invalid):
        client_accepts_stale = client_accepts_age and request.min_fresh is None
        if (
            client_accepts_stale
            and directives.s_maxage is None  # §5.2.2.10: s-maxage implies proxy-revalidate.
            and (request.max_stale_any or (request.max_stale is not None and staleness <= request.max_stale))
        ):
            # §5.2.1.2: the client accepts this much staleness.
            return ServeStale(age=age, ttl=ttl, revalidate_in_background=False, reason="max-stale")
        window = directives.stale_while_revalidate
        if client_accepts_stale and window is not None and staleness <= window:
            # RFC 5861 §3: serve stale now, revalidate in the background.
            return ServeStale(age=age, ttl=ttl, revalidate_in_background=True, reason="swr")
    return _forward(request, stored, "stale")


def _forward(request: CacheDirectives, stored: Stored | None, fwd: Fwd) -> Decision:
    if request.only_if_cached:
        return _GATEWAY_TIMEOUT  # §5.2.1.7: no stored response may be used, so 504.
    if request.no_store:
        return _PASS_NO_STORE  # §5.2.1.5: what comes back must not be stored.
    if stored is not None:
        validators = conditional_headers(stored)
        if validators:
            return Revalidate(conditional_headers=validators, fwd=fwd)  # §4.3.1
    return Fetch(fwd=fwd)


def can_serve_stale_on_error(stored: Stored, request_headers: Fields, now: float) -> bool:
    """May ``stored`` answer in place of an error (5xx or no origin) under stale-if-error?

    True when the response's or the request's ``stale-if-error`` window (RFC 5861 §4) covers
    the current staleness; never under must-revalidate / proxy-revalidate, where RFC 9111
    §5.2.2.2 requires a 504 instead.
    """
    directives = stored.directives
    if directives.must_revalidate or directives.proxy_revalidate:
        return False
    staleness = max(0.0, -_ttl(stored, current_age(stored, now)))
    request_window = request_directives(request_headers).stale_if_error
    windows = (directives.stale_if_error, request_window)
    return any(window is not None and staleness <= window for window in windows)


# --- validation ------------------------------------------------------------------------------

def can_update_from_304(stored: Stored, response_headers: Fields) -> bool:
    """Does this 304 select ``stored`` for update (RFC 9111 §4.3.4)?

    ETags compare strongly if the 304's is strong, else weakly; without one, Last-Modified must
    be equal; with no validator the 304 answers what we sent (lenient, as Varnish is).
    """
    etag = parse_etag(get_header(response_headers, b"etag"))
    if etag is not None:
        if stored.etag is None:
            return False
        return weak_match(etag, stored.etag) if etag.weak else strong_match(etag, stored.etag)
    raw_last_modified = get_header(response_headers, b"last-modified")
    if raw_last_modified is not None:
        return stored.last_modified is not None and parse_http_date(raw_last_modified) == stored.last_modified
    return True


def update_from_304(stored: Stored, response_headers: Fields, request_time: float,
        response_time: float) -> Stored:
    """Freshen ``stored`` with a 304's header fields (RFC 9111 §4.3.4, §3.2).

    Each field in the 304 replaces all stored lines of that name, except Content-Length,
    Content-Range, Vary (§3.2) and Set-Cookie (``NOT_UPDATED_FIELDS``). Date and Age describe the message, so a 304 without them
    drops the old ones (Date becomes the receive time). Times are refreshed and the
    soft-purge flag is cleared.
    """
    update = [
        (k, v) for k, v in strip_hop_by_hop(response_headers)
        if k not in NOT_STORED_FIELDS and k not in NOT_UPDATED_FIELDS
    ]
    replaced = {k for k, _ in update} | {b"date", b"age"}
    merged = [(k, v) for k, v in stored.headers if k not in replaced] + update
    return _build(stored.status, merged, request_time, response_time, stored.vary, stored.vary_values)


def not_modified(request_headers: Fields, stored: Stored, *, method: bytes = b"GET") -> bool:
    """Should the client get a 304 for ``stored`` (RFC 9110 §13.2.2, RFC 9111 §4.3.2)?

    If-None-Match (weak comparison) takes precedence over If-Modified-Since; If-Match and
    If-Unmodified-Since are for the origin, not the cache (§4.3.2). Only GET and HEAD, and
    only for 2xx/3xx stored responses (RFC 9110 §13.1).
    """
    if method not in CACHEABLE_METHODS or not 200 <= stored.status <= 399:
        return False
    if_none_match = get_all(request_headers, b"if-none-match")
    if if_none_match:
        tags = parse_if_none_match(if_none_match)
        if tags is None:
            return False  # An unreadable precondition: a full response is always correct.
        if tags == "*":
            return True  # RFC 9110 §13.1.2: "*" matches any current representation.
        return stored.etag is not None and any(weak_match(tag, stored.etag) for tag in tags)
    raw = get_header(request_headers, b"if-modified-since")
    since = None if raw is None else parse_http_date(raw)
    if since is None:
        return False  # RFC 9110 §13.1.3: absent or invalid dates are ignored.
    # RFC 9111 §4.3.2: compare Last-Modified, else Date (which is the receive time if absent).
    reference = stored.last_modified if stored.last_modified is not None else stored.date_value
    return reference <= since


# --- invalidation ----------------------------------------------------------------------------

def invalidated_by(method: bytes, status: int) -> bool:
    """Does this response invalidate its target URI (RFC 9111 §4.4)?

    True for a non-error (2xx/3xx) response to an unsafe or unknown method.
    """
    return method not in SAFE_METHODS and 200 <= status <= 399


def invalidation_targets(method: bytes, status: int, request_target: bytes, response_headers: Fields, *,
        authority: bytes | None = None) -> tuple[bytes, ...]:
    """Targets to invalidate after an unsafe request (RFC 9111 §4.4).

    The request target, plus Location and Content-Location when they resolve to the same
    origin (§4.4 forbids others). Results have the form of ``request_target``: absolute URIs
    for an absolute target, path and query for an origin-form one (whose origin is
    ``authority``, the Host; without it only relative references can be same-origin).
    """
    if not invalidated_by(method, status):
        return ()
    targets = {request_target: None}
    target = request_target.decode("latin-1")
    try:
        absolute = bool(urlsplit(target).scheme)
        host = (authority or b"").decode("latin-1") or _UNKNOWN_AUTHORITY
        base = target if absolute else f"http://{host}{target}"
        origin = _origin(base)
    except ValueError:
        return (request_target,)  # A target urllib cannot split has no same-origin relatives.
    for name in (b"location", b"content-location"):
        value = get_header(response_headers, name)
        if value is None:
            continue
        try:
            resolved = urlsplit(urljoin(base, value.decode("latin-1").strip()))
        except ValueError:
            continue  # e.g. a malformed IPv6 literal; an unreadable reference names nothing.
        if (resolved.scheme.lower(), resolved.netloc.lower()) != origin:
            continue  # §4.4: never invalidate another origin's URIs.
        if absolute:
            text = urlunsplit(resolved._replace(fragment=""))
        else:
            text = (resolved.path or "/") + (f"?{resolved.query}" if resolved.query else "")
        targets[text.encode("latin-1")] = None
    return tuple(targets)


def _origin(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    return parts.scheme.lower(), parts.netloc.lower()


# --- output ----------------------------------------------------------------------------------

def strip_for_client(headers: Fields) -> Headers:
    """Remove hop-by-hop fields and the edge-only Surrogate-Key and Surrogate-Control (we always
    consume them); CDN-Cache-Control goes on to downstream CDNs (RFC 9213 §3)."""
    return [(k, v) for k, v in strip_hop_by_hop(headers) if k not in EDGE_ONLY_FIELDS]


def serve_headers(stored: Stored, age: float) -> Headers:
    """Headers for answering from the cache: ``strip_for_client`` plus our own ``Age``.

    RFC 9111 §5.1: a cache sends Age, replacing the one it stored, in whole seconds.
    """
    headers = [(k, v) for k, v in strip_for_client(stored.headers) if k != b"age"]
    headers.append((b"age", format_delta_seconds(age)))
    return headers
