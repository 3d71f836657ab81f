"""A request under a gateway route: the gateway's identity fields, and its fresh-hit path.

The gateway (``gateway.py``) says who is asking. Its X-Flowcms-* fields replace any the
client sent before the cache looks (API answers carry ``Vary`` on the role field), and its
X-RateLimit-* fields join the answer. On the hit path nothing is copied for that:
``variants.select`` reads the X-Flowcms-* fields from ``Identity.vary_values`` and every other
field from the client's, which is what a lookup over ``with_identity(fields, identity)`` sees; the
copy is made only when the general policy (``policy.choose``) has to read the request. The
rate limit is charged only when the cache answers: on None, ``Exchange.handle`` decides again
and charges it there, once. Denials go back to the exchange, which writes every error answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeproxy.gateway import IDENTITY_PREFIX, Deny, Gateway, Identity, Route
from edgeproxy.variants import select

if TYPE_CHECKING:
    from edgeproxy.exchange import Exchange
    from edgeproxy.replies import Reply

Fields = list[tuple[bytes, bytes]]


def with_identity(headers: Fields, identity: Identity) -> Fields:
    """The request fields with every client-sent X-Flowcms-* replaced by the gateway's."""
    return [(n, v) for n, v in headers if not n.startswith(IDENTITY_PREFIX)] + list(identity.fields)


def gated_hit(exchange: Exchange, gw: Gateway, route: Route, method: bytes, target: bytes, fields: Fields,
              host: bytes | None, client: str | None) -> Reply | Deny | None:
    """``Exchange.try_hit`` under ``route``: a fresh hit carrying its X-RateLimit-* fields, the
    gateway's denial (401, 403, 429) for the exchange to answer, or None (take ``handle``)."""
    authorization = None
    for name, value in fields:  # get_header's answer for a singleton field, without its list
        if name == b"authorization":
            if authorization is None:
                authorization = value
        elif name == b"origin":
            return None  # a browser's request: Exchange.handle adds the CORS fields (cors.py)
    now_ns = exchange.gateway_clock()
    identity = gw.authenticate(route, method, authorization, client, now_ns)
    counters = exchange.counters
    if type(identity) is Deny:
        counters.requests += 1
        return identity
    assert isinstance(identity, Identity)
    host = host.lower() if host else None
    entry = select(exchange.cache.peek_variants(b"%s%s" % (host or b"", target)), fields, identity.vary_values,
                   IDENTITY_PREFIX)
    hit = exchange.fresh_hit(method, fields, entry, identity)
    if hit is None:
        return None
    assert entry is not None
    counters.requests += 1
    charged = gw.charge(identity, now_ns)
    if type(charged) is Deny:
        counters.hits -= 1  # fresh_hit counted a hit, but the cache did not answer
        return charged
    exchange.cache.record_hit(entry)
    hit.extra += charged  # fresh_hit's list, this reply's own
    return hit
