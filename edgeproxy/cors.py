"""CORS on the gateway's routes (Fetch standard §3.2): browser apps on other sites call the APIs.

Why in the edge, per request: a preflight carries no credentials (Fetch §4.8), so the gateway
would refuse it with a 401; and a stored API answer must not depend on ``Origin`` (that would
need ``Vary: Origin`` and one copy per site), so the response fields are added after the
cache, to requests that send ``Origin`` only. Credentials are Bearer tokens, never cookies,
so ``*`` is the allowed origin (a credentialed request, which ``*`` would fail, never arises).
Pure: the exchange asks, the adapters send what it returns.
"""

from __future__ import annotations

import re

from edgeproxy.headers import get_header

Fields = list[tuple[bytes, bytes]]

ALLOW_METHODS = b"GET, HEAD, POST, OPTIONS"
#: What a preflight that names no headers is told: what the APIs read (Authorization, the
#: GraphQL POST's Content-Type, the validators, a request id).
DEFAULT_ALLOW_HEADERS = b"authorization, content-type, if-none-match, if-modified-since, x-request-id"
#: Beyond the CORS-safelisted response fields: what a client of the APIs reads.
EXPOSE_HEADERS = (b"etag, last-modified, link, retry-after, www-authenticate, x-request-id, x-build, age, "
                  b"cache-status, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset")
MAX_AGE_S = 86_400  # browsers cap it (Chromium: 2 h), and a preflight costs a round trip
RESPONSE_FIELDS: tuple[tuple[bytes, bytes], ...] = (
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", EXPOSE_HEADERS),
)
# A comma list of field names (RFC 9110 §5.1 tokens), bounded: anything else gets the default.
_FIELD_LIST = re.compile(rb"[ \t]*[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:[ \t]*,[ \t]*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*[ \t]*")
_FIELD_LIST_MAX = 1_000


def is_preflight(method: bytes, fields: Fields) -> bool:
    """An OPTIONS with ``Origin`` and ``Access-Control-Request-Method`` (Fetch §4.8)."""
    return (method == b"OPTIONS" and get_header(fields, b"origin") is not None
            and get_header(fields, b"access-control-request-method") is not None)


def preflight_fields(fields: Fields) -> Fields:
    """The 204's fields: any origin, the APIs' methods, the asked-for fields when well-formed."""
    asked = get_header(fields, b"access-control-request-headers")
    allow = asked.strip().lower() if asked and len(asked) <= _FIELD_LIST_MAX and _FIELD_LIST.fullmatch(asked) \
        else DEFAULT_ALLOW_HEADERS
    return [(b"access-control-allow-origin", b"*"), (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", allow), (b"access-control-max-age", b"%d" % MAX_AGE_S),
            (b"cache-control", b"no-store")]
