"""The API gateway's pure decisions: config, routes, API keys, JWTs, roles, GCRA, body sizes."""

from __future__ import annotations

import ast
import base64
import dataclasses
import hashlib
import hmac
import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeproxy.config import ProxyConfig, apply, load_toml
from edgeproxy.errors import ConfigError
from edgeproxy.gateway import (
    INTERVAL,
    JSON_BODY_MAX_BYTES,
    MEDIA_BODY_MAX_BYTES,
    NS,
    Allow,
    Deny,
    Gateway,
    Identity,
    RateLimiter,
    Role,
    Route,
    canonical_path,
    check_body_size,
    client_bucket,
    hash_key,
    is_disguised,
    max_body_bytes,
)
from edgeproxy.gateway_config import parse_gateway

SECRET = "an-hs256-secret-of-at-least-32-bytes!"
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
NOW_NS = NOW * NS
VIEWER_KEY = "fc_live_viewer_0123456789"
EDITOR_KEY = "fc_live_editor_0123456789"
ADMIN_KEY = "fc_live_admin_01234567890"


# -- helpers ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**data, "kid": kid, "use": "sig", "alg": "RS256"}


def table(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "anonymous_tier": "anonymous",
        "tiers": {"anonymous": 100, "starter": 1000, "enterprise": 10000},
        "routes": [
            {"prefix": "/api/v3/", "public": True, "min_role": "viewer"},
            {"prefix": "/api/v3/admin", "min_role": "admin"},
            {"prefix": "/api/v3/drafts", "public": True, "min_role": "editor"},
            {"prefix": "/graphql", "min_role": "viewer"},
        ],
        "keys": [
            {"id": "viewer", "key": VIEWER_KEY, "role": "viewer", "tier": "starter"},
            {"id": "editor", "hash": hash_key(EDITOR_KEY).upper(), "role": "editor", "tier": "starter"},
            {"id": "admin", "key": ADMIN_KEY, "role": "admin", "tier": "enterprise"},
        ],
        "jwt": {"hs256_secret": SECRET, "issuer": "https://auth.flowcms.test", "audience": "flowcms",
                "tier": "starter"},
    }
    base.update(overrides)
    return base


def gateway(**overrides: Any) -> Gateway:
    return Gateway(parse_gateway(table(**overrides), source="test.toml"))


