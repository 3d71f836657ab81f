"""The edge over HTTP/2 on 127.0.0.1: prior knowledge (h2c) and TLS with ALPN."""

from __future__ import annotations

import ssl
from pathlib import Path

import h2.errors
import httpx
import pytest
import trio
import trustme
from support.loopback import (
    Answer,
    Edge,
    H1Client,
    H2Client,
    OriginStub,
    Response,
    start_edge,
    start_origin,
)

from edgeproxy.config import ProxyConfig

BOUND_S = 5.0
CACHED = ((b"cache-control", b"max-age=60"), (b"etag", b'"v1"'), (b"surrogate-key", b"k"))


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginStub:
    return await start_origin(nursery)


@pytest.fixture
async def edge(nursery: trio.Nursery, origin: OriginStub) -> Edge:
    return await start_edge(nursery, ProxyConfig(origin_port=origin.port, purge_token="t"))


def cache_status(response: Response) -> str:
    return (response.header("cache-status") or b"").decode()


async def test_h2_miss_then_hit(nursery: trio.Nursery, origin: OriginStub, edge: Edge) -> None:
    """Prior-knowledge h2c: miss, then hit with Age; edge-only fields are removed."""
    origin.route("/page", Answer(headers=CACHED, body=b"hello"))
    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, edge.port)
        miss = await client.request("GET", "/page")
        hit = await client.request("GET", "/page", [("if-none-match", '"nope"')])
        not_modified = await client.request("GET", "/page", [("if-none-match", 'W/"v1"')])
        head = await client.request("HEAD", "/page")
        await client.aclose()
    assert (miss.status, miss.body, cache_status(miss)) == (200, b"hello", "edgeproxy; fwd=uri-miss; stored")
    assert (hit.status, hit.body) == (200, b"hello")
    assert "hit" in cache_status(hit)
    assert hit.header("age") is not None
    assert hit.header("surrogate-key") is None
    assert (not_modified.status, not_modified.body) == (304, b"")
    assert (head.status, head.body, head.header("content-length")) == (200, b"", b"5")
    assert origin.count("/page") == 1


async def test_h2_many_concurrent_streams(nursery: trio.Nursery, origin: OriginStub, edge: Edge) -> None:
    """60 streams in flight on one connection, each answered with its own body."""
    for i in range(30):
        origin.route(f"/s{i}", Answer(headers=CACHED, body=b"body %d" % i, delay=0.1))
    results: dict[int, Response] = {}
    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, edge.port)

        async def one(n: int) -> None:
            results[n] = await client.request("GET", f"/s{n % 30}")

        async with trio.open_nursery() as streams:
            for n in range(60):
                streams.start_soon(one, n)
        await client.aclose()
    assert all(results[n].body == b"body %d" % (n % 30) for n in range(60))
    assert all(origin.count(f"/s{i}") == 1 for i in range(30))  # each second request collapsed or hit


async def test_h2_large_body_respects_flow_control(nursery: trio.Nursery, origin: OriginStub, edge: Edge) -> None:
    """A 1.5 MiB answer (far past the 64 KiB initial window) arrives complete, miss and hit."""
    body = bytes(range(251)) * (6 * 1024 + 300)  # ~1.5 MiB, not a multiple of the frame size
    assert len(body) > 1024 * 1024
    origin.route("/big", Answer(headers=CACHED, body=body))
    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, edge.port)
        miss = await client.request("GET", "/big")
        hit = await client.request("GET", "/big")
        await client.aclose()
    assert miss.body == body
    assert hit.body == body
    assert hit.header("content-length") == b"%d" % len(body)


async def test_h2_post_body_is_forwarded(nursery: trio.Nursery, origin: OriginStub, edge: Edge) -> None:
    """A 300 KiB request body (past the client's initial view of our window) reaches the origin."""
    origin.route("/upload", Answer(status=201, body=b"stored"))
    payload = b"x" * (300 * 1024)
    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, edge.port)
        response = await client.request("POST", "/upload", [("content-type", "application/octet-stream")],
                                        payload)
        await client.aclose()
    assert (response.status, response.body) == (201, b"stored")
    seen = origin.requests_for("/upload")[0]
    assert (seen.method, len(seen.body), seen.header(b"content-length")) == (b"POST", len(payload), b"307200")


