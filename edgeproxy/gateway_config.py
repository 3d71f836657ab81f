"""The ``[gateway]`` table of the edgeproxy TOML file → ``gateway.GatewayConfig``, validated.

Wiring: the only I/O is reading ``jwt.jwks_file`` (relative paths are relative to the TOML
file). Every problem is a ConfigError naming the file and the setting. The table's shape::

    [gateway]
    anonymous_tier = "anonymous"          # per-IP limit of anonymous reads; needed with public routes
    [gateway.tiers]                       # name = requests per minute, 100..10000
    anonymous = 100
    starter = 1000
    [[gateway.routes]]
    prefix = "/api/v3"                    # canonical path prefix, matched on segment boundaries
    public = true                         # anonymous GET/HEAD allowed
    min_role = "viewer"                   # viewer | editor | admin: what every other request needs
    methods = ["GET", "POST"]             # optional: any other method is a 405 with Allow, before
                                          # credentials are asked for (GET brings HEAD)
    [[gateway.keys]]
    id = "ci"
    hash = "<sha256 hex of the key>"      # or key = "<the key>", hashed here and never kept
    role = "editor"
    tier = "starter"
    [gateway.jwt]
    hs256_secret = "<32+ bytes>"          # and/or jwks_file = "jwks.json" (RS256 public keys by kid)
    issuer = "https://auth.example"       # optional; checked when set
    audience = "flowcms"                  # optional; a token with an aud needs it set and matching
    role_claim = "role"
    tier = "starter"                      # the rate-limit tier of JWT subjects
    leeway_s = 0                          # clock skew allowed on exp/nbf

``dataclasses.asdict`` of the result is again a valid table (the JWK Set travels inline as
``jwks``), which is how ``--workers`` hands the settings to its worker processes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from edgeproxy.errors import ConfigError
from edgeproxy.gateway import (
    MAX_PER_MINUTE,
    MIN_HS256_SECRET_BYTES,
    MIN_PER_MINUTE,
    ROLES,
    GatewayConfig,
    JwtRule,
    KeyRule,
    RouteRule,
    canonical_path,
    hash_key,
    load_jwks,
)

MIN_KEY_CHARS = 16  # a plain key shorter than this can be guessed; generated keys are 32+
MAX_LEEWAY_S = 300  # five minutes: Kerberos' classic clock-skew bound
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")  # key ids and tier names: safe in a header
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")  # a key travels in a header: visible ASCII, no spaces
_TOP = ("routes", "tiers", "keys", "jwt", "anonymous_tier")


def parse_gateway(table: object, *, source: str, relative_to: str | None = None) -> GatewayConfig:
    """Validate a ``[gateway]`` table; ``relative_to`` is the TOML file (for ``jwks_file``).

    Raises:
        ConfigError: ``"<source>: gateway.<setting> ..."`` for the first problem found.
    """
    table = _table(table, "gateway", source)
    _no_unknown(table, _TOP, "gateway", source)
    tiers = _tiers(table.get("tiers"), source)
    routes = _routes(table.get("routes"), source)
    anonymous_tier = table.get("anonymous_tier")
    if anonymous_tier is not None:
        _tier_name(anonymous_tier, tiers, "gateway.anonymous_tier", source)
    elif any(r.public for r in routes):
        public = next(r.prefix for r in routes if r.public)
        raise ConfigError(f"{source}: gateway.anonymous_tier is needed: route {public!r} is public, and "
                          "anonymous requests are rate-limited per client IP by that tier")
    keys = _keys(table.get("keys"), tiers, source)
    jwt_table = table.get("jwt")
    jwt_rule = None if jwt_table is None else _jwt(jwt_table, tiers, source, relative_to)
    return GatewayConfig(routes=routes, tiers=tiers, keys=keys, jwt=jwt_rule, anonymous_tier=anonymous_tier)


def _table(value: object, name: str, source: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: {name} must be a table, not {value!r}")
    return {k: v for k, v in value.items() if v is not None}  # asdict writes absent settings as None


def _no_unknown(table: Mapping[str, Any], known: tuple[str, ...], name: str, source: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{source}: unknown setting {name}.{key} (known: {', '.join(known)})")


def _string(value: object, name: str, source: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{source}: {name} must be a non-empty string, not {value!r}")
    return value


def _tiers(value: object, source: str) -> dict[str, int]:
    if value is None:
        raise ConfigError(f"{source}: gateway.tiers is missing: name each plan tier with its requests per "
                          f"minute ({MIN_PER_MINUTE}..{MAX_PER_MINUTE}), e.g. starter = 1000")
    table = _table(value, "gateway.tiers", source)
    if not table:
        raise ConfigError(f"{source}: gateway.tiers must name at least one tier")
    for name, limit in table.items():
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{source}: gateway.tiers: {name!r} is not a valid tier name (letters, digits, ._:@-)")
        if isinstance(limit, bool) or not isinstance(limit, int) or not MIN_PER_MINUTE <= limit <= MAX_PER_MINUTE:
            raise ConfigError(f"{source}: gateway.tiers.{name} must be a whole number of requests per minute "
                              f"between {MIN_PER_MINUTE} and {MAX_PER_MINUTE}, not {limit!r}")
    return dict(table)


def _tier_name(value: object, tiers: Mapping[str, int], name: str, source: str) -> str:
    if not isinstance(value, str) or value not in tiers:
        raise ConfigError(f"{source}: {name} {value!r} is not a tier (known: {', '.join(sorted(tiers))})")
    return value


def _role_name(value: object, name: str, source: str) -> str:
    if not isinstance(value, str) or value not in ROLES:
        raise ConfigError(f"{source}: {name} must be one of {', '.join(ROLES)}, not {value!r}")
    return value


_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token


def _methods(value: object, name: str, source: str) -> tuple[str, ...] | None:
    """A route's allowed methods (None: any), upper-cased, HEAD with GET (RFC 9110 §9.3.2)."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(m, str) and _METHOD.fullmatch(m)
                                                           for m in value):
        raise ConfigError(f'{source}: {name} must be a non-empty list of method names, like ["GET", "POST"], '
                          f"not {value!r}")
    methods = dict.fromkeys(m.upper() for m in value)
    if "GET" in methods:
        methods["HEAD"] = None
    return tuple(methods)


