"""Bodies larger than the cache may hold stream through the edge instead of being read whole.

A raw origin on 127.0.0.1 sends a large body in two parts with a pause between them; the
client must see the first part before the origin sends the second (so the edge did not
wait for the whole body), over HTTP/1.1 (Content-Length or chunked) and HTTP/2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import h11
import pytest
import trio
from support.loopback import H2Client, start_edge

from edgeproxy.config import ProxyConfig

BOUND_S = 20.0
PART = 2 * 1024 * 1024  # each half of the body; the edge streams anything above 1 MiB here
BODY = bytes(range(256)) * (2 * PART // 256)


@dataclass
class SlowOrigin:
    """Answers every GET with BODY: head + first half, then waits for ``release``, then the rest."""

    chunked: bool = False
    cut_short: bool = False  # close after the first half instead of sending the rest
    release: trio.Event = field(default_factory=trio.Event)
    requests: int = 0
    port: int = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.EndOfMessage):
                break
        self.requests += 1
        headers = [(b"content-type", b"application/octet-stream"), (b"cache-control", b"max-age=60")]
        headers.append((b"transfer-encoding", b"chunked") if self.chunked else (b"content-length", b"%d" % len(BODY)))
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)))
        for i in range(0, PART, 65536):
            await stream.send_all(conn.send(h11.Data(data=BODY[i:i + 65536])))
        await self.release.wait()
        if self.cut_short:
            await stream.aclose()
            return
        for i in range(PART, len(BODY), 65536):
            await stream.send_all(conn.send(h11.Data(data=BODY[i:i + 65536])))
        await stream.send_all(conn.send(h11.EndOfMessage()))
        with trio.move_on_after(1):  # keep-alive: the edge may pool the connection
            await stream.receive_some(1)


async def start_slow_origin(nursery: trio.Nursery, **options: bool) -> SlowOrigin:
    origin = SlowOrigin(**options)
    listeners = await nursery.start(partial(trio.serve_tcp, origin.handle, 0, host="127.0.0.1"))
    origin.port = listeners[0].socket.getsockname()[1]
    return origin


async def h1_get(port: int, on_first_bytes: Callable[[], None]) -> tuple[h11.Response, bytes, bool]:
    """GET /big; ``on_first_bytes`` runs once a MiB of body has arrived. (response, body, complete)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    await stream.send_all(conn.send(h11.Request(method="GET", target="/big", headers=[(b"host", b"edge.test")]))
                          + conn.send(h11.EndOfMessage()))
    response, chunks, size, told = None, [], 0, False
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
                size += len(event.data)
                if size >= 1 << 20 and not told:
                    told = True
                    on_first_bytes()
            elif isinstance(event, h11.EndOfMessage):
                return response, b"".join(chunks), True  # type: ignore[return-value]
    except h11.RemoteProtocolError:
        return response, b"".join(chunks), False  # type: ignore[return-value]
    finally:
        await stream.aclose()


@pytest.mark.parametrize("chunked", [False, True])
async def test_h1_large_body_streams_before_the_origin_finishes(nursery: trio.Nursery, chunked: bool) -> None:
    origin = await start_slow_origin(nursery, chunked=chunked)
    edge = await start_edge(nursery, ProxyConfig(origin_port=origin.port, cache_bytes=4 * 1024 * 1024))
    with trio.fail_after(BOUND_S):
        response, body, complete = await h1_get(edge.port, origin.release.set)
        again, body2, _ = await h1_get(edge.port, origin.release.set)
    assert complete
    assert body == BODY  # every byte, in order
    headers = dict(response.headers)
    if chunked:
        assert headers[b"transfer-encoding"] == b"chunked"
    else:
        assert headers[b"content-length"] == b"%d" % len(BODY)
    assert b"stored" not in headers[b"cache-status"]  # larger than any object the cache may hold
    assert (body2, origin.requests) == (BODY, 2)  # so it is fetched again, not served from memory
    assert b"hit" not in dict(again.headers)[b"cache-status"]


async def test_h1_origin_failing_mid_body_cuts_the_client_off(nursery: trio.Nursery) -> None:
    origin = await start_slow_origin(nursery, cut_short=True)
    edge = await start_edge(nursery, ProxyConfig(origin_port=origin.port, cache_bytes=4 * 1024 * 1024))
    with trio.fail_after(BOUND_S):
        _, body, complete = await h1_get(edge.port, origin.release.set)
    assert not complete  # never a silently short "complete" response
    assert len(body) < len(BODY)
    assert body == BODY[: len(body)]


async def test_h2_large_body_streams_within_flow_control(nursery: trio.Nursery) -> None:
    origin = await start_slow_origin(nursery)
    edge = await start_edge(nursery, ProxyConfig(origin_port=origin.port, cache_bytes=4 * 1024 * 1024))
    with trio.fail_after(BOUND_S):
        client = await H2Client.connect(nursery, edge.port)
        stream_id = await client.start_request("GET", "/big")
        h2stream = client.streams[stream_id]
        while sum(map(len, h2stream.data)) < 1 << 20:  # noqa: ASYNC110 — the client has no per-byte event
            await trio.sleep(0.01)  # the first MiB arrives before the rest exists
        origin.release.set()
        await h2stream.done.wait()
    response = h2stream.response()
    assert response.status == 200
    assert response.body == BODY
    assert response.header("content-length") == b"%d" % len(BODY)