async def test_h2_oversized_body_gets_413(nursery: trio.Nursery, origin: OriginStub, edge: Edge,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A request body past the limit is answered 413 and the upload stopped; the connection lives on."""
    monkeypatch.setattr("edgeproxy.http2.MAX_BODY", 1000)
    origin.route("/small", Answer(headers=CACHED, body=b"small"))
    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, edge.port)
        too_big = await client.request("POST", "/upload", body=b"x" * 5000)
        after = await client.request("GET", "/small")
        await client.aclose()
    assert too_big.status == 413
    assert after.body == b"small"
    assert origin.count("/upload") == 0


async def test_h2_bug_in_one_stream_answers_500(nursery: trio.Nursery, origin: OriginStub, edge: Edge,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception answers that stream 500; the connection serves the next one."""
    origin.route("/ok", Answer(headers=CACHED, body=b"ok"))
    exchange = edge.server.exchange
    assert exchange is not None

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, edge.port)
        monkeypatch.setattr(exchange, "handle", broken)
        failed = await client.request("GET", "/ok")
        monkeypatch.undo()
        fine = await client.request("GET", "/ok")
        await client.aclose()
    assert failed.status == 500
    assert fine.body == b"ok"


async def test_h2_reset_stream_keeps_the_connection(nursery: trio.Nursery, origin: OriginStub, edge: Edge) -> None:
    """RST_STREAM of one stream cancels only that stream; the connection still serves others."""
    origin.route("/slow", Answer(headers=CACHED, body=b"slow", delay=0.3))
    origin.route("/fast", Answer(headers=CACHED, body=b"fast"))
    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, edge.port)
        stream_id = await client.start_request("GET", "/slow")
        client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        await client.flush()
        fast = await client.request("GET", "/fast")
        await trio.sleep(0.4)  # the collapsed fetch for /slow still completes and is stored
        slow = await client.request("GET", "/slow")
        await client.aclose()
    assert fast.body == b"fast"
    assert client.goaway is None
    assert slow.body == b"slow"
    assert "hit" in cache_status(slow)
    assert origin.count("/slow") == 1


async def test_h2_reset_mid_body_keeps_the_connection(nursery: trio.Nursery, origin: OriginStub, edge: Edge) -> None:
    """Resetting a stream while its large body is being sent leaves the other streams' framing intact."""
    origin.route("/big", Answer(headers=CACHED, body=b"b" * (4 * 1024 * 1024)))
    origin.route("/fast", Answer(headers=CACHED, body=b"fast"))
    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, edge.port)
        await client.request("GET", "/big")  # cached: the next one is sent at memory speed
        for _ in range(5):
            stream_id = await client.start_request("GET", "/big")
            while not client.streams[stream_id].data:  # noqa: ASYNC110 - polls the reader task's buffer
                await trio.sleep(0.001)
            client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            await client.flush()
            fast = await client.request("GET", "/fast")
            assert fast.body == b"fast"
        await client.aclose()
    assert client.goaway is None


async def test_h2_ping_is_answered(nursery: trio.Nursery, edge: Edge) -> None:
    """PING gets a PING ACK with the same opaque data (RFC 9113 §6.7)."""
    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, edge.port)
        await client.ping(b"edge-png")
        await client.aclose()
    assert client.ping_acks == [b"edge-png"]


