"""The HTTP/1.1 hit loop (edgeproxy/hitloop.py): connections parked between requests.

Every test first makes the connection idle (one answered request), so what follows arrives
while it waits in the hit loop rather than in its own task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from support.loopback import Answer, Edge, H1Client, OriginStub, read_responses, start_edge, start_origin

from edgeproxy.config import ProxyConfig

BOUND_S = 10.0
CACHED = ((b"cache-control", b"max-age=60"), (b"etag", b'"v1"'))


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginStub:
    return await start_origin(nursery)


@pytest.fixture
async def edge(nursery: trio.Nursery, origin: OriginStub) -> Edge:
    return await start_edge(nursery, ProxyConfig(origin_port=origin.port, header_timeout=1.0,
                                                 keepalive_timeout=1.5))


@pytest.fixture
async def clients() -> AsyncIterator[list[H1Client]]:
    opened: list[H1Client] = []
    yield opened
    for client in opened:
        await client.aclose()


async def parked_client(port: int, clients: list[H1Client]) -> tuple[H1Client, trio.SocketStream]:
    client = await H1Client.connect(port)
    clients.append(client)
    assert (await client.request("GET", "/hit")).status == 200  # now idle: parked in the hit loop
    await trio.sleep(0.05)
    assert isinstance(client.stream, trio.SocketStream)
    return client, client.stream


async def test_pipelined_hits_and_a_miss_arrive_in_order(origin: OriginStub, edge: Edge, clients: list[H1Client]) -> None:
    origin.route("/hit", Answer(headers=CACHED, body=b"H"))
    origin.route("/miss", Answer(headers=((b"cache-control", b"no-store"),), body=b"M"))
    with trio.fail_after(BOUND_S):
        _, stream = await parked_client(edge.port, clients)
        request = b"GET %s HTTP/1.1\r\nhost: edge.test\r\n\r\n"
        await stream.send_all(request % b"/hit" + request % b"/miss" + request % b"/hit" + request % b"/hit")
        data = b""
        while data.count(b"HTTP/1.1 200") < 4:
            data += await stream.receive_some(65536)
    responses = read_responses(data, ["GET"] * 4)
    assert [r.body for r in responses] == [b"H", b"M", b"H", b"H"]
    assert "hit" in (responses[0].header("cache-status") or b"").decode()
    assert origin.count("/miss") == 1


async def test_half_a_request_gets_408_after_the_header_timeout(origin: OriginStub, edge: Edge, clients: list[H1Client]) -> None:
    origin.route("/hit", Answer(headers=CACHED, body=b"H"))
    with trio.fail_after(BOUND_S):
        _, stream = await parked_client(edge.port, clients)
        await stream.send_all(b"GET /hit HTTP/1.1\r\nhost: ed")  # and then nothing
        started = trio.current_time()
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
        waited = trio.current_time() - started
    assert data.startswith(b"HTTP/1.1 408")
    assert 0.9 <= waited < 4.0  # header_timeout (1 s) + the loop's once-a-second sweep


async def test_idle_parked_connection_closes_after_keepalive_timeout(origin: OriginStub, edge: Edge, clients: list[H1Client]) -> None:
    origin.route("/hit", Answer(headers=CACHED, body=b"H"))
    with trio.fail_after(BOUND_S):
        _, stream = await parked_client(edge.port, clients)
        started = trio.current_time()
        assert await stream.receive_some(65536) == b""  # closed by the edge, no answer owed
        waited = trio.current_time() - started
    assert 1.0 <= waited < 4.0


async def test_answers_larger_than_the_socket_buffer_are_finished_by_the_task(
        nursery: trio.Nursery, origin: OriginStub, clients: list[H1Client]) -> None:
    """A client that does not read: the hit loop's send is partial and the task sends the rest."""
    big = bytes(range(256)) * 1024  # 256 KiB
    origin.route("/hit", Answer(headers=CACHED, body=b"H"))
    origin.route("/big", Answer(headers=CACHED, body=big))
    edge = await start_edge(nursery, ProxyConfig(origin_port=origin.port))
    with trio.fail_after(BOUND_S):
        client, stream = await parked_client(edge.port, clients)
        assert (await client.request("GET", "/big")).body == big  # cached now
        await trio.sleep(0.05)
        request = b"GET /big HTTP/1.1\r\nhost: edge.test\r\n\r\n"
        await stream.send_all(request * 20)
        await trio.sleep(0.3)  # let the edge fill the socket buffers before we read anything
        data = b""
        while data.count(big) < 20:
            data += await stream.receive_some(1 << 20)
    responses = read_responses(data, ["GET"] * 20)
    assert all(r.status == 200 and r.body == big for r in responses)
    assert origin.count("/big") == 1


