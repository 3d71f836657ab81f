"""HTTP/2 (RFC 9113) server connections, frames handled directly; cache hits answered inline.

Why not the h2 library: measured on this machine, a trio + h2 server spends ~80% of its
CPU in h2/hyperframe/hpack state machines and peaks near 7–10k req/s (HOTPATH.md). Here
frames are parsed by hand (``h2wire``), header blocks are decoded with ``hpack.Decoder``,
and the answer to a fresh cache hit is written in the same pass as the request was read:
no task, no event objects, a pre-encoded header block per cached object (its stored ``date``
included) with only ``age``/``cache-status``/``x-request-id`` (and the gateway's X-RateLimit-*) appended
(``h2lane.py`` for plain fresh hits, ``_block`` for the rest), and one ``sendmsg`` per batch of
frames received, a cached body queued as its own piece (never copied on its way out). Everything else (misses, revalidation, request bodies, large answers
that outgrow the flow-control windows) runs the shared ``Exchange`` in one task per stream.

Correctness kept on the fast path: frame and stream state rules of RFC 9113 §5–§6
(errors as GOAWAY or RST_STREAM with the §7 code), request validation (§8.1–§8.3), flow
control both ways, CONTINUATION, SETTINGS, graceful GOAWAY, and bounds on everything a
client can make us hold or do: concurrent streams (REFUSED_STREAM), header block and
decoded header list sizes (CONTINUATION floods, HPACK bombs), request body size (413),
and rates of resets, pings, settings, window updates, priority and empty DATA frames
(rapid reset CVE-2023-44487 and friends end with GOAWAY(ENHANCE_YOUR_CALM)).

Decoded header blocks are cached per connection keyed by their bytes, but only while the
HPACK dynamic table is unchanged (a block that inserts or resizes clears the cache and is
not cached): a client repeating a request sends identical bytes that decode identically.

Only the writer task (``h2writer.FrameWriter``) touches the socket's send side: a stream task
cancelled by its RST_STREAM can never cut a frame in half, because frames are queued whole,
synchronously.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import hpack
import trio

from edgeproxy import h2wire as w
from edgeproxy.answering import DATES, log_access, peer_host
from edgeproxy.errors import UpstreamError
from edgeproxy.fastsocket import FastSocket
from edgeproxy.h2lane import hit_block
from edgeproxy.h2writer import SEND_TIMEOUT_S, FrameWriter
from edgeproxy.plainhit import Hit, plain_hit
from edgeproxy.replies import Reply, denial_reply, error_reply, has_body, request_id

if TYPE_CHECKING:
    from edgeproxy.server import Server

log = logging.getLogger(__name__)

MAX_CONCURRENT_STREAMS = 100  # RFC 9113 §6.5.2 recommends at least 100; nginx uses 128
MAX_HEADER_LIST_SIZE = 32 * 1024  # decoded, 32 B per field counted (RFC 9113 §6.5.2)
MAX_HEADER_BLOCK = 64 * 1024  # encoded bytes of one header block across CONTINUATION frames
MAX_CONTINUATIONS = 64  # CONTINUATION frames per header block (empty ones cost work too)
HEADER_TABLE_SIZE = 4096  # our decoder's dynamic table (the protocol default)
INITIAL_WINDOW_SIZE = 1 << 20  # per-stream receive window: 1 MiB request bodies flow without a round trip
CONNECTION_WINDOW = 1 << 24  # connection receive window (16 MiB)
MAX_BODY = 64 * 1024 * 1024  # same request body limit as HTTP/1.1 (http1.H1Server)
RECEIVE_BYTES = 65536
WINDOW_S = 10.0  # rate limits below count frames per this many seconds
MAX_RESETS = 200  # client RST_STREAMs (rapid reset)
MAX_PINGS = 200
MAX_SETTINGS = 200
MAX_WINDOW_UPDATES = 20000  # a long download legitimately sends one per DATA frame
MAX_PRIORITY = 2000
MAX_EMPTY_DATA = 200  # DATA frames with no data and no END_STREAM
BLOCK_CACHE_ENTRIES = 256
BLOCK_CACHE_BYTES = 64 * 1024
RECENTLY_CLOSED = 4096  # closed stream ids remembered, at least this many (frames in flight on them are ignored)
_DROP_FIELDS = frozenset({b"connection", b"transfer-encoding", b"keep-alive", b"proxy-connection", b"upgrade"})


class _Stream:
    __slots__ = ("body", "ended", "head", "id", "limit", "recv_window", "scope", "send_window", "size")

    def __init__(self, stream_id: int, head: w.RequestHead, send_window: int) -> None:
        self.id = stream_id
        self.head = head
        self.body: list[bytes] = []
        self.size = 0
        self.ended = False  # the client sent END_STREAM (half-closed remote)
        self.send_window = send_window
        self.recv_window = INITIAL_WINDOW_SIZE
        self.scope: trio.CancelScope | None = None  # set while a task answers it
        self.limit = MAX_BODY  # request body bytes accepted (the gateway's limit on API routes)


class _Rate:
    """Events per fixed window; ``hit`` is True once the limit is passed (a flood)."""

    __slots__ = ("count", "limit", "start")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.start = 0.0

    def hit(self) -> bool:
        now = time.monotonic()
        if now - self.start > WINDOW_S:
            self.start = now
            self.count = 0
        self.count += 1
        return self.count > self.limit


class _DateField:
    """The encoded ``date`` field, re-encoded when the second changes."""

    __slots__ = ("_raw", "_value")

    def __init__(self) -> None:
        self._raw = b""
        self._value = b""

    def get(self) -> bytes:
        raw = DATES.get()
        if raw is not self._raw:
            self._raw = raw
            self._value = w.encode_field(b"date", raw)
        return self._value


_DATE = _DateField()


class H2Connection:
    def __init__(self, server: Server, stream: Any, client: str | None = None) -> None:
        self.server = server
        assert server.exchange is not None
        self.exchange = server.exchange
        self.stream = stream
        self.client = client  # the peer's address: the gateway's per-IP bucket
        self.decoder = hpack.Decoder(max_header_list_size=MAX_HEADER_LIST_SIZE)
        self.decoder.max_allowed_table_size = HEADER_TABLE_SIZE
        self.streams: dict[int, _Stream] = {}
        self.answering = 0  # streams with a task at work (the connection is not idle)
        self.last_stream_id = 0  # highest stream id the client opened
        # recently closed stream ids, oldest first -> True when we reset it (frames the client
        # sent before it saw our RST_STREAM are ignored, RFC 9113 §5.1), False when it ended
        self.closed: dict[int, bool] = {}
        self.peer_initial_window = w.DEFAULT_WINDOW
        self.peer_max_frame = w.DEFAULT_MAX_FRAME
        self.peer_table_size = HEADER_TABLE_SIZE
        self.send_window = w.DEFAULT_WINDOW  # connection window for what we send
        self.recv_window = w.DEFAULT_WINDOW  # connection window for what the client sends
        self.got_settings = False
        self.goaway_sent = False
        self.peer_goaway = False
        self.reading: trio.CancelScope | None = None  # around the receive the reader waits in
        self.table_update = b""  # prefix of the next header block we send (RFC 7541 §6.3)
        # header block being assembled from HEADERS + CONTINUATION
        self.block: list[bytes] | None = None
        self.block_sid = 0
        self.block_flags = 0
        self.block_size = 0
        self.block_frames = 0
        self.block_error: w.StreamError | None = None
        # decoded-block cache, valid while the dynamic table is unchanged
        self.heads: dict[bytes, w.RequestHead] = {}
        self.heads_bytes = 0
        self.table_mark: tuple[int, object, int] = (0, None, HEADER_TABLE_SIZE)
        self.rates = {name: _Rate(limit) for name, limit in (
            ("reset", MAX_RESETS), ("ping", MAX_PINGS), ("settings", MAX_SETTINGS),
            ("window", MAX_WINDOW_UPDATES), ("priority", MAX_PRIORITY), ("empty", MAX_EMPTY_DATA))}
        self.window_opened = trio.Event()
        self.streams_gone = trio.Event()
        # the writer task owns the socket's send side (h2writer.py)
        self.writer = FrameWriter(stream)
        self.write = self.writer.write
        self.write_parts = self.writer.write_parts
        self.flush = self.writer.flush

    # -- the connection --------------------------------------------------------------
    async def run(self, first: bytes) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.writer.run)
            nursery.start_soon(self._drain_on_shutdown, nursery)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                self.write(w.settings_frame({
                    w.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                    w.INITIAL_WINDOW_SIZE: INITIAL_WINDOW_SIZE,
                    w.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
                }) + w.window_update(0, CONNECTION_WINDOW - w.DEFAULT_WINDOW))
                self.recv_window = CONNECTION_WINDOW
                await self._serve(first, nursery)
                with trio.move_on_after(1.0):
                    await self.flush()  # the last answers and GOAWAY
            nursery.cancel_scope.cancel()

    async def _serve(self, data: bytes, nursery: trio.Nursery) -> None:
        buf = bytearray(data)
        timeout = self.server.config.keepalive_timeout
        while len(buf) < len(w.PREFACE):  # TLS: the preface was not sniffed
            with trio.move_on_after(self.server.config.header_timeout):
                more = await self.stream.receive_some(RECEIVE_BYTES)
                if more:
                    buf += more
                    continue
            return
        if buf[: len(w.PREFACE)] != w.PREFACE:
            self._goaway(w.ErrorCode.PROTOCOL_ERROR, "invalid connection preface")
            return
        del buf[: len(w.PREFACE)]
        while True:
            try:
                used = self._on_frames(buf, nursery)
            except w.ConnectionError as exc:
                log.info("HTTP/2 connection error %s: %s", exc.code.name, exc.message)
                self._goaway(exc.code, exc.message)
                return
            if used:
                del buf[:used]
            await self.flush()
            if self.goaway_sent and not self.streams:
                return
            if self.peer_goaway and not self.streams:
                return
            while True:
                with trio.move_on_after(timeout if not buf else self.server.config.header_timeout) as scope:
                    self.reading = scope
                    data = await self.stream.receive_some(RECEIVE_BYTES)
                self.reading = None
                if self.peer_goaway and not self.streams:
                    return
                if not scope.cancelled_caught:
                    break
                if self.answering and not buf:
                    continue  # not idle: answers are still being worked on
                if not buf and not self.streams:
                    self._goaway(w.ErrorCode.NO_ERROR, "idle")
                return  # idle, or a frame that does not arrive (slowloris)
            if not data:
                return
            buf += data

    def _on_frames(self, buf: bytearray, nursery: trio.Nursery) -> int:
        """Handle every complete frame in ``buf``; returns the bytes used."""
        pos = 0
        end = len(buf)
        while end - pos >= w.FRAME_HEADER:
            length, kind, flags, sid = w.parse_head(buf, pos)
            if length > w.DEFAULT_MAX_FRAME:  # we never raise SETTINGS_MAX_FRAME_SIZE
                raise w.ConnectionError(w.ErrorCode.FRAME_SIZE_ERROR, f"frame of {length} bytes")
            if end - pos - w.FRAME_HEADER < length:
                break
            payload = bytes(buf[pos + w.FRAME_HEADER: pos + w.FRAME_HEADER + length])
            pos += w.FRAME_HEADER + length
            try:
                self._on_frame(kind, flags, sid, payload, nursery)
            except w.StreamError as exc:
                self._reset(exc.stream_id, exc.code)
        return pos

    def _on_frame(self, kind: int, flags: int, sid: int, payload: bytes, nursery: trio.Nursery) -> None:
        if self.block is not None and (kind != w.CONTINUATION or sid != self.block_sid):
            raise w.ConnectionError(w.ErrorCode.PROTOCOL_ERROR, "header block interrupted (expected CONTINUATION)")
        if not self.got_settings:
            if kind != w.SETTINGS or flags & w.ACK:
                raise w.ConnectionError(w.ErrorCode.PROTOCOL_ERROR, "the first frame must be SETTINGS")
            self.got_settings = True
        if kind == w.HEADERS:
            self._on_headers(flags, sid, payload, nursery)
        elif kind == w.DATA:
            self._on_data(flags, sid, payload, nursery)
        elif kind == w.CONTINUATION:
            self._on_continuation(flags, sid, payload, nursery)
        elif kind == w.WINDOW_UPDATE:
            self._on_window_update(sid, payload)
        elif kind == w.RST_STREAM:
            self._on_rst_stream(sid, payload)
        elif kind == w.SETTINGS:
            self._on_settings(flags, sid, payload)
        elif kind == w.PING:
            if sid != 0:
                raise w.ConnectionError(w.ErrorCode.PROTOCOL_ERROR, "PING on a stream")
            if len(payload) != 8:
                raise w.ConnectionError(w.ErrorCode.FRAME_SIZE_ERROR, "PING length must be 8")
            if not flags & w.ACK:
                self._calm("ping")
                self.write(w.frame(w.PING, w.ACK, 0, payload))
        elif kind == w.PRIORITY:
            if sid == 0:
                raise w.ConnectionError(w.ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")
            self._calm("priority")
            w.check_priority(sid, payload)
        elif kind == w.GOAWAY:
            if sid != 0:
                raise w.ConnectionError(w.ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream")
            w.parse_goaway(payload)
            self.peer_goaway = True
        elif kind == w.PUSH_PROMISE:
            raise w.ConnectionError(w.ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # unknown frame types are ignored (RFC 9113 §4.1)

    def _calm(self, what: str) -> None:
        if self.rates[what].hit():
            raise w.ConnectionError(w.ErrorCode.ENHANCE_YOUR_CALM, f"too many {what} frames")

    # -- headers ----------------------------------------------------------------------
    def _on_headers(self, flags: int, sid: int, payload: bytes, nursery: trio.Nursery) -> None:
        if sid == 0 or not sid & 1:
            raise w.ConnectionError(w.ErrorCode.PROTOCOL_ERROR, f"HEADERS on stream {sid}")
        block = w.unpad(flags, payload, sid)
        error = None
        if flags & w.PRIORITY_FLAG:
            if len(block) < 5:
                raise w.ConnectionError(w.ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for its priority")
            try:
                w.check_priority(sid, block[:5])
            except w.StreamError as exc:
                error = exc  # reported after the block is decoded (HPACK state must stay in step)
            block = block[5:]
        if flags & w.END_HEADERS:
            self._on_block(sid, flags, block, error, nursery)
            return
        self.block = [block]
        self.block_sid = sid
        self.block_flags = flags
        self.block_size = len(block)
        self.block_frames = 0
        self.block_error = error

    def _on_continuation(self, flags: int, sid: int, payload: bytes, nursery: trio.Nursery) -> None:
        if self.block is None:
            raise w.ConnectionError(w.ErrorCode.PROTOCOL_ERROR, "CONTINUATION without HEADERS")
        self.block.append(payload)
        self.block_size += len(payload)
        self.block_frames += 1
        if self.block_size > MAX_HEADER_BLOCK or self.block_frames > MAX_CONTINUATIONS:
            raise w.ConnectionError(w.ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
        if flags & w.END_HEADERS:
            block = b"".join(self.block)
            self.block = None
            self._on_block(sid, self.block_flags, block, self.block_error, nursery)

    def _decode(self, block: bytes) -> w.RequestHead | list[tuple[bytes, bytes]]:
        """The block's cached request head, or its decoded field list (HPACK errors end the connection)."""
        head = self.heads.get(block)
        if head is not None:
            return head
        decoder = self.decoder
        try:
            fields = decoder.decode(block, raw=True)
        except hpack.OversizedHeaderListError as exc:
            raise w.ConnectionError(w.ErrorCode.ENHANCE_YOUR_CALM, f"header list too large: {exc}") from None
        except hpack.HPACKError as exc:
            raise w.ConnectionError(w.ErrorCode.COMPRESSION_ERROR, f"HPACK: {exc}") from None
        except (ValueError, IndexError, UnicodeError) as exc:
            raise w.ConnectionError(w.ErrorCode.COMPRESSION_ERROR, f"HPACK: {exc}") from None
        table = decoder.header_table
        entries = table.dynamic_entries
        mark = (len(entries), entries[0] if entries else None, table.maxsize)
        if mark != self.table_mark:
            self.table_mark = mark
            self.heads.clear()  # the table changed: cached decodings may no longer hold
            self.heads_bytes = 0
            return fields  # this block changed the table: decoding it again would differ
        return fields

    def _remember(self, block: bytes, head: w.RequestHead) -> None:
        if len(self.heads) >= BLOCK_CACHE_ENTRIES or self.heads_bytes + len(block) > BLOCK_CACHE_BYTES:
            self.heads.clear()
            self.heads_bytes = 0
        self.heads[block] = head
        self.heads_bytes += len(block)

    def _on_block(self, sid: int, flags: int, block: bytes, error: w.StreamError | None,
                  nursery: trio.Nursery) -> None:
        mark = self.table_mark
        decoded = self._decode(block)
        cacheable = mark == self.table_mark
        s = self.streams.get(sid)
        if s is not None:  # trailers
            if error is not None:
                raise error
            if s.ended:
                raise w.StreamError(sid, w.ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM")
            if not flags & w.END_STREAM:
                raise w.StreamError(sid, w.ErrorCode.PROTOCOL_ERROR, "trailers without END_STREAM")
            fields = decoded if isinstance(decoded, list) else [(b":path", decoded.path)]
            w.check_trailers(sid, fields)
            self._request_complete(s, nursery)
            return
        if sid <= self.last_stream_id:
            if sid in self.closed:
                if self.closed[sid]:
                    return  # a stream we reset: frames in flight are ignored (RFC 9113 §5.1)
                raise w.ConnectionError(w.ErrorCode.STREAM_CLOSED, f"HEADERS on closed stream {sid}")
            raise w.ConnectionError(w.ErrorCode.PROTOCOL_ERROR, f"stream id {sid} is not above {self.last_stream_id}")
        self.last_stream_id = sid
        if self.goaway_sent:
            return  # after GOAWAY new streams are ignored (decoded above to keep HPACK in step)
        if error is not None:
            raise error
        if isinstance(decoded, w.RequestHead):
            head = decoded
        else:
            head = w.parse_request(sid, decoded)
            if cacheable:
                self._remember(block, head)
        if len(self.streams) >= MAX_CONCURRENT_STREAMS:
            raise w.StreamError(sid, w.ErrorCode.REFUSED_STREAM, "too many concurrent streams")
        self.exchange.counters.streams_total += 1
        s = _Stream(sid, head, self.peer_initial_window)
        self.streams[sid] = s
        if head.content_length or not flags & w.END_STREAM:
            limit, denial = self.exchange.body_limit(head.method, head.path, head.fields, head.content_length)
            if denial is not None:  # over the API's body limit: answer before the body comes
                self._forget(s, reset=True)
                nursery.start_soon(self._reject, s, denial)
                return
            if limit:
                s.limit = min(limit, MAX_BODY)
        if flags & w.END_STREAM:
            self._request_complete(s, nursery)

    # -- data and flow control ----------------------------------------------------------
    def _on_data(self, flags: int, sid: int, payload: bytes, nursery: trio.Nursery) -> None:
        if sid == 0:
            raise w.ConnectionError(w.ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        if size > self.recv_window:
            raise w.ConnectionError(w.ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        self.recv_window -= size
        if self.recv_window < CONNECTION_WINDOW // 2:
            self.write(w.window_update(0, CONNECTION_WINDOW - self.recv_window))
            self.recv_window = CONNECTION_WINDOW
        s = self.streams.get(sid)
        if s is None:
            if sid > self.last_stream_id:
                raise w.ConnectionError(w.ErrorCode.PROTOCOL_ERROR, f"DATA on idle stream {sid}")
            if self.closed.get(sid):
                return  # in flight when we reset it
            raise w.StreamError(sid, w.ErrorCode.STREAM_CLOSED, f"DATA on closed stream {sid}")
        if s.ended:
            raise w.StreamError(sid, w.ErrorCode.STREAM_CLOSED, "DATA after END_STREAM")
        if size > s.recv_window:
            raise w.StreamError(sid, w.ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the stream window")
        s.recv_window -= size
        data = w.unpad(flags, payload, sid)
        end = flags & w.END_STREAM
        if not data and not end:
            self._calm("empty")
        s.size += len(data)
        if s.size > s.limit:
            self._forget(s, reset=True)
            _, denial = self.exchange.body_limit(s.head.method, s.head.path, s.head.fields, s.size)
            nursery.start_soon(self._reject, s,
                               denial or error_reply(413, "CONTENT_TOO_LARGE", "request body too large"))
            return
        if data:
            s.body.append(data)
        if end:
            self._request_complete(s, nursery)
        elif s.recv_window < INITIAL_WINDOW_SIZE // 2:
            self.write(w.window_update(sid, INITIAL_WINDOW_SIZE - s.recv_window))
            s.recv_window = INITIAL_WINDOW_SIZE

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        increment = w.parse_u32("WINDOW_UPDATE", sid, payload) & 0x7FFFFFFF
        self._calm("window")
        if sid == 0:
            if increment == 0:
                raise w.ConnectionError(w.ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > w.MAX_WINDOW:
                raise w.ConnectionError(w.ErrorCode.FLOW_CONTROL_ERROR, "connection window above 2^31-1")
        else:
            s = self.streams.get(sid)
            if s is None:
                if sid > self.last_stream_id:
                    raise w.ConnectionError(w.ErrorCode.PROTOCOL_ERROR, f"WINDOW_UPDATE on idle stream {sid}")
                return  # closed: ignored
            if increment == 0:
                raise w.StreamError(sid, w.ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            s.send_window += increment
            if s.send_window > w.MAX_WINDOW:
                raise w.StreamError(sid, w.ErrorCode.FLOW_CONTROL_ERROR, "stream window above 2^31-1")
        self._windows_changed()

    def _windows_changed(self) -> None:
        opened, self.window_opened = self.window_opened, trio.Event()
        opened.set()

    def _on_rst_stream(self, sid: int, payload: bytes) -> None:
        w.parse_u32("RST_STREAM", sid, payload)
        if sid == 0:
            raise w.ConnectionError(w.ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if sid > self.last_stream_id:
            raise w.ConnectionError(w.ErrorCode.PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
        s = self.streams.get(sid)
        if s is not None:
            self._forget(s)
        self._calm("reset")

    def _on_settings(self, flags: int, sid: int, payload: bytes) -> None:
        pairs = w.parse_settings(flags, sid, payload)
        if flags & w.ACK:
            return
        self._calm("settings")
        for key, value in pairs:
            if key == w.INITIAL_WINDOW_SIZE:
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for s in self.streams.values():
                    s.send_window += delta
                    if s.send_window > w.MAX_WINDOW:
                        raise w.ConnectionError(w.ErrorCode.FLOW_CONTROL_ERROR, "stream window above 2^31-1")
            elif key == w.MAX_FRAME_SIZE:
                self.peer_max_frame = value
            elif key == w.HEADER_TABLE_SIZE and value != self.peer_table_size:
                self.peer_table_size = value
                # we never insert, so announcing the smaller of its limit and the default is exact
                self.table_update = w.table_size_update(min(value, HEADER_TABLE_SIZE))
        self.write(w.frame(w.SETTINGS, w.ACK, 0))
        self._windows_changed()

    # -- streams ------------------------------------------------------------------------
    def _reset(self, sid: int, code: w.ErrorCode) -> None:
        self.write(w.rst_stream(sid, code))
        s = self.streams.get(sid)
        if s is not None:
            self._forget(s, reset=True)
        else:
            self._closed(sid, reset=True)

    def _closed(self, sid: int, *, reset: bool = False) -> None:
        closed = self.closed
        closed[sid] = reset
        if len(closed) > 2 * RECENTLY_CLOSED:
            # drop the older half at once: deleting the oldest id one by one made every later
            # ``next(iter(closed))`` walk the deleted slots at the dict's front (O(n) per stream)
            self.closed = dict(list(closed.items())[-RECENTLY_CLOSED:])

    def _forget(self, s: _Stream, *, reset: bool = False) -> None:
        if self.streams.pop(s.id, None) is not None:
            if s.scope is not None:
                s.scope.cancel()
            self._closed(s.id, reset=reset)
            if not self.streams:
                self._all_streams_done()

    def _all_streams_done(self) -> None:
        self.streams_gone.set()
        if self.peer_goaway and self.reading is not None:
            self.reading.cancel()  # the client said goodbye and its last answer is out: close

    def _goaway(self, code: w.ErrorCode, message: str) -> None:
        if not self.goaway_sent:
            self.goaway_sent = True
            self.write(w.goaway(self.last_stream_id, code, message.encode("ascii", "replace")[:200]))

    def _request_complete(self, s: _Stream, nursery: trio.Nursery) -> None:
        s.ended = True
        head = s.head
        if head.content_length is not None and head.content_length != s.size:
            raise w.StreamError(s.id, w.ErrorCode.PROTOCOL_ERROR, "content-length does not match the DATA")
        if not s.body and (head.method == b"GET" or head.method == b"HEAD"):
            host = head.authority or _host(head.fields)
            found = plain_hit(self.exchange, head.method, head.path, head.fields, host, self.client,
                              min(s.send_window, self.send_window), head)
            if found is not None:  # the lane: a plain fresh hit that fits the windows, or a denial
                if len(found) == 3:
                    deny, route, rid = found
                    reply: Reply | None = denial_reply(deny, route)
                else:
                    self._send_hit(s, found)
                    return
            else:
                reply = self.exchange.try_hit(head.method, head.path, head.fields, host, client=self.client)
                rid = b""
            if reply is not None:
                if not self._send_now(s, reply, rid):  # larger than the windows: a task sends this very answer
                    s.scope = trio.CancelScope()
                    self.answering += 1
                    nursery.start_soon(self._respond, s, reply)
                return
        s.scope = trio.CancelScope()
        self.answering += 1
        nursery.start_soon(self._respond, s)

    def _send_hit(self, s: _Stream, hit: Hit) -> None:
        """Answer a plain fresh hit inline (``h2lane``): ``plain_hit`` checked that it fits the windows."""
        obj, body, age, ttl, rid, limit, remaining, reset = hit
        block = hit_block(obj.h2 or obj.h2_block(), rid, age, ttl, limit, remaining, reset)
        self._write_answer(s, block, body)
        log_access(rid, s.head.method, s.head.path, obj.status, len(obj.body), time.perf_counter(), "HTTP/2")

    def _send_now(self, s: _Stream, reply: Reply, rid: bytes = b"") -> bool:
        """Answer inline when the whole body fits the flow-control windows (the hit path)."""
        head_only = s.head.method == b"HEAD"
        body = reply.body if not head_only and has_body(reply.status) else b""
        size = len(body)
        if size > s.send_window or size > self.send_window:
            return False
        rid = rid or request_id(s.head.fields)
        self._write_answer(s, self._block(reply, rid, lead=False), body)
        log_access(rid, s.head.method, s.head.path, reply.status, len(reply.body), time.perf_counter(), "HTTP/2")
        return True

    def _write_answer(self, s: _Stream, block: bytes, body: bytes) -> None:
        """Queue a whole answer (HEADERS, then DATA as pieces, the body uncopied) and close the stream;
        the caller checked that ``body`` fits both send windows. ``block`` lacks the table size update."""
        if self.table_update:
            block = self.table_update + block
            self.table_update = b""
        max_frame = self.peer_max_frame
        parts: list[bytes | memoryview]
        if body:
            size = len(body)
            parts = [*w.headers_frame_parts(s.id, block, end_stream=False, max_frame=max_frame),
                     *w.data_frame_parts(s.id, body, end_stream=True, max_frame=max_frame)]
            self.send_window -= size
            s.send_window -= size
            self.exchange.counters.bytes_sent += size
        else:
            parts = [*w.headers_frame_parts(s.id, block, end_stream=True, max_frame=max_frame)]
        self.write_parts(parts)
        del self.streams[s.id]
        self._closed(s.id)
        if not self.streams:
            self._all_streams_done()

    def _block(self, reply: Reply, rid: bytes, *, lead: bool = True) -> bytes:
        """The response header block: the cached object's encoded prefix when there is one.
        ``lead``: start it with a pending table size update (``_write_answer`` adds its own)."""
        prefix = reply.h2
        if not prefix:
            fields = [(n, v) for n, v in reply.fields if n not in _DROP_FIELDS]
            if reply.stream is None and has_body(reply.status) and not any(n == b"content-length" for n, _ in fields):
                fields.append((b"content-length", b"%d" % len(reply.body)))
            prefix = w.encode_block(reply.status, fields)
        parts = [prefix, w.encode_field(b"x-request-id", rid)] if reply.dated else [
            prefix, _DATE.get(), w.encode_field(b"x-request-id", rid)]
        parts += [w.encode_field(n, v) for n, v in reply.extra]
        if lead and self.table_update:
            parts.insert(0, self.table_update)
            self.table_update = b""
        return b"".join(parts)

    async def _respond(self, s: _Stream, ready: Reply | None = None) -> None:
        server = self.server
        head = s.head
        rid = request_id(head.fields)
        started = time.perf_counter()
        server.request_started()
        try:
            assert s.scope is not None
            with s.scope:
                try:
                    reply = ready or await self.exchange.handle(
                        head.method, head.path, head.fields, b"".join(s.body), head.authority or _host(head.fields),
                        rid=rid, client=self.client)
                except Exception:
                    log.exception("request %s %r failed", rid.decode(), head.path)
                    reply = error_reply(500, "INTERNAL_ERROR", "the edge failed to answer")
                try:
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await self._send_reply(s, reply, rid, head_only=head.method == b"HEAD")
                finally:
                    if reply.stream is not None:
                        with trio.CancelScope(shield=True):
                            await reply.aclose()
                log_access(rid, head.method, head.path, reply.status, len(reply.body), started, "HTTP/2")
        finally:
            self.answering -= 1
            server.request_done()
            self._forget(s)

    async def _reject(self, s: _Stream, reply: Reply) -> None:
        """Answer before the request body ends, then stop the upload (RFC 9113 §8.1)."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._send_reply(s, reply, request_id(s.head.fields), head_only=False)
            self.write(w.rst_stream(s.id, w.ErrorCode.NO_ERROR))
            await self.flush()

    async def _send_reply(self, s: _Stream, reply: Reply, rid: bytes, *, head_only: bool) -> None:
        """HEADERS, then DATA within the peer's flow-control windows."""
        if self.goaway_sent and self.writer.broken:
            return
        body = reply.body if has_body(reply.status) and not head_only else b""
        streamed = reply.stream is not None and has_body(reply.status) and not head_only
        self.write(w.headers_frames(s.id, self._block(reply, rid), end_stream=not body and not streamed,
                                    max_frame=self.peer_max_frame))
        sent = await self._send_data(s, body, last=not streamed)
        if streamed:
            assert reply.stream is not None
            try:
                async for piece in reply.stream:
                    sent += await self._send_data(s, piece, last=False)
            except UpstreamError as exc:
                log.warning("stream %d: origin failed mid-body (%s); resetting it", s.id, exc)
                self.write(w.rst_stream(s.id, w.ErrorCode.INTERNAL_ERROR))
                self.exchange.counters.bytes_sent += sent
                return
            self.write(w.frame(w.DATA, w.END_STREAM, s.id))
        self.exchange.counters.bytes_sent += sent
        await self.flush()

    async def _send_data(self, s: _Stream, body: bytes, *, last: bool) -> int:
        """DATA frames within the peer's flow-control windows; END_STREAM on the last if ``last``."""
        view = memoryview(body)
        while view:
            window = min(s.send_window, self.send_window, self.peer_max_frame)
            if window <= 0:
                with trio.fail_after(SEND_TIMEOUT_S):
                    await self.window_opened.wait()
                continue
            chunk, view = view[:window], view[window:]
            s.send_window -= len(chunk)
            self.send_window -= len(chunk)
            end = w.END_STREAM if last and not view else 0
            self.write_parts([w.frame_head(w.DATA, end, s.id, len(chunk)), chunk])  # a view: not copied
            await self.flush()
        return len(body)

    async def _drain_on_shutdown(self, nursery: trio.Nursery) -> None:
        await self.server.drain_started.wait()
        # No advisory GOAWAY(2^31-1) first: h2-based clients (httpx) drop every frame that
        # follows a GOAWAY, so the answers in flight would be lost. Finish them, then say goodbye.
        while self.streams:
            self.streams_gone = trio.Event()
            await self.streams_gone.wait()
        self._goaway(w.ErrorCode.NO_ERROR, "shutting down")
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.flush()
        nursery.cancel_scope.cancel()


def _host(fields: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in fields:
        if name == b"host":
            return value
    return None


async def serve_h2(server: Server, stream: Any, first: bytes) -> None:
    client = peer_host(stream)
    if isinstance(stream, trio.SocketStream):
        fast = FastSocket(stream)
        try:
            await H2Connection(server, fast, client).run(first)
        finally:
            fast.detach()
        return
    await H2Connection(server, stream, client).run(first)
