"""Real servers on 127.0.0.1 port 0 for edge tests: an origin stub, the edge, and raw clients.

``start_origin(nursery)`` runs ``OriginStub`` (trio + h11): it records every request it sees
and answers each path with an ``Answer`` (status, fields, body, delay, or dropping the
connection), or with a function of the request for conditional answers. ``start_edge``
runs ``edgeproxy.server.Server`` on its own port-0 listener. ``H1Client`` is a strict h11
client on one keep-alive connection; ``read_responses`` parses pipelined answers from raw
bytes; ``H2Client`` is an h2 client whose reader task answers flow control and records
per-stream events, GOAWAY and PING acks. Everything binds 127.0.0.1 only (STYLE.md 2.5).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h11
import trio

from edgeproxy.config import ProxyConfig
from edgeproxy.server import Server

HOST = "127.0.0.1"
Fields = list[tuple[bytes, bytes]]


def header(fields: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of ``name`` (lowercase) in ``fields``, or None."""
    for key, value in fields:
        if key == name:
            return value
    return None


# --- the origin stub ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SeenRequest:
    """One request as the origin received it."""

    method: bytes
    target: bytes
    headers: Fields
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return header(self.headers, name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What the origin stub answers for one path."""

    status: int = 200
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before answering
    drop: bool = False  # close the connection instead of answering


Responder = Answer | Callable[[SeenRequest], Answer]
NOT_FOUND = Answer(status=404, headers=((b"content-type", b"text/plain"),), body=b"no route\n")


class OriginStub:
    """An HTTP/1.1 origin on loopback that counts requests and answers per path."""

    def __init__(self) -> None:
        self.routes: dict[bytes, Responder] = {}
        self.seen: list[SeenRequest] = []
        self.port = 0
        self.connections = 0
        self._scope: trio.CancelScope | None = None

    def route(self, path: str | bytes, answer: Responder) -> None:
        self.routes[path.encode() if isinstance(path, str) else path] = answer

    def requests_for(self, path: str) -> list[SeenRequest]:
        wanted = path.encode()
        return [r for r in self.seen if r.target.split(b"?", 1)[0] == wanted]

    def count(self, path: str) -> int:
        return len(self.requests_for(path))

    def stop(self) -> None:
        """Close the listener and every connection: the next connect is refused."""
        assert self._scope is not None
        self._scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as self._scope:
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(partial(trio.serve_tcp, self._handle, 0, host=HOST))
                self.port = listeners[0].socket.getsockname()[1]
                task_status.started()

    def _answer_for(self, request: SeenRequest) -> Answer:
        responder = self.routes.get(request.target.split(b"?", 1)[0], NOT_FOUND)
        return responder(request) if callable(responder) else responder

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_request(conn, stream)
                if request is None:
                    return
                self.seen.append(request)
                answer = self._answer_for(request)
                if answer.delay:
                    await trio.sleep(answer.delay)
                if answer.drop:
                    return
                await stream.send_all(_serialize(conn, answer))
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    @staticmethod
    async def _read_request(conn: h11.Connection, stream: trio.SocketStream) -> SeenRequest | None:
        head: h11.Request | None = None
        body: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers = [(bytes(n).lower(), bytes(v)) for n, v in head.headers]
                return SeenRequest(bytes(head.method), bytes(head.target), headers, b"".join(body))
            elif isinstance(event, h11.ConnectionClosed):
                return None


def _serialize(conn: h11.Connection, answer: Answer) -> bytes:
    headers = list(answer.headers)
    bodyless = answer.status in (204, 304)
    if not bodyless and header(headers, b"content-length") is None:
        headers.append((b"content-length", b"%d" % len(answer.body)))
    data = conn.send(h11.Response(status_code=answer.status, headers=headers)) or b""
    if answer.body and not bodyless:
        data += conn.send(h11.Data(data=answer.body)) or b""
    return data + (conn.send(h11.EndOfMessage()) or b"")


async def start_origin(nursery: trio.Nursery) -> OriginStub:
    stub = OriginStub()
    await nursery.start(stub.run)
    return stub


# --- the edge -------------------------------------------------------------------------------

@dataclass(slots=True)
class Edge:
    server: Server
    port: int


async def start_edge(nursery: trio.Nursery, config: ProxyConfig) -> Edge:
    """Run the edge on a fresh 127.0.0.1 port-0 listener; cancelled with ``nursery``."""
    listeners = await trio.open_tcp_listeners(0, host=HOST)
    server = Server(config)
    await nursery.start(partial(server.serve, listeners=listeners))
    return Edge(server, listeners[0].socket.getsockname()[1])


# --- HTTP/1.1 clients -----------------------------------------------------------------------

@dataclass(slots=True)
class Response:
    status: int
    headers: Fields
    body: bytes = b""
    informational: list[int] = field(default_factory=list)
    http_version: str = "1.1"

    def header(self, name: bytes | str) -> bytes | None:
        return header(self.headers, name.encode() if isinstance(name, str) else name)

    def all(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]

    def json(self) -> Any:
        return json.loads(self.body)


class H1Client:
    """A strict HTTP/1.1 client (h11) on one keep-alive connection to 127.0.0.1:port."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> H1Client:
        return cls(await trio.open_tcp_stream(HOST, port))

    async def request(self, method: str, target: str, headers: Sequence[tuple[str, str]] = (),
                      body: bytes = b"", *, chunked: bool = False) -> Response:
        fields = [(b"host", b"edge.test")] + [(n.lower().encode(), v.encode()) for n, v in headers]
        if chunked:
            fields.append((b"transfer-encoding", b"chunked"))
        elif body:
            fields.append((b"content-length", b"%d" % len(body)))
        data = self.conn.send(h11.Request(method=method, target=target, headers=fields)) or b""
        if chunked:
            for i in range(0, len(body), 1000):
                data += self.conn.send(h11.Data(data=body[i:i + 1000])) or b""
        elif body:
            data += self.conn.send(h11.Data(data=body)) or b""
        data += self.conn.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)
        return await self.receive()

    async def receive(self) -> Response:
        response: Response | None = None
        informational: list[int] = []
        chunks: list[bytes] = []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.InformationalResponse):
                informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                response = Response(event.status_code, [(bytes(n), bytes(v)) for n, v in event.headers],
                                    informational=informational)
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                response.body = b"".join(chunks)
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                return response
            else:
                raise AssertionError(f"unexpected {event!r}")

    @property
    def closed_by_server(self) -> bool:
        return self.conn.their_state in (h11.MUST_CLOSE, h11.CLOSED)

    async def aclose(self) -> None:
        await self.stream.aclose()


