"""Publish latency measured by the edge itself, over real sockets on 127.0.0.1: a tagged purge, the
first fresh answer after it, and what ``/.edge/metrics`` and ``/.edge/stats`` say about them.

Times here are wall-clock epoch seconds on both sides (the edge stamps them with ``time.time``),
so each latency is checked against what the test itself measured around it.
"""

from __future__ import annotations

import json
import time

import pytest
import trio
from support.loopback import Answer, Edge, OriginStub, SeenRequest, fetch, get, start_edge, start_origin

from edgeproxy.config import ProxyConfig
from edgeproxy.publish_metrics import HISTOGRAM
from pipeline import edges as publisher_edges
from pipeline.publish import PurgeSet

TOKEN = "s3cret-token"
AUTH = ("authorization", f"Bearer {TOKEN}")
BOUND_S = 10.0
BUILD_S = 1.5  # how long before the purge the publisher "saw the commit"
EPSILON_S = 1e-5  # the text format's six decimals


def cached(body: bytes, *, etag: bytes, keys: bytes = b"page", delay: float = 0.0) -> Answer:
    return Answer(headers=((b"cache-control", b"max-age=600"), (b"etag", etag), (b"surrogate-key", keys)),
                  body=body, delay=delay)


async def purge(port: int, body: dict[str, object], *headers: tuple[str, str]) -> tuple[int, dict[str, object]]:
    response = await fetch(port, "POST", "/.edge/purge", [("content-type", "application/json"), *headers],
                           json.dumps(body).encode())
    return response.status, response.json()


async def metrics(port: int) -> dict[str, float]:
    """``/.edge/metrics`` samples of the publish metrics, as ``{name{labels}: value}``."""
    response = await get(port, "/.edge/metrics")
    assert response.status == 200
    samples = dict(line.rsplit(" ", 1) for line in response.body.decode().splitlines() if not line.startswith("#"))
    return {name: float(value) for name, value in samples.items() if "publish" in name}


def check_histogram(sample: dict[str, float], *, count: int) -> None:
    """Cumulative buckets that end in +Inf = _count (Prometheus histogram conventions)."""
    buckets = [(name, value) for name, value in sample.items() if name.startswith(f"{HISTOGRAM}_bucket")]
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert buckets[-1] == (f'{HISTOGRAM}_bucket{{le="+Inf"}}', count)
    assert sample[f"{HISTOGRAM}_count"] == count


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginStub:
    return await start_origin(nursery)


@pytest.fixture
async def edge(nursery: trio.Nursery, origin: OriginStub) -> Edge:
    return await start_edge(nursery, ProxyConfig(origin_port=origin.port, purge_token=TOKEN))


async def test_publish_latency_from_commit_to_first_fresh_answer(origin: OriginStub, edge: Edge) -> None:
    """The purge's arrival and the first fresh 200 after it are timed; a later HIT changes nothing;
    the next publish (a soft key purge, revalidated to a new answer) takes over the last-publish gauges."""
    origin.route("/p/", cached(b"v1", etag=b'"v1"'))
    origin.route("/api", cached(b"a1", etag=b'"a1"', keys=b"api:x"))
    with trio.fail_after(BOUND_S):
        assert (await get(edge.port, "/p/")).body == b"v1"
        assert (await get(edge.port, "/api")).body == b"a1"
        before = await metrics(edge.port)
        origin.route("/p/", cached(b"v2", etag=b'"v2"'))
        started = time.time()
        status, _ = await purge(edge.port, {"paths": ["/p/"], "publish": {"id": "pub_1", "seen": started - BUILD_S}},
                                AUTH)
        fresh = await get(edge.port, "/p/")
        first = await metrics(edge.port)
        elapsed = time.time() - started
        hit = await get(edge.port, "/p/")
        after_hit = await metrics(edge.port)

        origin.route("/api", cached(b"a2", etag=b'"a2"', keys=b"api:x"))
        started2 = time.time()
        status2, _ = await purge(edge.port, {"keys": ["api:x"], "soft": True,
                                             "publish": {"id": "pub_2", "seen": started2 - BUILD_S}}, AUTH)
        revalidated = await get(edge.port, "/api")
        second = await metrics(edge.port)
        elapsed2 = time.time() - started2
        stats = (await get(edge.port, "/.edge/stats")).json()["publish"]

    assert before["edgeproxy_publishes_seen_total"] == 0
    assert not any(name.startswith("edgeproxy_last_publish") for name in before)
    assert (status, fresh.body, hit.body, revalidated.body, status2) == (200, b"v2", b"v2", b"a2", 200)
    assert "hit" not in (fresh.header("cache-status") or b"").decode()
    assert "hit" in (hit.header("cache-status") or b"").decode()

    assert first["edgeproxy_publishes_seen_total"] == 1
    assert first['edgeproxy_last_publish_info{id="pub_1"}'] == 1
    commit_to_purge = first["edgeproxy_last_publish_commit_to_purge_seconds"]
    purge_to_fresh = first["edgeproxy_last_publish_purge_to_first_fresh_seconds"]
    assert BUILD_S - EPSILON_S <= commit_to_purge <= BUILD_S + elapsed
    assert 0 <= purge_to_fresh <= elapsed
    assert first["edgeproxy_last_publish_commit_to_first_fresh_seconds"] == pytest.approx(
        commit_to_purge + purge_to_fresh, abs=2 * EPSILON_S)
    assert started <= first["edgeproxy_last_publish_purge_received_timestamp_seconds"] <= started + elapsed
    check_histogram(first, count=1)
    assert after_hit == first  # a cache hit is not a first fresh answer and costs no bookkeeping

    assert second["edgeproxy_publishes_seen_total"] == 2
    assert second['edgeproxy_last_publish_info{id="pub_2"}'] == 1
    assert 'edgeproxy_last_publish_info{id="pub_1"}' not in second
    assert 0 <= second["edgeproxy_last_publish_purge_to_first_fresh_seconds"] <= elapsed2
    check_histogram(second, count=2)
    assert stats["seen_total"] == 2
    assert [r["id"] for r in stats["recent"]] == ["pub_2", "pub_1"]
    assert stats["last"]["first_fresh"] is not None


