"""The API gateway's decisions: routes, API keys, JWTs, roles, GCRA rate limits, body sizes. Pure.

Theory of operation. ``Gateway`` is built once from a ``GatewayConfig`` (``gateway_config.py``
parses the ``[gateway]`` TOML table into it) and answers three questions for the adapter in
``exchange.py``, with the clock passed in as ``now_ns`` (integer nanoseconds since the epoch):

1. ``route_for(target)``: which route, if any, covers this request target. Routes are path
   prefixes matched on segment boundaries, longest first. A target that is not in canonical
   form (percent-escapes, dot segments, ``//``, absolute-form) is matched on the path the
   origin will route it to as well, so ``/%61pi/`` cannot walk past an ``/api/`` route.
2. ``authenticate(route, method, authorization, client)``: who is asking, or a ``Deny``.
   ``Authorization: Bearer <credential>``; a credential with exactly two dots is a JWT (RFC
   7519), anything else an API key, looked up by its SHA-256 (only hashes are kept, so a
   leaked config leaks no key). Anonymous GET/HEAD is allowed on ``public`` routes only (and
   POST where the route says ``post_reads``: a query-only GraphQL endpoint); every other
   request needs a role of at least the route's ``min_role`` (else 403).
3. ``admit(identity, now_ns)``: the rate limit, GCRA (the generic cell rate algorithm of ATM
   networks, as in redis-cell and Stripe's limiter). A bucket per API key, per JWT subject
   and, for anonymous requests, per client IP (IPv6 per /64, what one host usually holds).

The rate limiter (GCRA, exact under concurrency) is ``ratelimit.py``.

The hit path asks for every API request, so answers are remembered where that is exact, in
bounded memos: routes per target; verified credentials per Authorization value (an API key
while ``keys`` holds it, a JWT with nbf/exp checked against ``now_ns`` on every use; denials
never, so bad credentials cannot push good ones out); anonymous identities per client address.
``charge`` is ``admit`` without the Allow, ``charge_counts`` the same as numbers.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import unquote_to_bytes

import jwt

from edgeproxy.headers import normalise_field_value
from edgeproxy.ratelimit import (  # noqa: F401  (re-exported: the gateway's public names)
    INTERVAL,
    MAX_PER_MINUTE,
    MIN_PER_MINUTE,
    NS,
    SWEEP_MIN_BUCKETS,
    RateLimit,
    RateLimiter,
    _limit_field,
    _reset_field,
)

# Verified bearer tokens (RFC 6750: API keys and JWTs) remembered, at most MAX_CREDENTIAL_BYTES each
# (~32 MiB in all): RS256 verification costs ~50 µs, hashing a key ~0.4 µs, a memo hit ~0.1 µs.
TOKEN_CACHE_SIZE = 4096
# Targets whose route is remembered, and the longest remembered (API targets are mostly under 100
# bytes; a longer one, say a GraphQL query, is matched each time, in ~0.5 µs).
ROUTE_MEMO_SIZE = 4096
ROUTE_MEMO_TARGET_BYTES = 512
# Client addresses whose anonymous identity is remembered (the per-IP buckets of public routes).
ANONYMOUS_MEMO_SIZE = 4096
MAX_CREDENTIAL_BYTES = 8192  # nginx's default large_client_header_buffers line is 8 KiB
MAX_SUBJECT_CHARS = 256
MIN_HS256_SECRET_BYTES = 32  # RFC 7518 §3.2: a key at least as long as the hash output
MB = 1_000_000  # seed 000 says MB: decimal, so 10,000,001 bytes is over it (not nginx's MiB "m")
JSON_BODY_MAX_BYTES = 10 * MB  # seed 000: "Payload Limit 10 MB (JSON)"
MEDIA_BODY_MAX_BYTES = 50 * MB  # seed 000: "50 MB (Media uploads)"
MEDIA_TYPES = (b"multipart/form-data", b"image/", b"video/", b"audio/", b"application/octet-stream",
               b"application/pdf")
REALM = b'Bearer realm="flowcms"'
IDENTITY_PREFIX = b"x-flowcms-"  # request fields only the gateway may set; clients' copies are dropped
READ_METHODS = frozenset({b"GET", b"HEAD"})
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e][\x20-\x7e]*")
_JWS = jwt.PyJWS()


class Role(enum.IntEnum):
    VIEWER = 1
    EDITOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


ROLES: dict[str, Role] = {role.label: role for role in Role}


# -- configuration values (gateway_config.py builds them; dataclasses.asdict gives the TOML shape back)

@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRule:
    prefix: str  # a canonical path prefix, matched on segment boundaries ("/api" covers "/api/x", not "/apix")
    public: bool = False  # anonymous GET/HEAD allowed (rate-limited per client IP)
    min_role: str = "viewer"  # what every other request needs
    post_reads: bool = False  # a POST here is a read too (a query-only GraphQL endpoint: clients POST queries)
    methods: tuple[str, ...] | None = None  # what the route serves: any other method is a 405 (None: any)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRule:
    id: str
    hash: str  # sha256 hex of the key
    role: str
    tier: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JwtRule:
    tier: str  # the rate-limit tier of every JWT subject
    hs256_secret: str | None = field(default=None, repr=False)
    jwks: dict[str, Any] | None = None  # a JWK Set (RFC 7517 §5) of RS256 public keys, by kid
    jwks_file: str | None = None  # where ``jwks`` was read from (for messages)
    issuer: str | None = None
    audience: str | None = None
    role_claim: str = "role"
    leeway_s: float = 0.0  # clock skew allowed on exp and nbf


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    routes: tuple[RouteRule, ...]
    tiers: dict[str, int]  # name → requests per minute
    keys: tuple[KeyRule, ...] = ()
    jwt: JwtRule | None = None
    anonymous_tier: str | None = None  # per-IP limit of anonymous requests on public routes


# -- decisions -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Route:
    prefix: bytes  # without a trailing slash; b"" is the root route
    public: bool
    min_role: Role
    graphql: bool  # denials are answered as GraphQL errors, not JSON:API
    read_methods: frozenset[bytes] = READ_METHODS  # what a public route opens to anonymous clients
    methods: frozenset[bytes] | None = None  # what the route serves (else 405 with ``allow``); None: any
    allow: bytes = b""  # the Allow field of that 405


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str | None  # None: anonymous
    role: Role | None
    key_id: str | None
    bucket: str  # the rate-limit bucket: "key:<id>", "jwt:<sub>" or "ip:<address>"
    per_minute: int
    fields: tuple[tuple[bytes, bytes], ...]  # the X-Flowcms-* request fields the origin sees
    # The same fields by name (the first line of a name counts), each value as Vary matching sees it
    # (``headers.normalise_field_value``): the hit lanes' ``variants.select`` reads them instead of the
    # client's X-Flowcms-* fields. Made once per identity, not once per request.
    vary_values: dict[bytes, bytes] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        by_name: dict[bytes, bytes] = {}
        for name, value in self.fields:
            by_name.setdefault(name, value)
        object.__setattr__(self, "vary_values", {n: normalise_field_value(v) for n, v in by_name.items()})


@dataclass(frozen=True, slots=True)
class Allow:
    identity: Identity
    headers: tuple[tuple[bytes, bytes], ...]  # rate-limit fields for the answer


@dataclass(frozen=True, slots=True)
class Deny:
    status: int
    code: str  # seed 001's error codes
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


Decision = Allow | Deny


@dataclass(frozen=True, slots=True)
class GatewayStatistics:
    buckets: int
    allowed: int
    limited: int
    unauthenticated: int
    forbidden: int


class _Verified(NamedTuple):
    """A credential that verified: who it names, and the time window of a JWT (RFC 7519 §4.1.4-5)."""

    identity: Identity
    nbf: float
    exp: float
    key_hash: str | None  # an API key's hash: it stays valid while ``Gateway.keys`` holds it


#: RFC 6750 §3.1: a valid credential whose privileges are too low.
_INSUFFICIENT = ((b"www-authenticate", REALM + b', error="insufficient_scope"'),)


def _unauthenticated(message: str, *, error: str | None = "invalid_token") -> Deny:
    # RFC 6750 §3: no error code when the request carried no credentials at all.
    challenge = REALM if error is None else b'%s, error="%s"' % (REALM, error.encode())
    return Deny(401, "UNAUTHENTICATED", message, ((b"www-authenticate", challenge),))


# -- paths ------------------------------------------------------------------------------------------

def is_disguised(target: bytes) -> bool:
    """May the origin route ``target`` to another path than its bytes say (escapes, dots, ``//``, absolute-form)?"""
    path = target.split(b"?", 1)[0]
    # bytes.find, not ``in``: ``in`` goes through the buffer protocol and costs twice as much
    return path[:1] != b"/" or path.find(b"%") >= 0 or path.find(b"/.") >= 0 or path.find(b"//") >= 0


def canonical_path(target: bytes) -> bytes:
    """The path an origin routes ``target`` to: absolute-form reduced to its path (RFC 9112
    §3.2.2), escapes decoded once, dot segments removed (RFC 3986 §5.2.4), runs of ``/`` merged."""
    path = target.split(b"?", 1)[0].split(b"#", 1)[0]
    if not path.startswith(b"/"):
        scheme = path.find(b"://")
        if scheme >= 0:
            slash = path.find(b"/", scheme + 3)
            path = path[slash:] if slash >= 0 else b"/"
        else:
            path = b"/" + path
    segments: list[bytes] = []
    for segment in unquote_to_bytes(path).split(b"/"):
        if segment == b"..":
            if segments:
                segments.pop()
        elif segment and segment != b".":
            segments.append(segment)
    return b"/" + b"/".join(segments)


def client_bucket(client: str | None) -> str:
    """The anonymous rate-limit bucket of a client address: IPv4 as is, IPv6 per /64."""
    if not client:
        return "ip:?"  # the adapter did not say who is connected: all such requests share one bucket
    if ":" not in client:
        return "ip:" + client
    try:
        address = ipaddress.IPv6Address(client.split("%", 1)[0])
    except ValueError:
        return "ip:" + client
    if address.ipv4_mapped is not None:
        return f"ip:{address.ipv4_mapped}"
    return f"ip:{ipaddress.IPv6Network((address, 64), strict=False)}"


# -- JWT keys -----------------------------------------------------------------------------------------

def load_jwks(data: Mapping[str, Any]) -> dict[str, Any]:
    """kid → RS256 public key from a JWK Set (RFC 7517 §5); ValueError says what is wrong."""
    keys = data.get("keys")
    if not isinstance(keys, list) or not keys:
        raise ValueError('expected a JWK Set: {"keys": [...]} with at least one key')
    found: dict[str, Any] = {}
    for n, key in enumerate(keys):
        if not isinstance(key, dict):
            raise ValueError(f"keys[{n}] is not an object")
        kid = key.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError(f"keys[{n}] has no kid")
        if kid in found:
            raise ValueError(f"keys[{n}]: kid {kid!r} appears twice")
        if key.get("kty") != "RSA" or key.get("alg", "RS256") != "RS256" or key.get("use", "sig") != "sig":
            raise ValueError(f"keys[{n}] ({kid}): only RSA signing keys for RS256 are accepted")
        if "d" in key:
            raise ValueError(f"keys[{n}] ({kid}) is a private key: publish only the public part")
        try:
            found[kid] = jwt.PyJWK(key, algorithm="RS256").key
        except jwt.PyJWTError as exc:
            raise ValueError(f"keys[{n}] ({kid}): {exc}") from None
    return found


def hash_key(key: str | bytes) -> str:
    """How API keys are stored: the SHA-256 of the key, in hex."""
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


def _identity_fields(subject: str, role: Role | None, key_id: str | None) -> tuple[tuple[bytes, bytes], ...]:
    fields = [(b"x-flowcms-subject", subject.encode("ascii"))]
    if role is not None:
        fields.append((b"x-flowcms-role", role.label.encode()))
    if key_id is not None:
        fields.append((b"x-flowcms-key-id", key_id.encode("ascii")))
    return tuple(fields)


def _role_of(value: object) -> Role | None:
    """A role claim: one name, or a list of names (the highest counts); unknown names count for nothing."""
    names = value if isinstance(value, list) else [value]
    roles = [ROLES[n.lower()] for n in names if isinstance(n, str) and n.lower() in ROLES]
    return max(roles) if roles else None


# -- the gateway ---------------------------------------------------------------------------------------

class Gateway:
    """Routes, credentials and rate limits of one process; ``decide`` is the whole check."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        routes = [Route(r.prefix.rstrip("/").encode(), r.public, ROLES[r.min_role], r.prefix.startswith("/graphql"),
                        READ_METHODS | {b"POST"} if r.post_reads else READ_METHODS,
                        None if r.methods is None else frozenset(m.encode() for m in r.methods),
                        ", ".join(r.methods or ()).encode()) for r in config.routes]
        self.routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)
        self._by_prefix = [(r.prefix, len(r.prefix), r) for r in self.routes]
        # The adapter's one check per request: can this target be under a route at all?
        self.prefixes = tuple(r.prefix or b"/" for r in self.routes)
        self.keys = {k.hash: Identity(f"key:{k.id}", ROLES[k.role], k.id, f"key:{k.id}", config.tiers[k.tier],
                                      _identity_fields(f"key:{k.id}", ROLES[k.role], k.id)) for k in config.keys}
        rule = config.jwt
        self.jwt = rule
        self.hs256_key = rule.hs256_secret.encode() if rule is not None and rule.hs256_secret else None
        self.rs256_keys = load_jwks(rule.jwks) if rule is not None and rule.jwks else {}
        self.jwt_per_minute = config.tiers[rule.tier] if rule is not None else 0
        self.anonymous_per_minute = config.tiers[config.anonymous_tier] if config.anonymous_tier else None
        self.limiter = RateLimiter()
        self._tokens: dict[bytes, _Verified] = {}  # Authorization value → what it verified as
        self._routes: dict[bytes, tuple[Route | None]] = {}  # target → its route (route_for's memo)
        self._anonymous: dict[str | None, Identity] = {}  # client address → anonymous identity
        self._allowed = self._limited = self._unauthenticated = self._forbidden = 0

    def __repr__(self) -> str:
        return f"<Gateway [{len(self.routes)} routes, {len(self.keys)} keys, {len(self.limiter)} buckets]>"

    def statistics(self) -> GatewayStatistics:
        return GatewayStatistics(len(self.limiter), self._allowed, self._limited, self._unauthenticated,
                                 self._forbidden)

    # -- routes
    def route_for(self, target: bytes) -> Route | None:
        """The route covering ``target`` (longest prefix), else None; see ``canonical_path``."""
        known = self._routes.get(target)
        if known is not None:
            return known[0]
        path = target.split(b"?", 1)[0]
        if path[:1] != b"/" or path.find(b"%") >= 0 or path.find(b"/.") >= 0 or path.find(b"//") >= 0:
            # is_disguised, inlined
            route = self._match(canonical_path(target)) or self._match(path)
        else:
            route = self._match(path)
        if len(target) <= ROUTE_MEMO_TARGET_BYTES:
            if len(self._routes) >= ROUTE_MEMO_SIZE:
                self._routes.clear()  # a scan of distinct targets: start again (each costs one match)
            self._routes[target] = (route,)
        return route

    def _match(self, path: bytes) -> Route | None:
        for prefix, size, route in self._by_prefix:
            if path.startswith(prefix) and (len(path) == size or path[size] == 0x2F):  # 0x2F: "/"
                return route
        return None

    # -- the whole check
    def decide(self, route: Route, method: bytes, authorization: bytes | None, client: str | None,
               now_ns: int) -> Decision:
        """Authenticate, authorize, then rate-limit one request under ``route``."""
        identity = self.authenticate(route, method, authorization, client, now_ns)
        if type(identity) is Deny:
            return identity
        assert isinstance(identity, Identity)
        return self.admit(identity, now_ns)

    def authenticate(self, route: Route, method: bytes, authorization: bytes | None, client: str | None,
                     now_ns: int) -> Identity | Deny:
        """Who is asking and may they use ``route`` (405, 401, 403); no rate limit is charged.

        A method the route does not serve is a 405 before credentials are asked for: a wrong
        method is the request's fault whoever sends it (seed 002), and it costs no one's limit."""
        if route.methods is not None and method not in route.methods:
            return Deny(405, "VALIDATION_ERROR" if route.graphql else "METHOD_NOT_ALLOWED",
                        f"{method.decode('latin-1')} is not allowed here; allowed: {route.allow.decode()}",
                        ((b"allow", route.allow),))
        reading = method in route.read_methods
        if not authorization:
            if route.public and reading and self.anonymous_per_minute is not None:
                return self._anonymous_identity(client, self.anonymous_per_minute)
            self._unauthenticated += 1
            if route.public and route.graphql and method == b"POST":
                return _unauthenticated("a POST here needs Authorization: Bearer <API key or token> (the route is "
                                        "public for GET and HEAD; post_reads = true opens POST, for a GraphQL "
                                        "endpoint whose POSTs are queries)", error=None)
            return _unauthenticated("this API needs Authorization: Bearer <API key or token>", error=None)
        known = self._tokens.get(authorization)
        if known is not None and known.key_hash is not None and self.keys.get(known.key_hash) is known.identity:
            found: Identity | Deny = known.identity  # a remembered API key still configured (_credential, inlined)
        else:
            found = self._credential(authorization, now_ns)
        if type(found) is Deny:
            self._unauthenticated += 1
            return self._charge_failure(found, client, now_ns)
        assert isinstance(found, Identity)
        if not (route.public and reading) and (found.role is None or found.role < route.min_role):
            self._forbidden += 1
            has = found.role.label if found.role is not None else "no role"
            return Deny(403, "FORBIDDEN", f"{method.decode('latin-1')} here needs the {route.min_role.label} "
                                          f"role; the credential has {has}", _INSUFFICIENT)
        return found

    def remembered_reader(self, target: bytes, method: bytes, authorization: bytes) -> Identity | None:
        """``route_for`` and ``authenticate`` in one call, for the hit lanes' common case: the target's
        route is remembered, and ``authorization`` is a remembered API key, still configured, that the
        route lets use ``method``. None for anything else: then ``route_for`` and ``authenticate``
        decide, as they always do (JWTs, anonymous reads, denials, a first request).

        Why: an API hit through the gateway cost ~3 µs more than a static one through wrk (bench/api.md);
        one call instead of two, and only the checks that can pass, is a measurable part of that.
        """
        known_route = self._routes.get(target)
        if known_route is None:
            return None
        route = known_route[0]
        known = self._tokens.get(authorization)
        if route is None or known is None or known.key_hash is None:  # no key_hash: a JWT (its exp is checked)
            return None
        identity = known.identity
        if self.keys.get(known.key_hash) is not identity or (route.methods is not None and method not in route.methods):
            return None
        if (route.public and method in route.read_methods) or (identity.role is not None
                                                              and identity.role >= route.min_role):
            return identity
        return None

    def _charge_failure(self, deny: Deny, client: str | None, now_ns: int) -> Deny:
        """A credential that failed costs its client address a request of the anonymous tier, so
        guessing keys or tokens from one address is throttled like anonymous reading is: past the
        limit the answer is the 429 (nothing is said about the credential any more)."""
        per_minute = self.anonymous_per_minute
        if per_minute is None:
            return deny
        bucket = self._anonymous_identity(client, per_minute).bucket
        if self.limiter.take(bucket, per_minute, now_ns) is not None:
            return deny  # charged; not counted as admitted: nothing was
        limit = self.limiter.acquire(bucket, per_minute, now_ns)
        self._limited += 1
        return Deny(429, "RATE_LIMITED", f"rate limit of {limit.limit} requests per minute exceeded for this "
                                         f"address; retry in {limit.retry_after_s} s", limit.fields)

    def admit(self, identity: Identity, now_ns: int) -> Decision:
        """Charge one request to the identity's bucket: Allow with the X-RateLimit fields, or a 429."""
        charged = self.charge(identity, now_ns)
        return charged if isinstance(charged, Deny) else Allow(identity, charged)

    def charge(self, identity: Identity, now_ns: int) -> tuple[tuple[bytes, bytes], ...] | Deny:
        """``admit`` for the hit path, which needs only the X-RateLimit fields (or the 429)."""
        taken = self.charge_counts(identity, now_ns)
        if type(taken) is Deny:
            return taken
        remaining, reset_s = taken
        return (_limit_field(identity.per_minute), (b"x-ratelimit-remaining", b"%d" % remaining),
                _reset_field(reset_s))

    def charge_counts(self, identity: Identity, now_ns: int) -> tuple[int, int] | Deny:
        """``charge`` as numbers, (remaining, reset_s), for a caller that formats the X-RateLimit
        fields itself (the HTTP/1.1 hit lane, ``h1lane.py``); the limit is ``identity.per_minute``."""
        taken = self.limiter.take(identity.bucket, identity.per_minute, now_ns)
        if taken is None:
            limit = self.limiter.acquire(identity.bucket, identity.per_minute, now_ns)  # denied again: when?
            self._limited += 1
            return Deny(429, "RATE_LIMITED", f"rate limit of {limit.limit} requests per minute exceeded; "
                                             f"retry in {limit.retry_after_s} s", limit.fields)
        self._allowed += 1
        return taken

    def _anonymous_identity(self, client: str | None, per_minute: int) -> Identity:
        """The anonymous identity of a client address, remembered: the same address always maps to
        the same bucket (``client_bucket`` is a pure function), and building it costs ~1 µs."""
        known = self._anonymous.get(client)
        if known is None:
            known = Identity(None, None, None, client_bucket(client), per_minute, ())
            if len(self._anonymous) >= ANONYMOUS_MEMO_SIZE:
                self._anonymous.clear()  # a scan of many addresses: start again (each costs one build)
            self._anonymous[client] = known
        return known

    # -- credentials
    def _credential(self, authorization: bytes, now_ns: int) -> Identity | Deny:
        """Who a Bearer credential says is asking, at ``now_ns``; remembered per Authorization value
        once verified (see the module docstring), with the time and revocation checks on every use."""
        known = self._tokens.get(authorization)
        if known is None:
            verified = self._verify_credential(authorization)
            if type(verified) is Deny:
                return verified
            assert isinstance(verified, _Verified)
            known = verified
            if len(self._tokens) >= TOKEN_CACHE_SIZE:
                del self._tokens[next(iter(self._tokens))]  # the oldest
            self._tokens[authorization] = known
        identity = known.identity
        if known.key_hash is not None:
            if self.keys.get(known.key_hash) is not identity:  # no longer configured: forget it
                del self._tokens[authorization]
                return _unauthenticated("the API key is not valid")
            return identity
        now = now_ns / NS
        leeway = self.jwt.leeway_s if self.jwt is not None else 0.0
        if now >= known.exp + leeway:
            return _unauthenticated("the token has expired")  # RFC 7519 §4.1.4
        if now < known.nbf - leeway:
            return _unauthenticated("the token is not valid yet")  # RFC 7519 §4.1.5
        return identity

    def _verify_credential(self, authorization: bytes) -> _Verified | Deny:
        """Everything about an Authorization value that does not change with time: its form, and
        an API key's hash lookup or a JWT's signature and claims."""
        scheme, _, credential = authorization.partition(b" ")
        credential = credential.strip()
        if scheme.lower() != b"bearer":  # RFC 6750 §3: an unsupported method gets no error code
            return _unauthenticated("use Authorization: Bearer <API key or token>", error=None)
        if not credential or len(credential) > MAX_CREDENTIAL_BYTES:
            return _unauthenticated("use Authorization: Bearer <API key or token>", error="invalid_request")
        if credential.count(b".") == 2:
            return self._verify_signature_and_claims(credential)
        digest = hash_key(credential)
        found = self.keys.get(digest)
        if found is None:
            return _unauthenticated("the API key is not valid")
        return _Verified(found, float("-inf"), float("inf"), digest)

    # -- JWTs

    def _verify_signature_and_claims(self, token: bytes) -> _Verified | Deny:
        """Signature, iss, aud, sub and role: everything about a token that does not change with time."""
        rule = self.jwt
        if rule is None:
            return _unauthenticated("tokens are not accepted here: use an API key")
        try:
            header = _JWS.get_unverified_header(token)
        except jwt.PyJWTError:
            return _unauthenticated("the token is malformed")
        alg = header.get("alg")
        if alg == "HS256" and self.hs256_key is not None:
            key: Any = self.hs256_key
        elif alg == "RS256" and self.rs256_keys:
            kid = header.get("kid")
            key = self.rs256_keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                return _unauthenticated(f"the token's key id {kid!r} is not known")
        else:  # "none", and any algorithm we hold no key for (no HS256 with an RSA public key)
            return _unauthenticated(f"the token algorithm {alg!r} is not accepted")
        try:
            payload = json.loads(_JWS.decode_complete(token, key, algorithms=[alg])["payload"])
        except jwt.InvalidSignatureError:
            return _unauthenticated("the token signature is not valid")
        except (jwt.PyJWTError, ValueError):
            return _unauthenticated("the token is malformed")
        if not isinstance(payload, dict):
            return _unauthenticated("the token's claims are not a JSON object")
        return self._check_claims(payload, rule)

    def _check_claims(self, claims: dict[str, Any], rule: JwtRule) -> _Verified | Deny:
        exp = _numeric_date(claims.get("exp"))
        nbf = float("-inf") if "nbf" not in claims else _numeric_date(claims["nbf"])  # null is no NumericDate
        if exp is None:
            return _unauthenticated("the token has no exp claim (a finite NumericDate)")
        if nbf is None:
            return _unauthenticated("the token's nbf claim is not a number")
        if rule.issuer is not None and claims.get("iss") != rule.issuer:
            return _unauthenticated("the token was issued by someone else")  # RFC 7519 §4.1.1
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [] if aud is None else [aud]
        if (rule.audience is None and audiences) or (rule.audience is not None and rule.audience not in audiences):
            return _unauthenticated("the token is meant for another audience")  # RFC 7519 §4.1.3
        sub = claims.get("sub")
        if not isinstance(sub, str) or len(sub) > MAX_SUBJECT_CHARS or not _VISIBLE_ASCII.fullmatch(sub):
            return _unauthenticated(f"the token's sub claim must be 1 to {MAX_SUBJECT_CHARS} printable ASCII "
                                    "characters")
        role = _role_of(claims.get(rule.role_claim))
        identity = Identity(sub, role, None, f"jwt:{sub}", self.jwt_per_minute, _identity_fields(sub, role, None))
        return _Verified(identity, nbf, exp, None)


def _numeric_date(value: object) -> float | None:
    """A NumericDate (RFC 7519 §2: a JSON number) as a float; None for anything else. Python's
    JSON reader also takes NaN, Infinity and 1e400, which compare false or never expire: refused."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer past float's range
        return None
    return number if math.isfinite(number) else None


# -- body sizes (the enforcement point belongs to the connection code, before the body is read)

def max_body_bytes(content_type: bytes | None) -> int:
    """The largest request body accepted for a media type: media uploads 50 MB, all else 10 MB."""
    media_type = (content_type or b"").split(b";", 1)[0].strip().lower()
    return MEDIA_BODY_MAX_BYTES if media_type.startswith(MEDIA_TYPES) else JSON_BODY_MAX_BYTES


def check_body_size(method: bytes, path: bytes, content_type: bytes | None, content_length: int | None) -> Deny | None:
    """413 when a declared Content-Length is over ``max_body_bytes``; None when it fits or is not declared
    (a chunked body must then be counted while it is read, against the same limit)."""
    limit = max_body_bytes(content_type)
    if content_length is None or content_length <= limit:
        return None
    kind = "media upload" if limit == MEDIA_BODY_MAX_BYTES else "JSON"
    return Deny(413, "PAYLOAD_TOO_LARGE",
                f"{method.decode('latin-1')} {path.decode('latin-1')}: a body of {content_length} bytes is over "
                f"the {limit // MB} MB ({limit:,} bytes) limit for {kind} bodies")
