"""Purge authentication and body rules, without sockets."""

from __future__ import annotations

import pytest

from edgeproxy.cache import CacheStore, Entry
from edgeproxy.purge import PublishTag, PurgeSpec, apply_purge, check_token, parse_purge_body


def test_token_rules() -> None:
    """No token configured → 403; no bearer → 401; wrong bearer → 403; right one → allowed."""
    assert check_token(None, b"Bearer x").status == 403  # type: ignore[union-attr]
    assert check_token("s3cret", None).status == 401  # type: ignore[union-attr]
    assert check_token("s3cret", b"Basic czNjcmV0").status == 401  # type: ignore[union-attr]
    assert check_token("s3cret", b"Bearer nope").status == 403  # type: ignore[union-attr]
    assert check_token("s3cret", b"bearer s3cret") is None


@pytest.mark.parametrize(("body", "message"), [
    (b"[1]", "expected a JSON object"),
    (b"{", "not JSON"),
    (b'{"paths": "/a"}', "paths must be a list of strings"),
    (b'{"keys": [1]}', "keys must be a list of strings"),
    (b'{"soft": "yes"}', "soft must be true or false"),
    (b'{"path": ["/a"]}', "unknown field 'path'"),
])
def test_bad_bodies_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_purge_body(body)


@pytest.mark.parametrize(("publish", "message"), [
    ('"pub_1"', "publish must be an object"),
    ("null", "publish must be an object"),
    ('{"id": "pub_1"}', "publish.seen must be a positive number"),
    ('{"seen": 1.5}', "publish.id must be a string"),
    ('{"id": 7, "seen": 1.5}', "publish.id must be a string"),
    ('{"id": "", "seen": 1.5}', "publish.id must be a string"),
    ('{"id": "pub 1", "seen": 1.5}', "publish.id must be a string"),
    ('{"id": "pub\\"1", "seen": 1.5}', "publish.id must be a string"),
    ('{"id": "' + "x" * 129 + '", "seen": 1.5}', "publish.id must be a string"),
    ('{"id": "pub_1", "seen": "1.5"}', "publish.seen must be a positive number"),
    ('{"id": "pub_1", "seen": true}', "publish.seen must be a positive number"),
    ('{"id": "pub_1", "seen": 0}', "publish.seen must be a positive number"),
    ('{"id": "pub_1", "seen": NaN}', "publish.seen must be a positive number"),
    ('{"id": "pub_1", "seen": Infinity}', "publish.seen must be a positive number"),
    ('{"id": "pub_1", "seen": 1.5, "at": 2}', "unknown field publish.at"),
])
def test_bad_publish_tags_say_what_is_wrong(publish: str, message: str) -> None:
    """A publish tag ends up in metrics and label values: anything but an id and a time is refused."""
    with pytest.raises(ValueError, match=message):
        parse_purge_body(('{"paths": ["/a"], "publish": ' + publish + "}").encode())


def test_publish_tag_is_optional_and_parsed() -> None:
    """Old bodies keep their meaning; a tag is kept with the spec (an integer time is a float)."""
    assert parse_purge_body(b'{"paths": ["/a"]}').publish is None
    spec = parse_purge_body(b'{"keys": ["k"], "publish": {"id": "pub_ab12:0001", "seen": 1767225600}}')
    assert spec == PurgeSpec(keys=(b"k",), publish=PublishTag(id="pub_ab12:0001", seen=1767225600.0))
    assert isinstance(spec.publish.seen, float)  # type: ignore[union-attr]


def test_body_is_normalised_like_request_targets() -> None:
    spec = parse_purge_body(b'{"paths": ["/a b/?q=1"], "keys": ["tag:x"], "prefixes": ["/blog/"], "soft": true}')
    assert spec == PurgeSpec(paths=(b"/a%20b/",), keys=(b"tag:x",), prefixes=(b"/blog/",), soft=True)
    assert parse_purge_body(b"") == PurgeSpec()


def test_apply_purge_counts_what_it_touches() -> None:
    cache: CacheStore[str] = CacheStore(1 << 20)
    for path, keys in ((b"/blog/a/", (b"tag:x",)), (b"/blog/b/", (b"tag:y",)), (b"/docs/c/", (b"tag:x",))):
        cache.store(Entry(key=b"h" + path, path=path, value="v", size=10, surrogate_keys=keys))
    assert apply_purge(cache, PurgeSpec(keys=(b"tag:x",), soft=True)) == 2
    assert len(cache) == 3  # soft: still stored, marked stale
    assert apply_purge(cache, PurgeSpec(prefixes=(b"/blog/",))) == 2
    assert apply_purge(cache, PurgeSpec(paths=(b"/docs/c/",))) == 1
    assert len(cache) == 0


def test_purge_spec_survives_the_worker_bus() -> None:
    """What one worker sends is exactly what the others apply (bytes beyond ASCII included)."""
    import json

    from edgeproxy.purge import spec_from_wire, spec_to_wire

    spec = PurgeSpec(paths=(b"/a", b"/caf%C3%A9"), keys=(b"k\xff",), prefixes=(b"/docs/",), soft=True,
                     publish=PublishTag(id="pub_1", seen=1767225600.25))
    assert spec_from_wire(json.loads(json.dumps(spec_to_wire(spec)))) == spec
    assert spec_from_wire(spec_to_wire(PurgeSpec())) == PurgeSpec()
    invalidation = PurgeSpec(keys=(b"api:cnt_1",), invalidate=True)
    assert spec_from_wire(json.loads(json.dumps(spec_to_wire(invalidation)))) == invalidation
