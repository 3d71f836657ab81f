"""``flowcms up``: the whole stack in one process tree, stopped cleanly on Ctrl-C / SIGTERM.

- the origin (quart-trio on hypercorn) serving the live build and the APIs;
- ``edgeproxy`` in front of it, as a child process (the edge is a standalone program that
  knows nothing of the pipeline), with a purge token made for this session;
- the ref watcher: every move of the published branch is published (``Publisher``) and
  purged at the edge, with the publish record printed.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from pipeline import dates
from pipeline.edges import Edge, write_session
from pipeline.publisher import Prepared, Publisher, next_change
from pipeline.store import Store
from pipeline.watch import changes, git_dir
from pipeline.webhooks import BACKOFF_BASE_S, Dispatcher, Outbox

EDGE_START_S = 20.0
PREPARE_MIN_S = 1.0  # a flip closer than this is built at its instant instead of ahead
STOP_S = 15.0


class StackError(Exception):
    """The stack could not start (a port in use, the edge did not come up)."""


async def run_stack(site: Path, store: Store, *, branch: str, host: str, port: int, origin_port: int,
                    edge: bool, watch: bool, say: Callable[[str], Any], answer_cache: bool | None = None,
                    since: str | None = None) -> None:
    """``answer_cache``: the origin's per-build API answer cache (None: FLOWCMS_ANSWER_CACHE, default on).
    ``since``: the branch state the live build was made from (``watch.current_state`` before it was
    built); a commit after it is published even if it landed before the watcher started."""
    token = secrets.token_urlsafe(18)
    # Signals are caught from the start: a SIGTERM while the stack comes up stops it cleanly too.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        await _run(site, store, branch=branch, host=host, port=port, origin_port=origin_port, edge=edge,
                   watch=watch, say=say, token=token, signals=signals, answer_cache=answer_cache, since=since)


async def _run(site: Path, store: Store, *, branch: str, host: str, port: int, origin_port: int, edge: bool,
               watch: bool, say: Callable[[str], Any], token: str, signals: Any,
               answer_cache: bool | None, since: str | None) -> None:
    # FLOWCMS_WEBHOOK_BACKOFF_S: the first retry's delay (tests and demos use a short one)
    webhook_backoff = float(os.environ.get("FLOWCMS_WEBHOOK_BACKOFF_S", BACKOFF_BASE_S))
    from hypercorn.config import Config
    from hypercorn.trio import serve

    from pipeline.origin import create_app, hypercorn_guard

    hypercorn_guard.install()
    async with trio.open_nursery() as nursery:
        config = Config()
        config.bind = [f"{host}:{origin_port if edge else port}"]
        config.accesslog = None
        config.errorlog = "-"
        publisher = Publisher(site, store, [])
        publisher.outbox = Outbox(store.root)
        publisher.dispatcher = Dispatcher(publisher.outbox, backoff_base=webhook_backoff)
        nursery.start_soon(publisher.dispatcher.run)
        app = create_app(store, publisher=publisher, admin_token=token, answer_cache=answer_cache)
        try:
            urls = await nursery.start(serve, app, config)
        except OSError as exc:
            raise StackError(f"cannot listen on {config.bind[0]}: {exc.strerror or exc}") from None
        origin_url = str(urls[0]).rstrip("/")
        edge_url = None
        process = None
        if edge:
            process, edge_url = await _start_edge(host, port, origin_url, token, _edge_config(store, token))
            publisher.edges = [Edge(edge_url, token)]
            session = write_session(store, publisher.edges[0])  # `flowcms publish` elsewhere purges it too
            nursery.start_soon(_forward, process.stderr)
        say(f"site:   [bold]{edge_url or origin_url}/[/]" + ("   (edgeproxy → origin)" if edge_url else ""))
        if edge_url:
            say(f"origin: {origin_url}/")
        say(f"admin token for this session: {token}")
        say("        (Authorization: Bearer …) for POST /api/v3/publish and POST /.edge/purge")
        nursery.start_soon(_schedule, publisher, store, say)
        if watch:
            what = f"branch {branch} of {site}" if git_dir(site) else f"the files of {site}"
            say(f"watching {what}: every change is published. Ctrl-C stops.")
            nursery.start_soon(_watch, site, branch, since, publisher, say)
        else:
            say("Ctrl-C stops.")
        try:
            async for _ in signals:
                break
        finally:
            with trio.CancelScope(shield=True):
                if process is not None:
                    session.unlink(missing_ok=True)
                    await _stop(process)
            nursery.cancel_scope.cancel()


async def _watch(site: Path, branch: str, since: str | None, publisher: Publisher,
                 say: Callable[[str], Any]) -> None:
    async for state in changes(site, branch, since=since):
        record = await publisher.publish(f"watch {state[:12]}")
        say(record.summary())


async def _schedule(publisher: Publisher, store: Store, say: Callable[[str], Any]) -> None:
    """Entries go live (publishAt) or leave (unpublishAt) at their second: the build for that
    instant is prepared as soon as it is known, and at the instant only switched and purged."""
    while True:
        published = publisher.published
        until = await trio.to_thread.run_sync(next_change, store)
        if until is None:
            await published.wait()
            continue
        at = dates.to_utc(until).timestamp()
        prepared = None
        if at - time.time() > PREPARE_MIN_S:
            prepared = await publisher.prepare(until)
        with trio.move_on_after(max(0.0, at - time.time())):
            await published.wait()
            continue  # something else published meanwhile: the schedule may have changed
        record = await publisher.publish_prepared(prepared or Prepared("", None, until), f"schedule {until}")
        say(record.summary())


def _edge_config(store: Store, token: str) -> Path:
    """The edge's settings for the session: the API gateway in front of the cache. Reads of
    published content are public (rate-limited per client address); publishing and rolling
    back need the session's admin token, here also an API key with the admin role."""
    path = store.root / "edge.toml"
    # The delivery APIs are read-only: another method is a 405 at the edge, whoever asks.
    routes = "".join(f'[[gateway.routes]]\nprefix = "{prefix}"\npublic = true\nmethods = ["GET"]\n\n'
                     for prefix in ("/api/v3", "/public/feed", "/v1/flow", "/v3"))  # /v3: seed 000's alias
    # GraphQL clients POST their queries (the schema has no mutations): reads too
    routes += '[[gateway.routes]]\nprefix = "/graphql"\npublic = true\npost_reads = true\nmethods = ["GET", "POST", "OPTIONS"]\n\n'
    routes += '[[gateway.routes]]\nprefix = "/api/v3/publish"\nmin_role = "admin"\nmethods = ["GET", "POST"]\n\n'
    routes += '[[gateway.routes]]\nprefix = "/api/v3/rollback"\nmin_role = "admin"\nmethods = ["POST"]\n\n'
    routes += '[[gateway.routes]]\nprefix = "/_preview"\nmin_role = "editor"\nmethods = ["GET"]\n\n'
    text = ('[gateway]\nanonymous_tier = "anonymous"\n\n[gateway.tiers]\nanonymous = 10000\nadmin = 10000\n\n'
            f'{routes}[[gateway.keys]]\nid = "session-admin"\nkey = "{token}"\nrole = "admin"\ntier = "admin"\n')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the admin token
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