def claims(**overrides: Any) -> dict[str, Any]:
    base = {"sub": "user-42", "role": "editor", "iss": "https://auth.flowcms.test", "aud": "flowcms",
            "iat": NOW - 10, "exp": NOW + 3600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(**overrides: Any) -> bytes:
    return jwt.encode(claims(**overrides), SECRET, algorithm="HS256").encode()


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def bearer(credential: str | bytes) -> bytes:
    return b"Bearer " + (credential.encode() if isinstance(credential, str) else credential)


def route(gw: Gateway, path: bytes) -> Route:
    found = gw.route_for(path)
    assert found is not None
    return found


def auth(gw: Gateway, path: bytes, authorization: bytes | None, *, method: bytes = b"GET",
         client: str | None = "192.0.2.1", now_ns: int = NOW_NS) -> Identity | Deny:
    return gw.authenticate(route(gw, path), method, authorization, client, now_ns)


def denied(result: object, status: int, code: str, detail: str = "") -> Deny:
    assert isinstance(result, Deny), result
    assert (result.status, result.code) == (status, code)
    assert detail in result.message
    return result


def identity(result: object) -> Identity:
    assert isinstance(result, Identity), result
    return result


# -- configuration -------------------------------------------------------------------------------

def test_config_parses_and_hashes_plain_keys() -> None:
    """A plain ``key`` is kept only as its sha256; a given ``hash`` is normalised to lowercase hex."""
    config = parse_gateway(table(), source="test.toml")
    hashes = {k.id: k.hash for k in config.keys}
    assert hashes == {"viewer": hashlib.sha256(VIEWER_KEY.encode()).hexdigest(), "editor": hash_key(EDITOR_KEY),
                      "admin": hash_key(ADMIN_KEY)}
    assert VIEWER_KEY not in repr(config)
    assert VIEWER_KEY not in json.dumps(dataclasses.asdict(config))
    assert SECRET not in repr(config)  # the HS256 secret stays out of logs
    assert config.tiers == {"anonymous": 100, "starter": 1000, "enterprise": 10000}


def test_config_asdict_round_trips_like_a_worker_gets_it(rsa_key: rsa.RSAPrivateKey) -> None:
    """``--workers`` passes ProxyConfig as JSON of ``dataclasses.asdict``; the gateway comes back equal."""
    jwt_table = {"jwks": {"keys": [public_jwk(rsa_key, "k1")]}, "tier": "starter", "role_claim": "roles"}
    config = apply(ProxyConfig(), {"gateway": table(jwt=jwt_table)}, source="test.toml")
    wire = json.loads(json.dumps(dataclasses.asdict(config)))
    again = ProxyConfig(**wire)
    assert again == config
    assert again.gateway is not None
    assert again.gateway.jwt is not None
    assert again.gateway.jwt.role_claim == "roles"


def test_config_reads_jwks_file_relative_to_the_toml(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "jwks.json").write_text(json.dumps({"keys": [public_jwk(rsa_key, "k1")]}))
    (tmp_path / "edge.toml").write_text("""
origin = "http://127.0.0.1:9000"
[gateway]
anonymous_tier = "free"
tiers = { free = 100, pro = 5000 }
[[gateway.routes]]
prefix = "/api/v3"
public = true
[[gateway.keys]]
id = "ci"
key = "fc_live_0123456789abcdef"
role = "admin"
tier = "pro"
[gateway.jwt]
jwks_file = "keys/jwks.json"
tier = "pro"
""")
    source = str(tmp_path / "edge.toml")
    config = apply(ProxyConfig(), load_toml(source), source=source)
    assert config.origin_port == 9000
    assert config.gateway is not None
    assert config.gateway.jwt is not None
    assert config.gateway.jwt.jwks == {"keys": [public_jwk(rsa_key, "k1")]}
    assert config.gateway.routes[0].min_role == "viewer"  # the default
    assert ProxyConfig().gateway is None


@pytest.mark.parametrize("limit", [100, 10000])
def test_tier_bounds_accept_the_seed_range(limit: int) -> None:
    """Seed 000: rate limits are configurable from 100 to 10,000 requests per minute."""
    assert parse_gateway(table(tiers={"anonymous": limit, "starter": limit, "enterprise": limit}),
                         source="x").tiers["starter"] == limit


@pytest.mark.parametrize("limit", [99, 10001, 0, -5, 150.0, True, "1000"])
def test_tier_bounds_reject_everything_else(limit: object) -> None:
    with pytest.raises(ConfigError, match=r"x: gateway.tiers.starter must be a whole number of requests per "
                                          r"minute between 100 and 10000"):
        parse_gateway(table(tiers={"anonymous": 100, "starter": limit, "enterprise": 100}), source="x")


def _key(**fields: Any) -> dict[str, Any]:
    return {"id": "k", "key": "0123456789abcdefXYZ", "role": "viewer", "tier": "starter", **fields}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"extra": 1}, r"unknown setting gateway.extra"),
    ({"tiers": None}, r"gateway.tiers is missing"),
    ({"tiers": {}}, r"gateway.tiers must name at least one tier"),
    ({"tiers": {"bad name": 100}}, r"'bad name' is not a valid tier name"),
    ({"routes": []}, r"gateway.routes must list at least one route"),
    ({"routes": [{"prefix": "api"}]}, r"gateway.routes\[0\].prefix 'api' must be a canonical path"),
    ({"routes": [{"prefix": "/%61pi"}]}, r"must be a canonical path"),
    ({"routes": [{"prefix": "/a/../b"}]}, r"must be a canonical path"),
    ({"routes": [{"prefix": "/a//b"}]}, r"must be a canonical path"),
    ({"routes": [{"prefix": "/a?x=1"}]}, r"must be a canonical path"),
    ({"routes": [{"prefix": "/a"}, {"prefix": "/a/"}]}, r"gateway.routes\[1\].prefix '/a/' is listed twice"),
    ({"routes": [{"prefix": "/a", "public": "yes"}]}, r"gateway.routes\[0\].public must be true or false"),
    ({"routes": [{"prefix": "/a", "min_role": "owner"}]},
     r"gateway.routes\[0\].min_role must be one of viewer, editor, admin, not 'owner'"),
    ({"routes": [{"prefix": "/a", "verbs": ["GET"]}]}, r"unknown setting gateway.routes\[0\].verbs"),
    ({"anonymous_tier": None}, r"gateway.anonymous_tier is needed: route '/api/v3/' is public"),
    ({"anonymous_tier": "gold"}, r"gateway.anonymous_tier 'gold' is not a tier \(known: anonymous, enterprise"),
    ({"keys": {"id": "x"}}, r"gateway.keys must be a list of tables"),
    ({"keys": [_key(id="a b")]}, r"gateway.keys\[0\].id must be 1 to 64 letters"),
    ({"keys": [_key(), _key(key="another-key-0123456789")]}, r"gateway.keys\[1\].id 'k' is used twice"),
    ({"keys": [_key(hash="0" * 64)]}, r"gateway.keys\[0\] \(k\) needs exactly one of hash"),
    ({"keys": [{"id": "k", "role": "viewer", "tier": "starter"}]}, r"needs exactly one of hash"),
    ({"keys": [_key(key="short")]}, r"gateway.keys\[0\].key \(k\) must be at least 16 visible ASCII"),
    ({"keys": [_key(key="with a space 0123456789")]}, r"must be at least 16 visible ASCII"),
    ({"keys": [_key(key="looks.like.a-jwt-0123456789")]}, r"not shaped like a JWT"),
    ({"keys": [{"id": "k", "hash": "abc", "role": "viewer", "tier": "starter"}]},
     r"gateway.keys\[0\].hash \(k\) must be 64 hex digits"),
    ({"keys": [_key(), _key(id="k2")]}, r"gateway.keys\[1\] \(k2\) has the same key as an earlier entry"),
    ({"keys": [_key(role="root")]}, r"gateway.keys\[0\].role must be one of viewer, editor, admin"),
    ({"keys": [_key(tier="gold")]}, r"gateway.keys\[0\].tier 'gold' is not a tier"),
    ({"keys": [_key(secret="x")]}, r"unknown setting gateway.keys\[0\].secret"),
    ({"jwt": {"tier": "starter"}}, r"gateway.jwt needs hs256_secret \(HS256\) or jwks_file \(RS256\)"),
    ({"jwt": {"hs256_secret": "short", "tier": "starter"}},
     r"gateway.jwt.hs256_secret must be a string of at least 32 bytes"),
    ({"jwt": {"hs256_secret": SECRET}}, r"gateway.jwt.tier is missing"),
    ({"jwt": {"hs256_secret": SECRET, "tier": "gold"}}, r"gateway.jwt.tier 'gold' is not a tier"),
    ({"jwt": {"hs256_secret": SECRET, "tier": "starter", "leeway_s": 301}},
     r"gateway.jwt.leeway_s must be between 0 and 300 seconds"),
    ({"jwt": {"hs256_secret": SECRET, "tier": "starter", "issuer": ""}},
     r"gateway.jwt.issuer must be a non-empty string"),
    ({"jwt": {"hs256_secret": SECRET, "tier": "starter", "algorithms": ["HS512"]}},
     r"unknown setting gateway.jwt.algorithms"),
    ({"jwt": {"jwks": {"keys": []}, "tier": "starter"}}, r"gateway.jwt.jwks: expected a JWK Set"),
    ({"jwt": {"jwks": {"keys": [{"kty": "RSA"}]}, "tier": "starter"}}, r"gateway.jwt.jwks: keys\[0\] has no kid"),
    ({"jwt": {"jwks": {"keys": [{"kty": "EC", "kid": "e"}]}, "tier": "starter"}},
     r"keys\[0\] \(e\): only RSA signing keys for RS256"),
    ({"jwt": {"jwks": {"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB"}]}, "tier": "starter"}},
     r"gateway.jwt.jwks: keys\[0\] \(r\): "),
    ({"jwt": {"jwks_file": "/nonexistent/jwks.json", "tier": "starter"}},
     r"gateway.jwt.jwks_file /nonexistent/jwks.json: cannot read it"),
])
def test_config_errors_name_the_setting(overrides: dict[str, Any], message: str) -> None:
    """Every bad setting is a ConfigError that names the file and the setting."""
    with pytest.raises(ConfigError, match=r"^test.toml: .*" + message):
        parse_gateway(table(**overrides), source="test.toml")