async def fetch(port: int, method: str, target: str, headers: Sequence[tuple[str, str]] = (),
                body: bytes = b"") -> Response:
    """One request on a new connection."""
    client = await H1Client.connect(port)
    try:
        return await client.request(method, target, headers, body)
    finally:
        await client.aclose()


async def get(port: int, target: str, *headers: tuple[str, str]) -> Response:
    return await fetch(port, "GET", target, headers)


async def read_until_closed(stream: trio.abc.Stream) -> bytes:
    chunks = []
    while data := await stream.receive_some(65536):
        chunks.append(data)
    return b"".join(chunks)


def read_responses(data: bytes, methods: Sequence[str]) -> list[Response]:
    """Parse consecutive responses from raw bytes, one per request method, with h11."""
    out: list[Response] = []
    for method in methods:
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=method, target="/", headers=[(b"host", b"x")]))
        conn.send(h11.EndOfMessage())
        conn.receive_data(data)
        conn.receive_data(b"")  # the peer is done: a read-until-close body ends here
        response: Response | None = None
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Response):
                response = Response(event.status_code, [(bytes(n), bytes(v)) for n, v in event.headers])
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.InformationalResponse):
                continue
            else:
                raise AssertionError(f"incomplete response {len(out) + 1}: {event!r}")
        assert response is not None
        response.body = b"".join(chunks)
        out.append(response)
        data, _ = conn.trailing_data
    assert not data, f"unexpected bytes after the responses: {data[:80]!r}"
    return out


