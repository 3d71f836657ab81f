"""``FastSocket.send_parts``: HTTP/2's writer sends its queued pieces with ``sendmsg``, uncopied.

A TCP connection on 127.0.0.1 whose reader is slow, so the kernel takes a piece in part (the rest
goes out as a view of it) and the writer waits for room: what arrives is exactly the pieces'
concatenation, in order, however the sends were cut.
"""

from __future__ import annotations

import trio

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