def test_config_rejects_private_and_duplicate_jwks_keys(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    private = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key))
    with pytest.raises(ConfigError, match=r"keys\[0\] \(k1\) is a private key"):
        parse_gateway(table(jwt={"jwks": {"keys": [{**private, "kid": "k1"}]}, "tier": "starter"}), source="t")
    twice = {"keys": [public_jwk(rsa_key, "k1"), public_jwk(rsa_key, "k1")]}
    with pytest.raises(ConfigError, match=r"keys\[1\]: kid 'k1' appears twice"):
        parse_gateway(table(jwt={"jwks": twice, "tier": "starter"}), source="t")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match=r"gateway.jwt.jwks_file .*bad.json: not JSON"):
        parse_gateway(table(jwt={"jwks_file": "bad.json", "tier": "starter"}), source="t",
                      relative_to=str(tmp_path / "edge.toml"))
    with pytest.raises(ConfigError, match=r"gateway must be a table"):
        parse_gateway([1], source="t")


# -- routes and paths -------------------------------------------------------------------------------

def test_routes_match_longest_prefix_on_segment_boundaries() -> None:
    gw = gateway()
    assert route(gw, b"/api/v3/contents?limit=5").prefix == b"/api/v3"
    assert route(gw, b"/api/v3").prefix == b"/api/v3"
    assert route(gw, b"/api/v3/admin/users").min_role is Role.ADMIN
    assert route(gw, b"/api/v3/administrators").prefix == b"/api/v3"  # not /admin: a segment boundary
    assert route(gw, b"/graphql").graphql
    assert not route(gw, b"/api/v3/x").graphql
    assert gw.route_for(b"/api/v30/x") is None
    assert gw.route_for(b"/graphqlx") is None
    assert gw.route_for(b"/blog/post/") is None
    assert [len(p) for p in gw.prefixes] == sorted((len(p) for p in gw.prefixes), reverse=True)  # longest first


def test_root_route_covers_everything() -> None:
    gw = gateway(routes=[{"prefix": "/", "public": True}])
    assert gw.prefixes == (b"/",)
    assert route(gw, b"/").prefix == b""
    assert route(gw, b"/anything/at/all").prefix == b""


@pytest.mark.parametrize(("target", "canonical"), [
    (b"/api/v3/x?q=1", b"/api/v3/x"),
    (b"/%61pi/v3/x", b"/api/v3/x"),
    (b"/api%2Fv3/x", b"/api/v3/x"),
    (b"/blog/../api/v3/x", b"/api/v3/x"),
    (b"/./api/./v3/", b"/api/v3"),
    (b"//api///v3/x", b"/api/v3/x"),
    (b"/../../api/v3", b"/api/v3"),
    (b"http://edge.test/api/v3/x?y", b"/api/v3/x"),
    (b"http://edge.test", b"/"),
    (b"*", b"/*"),
    (b"/%2561pi", b"/%61pi"),  # decoded once, as the origin does
])
def test_canonical_path_is_what_the_origin_routes(target: bytes, canonical: bytes) -> None:
    """RFC 3986 §5.2.4 dot segments, one percent-decoding, merged slashes, absolute-form (RFC 9112 §3.2.2)."""
    assert canonical_path(target) == canonical


def test_disguised_targets_still_meet_their_route() -> None:
    """``/%61pi/`` must not walk past an ``/api/`` route."""
    gw = gateway()
    for target in (b"/%61pi/v3/admin/x", b"/x/../api/v3/admin", b"//api/v3/admin", b"http://h/api/v3/admin/"):
        assert is_disguised(target)
        assert route(gw, target).min_role is Role.ADMIN, target
    assert not is_disguised(b"/api/v3/x?q=%20&r=/./")  # the query does not count
    assert gw.route_for(b"/blog/caf%C3%A9") is None


# -- authentication and roles ----------------------------------------------------------------------------

def test_missing_credentials_get_a_bare_bearer_challenge() -> None:
    """RFC 6750 §3: no error code when the request carried no credentials."""
    deny = denied(auth(gateway(), b"/graphql", None), 401, "UNAUTHENTICATED", "Authorization: Bearer")
    assert deny.headers == ((b"www-authenticate", b'Bearer realm="flowcms"'),)


def test_public_route_allows_anonymous_reads_only() -> None:
    gw = gateway()
    anonymous = identity(auth(gw, b"/api/v3/contents", None))
    assert (anonymous.subject, anonymous.role, anonymous.fields) == (None, None, ())
    assert (anonymous.bucket, anonymous.per_minute) == ("ip:192.0.2.1", 100)
    assert identity(auth(gw, b"/api/v3/contents", None, method=b"HEAD")).subject is None
    denied(auth(gw, b"/api/v3/contents", None, method=b"POST"), 401, "UNAUTHENTICATED")
    denied(auth(gw, b"/api/v3/admin/x", None), 401, "UNAUTHENTICATED")


def test_post_reads_opens_post_on_a_public_route() -> None:
    """A GraphQL endpoint's POSTs are queries: with post_reads they are reads, anonymous included;
    without it an anonymous POST gets a 401 that names the setting."""
    routes = [{"prefix": "/graphql", "public": True, "post_reads": True},
              {"prefix": "/api/v3", "public": True},
              {"prefix": "/private", "min_role": "editor", "post_reads": True}]
    gw = gateway(routes=routes)
    closed = gateway(routes=[{"prefix": "/graphql", "public": True}])
    denied(auth(closed, b"/graphql", None, method=b"POST"), 401, "UNAUTHENTICATED", "post_reads = true")
    anonymous = identity(auth(gw, b"/graphql", None, method=b"POST"))
    assert (anonymous.subject, anonymous.bucket) == (None, "ip:192.0.2.1")
    assert identity(auth(gw, b"/graphql", bearer(VIEWER_KEY), method=b"POST")).role == Role.VIEWER
    denied(auth(gw, b"/graphql", None, method=b"PUT"), 401, "UNAUTHENTICATED")
    rest = denied(auth(gw, b"/api/v3/contents", None, method=b"POST"), 401, "UNAUTHENTICATED")
    assert "post_reads" not in rest.message  # a REST POST is a write: no hint to open it
    denied(auth(gw, b"/private", None, method=b"POST"), 401, "UNAUTHENTICATED")  # not public: a credential first
    denied(auth(gw, b"/private", bearer(VIEWER_KEY), method=b"POST"), 403, "FORBIDDEN")  # and its role
    with pytest.raises(ConfigError, match=r"gateway.routes\[0\].post_reads must be true or false"):
        parse_gateway(table(routes=[{"prefix": "/graphql", "post_reads": "yes"}]), source="test.toml")


