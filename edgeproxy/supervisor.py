"""``--workers N``: N worker processes on one port, joined by the purge bus.

The supervisor binds N listening sockets to the same address with SO_REUSEPORT (the
kernel spreads new connections across them, as nginx's ``reuseport`` does), starts one
worker process per socket (a fresh interpreter, not a fork of a running trio loop), relays
the bus (``bus.py``) so a purge reaches every cache before it is acknowledged, restarts a
worker that dies, and on SIGTERM/SIGINT passes SIGTERM on and waits for every worker to
finish its requests (their ``grace``, plus a bound) before it exits.

A worker finds its settings, listening socket and bus socket in ``WORKER_ENV``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

import trio

from edgeproxy.bus import Hub
from edgeproxy.config import ProxyConfig
from edgeproxy.errors import ConfigError
from edgeproxy.server import LISTEN_BACKLOG

log = logging.getLogger(__name__)

WORKER_ENV = "EDGEPROXY_WORKER"
RESTART_BACKOFF_S = 1.0  # a worker that died within this long of starting waits this long first
STOP_MARGIN_S = 5.0  # after the workers' grace, how long before they are killed


def bind_listeners(config: ProxyConfig, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one address (SO_REUSEPORT); port 0 picks one for all."""
    try:
        infos = socket.getaddrinfo(config.listen_host, config.listen_port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {config.listen_host}:{config.listen_port}: {exc.strerror or exc}") from None
    family, _, _, _, address = infos[0]
    sockets: list[socket.socket] = []
    port = config.listen_port
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = sock.getsockname()[1]
            sock.listen(LISTEN_BACKLOG)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ConfigError(f"cannot listen on {config.listen_host}:{config.listen_port}: "
                          f"{exc.strerror or exc}") from None
    return sockets


class Supervisor:
    def __init__(self, config: ProxyConfig, listeners: list[socket.socket]) -> None:
        self.config = config
        self.listeners = listeners
        self.hub = Hub()
        self.processes: dict[int, trio.Process] = {}
        self.stopping = False
        self.all_exited = trio.Event()

    async def run(self, signals: Any) -> None:
        """Until SIGINT/SIGTERM arrives on ``signals`` (a receiver the caller opened before it
        announced the port, so a signal sent at once is not lost)."""
        async with trio.open_nursery() as nursery:
            for slot in range(len(self.listeners)):
                nursery.start_soon(self._keep_running, slot, nursery)
            async for signum in signals:
                log.info("received %s: stopping %d workers (grace %g s)", signal.Signals(signum).name,
                         len(self.processes), self.config.grace)
                break
            self.stopping = True
            for process in list(self.processes.values()):
                with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
                    process.send_signal(signal.SIGTERM)
            with trio.move_on_after(self.config.grace + STOP_MARGIN_S):
                if self.processes:
                    await self.all_exited.wait()
            for process in list(self.processes.values()):
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            nursery.cancel_scope.cancel()

    async def _keep_running(self, slot: int, nursery: trio.Nursery) -> None:
        listener = self.listeners[slot]
        while not self.stopping:
            ours, theirs = socket.socketpair()
            theirs.set_inheritable(True)
            spec = {"config": dataclasses.asdict(self.config), "listen_fd": listener.fileno(),
                    "bus_fd": theirs.fileno(), "workers": len(self.listeners), "slot": slot}
            started = time.monotonic()
            try:
                process = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "edgeproxy"], env={**os.environ, WORKER_ENV: json.dumps(spec)},
                    pass_fds=(listener.fileno(), theirs.fileno()))
            finally:
                theirs.close()
            self.processes[slot] = process
            nursery.start_soon(self.hub.serve, slot, trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
            try:
                status = await process.wait()
            finally:
                self.processes.pop(slot, None)
                if self.stopping and not self.processes:
                    self.all_exited.set()
            if self.stopping:
                return
            log.warning("worker %d (pid %d) exited with status %s: starting a new one", slot, process.pid, status)
            if time.monotonic() - started < RESTART_BACKOFF_S:
                await trio.sleep(RESTART_BACKOFF_S)


def worker_spec() -> dict[str, Any] | None:
    raw = os.environ.get(WORKER_ENV)
    return json.loads(raw) if raw else None


async def run_worker(spec: dict[str, Any]) -> None:
    """A worker process: serve the inherited listening socket, talk to the supervisor's bus."""
    from edgeproxy.server import Server

    config = ProxyConfig(**spec["config"])
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(socket.socket(fileno=spec["listen_fd"])))
    bus = trio.SocketStream(trio.socket.from_stdlib_socket(socket.socket(fileno=spec["bus_fd"])))
    await Server(config, bus=bus, workers=spec["workers"]).serve(listeners=[listener])
