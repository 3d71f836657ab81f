"""A guard for a hypercorn 0.18 (trio worker) crash that any HTTP/2 client can trigger.

Why: when a client closes an HTTP/2 connection while answers are still being written,
hypercorn's ``TCPServer._close`` calls ``send_eof`` without its send lock while a stream's send
task is inside ``send_all``. trio then raises ``BusyResourceError`` in one of the two;
``_close`` catches it, ``protocol_send`` does not, and the exception leaves the connection's
task group and ends ``serve`` for every connection: the origin process exits. h2load stopping
after ``-D 2`` against ``flowcms serve`` did it in the first run (bench/api.py restarted the
origin after nearly every HTTP/2 row).

The guard treats that error in ``protocol_send`` as what it means, the connection is going
away, exactly as hypercorn treats ``BrokenResourceError`` there. Installed once, before serving;
a hypercorn without ``TCPServer.protocol_send`` is left alone.
"""

from __future__ import annotations

import functools
from typing import Any

import trio

_MARK = "_flowcms_busy_guard"


def install() -> bool:
    """Wrap ``hypercorn.trio.tcp_server.TCPServer.protocol_send``; True when the guard is in place."""
    try:
        from hypercorn.events import Closed
        from hypercorn.trio.tcp_server import TCPServer
    except ImportError:
        return False
    original = getattr(TCPServer, "protocol_send", None)
    if original is None:
        return False
    if getattr(original, _MARK, False):
        return True

    @functools.wraps(original)
    async def protocol_send(self: Any, event: Any) -> None:
        try:
            await original(self, event)
        except trio.BusyResourceError:  # _close's send_eof raced this send: the peer is gone
            await self.protocol.handle(Closed())

    setattr(protocol_send, _MARK, True)
    TCPServer.protocol_send = protocol_send  # type: ignore[method-assign]
    return True