def test_methods_refuse_the_others_with_405_before_credentials() -> None:
    """A route's ``methods``: any other method is a 405 with Allow (HEAD comes with GET), before
    credentials are asked for, so an anonymous write to a read-only API learns the method is
    wrong, not that it needs a key; GraphQL routes answer in GraphQL's error codes."""
    routes = [{"prefix": "/api/v3", "public": True, "methods": ["get"]},
              {"prefix": "/graphql", "public": True, "post_reads": True, "methods": ["GET", "POST"]},
              {"prefix": "/open", "public": True}]
    gw = gateway(routes=routes)
    for method, key in ((b"POST", None), (b"DELETE", bearer(ADMIN_KEY)), (b"OPTIONS", None)):
        deny = denied(auth(gw, b"/api/v3/contents", key, method=method), 405, "METHOD_NOT_ALLOWED", "allowed: GET, HEAD")
        assert deny.headers == ((b"allow", b"GET, HEAD"),)
    assert identity(auth(gw, b"/api/v3/contents", None, method=b"HEAD")).subject is None
    gql = denied(auth(gw, b"/graphql", None, method=b"PUT"), 405, "VALIDATION_ERROR")
    assert gql.headers == ((b"allow", b"GET, POST, HEAD"),)
    assert identity(auth(gw, b"/graphql", None, method=b"POST")).subject is None
    denied(auth(gw, b"/open", None, method=b"POST"), 401, "UNAUTHENTICATED")  # no methods: any, judged as before
    for bad in ([], "GET", ["GET", 5], ["GE T"]):
        with pytest.raises(ConfigError, match=r"gateway.routes\[0\].methods must be a non-empty list"):
            parse_gateway(table(routes=[{"prefix": "/x", "methods": bad}]), source="test.toml")


def test_api_keys_are_found_by_their_hash() -> None:
    gw = gateway()
    found = identity(auth(gw, b"/graphql", bearer(EDITOR_KEY), method=b"POST"))
    assert found == Identity("key:editor", Role.EDITOR, "editor", "key:editor", 1000, (
        (b"x-flowcms-subject", b"key:editor"), (b"x-flowcms-role", b"editor"), (b"x-flowcms-key-id", b"editor")))
    assert identity(auth(gw, b"/graphql", b"bearer  " + ADMIN_KEY.encode() + b" ")).role is Role.ADMIN
    deny = denied(auth(gw, b"/graphql", bearer("fc_live_unknown_012345")), 401, "UNAUTHENTICATED", "API key")
    assert deny.headers == ((b"www-authenticate", b'Bearer realm="flowcms", error="invalid_token"'),)


@pytest.mark.parametrize("authorization", [b"Bearer", b"Bearer   ", b"Bearer " + b"x" * 8193])
def test_malformed_bearer_is_an_invalid_request(authorization: bytes) -> None:
    deny = denied(auth(gateway(), b"/graphql", authorization), 401, "UNAUTHENTICATED")
    assert deny.headers == ((b"www-authenticate", b'Bearer realm="flowcms", error="invalid_request"'),)


@pytest.mark.parametrize("authorization", [b"Basic dXNlcjpwYXNz", b"Token abc"])
def test_other_schemes_get_the_bare_challenge(authorization: bytes) -> None:
    """RFC 6750 §3: a client that tried an unsupported method hears which one to use, no error code."""
    deny = denied(auth(gateway(), b"/graphql", authorization), 401, "UNAUTHENTICATED")
    assert deny.headers == ((b"www-authenticate", b'Bearer realm="flowcms"'),)


def test_failed_credentials_are_throttled_per_address() -> None:
    """Guessing keys from one address costs that address's anonymous budget: past it, 429 (with
    the limit's fields); another address and a good key are untouched; failures are not admissions."""
    gw = gateway()  # anonymous tier: 100/minute
    for n in range(100):
        denied(auth(gw, b"/api/v3/contents", bearer(f"fc_live_guess_{n:012d}")), 401, "UNAUTHENTICATED")
    over = denied(auth(gw, b"/api/v3/contents", bearer("fc_live_guess_again_0000")), 429, "RATE_LIMITED", "address")
    assert dict(over.headers)[b"x-ratelimit-limit"] == b"100"
    denied(auth(gw, b"/api/v3/contents", bearer("fc_live_guess_other_0000"), client="192.0.2.2"),
           401, "UNAUTHENTICATED")
    assert identity(auth(gw, b"/api/v3/contents", bearer(VIEWER_KEY))).role == Role.VIEWER
    assert gw.statistics().allowed == 0


def test_bad_credentials_on_a_public_route_are_not_anonymous() -> None:
    """A wrong key is a 401 even where anonymous reads are allowed: no silent downgrade."""
    denied(auth(gateway(), b"/api/v3/contents", bearer("fc_live_wrong_0123456")), 401, "UNAUTHENTICATED")


@pytest.mark.parametrize(("key", "path", "method", "status"), [
    (VIEWER_KEY, b"/graphql", b"POST", None),
    (VIEWER_KEY, b"/api/v3/admin/users", b"GET", 403),
    (EDITOR_KEY, b"/api/v3/admin/users", b"GET", 403),
    (ADMIN_KEY, b"/api/v3/admin/users", b"DELETE", None),
    (VIEWER_KEY, b"/api/v3/drafts/x", b"GET", None),  # public: reads need no role
    (VIEWER_KEY, b"/api/v3/drafts/x", b"POST", 403),  # writes need min_role (editor)
    (EDITOR_KEY, b"/api/v3/drafts/x", b"POST", None),
    (ADMIN_KEY, b"/api/v3/drafts/x", b"PUT", None),  # roles are ordered: admin ≥ editor ≥ viewer
])
def test_roles_are_ordered_and_checked_against_the_route(key: str, path: bytes, method: bytes,
                                                          status: int | None) -> None:
    result = auth(gateway(), path, bearer(key), method=method)
    if status is None:
        identity(result)
    else:
        deny = denied(result, 403, "FORBIDDEN", "role")  # RFC 6750 §3.1: privileges too low for the route
        assert deny.headers == ((b"www-authenticate", b'Bearer realm="flowcms", error="insufficient_scope"'),)


# -- JWTs ------------------------------------------------------------------------------------------------

def test_hs256_token_gives_subject_and_role() -> None:
    found = identity(auth(gateway(), b"/graphql", bearer(hs256())))
    assert found == Identity("user-42", Role.EDITOR, None, "jwt:user-42", 1000,
                             ((b"x-flowcms-subject", b"user-42"), (b"x-flowcms-role", b"editor")))


