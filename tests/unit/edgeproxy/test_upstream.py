"""edgeproxy.upstream: the origin pool over in-memory streams and request collapsing, on a fake clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import h11
import pytest
import trio
import trio.lowlevel
import trio.testing

from edgeproxy.errors import UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamTimeout
from edgeproxy.upstream import Flights, OriginPool

Handler = Callable[[trio.abc.Stream], Awaitable[None]]


class MemoryPool(OriginPool):
    """An OriginPool whose connections are memory streams served by ``handler`` tasks."""

    def __init__(self, nursery: trio.Nursery, handler: Handler, **options: float) -> None:
        super().__init__("origin.test", 80, **options)  # type: ignore[arg-type]
        self.nursery = nursery
        self.handler = handler
        self.server_streams: list[trio.abc.Stream] = []

    async def _open_stream(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        self.server_streams.append(server)
        self.nursery.start_soon(self.handler, server)
        return client


def origin(*, answers: int = 1000, body: bytes = b"ok", delay: float = 0.0, raw: bytes | None = None) -> Handler:
    """An h11 origin that answers ``answers`` requests on a connection, then closes it."""

    async def handle(stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            for _ in range(answers):
                while not isinstance(event := conn.next_event(), h11.EndOfMessage):
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        conn.receive_data(data)
                await trio.sleep(delay)
                if raw is not None:
                    await stream.send_all(raw)
                    return
                await stream.send_all(
                    conn.send(h11.Response(status_code=200, headers=[(b"content-length", b"%d" % len(body))]))
                    + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
                conn.start_next_cycle()
        except trio.BrokenResourceError:
            return
        finally:
            await stream.aclose()

    return handle


# --- OriginPool -------------------------------------------------------------------------------

async def test_pool_reuses_a_keep_alive_connection(nursery: trio.Nursery) -> None:
    """Sequential requests share one origin connection."""
    pool = MemoryPool(nursery, origin())
    first = await pool.request(b"GET", b"/a", [])
    second = await pool.request(b"GET", b"/b", [(b"accept", b"*/*")])
    assert (first.status, first.body, second.body) == (200, b"ok", b"ok")
    assert pool.connections_opened == 1
    await pool.aclose()


async def test_pool_retries_an_idempotent_request_when_the_idle_connection_died(nursery: trio.Nursery) -> None:
    """The origin closed the idle connection: a GET is sent again on a fresh one (nginx proxy_next_upstream)."""
    pool = MemoryPool(nursery, origin(answers=1))
    await pool.request(b"GET", b"/a", [])
    await trio.testing.wait_all_tasks_blocked()  # the origin has closed its end
    response = await pool.request(b"GET", b"/b", [])
    assert response.body == b"ok"
    assert pool.connections_opened == 2


async def test_pool_does_not_retry_a_post(nursery: trio.Nursery) -> None:
    """A POST whose connection closes before any answer is not repeated: it may have had an effect."""
    pool = MemoryPool(nursery, origin(answers=0))
    with pytest.raises(UpstreamProtocolError):
        await pool.request(b"POST", b"/form", [], b"x=1")
    assert pool.connections_opened == 1


async def test_pool_read_timeout(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    """An origin slower than read_timeout raises UpstreamTimeout, and its connection is closed."""
    pool = MemoryPool(nursery, origin(delay=10.0), read_timeout=2.0)
    started = trio.current_time()
    with pytest.raises(UpstreamTimeout):
        await pool.request(b"GET", b"/slow", [])
    assert trio.current_time() - started == pytest.approx(2.0)
    assert repr(pool).endswith("idle=0 opened=1>")


async def test_pool_connect_errors_are_translated(nursery: trio.Nursery) -> None:
    """OSError from connecting becomes UpstreamConnectError (STYLE.md 2.4 §5)."""

    class Refusing(OriginPool):
        async def _open_stream(self) -> trio.abc.Stream:
            raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(UpstreamConnectError, match="Connection refused"):
        await Refusing("origin.test", 80).request(b"GET", b"/", [])


async def test_pool_invalid_http_is_a_protocol_error(nursery: trio.Nursery) -> None:
    """Garbage from the origin raises UpstreamProtocolError, never an h11 exception."""
    pool = MemoryPool(nursery, origin(raw=b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n"))
    with pytest.raises(UpstreamProtocolError, match="invalid HTTP"):
        await pool.request(b"GET", b"/", [])


async def test_pool_drops_a_connection_with_bytes_past_the_response(nursery: trio.Nursery) -> None:
    """An origin that sends more than its Content-Length says (cache-tests.fyi's short-length
    cases) leaves bytes nobody asked for on the connection: it is closed, not pooled, so the next
    request is not answered with them (nginx closes such a keep-alive connection too)."""

    async def overlong(stream: trio.abc.Stream) -> None:
        try:
            while data := await stream.receive_some(65536):
                if data.endswith(b"\r\n\r\n"):
                    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n0123456789-stray-bytes")
        except trio.BrokenResourceError:
            pass
        finally:
            await stream.aclose()

    pool = MemoryPool(nursery, overlong)
    first = await pool.request(b"GET", b"/a", [])
    second = await pool.request(b"GET", b"/b", [])
    assert (first.status, first.body, second.status, second.body) == (200, b"01234", 200, b"01234")
    assert pool.connections_opened == 2
    await pool.aclose()


async def test_pool_body_limit(nursery: trio.Nursery) -> None:
    """A body past max_body is refused instead of buffered."""
    pool = MemoryPool(nursery, origin(body=b"x" * 2000), max_body=1000)
    with pytest.raises(UpstreamProtocolError, match="larger than 1000"):
        await pool.request(b"GET", b"/big", [])


async def test_pool_sends_host_and_content_length(nursery: trio.Nursery) -> None:
    """The origin gets its own Host, and a buffered body always goes with Content-Length."""
    seen: list[h11.Request] = []

    async def recording(stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        while not isinstance(event := conn.next_event(), h11.Request):
            conn.receive_data(await stream.receive_some(65536))
        seen.append(event)
        await stream.aclose()

    pool = MemoryPool(nursery, recording)
    with pytest.raises(UpstreamError):
        await pool.request(b"PUT", b"/x", [(b"host", b"client.example"), (b"transfer-encoding", b"chunked")],
                           b"abc")
    headers = dict(seen[0].headers)
    assert headers[b"host"] == b"origin.test:80"
    assert headers[b"content-length"] == b"3"
    assert b"transfer-encoding" not in headers


async def test_pool_cancelled_request_closes_its_connection(nursery: trio.Nursery,
                                                           autojump_clock: trio.testing.MockClock) -> None:
    """A request cancelled mid-answer never puts its half-used connection back in the pool."""
    pool = MemoryPool(nursery, origin(delay=5.0))
    with trio.move_on_after(1.0):
        await pool.request(b"GET", b"/", [])
    assert pool._idle == []
    response = await pool.request(b"GET", b"/", [])
    assert response.body == b"ok"
    assert pool.connections_opened == 2


# --- Flights ----------------------------------------------------------------------------------

async def test_flights_collapse_concurrent_calls(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    """Ten callers of one key make one fetch; all of them wake when it ends, none later."""
    flights: Flights[str] = Flights(nursery)
    calls = 0
    results: list[tuple[str, bool, float]] = []

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await trio.sleep(5.0)
        return "answer"

    async def caller() -> None:
        value, collapsed = await flights.run(b"k", fetch)
        results.append((value, collapsed, trio.current_time()))

    async with trio.open_nursery() as callers:
        for _ in range(10):
            callers.start_soon(caller)
    assert calls == 1
    assert sorted(r[1] for r in results) == [False] + [True] * 9
    assert {r[0] for r in results} == {"answer"}
    assert [r[2] for r in results] == pytest.approx([5.0] * 10)
    assert len(flights) == 0
    assert flights.collapsed == 9


async def test_flights_errors_reach_every_waiter(nursery: trio.Nursery) -> None:
    """The fetch's exception is raised in each caller, and the next call fetches again."""
    flights: Flights[str] = Flights(nursery)
    attempts = 0

    async def failing() -> str:
        nonlocal attempts
        attempts += 1
        await trio.lowlevel.checkpoint()
        raise UpstreamConnectError("refused")

    errors: list[BaseException] = []

    async def caller() -> None:
        try:
            await flights.run(b"k", failing)
        except UpstreamConnectError as exc:
            errors.append(exc)

    async with trio.open_nursery() as callers:
        for _ in range(3):
            callers.start_soon(caller)
    assert len(errors) == 3
    assert attempts == 1
    with pytest.raises(UpstreamConnectError):
        await flights.run(b"k", failing)
    assert attempts == 2


async def test_flights_first_caller_cancelled_others_still_answered(
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    """The caller that started a fetch going away (a reset stream) does not fail the ones that waited."""
    flights: Flights[str] = Flights(nursery)

    async def fetch() -> str:
        await trio.sleep(3.0)
        return "done"

    got: list[str] = []

    async def first() -> None:
        with trio.move_on_after(1.0):
            await flights.run(b"k", fetch)

    async def second() -> None:
        got.append((await flights.run(b"k", fetch))[0])

    async with trio.open_nursery() as callers:
        callers.start_soon(first)
        await trio.testing.wait_all_tasks_blocked()
        callers.start_soon(second)
    assert got == ["done"]


async def test_flights_keys_are_independent(nursery: trio.Nursery) -> None:
    flights: Flights[bytes] = Flights(nursery)

    async def echo(value: bytes) -> bytes:
        await trio.lowlevel.checkpoint()
        return value

    async with trio.open_nursery() as callers:
        for key in (b"a", b"b"):
            callers.start_soon(flights.run, key, lambda key=key: echo(key))
    assert (await flights.run(b"a", lambda: echo(b"a2")))[0] == b"a2"