def _routes(value: object, source: str) -> tuple[RouteRule, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{source}: gateway.routes must list at least one route: "
                          '[[gateway.routes]] prefix = "/api/v3"')
    routes: list[RouteRule] = []
    seen: set[str] = set()
    for n, item in enumerate(value):
        name = f"gateway.routes[{n}]"
        route = _table(item, name, source)
        _no_unknown(route, ("prefix", "public", "min_role", "post_reads", "methods"), name, source)
        prefix = _string(route.get("prefix"), f"{name}.prefix", source)
        if not prefix.startswith("/") or canonical_path(prefix.encode()).rstrip(b"/") != prefix.encode().rstrip(b"/") \
                or "?" in prefix or "#" in prefix:
            raise ConfigError(f"{source}: {name}.prefix {prefix!r} must be a canonical path: starting with /, "
                              "without %-escapes, dot segments, // or a query")
        if prefix.rstrip("/") in seen:
            raise ConfigError(f"{source}: {name}.prefix {prefix!r} is listed twice")
        seen.add(prefix.rstrip("/"))
        public = route.get("public", False)
        if not isinstance(public, bool):
            raise ConfigError(f"{source}: {name}.public must be true or false, not {public!r}")
        post_reads = route.get("post_reads", False)
        if not isinstance(post_reads, bool):
            raise ConfigError(f"{source}: {name}.post_reads must be true or false, not {post_reads!r}")
        min_role = _role_name(route.get("min_role", "viewer"), f"{name}.min_role", source)
        methods = _methods(route.get("methods"), f"{name}.methods", source)
        routes.append(RouteRule(prefix=prefix, public=public, min_role=min_role, post_reads=post_reads,
                                methods=methods))
    return tuple(routes)


