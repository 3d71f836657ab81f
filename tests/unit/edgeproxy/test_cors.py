"""CORS decisions of the gateway's routes (Fetch standard §3.2, §4.8), without sockets."""

from __future__ import annotations

from edgeproxy.cors import DEFAULT_ALLOW_HEADERS, RESPONSE_FIELDS, is_preflight, preflight_fields

ORIGIN = (b"origin", b"https://app.example")


def test_a_preflight_is_an_options_with_origin_and_a_requested_method() -> None:
    assert is_preflight(b"OPTIONS", [ORIGIN, (b"access-control-request-method", b"POST")])
    assert not is_preflight(b"OPTIONS", [ORIGIN])  # a plain OPTIONS: the gateway judges it
    assert not is_preflight(b"OPTIONS", [(b"access-control-request-method", b"POST")])
    assert not is_preflight(b"GET", [ORIGIN, (b"access-control-request-method", b"GET")])


def test_preflight_allows_any_origin_and_the_fields_asked_for_when_well_formed() -> None:
    fields = dict(preflight_fields([ORIGIN, (b"access-control-request-headers", b" Authorization ,Content-Type")]))
    assert fields[b"access-control-allow-origin"] == b"*"
    assert fields[b"access-control-allow-headers"] == b"authorization ,content-type"
    assert fields[b"access-control-allow-methods"] == b"GET, HEAD, POST, OPTIONS"
    assert fields[b"access-control-max-age"] == b"86400"
    for asked in (None, b"", b"a b", b"x\r\ny", b"a," * 600 + b"a", b"(bad)"):
        request = [ORIGIN] if asked is None else [ORIGIN, (b"access-control-request-headers", asked)]
        assert dict(preflight_fields(request))[b"access-control-allow-headers"] == DEFAULT_ALLOW_HEADERS, asked


def test_answers_expose_what_api_clients_read() -> None:
    fields = dict(RESPONSE_FIELDS)
    assert fields[b"access-control-allow-origin"] == b"*"
    exposed = {name.strip() for name in fields[b"access-control-expose-headers"].split(b",")}
    assert {b"etag", b"x-request-id", b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-ratelimit-reset",
            b"retry-after", b"link"} <= exposed
