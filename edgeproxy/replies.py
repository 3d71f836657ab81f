"""The answers the edge sends: a cached object's reply (its heads encoded once), error and
gateway-denial replies, and request ids. Split from ``exchange.py``, which decides which answer
a request gets; the protocol adapters (``server.py``, ``hitloop.py``, ``http2.py``) send these.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from edgeproxy import encoding, policy
from edgeproxy.gateway import Deny, Route
from edgeproxy.h2wire import encode_block
from edgeproxy.headers import get_header
from edgeproxy.http1 import format_head_prefix
from edgeproxy.upstream import UpstreamResponse

# RFC 9110 §15.4.5: a 304 carries validators and caching fields, none of these
CONTENT_FIELDS = frozenset({b"content-length", b"content-type", b"content-encoding", b"content-range"})
REQUEST_ID_MAX = 200
_RID_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:"


@dataclass(slots=True)
class CachedObject:
    """What a cache entry holds: the policy's view and the bytes to send."""

    stored: policy.Stored
    status: int
    fields: list[tuple[bytes, bytes]]  # client-facing header fields (no hop-by-hop, no Age; the origin's Date)
    body: bytes
    head: bytes = b""  # the HTTP/1.1 status line and fields, serialized once (hit path)
    h2: bytes = b""  # the same as an HPACK block prefix (static table + literals), encoded once
    not_modified: Reply | None = None  # the 304 for a matching precondition, prepared once
    # The same answer gzip-coded (encoding.py), for clients that accept it: its own fields, body and
    # heads; None when the answer is not compressible. ``stored`` is the policy's view of both.
    gz: CachedObject | None = None

    @classmethod
    def made(cls, stored: policy.Stored, status: int, fields: list[tuple[bytes, bytes]], body: bytes, *,
             gzip: bool = True) -> CachedObject:
        """The object for a stored answer, with its gzip copy when ``gzip`` and the answer allows one."""
        coded = encoding.gzip_copy(status, fields, body) if gzip else None
        if coded is None:
            return cls(stored, status, fields, body)
        fields = encoding.identity_fields(fields)
        return cls(stored, status, fields, body,
                   gz=cls(stored, status, encoding.gzip_fields(fields, len(coded)), coded))

    def coded_for(self, accept_encoding: bytes | None) -> CachedObject:
        """The answer for a request with this Accept-Encoding (its lines joined): the gzip copy or this."""
        gz = self.gz
        if gz is None or accept_encoding is None or not encoding.accepts_gzip(accept_encoding):
            return self
        gz.stored = self.stored  # the policy's view may have been replaced (a 304, a purge) since
        return gz

    def for_request(self, headers: list[tuple[bytes, bytes]]) -> CachedObject:
        """``coded_for`` the request's Accept-Encoding; as stored when the request says no-transform
        (RFC 9111 §5.2.1.6)."""
        if self.gz is None:
            return self
        accept = None
        for name, value in headers:
            if name == b"accept-encoding":
                accept = value if accept is None else accept + b", " + value
            elif name == b"cache-control" and b"no-transform" in value.lower():
                return self
        return self if accept is None else self.coded_for(accept)

    def reply(self, extra: list[tuple[bytes, bytes]]) -> Reply:
        """This object as the answer, its encoded heads reused; ``extra`` becomes the reply's own."""
        return Reply(self.status, self.fields, self.body, extra=extra, head=self.h1_head(), h2=self.h2_block(),
                     dated=True)

    def reply_304(self, extra: list[tuple[bytes, bytes]]) -> Reply:
        """RFC 9110 §15.4.5: the validators and caching fields, no content fields."""
        prepared = self.not_modified
        if prepared is None:
            fields = [(n, v) for n, v in self.fields if n not in CONTENT_FIELDS]
            prepared = self.not_modified = Reply(304, fields, b"", head=format_head_prefix(304, fields),
                                                 h2=encode_block(304, fields), dated=True)
        return Reply(304, prepared.fields, b"", extra=extra, head=prepared.head, h2=prepared.h2, dated=True)

    def reply_range(self, first: int, last: int, extra: list[tuple[bytes, bytes]]) -> Reply:
        """RFC 9110 §15.3.7: bytes ``first``..``last`` (inclusive) of this 200's body as a 206, with
        Content-Range and its own Content-Length; every other field as stored."""
        length = len(self.body)
        fields = [f for f in self.fields if f[0] != b"content-length"]
        fields += [(b"content-range", b"bytes %d-%d/%d" % (first, last, length)),
                   (b"content-length", b"%d" % (last - first + 1))]
        return Reply(206, fields, self.body[first:last + 1], extra=extra, dated=True)

    def reply_unsatisfiable(self, extra: list[tuple[bytes, bytes]]) -> Reply:
        """RFC 9110 §15.5.17: a 416 naming the representation's length (``bytes */length``)."""
        return Reply(416, [(b"content-range", b"bytes */%d" % len(self.body)), (b"content-length", b"0")], b"",
                     extra=extra)

    def update_fields(self, fields: list[tuple[bytes, bytes]]) -> None:
        """New client-facing fields (a 304 freshened them): every encoding made of the old ones goes,
        and the gzip copy's fields are made again from them (or the copy goes, when the new fields
        forbid it: ``no-transform``, another media type)."""
        self.fields = fields
        self.head = self.h2 = b""
        self.not_modified = None
        gz = self.gz
        if gz is not None:
            if encoding.compressible(self.status, fields, own_vary=True):
                gz.stored = self.stored
                gz.update_fields(encoding.gzip_fields(fields, len(gz.body)))
            else:
                self.gz = None

    def h1_head(self) -> bytes:
        if not self.head:
            self.head = format_head_prefix(self.status, self.fields)
        return self.head

    def h2_block(self) -> bytes:
        if not self.h2:
            fields = self.fields
            if has_body(self.status) and not any(n == b"content-length" for n, _ in fields):
                fields = [*fields, (b"content-length", b"%d" % len(self.body))]
            self.h2 = encode_block(self.status, fields)
        return self.h2


