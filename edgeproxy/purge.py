"""Purge requests: who may purge (bearer token) and what a purge body means. Pure.

Two ways in, one meaning: ``PURGE /path`` (one path; ``Soft-Purge: 1`` for soft) and
``POST /.edge/purge`` with ``{"paths": [], "keys": [], "prefixes": [], "soft": false,
"invalidate": false}``. Three strengths, as CDNs name them:

- hard (the default) removes the objects;
- soft (Fastly's soft purge, Varnish's softpurge) marks them stale: the next request revalidates
  with the stored validators, and where the response's ``stale-while-revalidate`` allows, the
  stale copy answers meanwhile;
- invalidate (RFC 9111 §4.4's "invalid", Akamai's invalidate) keeps them for a conditional
  request but nothing serves them before the origin has answered it (a 304 keeps the body);
  ``stale-if-error`` may still answer if the origin fails. A publish purges this way, so a
  publish is live at once although pages carry ``stale-while-revalidate``.

A publisher may tag the body with the publish it belongs to, ``"publish": {"id": "pub_…",
"seen": <epoch seconds the commit was seen>}``, so the edge can time the publish
(``publish_metrics.py``); bodies without it mean what they always did.
"""

from __future__ import annotations

import hmac
import json
import math
import re
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

REALM = b'Bearer realm="edgeproxy purge"'
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"  # RFC 3986 reserved + '%': only what a target could not carry is escaped
# A publish id becomes a Prometheus label value and a JSON string: short, and nothing to escape.
PUBLISH_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True, slots=True)
class Denial:
    status: int
    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishTag:
    """The publish a purge belongs to, as the publisher names and times it."""

    id: str  # the publisher's publish id; one publish may send several purge batches
    seen: float  # epoch seconds when the publisher saw the commit (its clock, not ours)


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeSpec:
    paths: tuple[bytes, ...] = ()
    keys: tuple[bytes, ...] = ()
    prefixes: tuple[bytes, ...] = ()
    soft: bool = False
    invalidate: bool = False  # keep for revalidation, but never serve stale while revalidating
    publish: PublishTag | None = None


class Purgeable(Protocol):
    def purge_path(self, path: bytes, *, soft: bool, invalidate: bool = False) -> int: ...
    def purge_key(self, surrogate_key: bytes, *, soft: bool, invalidate: bool = False) -> int: ...
    def purge_prefix(self, prefix: bytes, *, soft: bool, invalidate: bool = False) -> int: ...


def check_token(configured: str | None, authorization: bytes | None) -> Denial | None:
    """None when the request may purge; else the answer: 403 disabled, 401 no bearer, 403 wrong."""
    if configured is None:
        return Denial(403, "PURGE_DISABLED", "purge is disabled: start edgeproxy with --purge-token")
    scheme, _, credential = (authorization or b"").partition(b" ")
    if scheme.lower() != b"bearer" or not credential.strip():
        return Denial(401, "UNAUTHENTICATED", "purge needs Authorization: Bearer <token>")
    if not hmac.compare_digest(credential.strip(), configured.encode()):
        return Denial(403, "FORBIDDEN", "the purge token is not valid")
    return None


def target_bytes(text: str) -> bytes:
    """A path from JSON as a request target carries it: percent-encoded UTF-8, existing escapes kept."""
    return quote(text, safe=_TARGET_SAFE).encode("ascii")


def path_of(target: bytes) -> bytes:
    return target.split(b"?", 1)[0]


def parse_purge_body(body: bytes) -> PurgeSpec:
    """The JSON body of ``POST /.edge/purge``; ValueError says what is wrong."""
    try:
        spec = json.loads(body or b"{}")
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise ValueError("expected a JSON object")
    unknown = set(spec) - {"paths", "keys", "prefixes", "soft", "invalidate", "publish"}
    if unknown:
        raise ValueError(f"unknown field {sorted(unknown)[0]!r} (paths, keys, prefixes, soft, invalidate, publish)")
    lists: dict[str, tuple[bytes, ...]] = {}
    for name in ("paths", "keys", "prefixes"):
        value = spec.get(name, [])
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ValueError(f"{name} must be a list of strings")
        lists[name] = tuple(target_bytes(v) for v in value)
    soft, invalidate = spec.get("soft", False), spec.get("invalidate", False)
    if not isinstance(soft, bool):
        raise ValueError("soft must be true or false")
    if not isinstance(invalidate, bool):
        raise ValueError("invalidate must be true or false")
    publish = parse_publish_tag(spec["publish"]) if "publish" in spec else None
    return PurgeSpec(paths=tuple(path_of(p) for p in lists["paths"]), keys=lists["keys"],
                     prefixes=lists["prefixes"], soft=soft, invalidate=invalidate, publish=publish)


def parse_publish_tag(value: object) -> PublishTag:
    """The ``publish`` member of a purge body, checked strictly: it ends up in metrics and labels."""
    if not isinstance(value, dict):
        raise ValueError('publish must be an object {"id": "...", "seen": <epoch seconds>}')
    unknown = set(value) - {"id", "seen"}
    if unknown:
        raise ValueError(f"unknown field publish.{sorted(unknown)[0]} (id, seen)")
    ident, seen = value.get("id"), value.get("seen")
    if not (isinstance(ident, str) and PUBLISH_ID.fullmatch(ident)):
        raise ValueError("publish.id must be a string of 1 to 128 letters, digits, '.', '_', ':' or '-'")
    if isinstance(seen, bool) or not isinstance(seen, (int, float)) or not math.isfinite(seen) or seen <= 0:
        raise ValueError("publish.seen must be a positive number (epoch seconds when the commit was seen)")
    return PublishTag(id=ident, seen=float(seen))


def apply_purge(cache: Purgeable, spec: PurgeSpec) -> int:
    """Objects removed (hard), marked stale (soft) or invalid (invalidate); each index costs what
    it touches."""
    soft, invalidate = spec.soft, spec.invalidate
    count = 0
    for path in spec.paths:
        count += cache.purge_path(path, soft=soft, invalidate=invalidate)
    for key in spec.keys:
        count += cache.purge_key(key, soft=soft, invalidate=invalidate)
    for prefix in spec.prefixes:
        count += cache.purge_prefix(prefix, soft=soft, invalidate=invalidate)
    return count


def spec_to_wire(spec: PurgeSpec) -> dict[str, object]:
    """A PurgeSpec as JSON-ready data for the worker bus (bytes as latin-1, losslessly)."""
    publish = None if spec.publish is None else {"id": spec.publish.id, "seen": spec.publish.seen}
    return {"paths": [p.decode("latin-1") for p in spec.paths], "keys": [k.decode("latin-1") for k in spec.keys],
            "prefixes": [p.decode("latin-1") for p in spec.prefixes], "soft": spec.soft,
            "invalidate": spec.invalidate, "publish": publish}


def spec_from_wire(data: dict[str, object]) -> PurgeSpec:
    def items(name: str) -> tuple[bytes, ...]:
        value = data.get(name) or []
        assert isinstance(value, list)
        return tuple(str(v).encode("latin-1") for v in value)

    publish = data.get("publish")
    tag = None
    if publish is not None:
        assert isinstance(publish, dict)
        tag = PublishTag(id=str(publish["id"]), seen=float(publish["seen"]))
    return PurgeSpec(paths=items("paths"), keys=items("keys"), prefixes=items("prefixes"), soft=bool(data.get("soft")),
                     invalidate=bool(data.get("invalidate")), publish=tag)