class EdgeProcess:
    """The edge child process, forked by the thread that runs the stack.

    Not ``trio.lowlevel.open_process``: it forks from a worker thread, and Linux sends the
    PR_SET_PDEATHSIG signal when the *thread* that forked exits, not the process. trio retires
    a worker thread after 10 s idle, so the edge of an idle ``flowcms up`` got SIGTERM a few
    seconds after start (measured: 10.0 s). ``subprocess.Popen`` here ties the signal to the
    thread running ``trio.run``, which lives exactly as long as the stack.
    """

    def __init__(self, argv: list[str]) -> None:
        self._popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       preexec_fn=_die_with_parent)
        assert self._popen.stderr is not None
        self.stderr = trio.lowlevel.FdStream(os.dup(self._popen.stderr.fileno()))
        self._popen.stderr.close()

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def send_signal(self, signum: int) -> None:
        self._popen.send_signal(signum)  # a no-op once the child has been reaped

    def kill(self) -> None:
        self._popen.kill()

    async def wait(self) -> int:
        """A pidfd becomes readable when the child exits (Linux ≥ 5.3); elsewhere a worker
        thread waits (it only waits: the fork was done by the main thread)."""
        try:
            fd = os.pidfd_open(self._popen.pid)
        except (AttributeError, OSError):
            return await trio.to_thread.run_sync(self._popen.wait, abandon_on_cancel=True)
        try:
            await trio.lowlevel.wait_readable(fd)
        finally:
            os.close(fd)
        return self._popen.wait()


async def _start_edge(host: str, port: int, origin_url: str, token: str, config: Path) -> tuple[EdgeProcess, str]:
    process = EdgeProcess([sys.executable, "-m", "edgeproxy", "--listen", f"{host}:{port}", "--origin", origin_url,
                           "--purge-token", token, "--log-format", "off", "--config", str(config)])
    output = b""
    with trio.move_on_after(EDGE_START_S):
        while (match := re.search(rb"listening on (\S+):(\d+)", output)) is None:
            chunk = await process.stderr.receive_some(4096)
            if not chunk:
                break
            output += chunk
    if match is None:
        await _stop(process)
        raise StackError(f"the edge proxy did not start: {output.decode(errors='replace').strip()}")
    edge_host = match.group(1).decode()
    return process, f"http://{edge_host}:{int(match.group(2))}"


def _die_with_parent() -> None:
    """In the edge's child process: SIGTERM when `flowcms up` dies, even by SIGKILL (Linux
    PR_SET_PDEATHSIG), so a killed stack never leaves an orphan edge holding the port."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the orphan edge stops at its next SIGTERM like any server


async def _forward(stream: trio.abc.ReceiveStream) -> None:
    """The edge's warnings go to our stderr (and its pipe never fills up)."""
    while chunk := await stream.receive_some(65536):
        await trio.to_thread.run_sync(sys.stderr.buffer.write, chunk)


async def _stop(process: EdgeProcess) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_S):
            await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()
