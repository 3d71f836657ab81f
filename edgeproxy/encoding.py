"""Content coding at the edge: a gzip copy of a compressible answer, made once when it is stored.

Why: HTML and JSON shrink 3-6x under gzip (the sample site's REST list: 14.5 KB -> 3.5 KB), and
every client that matters asks for it (browsers, curl --compressed, fetch, h2load). Varnish
(``http_gzip_support``), nginx (``gzip``/``gzip_static``) and every CDN answer them compressed.
The copy is made when the answer is stored, so a hit chooses between two ready answers and never
compresses; answers that pass through uncached (a miss that may not be stored, a streamed body)
are sent as the origin sent them.

The rules, each from the field's practice or an RFC:

- *Which answers* (``gzip_copy``): a 200 with a body of ``MIN_BYTES`` (below one packet nothing
  is saved) to ``MAX_BYTES`` (compressed inline: ~100 MB/s at level 6, so at most ~3 ms of one
  miss), a text-like media type, no Content-Encoding already, no ``no-transform`` (RFC 9110 §7.7),
  and no Vary naming Accept-Encoding or ``*`` (the origin negotiates codings itself). A copy that
  saves less than an eighth is not kept.
- *Its fields* (``gzip_fields``): Content-Encoding: gzip, its own Content-Length, the ETag made
  weak (a strong tag names one sequence of bytes, RFC 9110 §8.8.3.3; nginx and Varnish do the
  same), no Content-Digest / Repr-Digest (they describe other bytes), no Accept-Ranges (the copy
  is always sent whole). Both answers say ``Vary: Accept-Encoding`` (``identity_fields``), so a
  cache downstream keeps them apart.
- *Who gets it* (``accepts_gzip``): a request whose Accept-Encoding (RFC 9110 §12.5.3) gives
  ``gzip`` (or its alias ``x-gzip``, §8.4.1.3) a q-value above 0, or ``*`` above 0 without naming
  gzip. No Accept-Encoding: identity (nginx and Varnish read it so, though §12.5.3 would allow
  any coding). Its Range is then ignored (``exchange.from_cache``); other clients get parts of the
  uncoded answer.
"""

from __future__ import annotations

import gzip
import re

from edgeproxy.headers import parse_cache_control, parse_vary

MIN_BYTES = 1024
MAX_BYTES = 256 * 1024
LEVEL = 6  # zlib's default: level 9 saves <1% more on HTML/JSON and costs ~10% more time
KEEP_RATIO = 7 / 8  # a copy must be at most this share of the original
_TEXT_TYPES = frozenset({b"application/json", b"application/javascript", b"application/ecmascript",
                         b"application/x-javascript", b"application/xml", b"image/svg+xml",
                         b"application/wasm"})
_DROPPED = frozenset({b"content-length", b"content-digest", b"repr-digest", b"content-md5", b"digest",
                      b"accept-ranges"})  # the copy's own length follows; no digests of other bytes; no ranges
_QVALUE = re.compile(rb"\s*q\s*=\s*(0(?:\.\d{0,3})?|1(?:\.0{0,3})?)\s*", re.IGNORECASE)
_ACCEPTS: dict[bytes, bool] = {}  # Accept-Encoding values seen -> accepts_gzip; few distinct ones
_ACCEPTS_MAX = 1024
_REMEMBERED_MAX_BYTES = 128  # a browser's value is ~40 bytes; a longer one is parsed every time


def accepts_gzip(value: bytes) -> bool:
    """Does this Accept-Encoding value (its lines joined with commas) accept gzip?"""
    known = _ACCEPTS.get(value)
    if known is None:
        known = _accepts_gzip(value)
        if len(value) <= _REMEMBERED_MAX_BYTES:
            if len(_ACCEPTS) >= _ACCEPTS_MAX:
                _ACCEPTS.clear()  # a client making up values: start again (each costs one parse)
            _ACCEPTS[value] = known
    return known


def _accepts_gzip(value: bytes) -> bool:
    gzip_q: float | None = None
    star_q: float | None = None
    for item in value.split(b","):
        coding, _, params = item.partition(b";")
        coding = coding.strip(b" \t").lower()
        if not coding:
            continue
        q = 1.0
        if params:
            match = _QVALUE.fullmatch(params)
            q = float(match[1]) if match else 0.0  # an unreadable weight accepts nothing
        if coding in (b"gzip", b"x-gzip"):
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif coding == b"*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


def _media_type(fields: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in fields:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip(b" \t").lower()
    return b""


def compressible(status: int, fields: list[tuple[bytes, bytes]], *, own_vary: bool = False) -> bool:
    """May the edge send this answer gzip-coded? (Its fields only; ``gzip_copy`` checks the body.)
    ``own_vary``: the fields are ``identity_fields``, whose Vary names Accept-Encoding for the edge."""
    if status != 200:
        return False
    media = _media_type(fields)
    if not (media.startswith(b"text/") or media in _TEXT_TYPES or media.endswith((b"+json", b"+xml"))):
        return False
    vary: list[bytes] = []
    cache_control: list[bytes] = []
    for name, value in fields:
        if name == b"content-encoding" or name == b"content-range":
            return False
        if name == b"vary":
            vary.append(value)
        elif name == b"cache-control":
            cache_control.append(value)
    if cache_control and parse_cache_control(cache_control).no_transform:
        return False
    if vary and not own_vary:
        names = parse_vary(vary)
        if names == "*" or b"accept-encoding" in names:
            return False
    return True


def gzip_copy(status: int, fields: list[tuple[bytes, bytes]], body: bytes) -> bytes | None:
    """The gzip coding of ``body`` when this answer gets one (see the module docstring), else None."""
    if not MIN_BYTES <= len(body) <= MAX_BYTES or not compressible(status, fields):
        return None
    coded = gzip.compress(body, compresslevel=LEVEL, mtime=0)  # mtime 0: the same body, the same bytes
    return coded if len(coded) <= len(body) * KEEP_RATIO else None


def identity_fields(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The uncoded answer's fields once a gzip copy exists: Accept-Encoding added to its Vary."""
    out = list(fields)
    for i, (name, value) in enumerate(out):
        if name == b"vary":
            out[i] = (name, value + b", Accept-Encoding" if value.strip(b" \t") else b"Accept-Encoding")
            return out
    out.append((b"vary", b"Accept-Encoding"))
    return out


def gzip_fields(fields: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    """The gzip copy's fields, from ``identity_fields``: coding, length, a weak ETag, no digests."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in fields:
        if name in _DROPPED:
            continue
        if name == b"etag" and value.startswith(b'"'):
            value = b"W/" + value
        out.append((name, value))
    out += [(b"content-encoding", b"gzip"), (b"content-length", b"%d" % length)]
    return out