def test_role_claim_name_is_configurable_and_lists_count_their_highest() -> None:
    gw = gateway(jwt={"hs256_secret": SECRET, "tier": "enterprise", "role_claim": "https://flowcms/roles"})
    token = jwt.encode({"sub": "a", "exp": NOW + 60, "https://flowcms/roles": ["viewer", "Admin", "owner"]},
                       SECRET, algorithm="HS256")
    found = identity(auth(gw, b"/api/v3/admin/x", bearer(token)))
    assert (found.role, found.per_minute) == (Role.ADMIN, 10000)


def test_token_without_a_known_role_is_authenticated_but_forbidden() -> None:
    gw = gateway()
    denied(auth(gw, b"/graphql", bearer(hs256(role="owner"))), 403, "FORBIDDEN", "has no role")
    denied(auth(gw, b"/graphql", bearer(hs256(role=None))), 403, "FORBIDDEN")
    assert identity(auth(gw, b"/api/v3/contents", bearer(hs256(role=None)))).subject == "user-42"  # public read


@pytest.mark.parametrize(("overrides", "detail"), [
    ({"exp": NOW - 1}, "expired"),
    ({"exp": NOW}, "expired"),  # RFC 7519 §4.1.4: on or after exp is too late
    ({"exp": None}, "no exp claim"),
    ({"exp": "tomorrow"}, "no exp claim"),
    ({"exp": True}, "no exp claim"),
    ({"exp": float("nan")}, "no exp claim"),  # NaN compares false: it would never expire
    ({"exp": float("inf")}, "no exp claim"),
    ({"exp": 10**400}, "no exp claim"),  # past float's range
    ({"nbf": float("nan")}, "nbf claim is not a number"),
    ({"nbf": float("-inf")}, "nbf claim is not a number"),
    ({"nbf": "soon"}, "nbf claim is not a number"),
    ({"nbf": NOW + 1}, "not valid yet"),  # RFC 7519 §4.1.5
    ({"nbf": "now"}, "nbf claim is not a number"),
    ({"iss": "https://evil.test"}, "issued by someone else"),
    ({"iss": None}, "issued by someone else"),
    ({"aud": "other"}, "another audience"),
    ({"aud": ["a", "b"]}, "another audience"),
    ({"aud": None}, "another audience"),
    ({"sub": None}, "sub claim"),
    ({"sub": ""}, "sub claim"),
    ({"sub": 42}, "sub claim"),
    ({"sub": "x\r\nx-flowcms-role: admin"}, "sub claim"),  # no header injection through a claim
    ({"sub": "jürgen"}, "sub claim"),
    ({"sub": "x" * 257}, "sub claim"),
])
def test_hs256_claims_are_checked(overrides: dict[str, Any], detail: str) -> None:
    deny = denied(auth(gateway(), b"/graphql", bearer(hs256(**overrides))), 401, "UNAUTHENTICATED", detail)
    assert deny.headers == ((b"www-authenticate", b'Bearer realm="flowcms", error="invalid_token"'),)


def test_a_null_nbf_is_not_a_numeric_date() -> None:
    """RFC 7519 §4.1.5: nbf, when present, is a NumericDate; null is not one (nor is it absent)."""
    token = jwt.encode({**claims(), "nbf": None}, SECRET, algorithm="HS256").encode()
    denied(auth(gateway(), b"/graphql", bearer(token), method=b"POST"), 401, "UNAUTHENTICATED", "nbf")


def test_claims_that_pass() -> None:
    gw = gateway()
    assert identity(auth(gw, b"/graphql", bearer(hs256(nbf=NOW, aud=["x", "flowcms"])))).subject == "user-42"
    assert identity(auth(gw, b"/graphql", bearer(hs256(exp=NOW + 0.5)))).subject == "user-42"


def test_audience_claim_is_refused_when_no_audience_is_configured() -> None:
    """RFC 7519 §4.1.3: a token for a named audience is not for us unless we are that audience."""
    gw = gateway(jwt={"hs256_secret": SECRET, "tier": "starter"})
    assert identity(auth(gw, b"/graphql", bearer(hs256(iss=None, aud=None)))).role is Role.EDITOR
    denied(auth(gw, b"/graphql", bearer(hs256(aud="flowcms"))), 401, "UNAUTHENTICATED", "audience")


def test_leeway_allows_clock_skew_both_ways() -> None:
    gw = gateway(jwt={"hs256_secret": SECRET, "tier": "starter", "issuer": "https://auth.flowcms.test",
                      "audience": "flowcms", "leeway_s": 30})
    assert identity(auth(gw, b"/graphql", bearer(hs256(exp=NOW - 29)))).subject
    assert identity(auth(gw, b"/graphql", bearer(hs256(nbf=NOW + 30)))).subject
    denied(auth(gw, b"/graphql", bearer(hs256(exp=NOW - 30))), 401, "UNAUTHENTICATED", "expired")
    denied(auth(gw, b"/graphql", bearer(hs256(nbf=NOW + 31))), 401, "UNAUTHENTICATED", "not valid yet")


def test_a_remembered_token_is_still_checked_against_the_clock() -> None:
    """Verified tokens are cached, but exp and nbf are compared with ``now`` on every use."""
    gw = gateway()
    token = bearer(hs256(exp=NOW + 10, nbf=NOW - 10))
    assert identity(auth(gw, b"/graphql", token)).subject == "user-42"
    assert identity(auth(gw, b"/graphql", token, now_ns=NOW_NS + 9 * NS)).subject == "user-42"
    denied(auth(gw, b"/graphql", token, now_ns=NOW_NS + 10 * NS), 401, "UNAUTHENTICATED", "expired")
    denied(auth(gw, b"/graphql", token, now_ns=NOW_NS - 11 * NS), 401, "UNAUTHENTICATED", "not valid yet")


def test_bad_signature_is_rejected() -> None:
    forged = jwt.encode(claims(role="admin"), "another-secret-that-is-32-bytes-long!", algorithm="HS256")
    denied(auth(gateway(), b"/graphql", bearer(forged)), 401, "UNAUTHENTICATED", "signature")
    header, _payload, signature = hs256().split(b".")
    tampered = b".".join([header, b64(json.dumps(claims(role="admin")).encode()), signature])
    denied(auth(gateway(), b"/graphql", bearer(tampered)), 401, "UNAUTHENTICATED", "signature")