async def test_h2_protocol_error_gets_goaway(nursery: trio.Nursery, edge: Edge) -> None:
    """A DATA frame on stream 0 is a connection error: GOAWAY(PROTOCOL_ERROR), then close (RFC 9113 §6.1)."""
    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, edge.port)
        await client.ping()  # the handshake is done
        await client.stream.send_all(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")  # DATA, stream 0
        await client.closed.wait()
    assert client.goaway is not None
    assert client.goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR


async def test_h2_rapid_reset_flood_gets_enhance_your_calm(nursery: trio.Nursery, origin: OriginStub,
                                                         edge: Edge) -> None:
    """Opening and resetting hundreds of streams (CVE-2023-44487) ends with GOAWAY(ENHANCE_YOUR_CALM)."""
    origin.route("/r", Answer(headers=CACHED, body=b"r"))
    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, edge.port)
        await client.ping()
        for _ in range(300):
            if client.goaway is not None or client.closed.is_set():
                break
            stream_id = client.conn.get_next_available_stream_id()
            client.conn.send_headers(stream_id, [(b":method", b"GET"), (b":scheme", b"http"),
                                                 (b":authority", b"e"), (b":path", b"/r")], end_stream=True)
            client.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            try:
                await client.flush()
            except trio.BrokenResourceError:
                break
        await client.closed.wait()
    assert client.goaway is not None
    assert client.goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


async def test_h2_graceful_shutdown_sends_goaway_and_finishes_streams(origin: OriginStub) -> None:
    """On shutdown a stream in flight is still answered, then GOAWAY names it as the last one."""
    origin.route("/slow", Answer(headers=CACHED, body=b"slow", delay=0.3))
    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            edge = await start_edge(nursery, ProxyConfig(origin_port=origin.port, grace=5.0))
            client = await H2Client.connect(nursery, edge.port)
            stream_id = await client.start_request("GET", "/slow")
            await trio.sleep(0.1)
            edge.server.shutdown()
            response = await client.response(stream_id)
            await client.closed.wait()
    assert response.body == b"slow"
    assert client.goaway is not None
    assert client.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
    assert client.goaway.last_stream_id == stream_id


# --- TLS with ALPN ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_edge(nursery: trio.Nursery, origin: OriginStub, ca: trustme.CA, tmp_path: Path) -> Edge:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    config = ProxyConfig(origin_port=origin.port, tls_cert=str(cert_path), tls_key=str(key_path))
    return await start_edge(nursery, config)


def client_context(ca: trustme.CA, protocols: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(protocols)
    return context


async def test_tls_alpn_h2(nursery: trio.Nursery, origin: OriginStub, tls_edge: Edge, ca: trustme.CA) -> None:
    """A client offering h2 gets HTTP/2 over TLS."""
    origin.route("/t", Answer(headers=CACHED, body=b"secure"))
    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, tls_edge.port, ssl_context=client_context(ca, ["h2", "http/1.1"]))
        response = await client.request("GET", "/t")
        assert isinstance(client.stream, trio.SSLStream)
        assert client.stream.selected_alpn_protocol() == "h2"
        await client.aclose()
    assert (response.status, response.body, response.http_version) == (200, b"secure", "2")


async def test_tls_alpn_http11(origin: OriginStub, tls_edge: Edge, ca: trustme.CA) -> None:
    """A client offering only http/1.1 (or no ALPN at all) gets HTTP/1.1 over TLS."""
    origin.route("/t", Answer(headers=CACHED, body=b"secure"))
    with trio.fail_after(BOUND_S):
        for protocols in (["http/1.1"], []):
            tcp = await trio.open_tcp_stream("127.0.0.1", tls_edge.port)
            tls = trio.SSLStream(tcp, client_context(ca, protocols), server_hostname="localhost")
            client = H1Client(tls)
            response = await client.request("GET", "/t")
            assert tls.selected_alpn_protocol() == (protocols[0] if protocols else None)
            await client.aclose()
            assert (response.status, response.body) == (200, b"secure")


async def test_tls_with_httpx_negotiates_both_protocols(origin: OriginStub, tls_edge: Edge, ca: trustme.CA) -> None:
    """A stock client (httpx) gets HTTP/2 when it asks for it and HTTP/1.1 otherwise."""
    origin.route("/t", Answer(headers=CACHED, body=b"secure"))
    url = f"https://localhost:{tls_edge.port}/t"
    with trio.fail_after(BOUND_S):
        for http2, version in ((True, "HTTP/2"), (False, "HTTP/1.1")):
            verify = client_context(ca, [])
            async with httpx.AsyncClient(http2=http2, verify=verify) as client:
                response = await client.get(url)
            assert (response.status_code, response.content, response.http_version) == (200, b"secure", version)
