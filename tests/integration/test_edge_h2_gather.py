"""``FastSocket.send_parts``: HTTP/2's writer sends its queued pieces with ``sendmsg``, uncopied.

A TCP connection on 127.0.0.1 whose reader is slow, so the kernel takes a piece in part (the rest
goes out as a view of it) and the writer waits for room: what arrives is exactly the pieces'
concatenation, in order, however the sends were cut.
"""

from __future__ import annotations

import trio
import trio.testing

from edgeproxy.fastsocket import SEND_PARTS_MAX, FastSocket

BOUND_S = 10.0


async def connected_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        accepted: list[trio.SocketStream] = []

        async def accept() -> None:
            accepted.append(await listeners[0].accept())

        nursery.start_soon(accept)
        client = await trio.open_tcp_stream("127.0.0.1", port)
    await listeners[0].aclose()
    return client, accepted[0]


async def test_pieces_arrive_whole_and_in_order_through_partial_sends() -> None:
    writer, reader = await connected_pair()
    # more pieces than one sendmsg takes, tiny and large ones, a view among them, an empty one
    big = bytes(range(256)) * 4096  # 1 MiB: far more than a socket buffer holds
    parts: list[bytes | memoryview] = [b"head", b"", memoryview(big)[1:], b"x" * 100]
    parts += [b"%d," % n for n in range(SEND_PARTS_MAX + 50)]
    parts.append(big)
    expected = b"".join(parts)
    fast = FastSocket(writer)
    received = bytearray()
    try:
        with trio.fail_after(BOUND_S):
            async with trio.open_nursery() as nursery:

                async def read_slowly() -> None:
                    while len(received) < len(expected):
                        received.extend(await reader.receive_some(7000))
                        await trio.lowlevel.checkpoint()

                nursery.start_soon(read_slowly)
                await fast.send_parts(parts)
    finally:
        fast.detach()
        await writer.aclose()
        await reader.aclose()
    assert bytes(received) == expected


async def test_aclose_wakes_a_waiting_reader_and_later_calls_fail() -> None:
    """HTTP/2's writer closes a broken connection with ``aclose``: the reader waiting on the socket
    wakes with an error, the peer sees the close, and nothing touches the old descriptor again."""
    server, peer = await connected_pair()
    fast = FastSocket(server)
    woke: list[type[BaseException]] = []
    try:
        with trio.fail_after(BOUND_S):
            async with trio.open_nursery() as nursery:

                async def read() -> None:
                    try:
                        await fast.receive_some()
                    except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
                        woke.append(type(exc))

                nursery.start_soon(read)
                await trio.testing.wait_all_tasks_blocked()
                await fast.aclose()
            assert woke, "the waiting reader was not woken"
            assert await peer.receive_some(100) == b"", "the peer did not see the close"
            for call in (fast.receive_some(), fast.send_all(b"x"), fast.send_parts([b"x"])):
                try:
                    await call
                except trio.BrokenResourceError:
                    continue
                raise AssertionError("a call after aclose did not fail")
    finally:
        fast.detach()
        await server.aclose()
        await peer.aclose()