async def test_a_client_that_does_not_read_holds_back_its_pipeline(
        nursery: trio.Nursery, origin: OriginStub, clients: list[H1Client]) -> None:
    """Answers wait for the end of the batch only up to FLUSH_BYTES: 600 pipelined GETs of a
    1 MiB object (600 MiB of answers) from a client that reads nothing must not all be answered
    into memory; the socket's backpressure holds them back until the client reads."""
    big = bytes(range(256)) * 4096  # 1 MiB
    origin.route("/hit", Answer(headers=CACHED, body=b"H"))
    origin.route("/big", Answer(headers=CACHED, body=big))
    edge = await start_edge(nursery, ProxyConfig(origin_port=origin.port))
    count = 600
    with trio.fail_after(BOUND_S * 3):
        client, stream = await parked_client(edge.port, clients)
        assert (await client.request("GET", "/big")).body == big  # cached now
        await trio.sleep(0.05)
        assert edge.server.exchange is not None
        counters = edge.server.exchange.counters
        before = counters.bytes_sent
        await stream.send_all(b"GET /big HTTP/1.1\r\nhost: edge.test\r\n\r\n" * count)
        await trio.sleep(0.5)  # the edge fills the socket buffers, then must wait for us
        # what the kernel took: loopback grows the receive buffer up to tcp_rmem's maximum (32 MiB
        # on Debian) and the send buffer to 4 MiB, each counted with its overhead; far from 600 MiB
        assert counters.bytes_sent - before < 160 * 1024 * 1024
        heads, tail = 0, b""
        while heads < count or tail != big:  # every answer's status line, then the last body whole
            chunk = await stream.receive_some(1 << 20)
            assert chunk
            seen = tail[-16:] + chunk
            heads += seen.count(b"HTTP/1.1 200 ") - tail[-16:].count(b"HTTP/1.1 200 ")
            tail = (tail + chunk)[-len(big):]
    assert heads == count
    assert origin.count("/big") == 1


async def test_bad_request_after_parking_gets_400(origin: OriginStub, edge: Edge, clients: list[H1Client]) -> None:
    origin.route("/hit", Answer(headers=CACHED, body=b"H"))
    with trio.fail_after(BOUND_S):
        _, stream = await parked_client(edge.port, clients)
        await stream.send_all(b"GET /hit HTTP/1.1\r\nbad header\r\n\r\n")
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400")


async def test_pipelined_hits_then_a_bad_request_get_their_answers_then_400(origin: OriginStub, edge: Edge,
                                                                            clients: list[H1Client]) -> None:
    """The hits' answers wait for the end of the batch; the parse error must not lose them."""
    origin.route("/hit", Answer(headers=CACHED, body=b"H"))
    with trio.fail_after(BOUND_S):
        _, stream = await parked_client(edge.port, clients)
        request = b"GET /hit HTTP/1.1\r\nhost: edge.test\r\n\r\n"
        await stream.send_all(request + request + b"GET /hit HTTP/1.1\r\nbad header\r\n\r\n")
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    first, second, rest = data.split(b"HTTP/1.1 ", 3)[1:]
    assert first.startswith(b"200")
    assert first.endswith(b"\r\n\r\nH")
    assert second.startswith(b"200")
    assert second.endswith(b"\r\n\r\nH")
    assert rest.startswith(b"400")


