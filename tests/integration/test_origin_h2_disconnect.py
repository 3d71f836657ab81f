"""HTTP/2 clients that hang up mid-answer must not stop the origin (``flowcms serve``).

hypercorn 0.18's trio worker let such a hang-up raise ``trio.BusyResourceError`` out of
``serve``: the whole origin exited (``pipeline/origin/hypercorn_guard.py``). Here the real
command serves the sample site in its own process; h2load runs against it with a deadline (it
stops with answers in flight on every connection), then clients of our own (the ``h2`` library
over loopback sockets) hang up their side mid-answer. The origin must answer afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
from support.sites import copy_sample

from pipeline.origin import hypercorn_guard

REPO = Path(__file__).resolve().parents[2]
H2LOAD_RUNS = 3  # before the guard, the first run stopped the origin
HANG_UPS = 5  # our own clients' hang-ups (a FIN with answers in flight)
STREAMS = 20  # requests per connection, all sent at once
PATHS = ("/api/v3/posts?limit=20", "/api/v3/contents?limit=50", "/blog/")
BOUND_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"flowcms serve exited ({proc.returncode})"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("flowcms serve did not start listening")


def h2_get(port: int, paths: list[str], *, read: bool) -> list[int]:
    """Open an h2c connection (prior knowledge), send every request, then read all answers'
    statuses (``read``), or hang up our sending side at once, answers still being written."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    for i, path in enumerate(paths):
        conn.send_headers(1 + 2 * i, [(":method", "GET"), (":path", path), (":scheme", "http"),
                                      (":authority", f"127.0.0.1:{port}")], end_stream=True)
    sock.sendall(conn.data_to_send())
    statuses: list[int] = []
    ended = 0
    try:
        if not read:  # hang up our side (FIN) while answers are being written, and drain what comes
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(0.2)
            with contextlib.suppress(OSError):  # a timeout included: the origin need not close first
                while sock.recv(65536):
                    pass
            return statuses
        while ended < len(paths):
            data = sock.recv(65536)
            assert data, "the origin closed the connection"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    statuses.append(int(dict(event.headers)[b":status"]))
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended += 1
            sock.sendall(conn.data_to_send())
        return statuses
    finally:
        sock.close()


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    site = copy_sample(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    published = subprocess.run([sys.executable, "-m", "pipeline.cli", "--site", str(site), "publish", "--no-purge",
                                "--json"], cwd=tmp_path, env=env, capture_output=True, timeout=120, check=False)
    assert published.returncode == 0, published.stderr.decode()[-2000:]
    assert json.loads(published.stdout.decode().strip().splitlines()[-1])["build"]["id"]
    port = free_port()
    log = tmp_path / "origin.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "--site", str(site), "serve", "--port",
                                 str(port)], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, time.monotonic() + BOUND_S)
        yield proc, port, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_clients_hanging_up_mid_answer_leave_the_origin_serving(
        origin: tuple[subprocess.Popen[bytes], int, Path]) -> None:
    proc, port, log = origin
    paths = [PATHS[i % len(PATHS)] for i in range(STREAMS)]
    assert h2_get(port, paths, read=True) == [200] * STREAMS
    h2load = shutil.which("h2load")
    assert h2load, "h2load not found: scripts/system-deps.sh installs it (apt-get install nghttp2-client)"
    for _ in range(H2LOAD_RUNS):  # h2load stops at its deadline with answers in flight on every connection
        run = subprocess.run([h2load, "-c16", "-m10", "-D1", f"http://127.0.0.1:{port}{PATHS[0]}"],
                             capture_output=True, timeout=BOUND_S, check=False)
        assert b"succeeded" in run.stdout, run.stdout.decode()[-2000:]
        time.sleep(0.3)  # the hang-ups are handled
        assert proc.poll() is None, log.read_text()[-3000:]
    for _ in range(HANG_UPS):  # and clients of our own that hang up their side mid-answer
        h2_get(port, paths, read=False)
    assert proc.poll() is None, log.read_text()[-3000:]
    assert h2_get(port, paths, read=True) == [200] * STREAMS


def test_the_guard_is_installed_once_and_wraps_protocol_send() -> None:
    from hypercorn.trio.tcp_server import TCPServer

    assert hypercorn_guard.install()
    wrapped = TCPServer.protocol_send
    assert hypercorn_guard.install()
    assert TCPServer.protocol_send is wrapped  # not wrapped twice
    assert getattr(wrapped, "_flowcms_busy_guard", False)