# --- HTTP/2 client --------------------------------------------------------------------------

@dataclass(slots=True)
class H2Stream:
    headers: Fields = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    reset: int | None = None  # RST_STREAM error code
    done: trio.Event = field(default_factory=trio.Event)

    def response(self) -> Response:
        status = int(header(self.headers, b":status") or b"0")
        return Response(status, [(n, v) for n, v in self.headers if not n.startswith(b":")],
                        b"".join(self.data), http_version="2")


class H2Client:
    """An h2 client over one trio stream; a reader task in the caller's nursery drives it."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None))
        self.streams: dict[int, H2Stream] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = trio.Event()
        self.ping_acks: list[bytes] = []
        self.ping_acked = trio.Event()
        self.window = trio.Event()
        self.send_lock = trio.Lock()

    @classmethod
    async def connect(cls, nursery: trio.Nursery, port: int, *,
                      ssl_context: ssl.SSLContext | None = None) -> H2Client:
        stream: trio.abc.Stream = await trio.open_tcp_stream(HOST, port)
        if ssl_context is not None:
            stream = trio.SSLStream(stream, ssl_context, server_hostname="localhost")
        client = cls(stream)
        client.conn.initiate_connection()
        await client.flush()
        nursery.start_soon(client._read_loop)
        return client

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            async with self.send_lock:
                await self.stream.send_all(data)

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    return
                for event in self.conn.receive_data(data):
                    self._on_event(event)
                await self.flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h2.exceptions.ProtocolError):
            return
        finally:
            await trio.aclose_forcefully(self.stream)  # the server is gone: release our socket too
            self.closed.set()
            self.window.set()
            for s in self.streams.values():
                s.done.set()

    def _on_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
            self.streams[event.stream_id].headers += [(bytes(n), bytes(v)) for n, v in event.headers]
        elif isinstance(event, h2.events.DataReceived):
            self.streams[event.stream_id].data.append(event.data)
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.streams[event.stream_id].done.set()
        elif isinstance(event, h2.events.StreamReset):
            s = self.streams.get(event.stream_id)
            if s is not None:
                s.reset = event.error_code
                s.done.set()
        elif isinstance(event, h2.events.PingAckReceived):
            self.ping_acks.append(event.ping_data)
            self.ping_acked.set()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.window.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    async def start_request(self, method: str, path: str, headers: Sequence[tuple[str, str]] = (),
                            body: bytes = b"") -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.streams[stream_id] = H2Stream()
        fields = [(b":method", method.encode()), (b":scheme", b"http"), (b":authority", b"edge.test"),
                  (b":path", path.encode())] + [(n.lower().encode(), v.encode()) for n, v in headers]
        self.conn.send_headers(stream_id, fields, end_stream=not body)
        await self.flush()
        view = memoryview(body)
        while view:
            size = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if size <= 0:
                self.window = trio.Event()
                await self.window.wait()
                continue
            chunk, view = view[:size], view[size:]
            self.conn.send_data(stream_id, bytes(chunk), end_stream=not view)
            await self.flush()
        return stream_id

    async def response(self, stream_id: int) -> Response:
        s = self.streams[stream_id]
        await s.done.wait()
        assert s.reset is None, f"stream {stream_id} was reset with {s.reset}"
        return s.response()

    async def request(self, method: str, path: str, headers: Sequence[tuple[str, str]] = (),
                      body: bytes = b"") -> Response:
        return await self.response(await self.start_request(method, path, headers, body))

    async def ping(self, data: bytes = b"12345678") -> None:
        self.ping_acked = trio.Event()
        self.conn.ping(data)
        await self.flush()
        await self.ping_acked.wait()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