async def test_a_deep_pipeline_of_hits_is_answered_whole(origin: OriginStub, edge: Edge,
                                                        clients: list[H1Client]) -> None:
    """Answers wait for the end of the batch; more of them than sendmsg takes at once (IOV_MAX)
    must still go out, in order."""
    origin.route("/hit", Answer(headers=CACHED, body=b"H"))
    count = 6000  # 200 KB of requests: a 64 KiB read holds ~1900 (3800 pieces; Linux IOV_MAX is 1024)
    with trio.fail_after(BOUND_S):
        _, stream = await parked_client(edge.port, clients)
        await stream.send_all(b"GET /hit HTTP/1.1\r\nhost: edge.test\r\n\r\n" * count)
        data = b""
        while data.count(b"HTTP/1.1 200") < count or not data.endswith(b"\r\n\r\nH"):
            chunk = await stream.receive_some(1 << 20)
            assert chunk, f"closed after {data.count(b'HTTP/1.1 200')} answers"
            data += chunk
    responses = read_responses(data, ["GET"] * count)
    assert [r.body for r in responses] == [b"H"] * count


async def test_one_batch_answers_every_ready_connection(origin: OriginStub, edge: Edge,
                                                        clients: list[H1Client]) -> None:
    """Requests arriving together on many parked connections are all answered, each on its own."""
    origin.route("/hit", Answer(headers=CACHED, body=b"H"))
    for n in range(16):
        origin.route(f"/hit{n}", Answer(headers=CACHED, body=b"H%d" % n))
    with trio.fail_after(BOUND_S):
        streams = [(await parked_client(edge.port, clients))[1] for _ in range(16)]
        for n, stream in enumerate(streams):  # fill the cache: one miss each
            await stream.send_all(b"GET /hit%d HTTP/1.1\r\nhost: edge.test\r\n\r\n" % n)
            assert read_responses(await stream.receive_some(65536), ["GET"])[0].body == b"H%d" % n
        await trio.sleep(0.05)  # all parked again
        for n, stream in enumerate(streams):
            await stream.send_all(b"GET /hit%d HTTP/1.1\r\nhost: edge.test\r\n\r\n" % n)
        for n, stream in enumerate(streams):
            data = b""
            while not data.endswith(b"H%d" % n):
                data += await stream.receive_some(65536)
            (response,) = read_responses(data, ["GET"])
            assert response.body == b"H%d" % n
            assert "hit" in (response.header("cache-status") or b"").decode()
    assert all(origin.count(f"/hit{n}") == 1 for n in range(16))


async def test_a_miss_is_counted_once_whichever_path_looked_first(origin: OriginStub, edge: Edge,
                                                                  clients: list[H1Client]) -> None:
    origin.route("/hit", Answer(headers=CACHED, body=b"H"))
    origin.route("/other", Answer(headers=((b"cache-control", b"no-store"),), body=b"O"))
    with trio.fail_after(BOUND_S):
        client, _ = await parked_client(edge.port, clients)  # /hit: a miss, then stored
        assert (await client.request("GET", "/other")).body == b"O"  # the hit loop looks, then the task
        stats = (await client.request("GET", "/.edge/stats")).json()
    assert (stats["cache"]["misses"], stats["cache"]["hits"]) == (2, 0)


async def test_a_precondition_is_answered_when_the_answer_is_not_stored(nursery: trio.Nursery,
                                                                        origin: OriginStub) -> None:
    """cache_bytes=0 stores nothing; If-None-Match must still get its 304 (not the full body)."""
    origin.route("/e", Answer(headers=CACHED, body=b"E" * 100))
    edge = await start_edge(nursery, ProxyConfig(origin_port=origin.port, cache_bytes=0))
    client = await H1Client.connect(edge.port)
    try:
        with trio.fail_after(BOUND_S):
            full = await client.request("GET", "/e")
            conditional = await client.request("GET", "/e", [("if-none-match", '"v1"')])
            other = await client.request("GET", "/e", [("if-none-match", '"v0"')])
    finally:
        await client.aclose()
    assert (full.status, conditional.status, other.status) == (200, 304, 200)
    assert conditional.body == b""
    assert conditional.header(b"etag") == b'"v1"'
