"""Purge requests: who may purge (bearer token) and what a purge body means. Pure.

Two ways in, one meaning: ``PURGE /path`` (one path; ``Soft-Purge: 1`` for soft) and
``POST /.edge/purge`` with ``{"paths": [], "keys": [], "prefixes": [], "soft": false}``.
A soft purge marks objects stale (the next request revalidates with the stored validators,
serving stale meanwhile where SWR allows); a hard purge removes them.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

REALM = b'Bearer realm="edgeproxy purge"'
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"  # RFC 3986 reserved + '%': only what a target could not carry is escaped


@dataclass(frozen=True, slots=True)
class Denial:
    status: int
    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeSpec:
    paths: tuple[bytes, ...] = ()
    keys: tuple[bytes, ...] = ()
    prefixes: tuple[bytes, ...] = ()
    soft: bool = False


class Purgeable(Protocol):
    def purge_path(self, path: bytes, *, soft: bool) -> int: ...
    def purge_key(self, surrogate_key: bytes, *, soft: bool) -> int: ...
    def purge_prefix(self, prefix: bytes, *, soft: bool) -> int: ...


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
    unknown = set(spec) - {"paths", "keys", "prefixes", "soft"}
    if unknown:
        raise ValueError(f"unknown field {sorted(unknown)[0]!r} (paths, keys, prefixes, soft)")
    lists: dict[str, tuple[bytes, ...]] = {}
    for name in ("paths", "keys", "prefixes"):
        value = spec.get(name, [])
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ValueError(f"{name} must be a list of strings")
        lists[name] = tuple(target_bytes(v) for v in value)
    soft = spec.get("soft", False)
    if not isinstance(soft, bool):
        raise ValueError("soft must be true or false")
    return PurgeSpec(paths=tuple(path_of(p) for p in lists["paths"]), keys=lists["keys"],
                     prefixes=lists["prefixes"], soft=soft)


def apply_purge(cache: Purgeable, spec: PurgeSpec) -> int:
    """Objects removed (hard) or marked stale (soft); each index costs what it touches."""
    count = 0
    for path in spec.paths:
        count += cache.purge_path(path, soft=spec.soft)
    for key in spec.keys:
        count += cache.purge_key(key, soft=spec.soft)
    for prefix in spec.prefixes:
        count += cache.purge_prefix(prefix, soft=spec.soft)
    return count


def spec_to_wire(spec: PurgeSpec) -> dict[str, object]:
    """A PurgeSpec as JSON-ready data for the worker bus (bytes as latin-1, losslessly)."""
    return {"paths": [p.decode("latin-1") for p in spec.paths], "keys": [k.decode("latin-1") for k in spec.keys],
            "prefixes": [p.decode("latin-1") for p in spec.prefixes], "soft": spec.soft}


def spec_from_wire(data: dict[str, object]) -> PurgeSpec:
    def items(name: str) -> tuple[bytes, ...]:
        value = data.get(name) or []
        assert isinstance(value, list)
        return tuple(str(v).encode("latin-1") for v in value)

    return PurgeSpec(paths=items("paths"), keys=items("keys"), prefixes=items("prefixes"), soft=bool(data.get("soft")))
