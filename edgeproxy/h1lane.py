"""Fresh cache hits written straight to HTTP/1.1 bytes: the hit loop's lane for the common case.

Why: a hit through ``Exchange.try_hit`` builds a ``Reply`` with a list of extra fields, and
``server.serialize_parts`` joins a list of pieces from it; under a gateway route ``gated_hit``
adds the X-RateLimit-* tuples on top. bench/api.py measured API hits at ~0.6x the requests/s of
static hits over HTTP/1.1 (HOTPATH.md: per-request Python work decides HTTP/1.1 throughput).
Nothing in such an answer needs an object per request: the cached object's status line and
fields are serialized once (``CachedObject.h1_head``, the stored Date included), and what changes
per request (X-Request-ID, Age, Cache-Status, the X-RateLimit-* numbers) is one ``bytes %`` format
here.

What takes the lane is decided by ``plainhit.plain_hit`` (shared with the HTTP/2 lane,
``h2lane.py``): a GET or HEAD with no request directive and no precondition whose selected variant
is a fresh plain hit, under a gateway route or outside every route. The answer is byte for byte the
one ``serialize_parts(try_hit(...))`` writes, fields in the same order (tests compare the two).
Under a route the gateway's denial is answered here, as ``gated_hit`` would; anything else returns
None before anything is counted or charged, and the hit loop asks ``Exchange.try_hit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeproxy.answering import serialize_parts
from edgeproxy.exchange import hit_status
from edgeproxy.plainhit import plain_hit
from edgeproxy.replies import Reply, denial_reply

if TYPE_CHECKING:
    from edgeproxy.exchange import Exchange

Fields = list[tuple[bytes, bytes]]
# head bytes, body (empty for HEAD and bodiless statuses), status, the X-Request-ID sent
Answer = tuple[bytes, bytes, int, bytes]

# What serialize_parts appends to a cached reply's head (which holds the stored Date), in its
# order: X-Request-ID, then the reply's extra fields (fresh_hit's Age and Cache-Status, then
# gated_hit's X-RateLimit-*).
_TAIL = b"%sx-request-id: %s\r\nage: %d\r\ncache-status: %s\r\n\r\n"
_GATED_TAIL = (b"%sx-request-id: %s\r\nage: %d\r\ncache-status: %s\r\nx-ratelimit-limit: %d\r\n"
               b"x-ratelimit-remaining: %d\r\nx-ratelimit-reset: %d\r\n\r\n")


def h1_hit(exchange: Exchange, method: bytes, target: bytes, fields: Fields, host: bytes | None,
           client: str | None) -> Answer | None:
    """The answer to a plain fresh hit (or the gateway's denial of the request), else None: then
    nothing was counted or charged, and ``Exchange.try_hit`` decides (``plainhit.plain_hit``).

    Args:
        method: b"GET" or b"HEAD" (the hit loop checks).
        fields: the request's header fields as parsed (lowercase names).
        client: the peer's address, the gateway's per-IP bucket for anonymous reads.
    """
    found = plain_hit(exchange, method, target, fields, host, client)
    if found is None:
        return None
    if len(found) == 3:  # the gateway's denial, answered as the general path answers it
        deny, route, rid = found
        reply: Reply = denial_reply(deny, route)
        head, body = serialize_parts(reply, rid, head_only=method == b"HEAD", close=False)
        return head, body, reply.status, rid
    obj, body, age, ttl, rid, limit, remaining, reset = found
    if limit:
        head = _GATED_TAIL % (obj.head or obj.h1_head(), rid, age, hit_status(ttl), limit, remaining, reset)
    else:
        head = _TAIL % (obj.head or obj.h1_head(), rid, age, hit_status(ttl))
    return head, body, obj.status, rid