def test_alg_none_is_rejected() -> None:
    """An unsigned token (alg none, RFC 7518 §3.6) proves nothing."""
    unsigned = b".".join([b64(b'{"alg":"none","typ":"JWT"}'), b64(json.dumps(claims(role="admin")).encode()), b""])
    denied(auth(gateway(), b"/graphql", bearer(unsigned)), 401, "UNAUTHENTICATED", "'none' is not accepted")
    for alg in ("None", "HS512", "ES256"):
        header = b64(json.dumps({"alg": alg}).encode())
        token = b".".join([header, b64(json.dumps(claims()).encode()), b64(b"sig")])
        denied(auth(gateway(), b"/graphql", bearer(token)), 401, "UNAUTHENTICATED", "not accepted")


@pytest.mark.parametrize("token", [b"a.b.c", b"..", b"e30.e30.", b64(b'{"alg":"HS256"}') + b".bm90IGpzb24." + b64(b"x")])
def test_malformed_tokens_are_rejected(token: bytes) -> None:
    denied(auth(gateway(), b"/graphql", bearer(token)), 401, "UNAUTHENTICATED")


def test_payload_must_be_an_object() -> None:
    header = b64(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64(b"[1, 2]")
    signature = b64(hmac.new(SECRET.encode(), header + b"." + payload, hashlib.sha256).digest())
    denied(auth(gateway(), b"/graphql", bearer(header + b"." + payload + b"." + signature)), 401,
           "UNAUTHENTICATED", "not a JSON object")


def test_tokens_are_refused_when_no_jwt_is_configured() -> None:
    denied(auth(gateway(jwt=None), b"/graphql", bearer(hs256())), 401, "UNAUTHENTICATED", "use an API key")


def rs_gateway(key: rsa.RSAPrivateKey, **jwt_overrides: Any) -> Gateway:
    jwks = {"keys": [public_jwk(key, "k1"), public_jwk(rsa.generate_private_key(public_exponent=65537,
                                                                                   key_size=2048), "k2")]}
    return gateway(jwt={"jwks": jwks, "tier": "starter", "issuer": "https://auth.flowcms.test",
                        "audience": "flowcms", **jwt_overrides})


def test_rs256_token_is_checked_against_the_jwks(rsa_key: rsa.RSAPrivateKey,
                                                 other_rsa_key: rsa.RSAPrivateKey) -> None:
    gw = rs_gateway(rsa_key)
    good = jwt.encode(claims(role="admin"), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    assert identity(auth(gw, b"/api/v3/admin/x", bearer(good))).role is Role.ADMIN
    expired = jwt.encode(claims(exp=NOW - 1), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    denied(auth(gw, b"/graphql", bearer(expired)), 401, "UNAUTHENTICATED", "expired")
    wrong_key = jwt.encode(claims(), other_rsa_key, algorithm="RS256", headers={"kid": "k1"})
    denied(auth(gw, b"/graphql", bearer(wrong_key)), 401, "UNAUTHENTICATED", "signature")
    by_k2 = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k2"})
    denied(auth(gw, b"/graphql", bearer(by_k2)), 401, "UNAUTHENTICATED", "signature")
    unknown = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k9"})
    denied(auth(gw, b"/graphql", bearer(unknown)), 401, "UNAUTHENTICATED", "key id 'k9' is not known")
    no_kid = jwt.encode(claims(), rsa_key, algorithm="RS256")
    denied(auth(gw, b"/graphql", bearer(no_kid)), 401, "UNAUTHENTICATED", "key id None is not known")
    wrong_issuer = jwt.encode(claims(iss="x"), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    denied(auth(gw, b"/graphql", bearer(wrong_issuer)), 401, "UNAUTHENTICATED", "issued by someone else")


def test_rs256_only_refuses_hs256_even_signed_with_the_public_key(rsa_key: rsa.RSAPrivateKey) -> None:
    """The algorithm-confusion attack: an HS256 token whose secret is the RSA public key."""
    gw = rs_gateway(rsa_key)
    public_pem = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()).encode()
    header = b64(b'{"alg":"HS256","typ":"JWT","kid":"k1"}')
    payload = b64(json.dumps(claims(role="admin")).encode())
    signature = b64(hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest())
    denied(auth(gw, b"/graphql", bearer(header + b"." + payload + b"." + signature)), 401, "UNAUTHENTICATED",
           "'HS256' is not accepted")


def test_hs256_and_rs256_together(rsa_key: rsa.RSAPrivateKey) -> None:
    gw = rs_gateway(rsa_key, hs256_secret=SECRET)
    assert identity(auth(gw, b"/graphql", bearer(hs256()))).subject == "user-42"
    rs = jwt.encode(claims(sub="svc"), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    assert identity(auth(gw, b"/graphql", bearer(rs))).subject == "svc"


# -- GCRA -------------------------------------------------------------------------------------------------

def test_gcra_admits_the_burst_then_one_per_interval() -> None:
    """Limit 100/min: 100 at one instant, then exactly one every 0.6 s (not a nanosecond earlier)."""
    limiter = RateLimiter()
    t = NOW_NS
    results = [limiter.acquire("k", 100, t) for _ in range(101)]
    assert [r.remaining for r in results[:100]] == list(range(99, -1, -1))
    assert all(r.allowed for r in results[:100])
    assert all(r.reset_s == NOW + (n + 1) * 6 // 10 + (1 if (n + 1) * 6 % 10 else 0)
               for n, r in enumerate(results[:100]))
    over = results[100]
    assert (over.allowed, over.remaining, over.retry_after_s, over.reset_s) == (False, 0, 1, NOW + 60)
    assert not limiter.acquire("k", 100, t + 600_000_000 - 1).allowed
    after = limiter.acquire("k", 100, t + 600_000_000)
    assert (after.allowed, after.remaining) == (True, 0)
    assert not limiter.acquire("k", 100, t + 600_000_000).allowed


def test_gcra_is_exact_when_the_interval_is_not_a_whole_nanosecond() -> None:
    """Limit 101/min: T = 594059405.94… ns; the 102nd request is admitted at t + ceil(T) ns, not before."""
    limiter = RateLimiter()
    for _ in range(101):
        assert limiter.acquire("k", 101, NOW_NS).allowed
    assert not limiter.acquire("k", 101, NOW_NS + 594_059_405).allowed
    assert limiter.acquire("k", 101, NOW_NS + 594_059_406).allowed
    # 11 T = 6534653465.3… ns: one nanosecond short of it, 9 more; at it, the 10th
    assert sum(limiter.acquire("k", 101, NOW_NS + 6_534_653_465).allowed for _ in range(20)) == 9
    assert sum(limiter.acquire("k", 101, NOW_NS + 6_534_653_466).allowed for _ in range(20)) == 1


def test_gcra_denial_does_not_move_the_arrival_time() -> None:
    limiter = RateLimiter()
    for _ in range(100):
        limiter.acquire("k", 100, NOW_NS)
    for _ in range(1000):
        assert not limiter.acquire("k", 100, NOW_NS + 1).allowed
    assert limiter.acquire("k", 100, NOW_NS + 600_000_000).allowed


def test_gcra_idle_time_refills_at_most_the_burst() -> None:
    limiter = RateLimiter()
    limiter.acquire("k", 100, NOW_NS)
    later = NOW_NS + 3600 * NS
    assert sum(limiter.acquire("k", 100, later).allowed for _ in range(150)) == 100
    assert limiter.acquire("other", 100, later).remaining == 99  # buckets are independent


def test_gcra_retry_after_and_reset() -> None:
    limiter = RateLimiter()
    for _ in range(1000):
        limiter.acquire("k", 1000, NOW_NS)
    over = limiter.acquire("k", 1000, NOW_NS + 1)
    assert (over.allowed, over.retry_after_s, over.reset_s) == (False, 1, NOW + 60)  # 0.06 s → 1 s, ceiling
    assert over.fields == ((b"x-ratelimit-limit", b"1000"), (b"x-ratelimit-remaining", b"0"),
                           (b"x-ratelimit-reset", b"%d" % (NOW + 60)), (b"retry-after", b"1"))
    first = RateLimiter().acquire("k", 1000, NOW_NS)
    assert first.fields == ((b"x-ratelimit-limit", b"1000"), (b"x-ratelimit-remaining", b"999"),
                            (b"x-ratelimit-reset", b"%d" % (NOW + 1)))


def _reference(arrivals: list[int], limit: int) -> list[tuple[bool, int, int]]:
    """GCRA in exact rationals (seconds as Fractions): the model the integer version must equal.
    Per arrival: admitted, and when admitted the X-RateLimit-Remaining and -Reset (epoch second)."""
    interval = Fraction(60, limit)
    tat: Fraction | None = None
    out = []
    for ns in arrivals:
        t = Fraction(ns, NS)
        base = t if tat is None or tat < t else tat
        ok = base + interval - t <= limit * interval
        if ok:
            tat = base + interval
            out.append((True, math.floor((limit * interval - (tat - t)) / interval), math.ceil(tat)))
        else:
            out.append((False, 0, 0))
    return out


@given(per_minute=st.integers(100, 10000),
       gaps=st.lists(st.integers(0, 2 * NS), min_size=1, max_size=300))
def test_gcra_matches_the_rational_model(per_minute: int, gaps: list[int]) -> None:
    """No rounding: the integer limiter admits exactly what exact arithmetic admits."""
    arrivals, t = [], NOW_NS
    for gap in gaps:
        t += gap
        arrivals.append(t)
    limiter = RateLimiter()
    assert [limiter.acquire("k", per_minute, a).allowed for a in arrivals] == [
        ok for ok, _, _ in _reference(arrivals, per_minute)]


@given(limit=st.sampled_from([100, 101, 997, 10000]), gaps=st.lists(st.integers(0, NS // 2), min_size=1, max_size=300))
def test_gcra_hit_path_numbers_match_the_rational_model(limit: int, gaps: list[int]) -> None:
    """``take`` (the hit lanes' charge) says what exact arithmetic says: admitted or not, and the
    Remaining and Reset it sends (its remembered reset second included)."""
    arrivals, t = [], NOW_NS
    for gap in gaps:
        t += gap
        arrivals.append(t)
    limiter = RateLimiter()
    got = []
    for a in arrivals:
        taken = limiter.take("k", limit, a)
        got.append((False, 0, 0) if taken is None else (True, *taken))
    assert got == _reference(arrivals, limit)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 3 * NS), st.sampled_from([100, 101, 997, 10000]), st.sampled_from("abc")),
                min_size=1, max_size=200))
def test_take_remembers_the_reset_second_through_limit_changes_and_sweeps(
        steps: list[tuple[int, int, str]]) -> None:
    """``take``'s remembered reset second is always the one its bucket's TAT gives, ceil(TAT / (L·1 s)),
    and Remaining the one the TAT gives, also after the limit changes and after buckets are swept."""
    limiter = RateLimiter()
    limiter._sweep_at = 2  # sweep whenever a third bucket arrives
    t = NOW_NS
    for gap, limit, bucket in steps:
        t += gap
        taken = limiter.take(bucket, limit, t)
        if taken is None:
            continue
        tat = limiter._buckets[bucket].tat  # in units of 1/limit ns
        assert taken == ((limit * INTERVAL - (tat - t * limit)) // INTERVAL, -(-tat // (limit * NS)))
        limiter._sweep_at = 2


def test_limiter_sweeps_full_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Buckets whose TAT has passed hold nothing; the table is swept when it doubles."""
    monkeypatch.setattr("edgeproxy.ratelimit.SWEEP_MIN_BUCKETS", 4)
    limiter = RateLimiter()
    for n in range(4):
        limiter.acquire(f"ip:{n}", 100, NOW_NS)
    assert len(limiter) == 4
    limiter.acquire("ip:late", 100, NOW_NS + 1 * NS)  # the first four are full again after 0.6 s
    assert len(limiter) == 1
    assert repr(limiter) == "<RateLimiter [1 buckets]>"
    # a changed limit rescales the stored time: TAT t+1.6 s, so at t+1 s with T = 0.06 s:
    assert limiter.acquire("ip:late", 1000, NOW_NS + 1 * NS).remaining == 989  # (60 - 0.66) / 0.06
    changed = limiter.acquire("ip:late", 1000, NOW_NS + 1 * NS)
    assert (changed.remaining, changed.reset_s) == (988, NOW + 2)  # TAT t+1.72 s: the reset in the new units
    assert INTERVAL == 60 * NS


def test_gateway_admit_charges_per_key_per_subject_and_per_ip() -> None:
    gw = gateway()
    public = route(gw, b"/api/v3/contents")
    decisions = [gw.decide(public, b"GET", None, "192.0.2.1", NOW_NS) for _ in range(101)]
    assert all(isinstance(d, Allow) for d in decisions[:100])
    deny = denied(decisions[100], 429, "RATE_LIMITED", "100 requests per minute")
    assert dict(deny.headers)[b"retry-after"] == b"1"
    assert isinstance(gw.decide(public, b"GET", None, "192.0.2.2", NOW_NS), Allow)  # another IP
    keyed = gw.decide(public, b"GET", bearer(VIEWER_KEY), "192.0.2.1", NOW_NS)  # a key has its own bucket
    assert isinstance(keyed, Allow)
    assert dict(keyed.headers)[b"x-ratelimit-limit"] == b"1000"
    assert dict(keyed.headers)[b"x-ratelimit-remaining"] == b"999"
    denied(gw.decide(public, b"POST", None, "192.0.2.9", NOW_NS), 401, "UNAUTHENTICATED")  # not charged
    stats = gw.statistics()
    assert (stats.allowed, stats.limited, stats.unauthenticated, stats.buckets) == (102, 1, 1, 3)
    assert repr(gw) == "<Gateway [4 routes, 3 keys, 3 buckets]>"


@pytest.mark.parametrize(("client", "bucket"), [
    ("192.0.2.1", "ip:192.0.2.1"),
    ("2001:db8:1:2:3:4:5:6", "ip:2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "ip:2001:db8:1:2::/64"),
    ("::ffff:192.0.2.7", "ip:192.0.2.7"),
    ("fe80::1%eth0", "ip:fe80::/64"),
    ("not:an:address", "ip:not:an:address"),
    (None, "ip:?"),
    ("", "ip:?"),
])
def test_anonymous_buckets_group_ipv6_by_64(client: str | None, bucket: str) -> None:
    assert client_bucket(client) == bucket


# -- body sizes -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("content_type", "limit"), [
    (b"application/json", JSON_BODY_MAX_BYTES),
    (b"Application/JSON; charset=utf-8", JSON_BODY_MAX_BYTES),
    (b"application/vnd.api+json", JSON_BODY_MAX_BYTES),
    (None, JSON_BODY_MAX_BYTES),
    (b"text/plain", JSON_BODY_MAX_BYTES),
    (b"multipart/form-data; boundary=x", MEDIA_BODY_MAX_BYTES),
    (b"image/png", MEDIA_BODY_MAX_BYTES),
    (b"video/mp4", MEDIA_BODY_MAX_BYTES),
    (b"audio/ogg", MEDIA_BODY_MAX_BYTES),
    (b"application/octet-stream", MEDIA_BODY_MAX_BYTES),
    (b"application/pdf", MEDIA_BODY_MAX_BYTES),
])
def test_body_limits_follow_the_media_type(content_type: bytes | None, limit: int) -> None:
    """Seed 000: 10 MB for JSON, 50 MB for media uploads, in decimal megabytes as the seed writes them."""
    assert limit in (10_000_000, 50_000_000)
    assert max_body_bytes(content_type) == limit
    assert check_body_size(b"POST", b"/api/v3/media", content_type, limit) is None
    deny = denied(check_body_size(b"POST", b"/api/v3/media", content_type, limit + 1), 413, "PAYLOAD_TOO_LARGE")
    assert f"{limit + 1} bytes" in deny.message
    assert f"{limit // 1_000_000} MB ({limit:,} bytes) limit" in deny.message


def test_body_size_unknown_length_is_left_to_the_reader() -> None:
    """A chunked body declares no length: the enforcement point counts it against max_body_bytes."""
    assert check_body_size(b"POST", b"/graphql", b"application/json", None) is None
    assert check_body_size(b"POST", b"/graphql", b"application/json", 0) is None
    assert "POST /graphql" in denied(check_body_size(b"POST", b"/graphql", b"application/json", 10**9),
                                     413, "PAYLOAD_TOO_LARGE").message


# -- layering -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["gateway.py", "ratelimit.py"])
def test_gateway_modules_are_pure(module: str) -> None:
    """STYLE.md 2.1: no I/O, no clock, no trio in the decision modules (the clock is a parameter);
    the gateway imports nothing of the edge but its pure rate limiter and header rules, the limiter nothing."""
    path = Path(__file__).resolve().parents[3] / "edgeproxy" / module
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    roots = {name.split(".")[0] for name in names}
    assert not roots & {"trio", "socket", "time", "os", "pathlib", "logging", "datetime"}
    allowed = {"edgeproxy.ratelimit", "edgeproxy.headers"} if module == "gateway.py" else set()
    assert {name for name in names if name.split(".")[0] == "edgeproxy"} <= allowed


def test_signed_payload_that_is_not_json_is_malformed() -> None:
    header = b64(b'{"alg":"HS256","typ":"JWT"}')
    payload = b64(b"not json")
    signature = b64(hmac.new(SECRET.encode(), header + b"." + payload, hashlib.sha256).digest())
    denied(auth(gateway(), b"/graphql", bearer(header + b"." + payload + b"." + signature)), 401,
           "UNAUTHENTICATED", "malformed")


def test_token_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The oldest verified token is forgotten first; a forgotten token is verified again."""
    monkeypatch.setattr("edgeproxy.gateway.TOKEN_CACHE_SIZE", 2)
    gw = gateway()
    tokens = [bearer(hs256(sub=f"user-{n}")) for n in range(3)]
    for token in tokens:
        identity(auth(gw, b"/graphql", token))
    assert [identity(auth(gw, b"/graphql", t)).subject for t in tokens] == ["user-0", "user-1", "user-2"]
    assert len(gw._tokens) == 2


def test_config_optional_parts() -> None:
    """No keys, no JWT, no public route: then no anonymous tier is needed either."""
    config = parse_gateway(table(keys=None, jwt=None, anonymous_tier=None,
                                 routes=[{"prefix": "/graphql", "min_role": "editor"}]), source="t")
    assert (config.keys, config.jwt, config.anonymous_tier) == ((), None, None)
    with pytest.raises(ConfigError, match=r"gateway.keys\[0\] must be a table"):
        parse_gateway(table(keys=["k"]), source="t")
    with pytest.raises(ConfigError, match=r"gateway.jwt.jwks must be a JWK Set table"):
        parse_gateway(table(jwt={"jwks": ["k"], "tier": "starter"}), source="t")
    with pytest.raises(ConfigError, match=r"keys\[0\] is not an object"):
        parse_gateway(table(jwt={"jwks": {"keys": ["k"]}, "tier": "starter"}), source="t")


def test_inline_jwks_wins_over_the_file(rsa_key: rsa.RSAPrivateKey) -> None:
    """A worker gets the JWK Set its supervisor read (asdict keeps both); the file is not read again."""
    jwks = {"keys": [public_jwk(rsa_key, "k1")]}
    config = parse_gateway(table(jwt={"jwks": jwks, "jwks_file": "/gone/jwks.json", "tier": "starter"}), source="t")
    assert config.jwt is not None
    assert config.jwt.jwks == jwks