@dataclass(slots=True)
class Reply:
    status: int
    fields: list[tuple[bytes, bytes]]
    body: bytes  # a HEAD answer keeps the GET body here; the adapters send only the head
    close: bool = False
    extra: list[tuple[bytes, bytes]] = field(default_factory=list)
    head: bytes = b""  # pre-serialized status line + fields, when the reply comes from the cache
    h2: bytes = b""  # the same for HTTP/2: an encoded header block prefix
    # A body too large to hold: ``body`` is its start, ``stream`` the rest as the origin sends
    # it; ``length`` is the whole length when the origin declared it (else chunked / close).
    stream: AsyncIterator[bytes] | None = None
    length: int | None = None
    # The fields carry the origin's Date (an answer from the cache or the origin): it is sent as
    # stored (RFC 9111 §4, cache-tests.fyi's "must not update Date"). The edge's own answers
    # (errors, denials, stats) get the current one.
    dated: bool = False

    async def aclose(self) -> None:
        """Drop a streamed body that will not be sent (frees the origin connection)."""
        if self.stream is not None:
            await self.stream.aclose()  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Filled:
    """A cache-filling fetch's outcome, shared with the requests collapsed into it."""

    response: UpstreamResponse
    obj: CachedObject | None  # what was stored, None when the response was not storable


def _request_ids() -> Iterator[bytes]:
    """Unique ids without a syscall per request: a random per-process prefix and a counter,
    in seed 001's style (``X-Request-ID: req_abc123def456``)."""
    prefix = b"req_" + os.urandom(8).hex().encode()
    for n in itertools.count(1):
        yield b"%s-%x" % (prefix, n)


_REQUEST_IDS = _request_ids()


def request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The client's X-Request-ID when well-formed (short, safe characters), else a new one."""
    return choose_request_id(get_header(headers, b"x-request-id"))


def choose_request_id(given: bytes | None) -> bytes:
    """``request_id`` of the field's value (several lines joined, as ``get_header`` does)."""
    # translate() deletes the safe characters: nothing may be left (one C call, not a loop per byte)
    if given and len(given) <= REQUEST_ID_MAX and not given.translate(None, _RID_CHARS):
        return given
    return next(_REQUEST_IDS)


def error_reply(status: int, code: str, message: str) -> Reply:
    """The edge's own error answer (400, 431, 502, …): the same error object as the APIs', title included."""
    title = _DENIAL_TITLES.get(status) or _PHRASES.get(status, code)
    body = json.dumps({"errors": [{"status": str(status), "code": code, "title": title,
                                   "detail": message}]}).encode()
    return Reply(status, [(b"content-type", b"application/json"), (b"cache-control", b"no-store")], body)


_PHRASES = {status.value: status.phrase for status in HTTPStatus}
# JSON:API titles of the gateway's denials (the origin's jsonapi.ERRORS says the same)
_DENIAL_TITLES = {401: "Authentication required", 403: "Forbidden", 405: "Method not allowed",
                  413: "Payload too large", 429: "Too many requests"}


def denial_reply(deny: Deny, route: Route) -> Reply:
    """A gateway denial in its API's own error style: GraphQL ``errors[].extensions`` on a GraphQL
    route, ``errors[]`` objects elsewhere (seed 001's codes; as ``application/vnd.api+json`` under
    ``/api``, plain JSON on the feed's routes); WWW-Authenticate, Retry-After and X-RateLimit-*
    come with the denial."""
    if route.graphql:
        # refused before execution: no "data" entry (GraphQL spec §7.1.1), as the origin's refusals
        document: dict[str, Any] = {"errors": [{"message": deny.message, "extensions": {
            "code": deny.code, "statusCode": deny.status}}]}
        media_type = b"application/json"
    else:
        document = {"errors": [{"status": str(deny.status), "code": deny.code,
                                "title": _DENIAL_TITLES.get(deny.status, deny.code), "detail": deny.message}]}
        # the JSON:API media type where the API is JSON:API (/api…); the feed's errors are plain JSON
        media_type = b"application/vnd.api+json" if route.prefix.startswith(b"/api") else b"application/json"
    return Reply(deny.status, [(b"content-type", media_type), (b"cache-control", b"no-store"), *deny.headers],
                 json.dumps(document).encode())


def has_body(status: int) -> bool:
    """May a response with this status carry content (RFC 9110 §6.4.1, §8.6)?"""
    return status >= 200 and status not in (204, 304)