def _keys(value: object, tiers: Mapping[str, int], source: str) -> tuple[KeyRule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{source}: gateway.keys must be a list of tables: [[gateway.keys]]")
    keys: list[KeyRule] = []
    ids: set[str] = set()
    hashes: set[str] = set()
    for n, item in enumerate(value):
        name = f"gateway.keys[{n}]"
        key = _table(item, name, source)
        _no_unknown(key, ("id", "hash", "key", "role", "tier"), name, source)
        key_id = key.get("id")
        if not isinstance(key_id, str) or not _NAME.fullmatch(key_id):
            raise ConfigError(f"{source}: {name}.id must be 1 to 64 letters, digits or ._:@-, not {key_id!r}")
        if key_id in ids:
            raise ConfigError(f"{source}: {name}.id {key_id!r} is used twice")
        ids.add(key_id)
        if ("hash" in key) == ("key" in key):
            raise ConfigError(f"{source}: {name} ({key_id}) needs exactly one of hash (sha256 hex) or key")
        if "key" in key:
            plain = key["key"]
            if not isinstance(plain, str) or len(plain) < MIN_KEY_CHARS or not _KEY_CHARS.fullmatch(plain) \
                    or plain.count(".") == 2:
                raise ConfigError(f"{source}: {name}.key ({key_id}) must be at least {MIN_KEY_CHARS} visible ASCII "
                                  "characters without spaces (and not shaped like a JWT: two dots)")
            digest = hash_key(plain)
        else:
            digest = key["hash"]
            if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
                raise ConfigError(f"{source}: {name}.hash ({key_id}) must be 64 hex digits (the key's sha256)")
            digest = digest.lower()
        if digest in hashes:
            raise ConfigError(f"{source}: {name} ({key_id}) has the same key as an earlier entry")
        hashes.add(digest)
        role = _role_name(key.get("role"), f"{name}.role", source)
        tier = _tier_name(key.get("tier"), tiers, f"{name}.tier", source)
        keys.append(KeyRule(id=key_id, hash=digest, role=role, tier=tier))
    return tuple(keys)


def _jwt(value: object, tiers: Mapping[str, int], source: str, relative_to: str | None) -> JwtRule:
    table = _table(value, "gateway.jwt", source)
    _no_unknown(table, ("hs256_secret", "jwks_file", "jwks", "issuer", "audience", "role_claim", "tier",
                        "leeway_s"), "gateway.jwt", source)
    secret = table.get("hs256_secret")
    if secret is not None and (not isinstance(secret, str) or len(secret.encode()) < MIN_HS256_SECRET_BYTES):
        raise ConfigError(f"{source}: gateway.jwt.hs256_secret must be a string of at least "
                          f"{MIN_HS256_SECRET_BYTES} bytes (RFC 7518 §3.2)")
    jwks_file = table.get("jwks_file")
    jwks = table.get("jwks")
    if jwks_file is not None:
        jwks_file = _string(jwks_file, "gateway.jwt.jwks_file", source)
        if jwks is None:  # inline jwks wins: a worker gets the set its supervisor read
            jwks = _read_jwks(jwks_file, source, relative_to)
    if jwks is not None:
        if not isinstance(jwks, Mapping):
            raise ConfigError(f"{source}: gateway.jwt.jwks must be a JWK Set table")
        try:
            load_jwks(jwks)
        except ValueError as exc:
            where = f"gateway.jwt.jwks_file {jwks_file}" if jwks_file else "gateway.jwt.jwks"
            raise ConfigError(f"{source}: {where}: {exc}") from None
    if secret is None and jwks is None:
        raise ConfigError(f"{source}: gateway.jwt needs hs256_secret (HS256) or jwks_file (RS256), or both")
    optional = {name: table.get(name) for name in ("issuer", "audience")}
    for name, text in optional.items():
        if text is not None:
            _string(text, f"gateway.jwt.{name}", source)
    role_claim = _string(table.get("role_claim", "role"), "gateway.jwt.role_claim", source)
    if "tier" not in table:
        raise ConfigError(f"{source}: gateway.jwt.tier is missing: the rate-limit tier of token holders "
                          f"(known: {', '.join(sorted(tiers))})")
    tier = _tier_name(table["tier"], tiers, "gateway.jwt.tier", source)
    leeway = table.get("leeway_s", 0)
    if isinstance(leeway, bool) or not isinstance(leeway, (int, float)) or not 0 <= leeway <= MAX_LEEWAY_S:
        raise ConfigError(f"{source}: gateway.jwt.leeway_s must be between 0 and {MAX_LEEWAY_S} seconds")
    return JwtRule(tier=tier, hs256_secret=secret, jwks=dict(jwks) if jwks is not None else None,
                   jwks_file=jwks_file, issuer=optional["issuer"], audience=optional["audience"],
                   role_claim=role_claim, leeway_s=float(leeway))


def _read_jwks(path: str, source: str, relative_to: str | None) -> Any:
    if relative_to is not None and not os.path.isabs(path):
        path = os.path.join(os.path.dirname(relative_to), path)
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except OSError as exc:
        raise ConfigError(f"{source}: gateway.jwt.jwks_file {path}: cannot read it: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{source}: gateway.jwt.jwks_file {path}: not JSON: {exc}") from None