async def test_an_answer_already_in_flight_at_the_purge_is_not_the_first_fresh(origin: OriginStub,
                                                                               edge: Edge) -> None:
    """The origin may have answered before the publish: only a request started after the purge counts."""
    origin.route("/slow/", cached(b"old", etag=b'"old"', delay=0.5))
    answers: list[bytes] = []

    async def read_slow() -> None:
        answers.append((await get(edge.port, "/slow/")).body)

    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_slow)
            while origin.count("/slow/") == 0:  # noqa: ASYNC110 — the origin is another server: poll it
                await trio.sleep(0.01)
            status, _ = await purge(edge.port, {"paths": ["/slow/"], "publish": {"id": "pub_r", "seen": time.time()}},
                                    AUTH)
            origin.route("/slow/", cached(b"new", etag=b'"new"'))
        waiting = await metrics(edge.port)
        again = await get(edge.port, "/slow/")
        done = await metrics(edge.port)
    assert (status, answers, again.body) == (200, [b"old"], b"new")
    assert waiting['edgeproxy_last_publish_info{id="pub_r"}'] == 1
    assert "edgeproxy_last_publish_purge_to_first_fresh_seconds" not in waiting
    assert done["edgeproxy_last_publish_purge_to_first_fresh_seconds"] >= 0
    check_histogram(done, count=1)


@pytest.mark.parametrize(("publish", "detail"), [
    ({"id": "pub 1", "seen": 1.0}, "publish.id must be"),
    ({"id": "pub_1", "seen": "yesterday"}, "publish.seen must be a positive number"),
    ({"id": "pub_1"}, "publish.seen must be a positive number"),
    ("pub_1", "publish must be an object"),
])
async def test_a_bad_publish_tag_is_a_400_that_says_why(edge: Edge, publish: object, detail: str) -> None:
    with trio.fail_after(BOUND_S):
        status, body = await purge(edge.port, {"paths": ["/p/"], "publish": publish}, AUTH)
        unauthenticated, _ = await purge(edge.port, {"paths": ["/p/"], "publish": publish})
        sample = await metrics(edge.port)
    assert status == 400
    assert detail in body["errors"][0]["detail"]  # type: ignore[index]
    assert unauthenticated == 401  # the token is checked before the body
    assert sample["edgeproxy_publishes_seen_total"] == 0


async def test_the_publishers_purge_is_tagged_and_timed_by_the_edge(origin: OriginStub, edge: Edge) -> None:
    """``pipeline.edges.purge_all`` tags every batch (paths, keys): one publish at the edge."""
    origin.route("/p/", cached(b"v1", etag=b'"v1"'))
    seen = time.time() - BUILD_S
    target = publisher_edges.Edge(f"http://127.0.0.1:{edge.port}", TOKEN)
    with trio.fail_after(BOUND_S):
        acks = await publisher_edges.purge_all([target], PurgeSet(paths=("/p/",), keys=("api:x",)), soft=True,
                                               publish=publisher_edges.PublishTag("pub_abc0001", seen))
        waiting = await metrics(edge.port)
        assert (await get(edge.port, "/p/")).body == b"v1"
        fresh = await metrics(edge.port)
    assert [(a.ok, a.attempts) for a in acks] == [(True, 2)]
    assert waiting["edgeproxy_publishes_seen_total"] == 1
    assert waiting['edgeproxy_last_publish_info{id="pub_abc0001"}'] == 1
    assert fresh["edgeproxy_last_publish_commit_to_first_fresh_seconds"] >= BUILD_S - EPSILON_S


async def test_an_edge_without_publish_tags_still_gets_the_purge(origin: OriginStub) -> None:
    """An older edge answers 400 to the unknown field: the batch goes again untagged, and so do the rest."""

    def old_edge(request: SeenRequest) -> Answer:
        if b'"publish"' in request.body:
            return Answer(status=400, body=b'{"errors": [{"detail": "unknown field \'publish\'"}]}')
        return Answer(headers=((b"content-type", b"application/json"),), body=b'{"purged": 1}')

    origin.route("/.edge/purge", old_edge)
    target = publisher_edges.Edge(f"http://127.0.0.1:{origin.port}", TOKEN)
    with trio.fail_after(BOUND_S):
        acks = await publisher_edges.purge_all([target], PurgeSet(paths=("/p/",), keys=("api:x",)), soft=True,
                                               publish=publisher_edges.PublishTag("pub_1", time.time()))
    assert [(a.ok, a.purged, a.attempts, a.error) for a in acks] == [(True, 2, 2, None)]
    assert [b'"publish"' in r.body for r in origin.requests_for("/.edge/purge")] == [True, False, False]
