"""The GraphQL playground in headless Chromium with the network cut: it works offline.

Chromium resolves no host but 127.0.0.1 (``--host-resolver-rules``), so a CDN reference
would fail to load. The first test drives the page over the DevTools protocol (a small
client on trio + wsproto): it waits for the schema list, types a query, clicks Run, reads
the result from the DOM, checks every request stayed on the origin and that the CSP
blocked nothing, and takes a screenshot. The second loads ``/graphql#run`` with
``--dump-dom``, which runs the default query on load.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from subprocess import DEVNULL
from typing import Any
from urllib.parse import urlsplit

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from support.sites import copy_sample
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

from pipeline.build import BuildOptions, build_site
from pipeline.origin import create_app
from pipeline.publish import publish
from pipeline.source import GitSource
from pipeline.store import Store

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--disable-extensions", "--no-default-browser-check",
                  # the network is cut: nothing but the origin on 127.0.0.1 resolves
                  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
WINDOW = (1280, 800)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is required (make test installs it via scripts/system-deps.sh)"
    return found


class DevTools:
    """A minimal Chrome DevTools Protocol client for one page: calls and collected events."""

    def __init__(self, stream: trio.SocketStream, ws: WSConnection) -> None:
        self.stream = stream
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self._text = ""

    @classmethod
    async def connect(cls, url: str) -> DevTools:
        parts = urlsplit(url)
        assert parts.hostname
        assert parts.port
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host=parts.netloc, target=parts.path)))
        client = cls(stream, ws)
        while not any(isinstance(event, AcceptConnection) for event in await client._receive()):
            pass
        return client

    async def _receive(self) -> list[Any]:
        data = await self.stream.receive_some(1 << 20)
        assert data, "DevTools closed the connection"
        self.ws.receive_data(data)
        events = []
        for event in self.ws.events():
            if isinstance(event, Ping):
                await self.stream.send_all(self.ws.send(event.response()))
            elif isinstance(event, TextMessage):
                self._text += event.data
                if event.message_finished:
                    self.events.append(json.loads(self._text))
                    self._text = ""
            elif isinstance(event, CloseConnection):
                raise AssertionError("DevTools closed the WebSocket")
            events.append(event)
        return events

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        message = json.dumps({"id": call_id, "method": method, "params": params})
        await self.stream.send_all(self.ws.send(TextMessage(data=message)))
        while True:
            for index, event in enumerate(self.events):
                if event.get("id") == call_id:
                    del self.events[index]
                    assert "error" not in event, event
                    return dict(event.get("result", {}))
            await self._receive()

    async def wait_event(self, method: str) -> dict[str, Any]:
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            await self._receive()

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def wait_for(self, expression: str) -> Any:
        """Poll ``expression`` until it is truthy (the page works asynchronously)."""
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            await trio.sleep(0.05)

    async def aclose(self) -> None:
        await self.stream.aclose()


@asynccontextmanager
async def origin(tmp_path: Path, requested: list[str]) -> AsyncIterator[str]:
    source = copy_sample(tmp_path / "site")
    store = Store(tmp_path / "state")
    result = build_site(GitSource(source, "main"), store, previous=None,
                        options=BuildOptions(as_of="2026-11-20T00:00:00Z"))
    publish(store, result.build_id)
    app = create_app(store)
    inner = app.asgi_app  # the fast lane answers POST /graphql before Quart: record in front of it

    async def record(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            requested.append(f"{scope['method']} {scope['path']}")
        await inner(scope, receive, send)

    app.asgi_app = record  # type: ignore[method-assign]

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        yield (await nursery.start(serve, app, config))[0]
        nursery.cancel_scope.cancel()


async def devtools_address(profile: Path) -> tuple[str, str]:
    """The browser's DevTools address and its own socket's path, from the file Chromium
    writes once it listens on port 0."""
    port_file = profile / "DevToolsActivePort"
    while True:  # Chromium offers no event to wait on: poll its file
        lines = port_file.read_text().splitlines() if port_file.exists() else []
        if len(lines) >= 2:
            return f"ws://127.0.0.1:{int(lines[0])}", lines[1]
        await trio.sleep(0.05)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_playground_runs_a_query_offline_in_chromium(tmp_path: Path) -> None:
    """Click Run: the result JSON shows in the page; only same-origin requests; CSP clean."""
    requested: list[str] = []
    profile = tmp_path / "chrome"
    with trio.fail_after(120):
        async with origin(tmp_path, requested) as base, trio.open_nursery() as nursery:
            command = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                       f"--window-size={WINDOW[0]},{WINDOW[1]}", "about:blank"]
            await nursery.start(partial(trio.run_process, command, check=False, stdout=DEVNULL, stderr=DEVNULL))
            address, browser_path = await devtools_address(profile)
            browser = await DevTools.connect(address + browser_path)
            target = await browser.call("Target.createTarget", url="about:blank")
            await browser.aclose()
            page = await DevTools.connect(f"{address}/devtools/page/{target['targetId']}")
            for domain in ("Page", "Network", "Log", "Runtime"):
                await page.call(f"{domain}.enable")
            await page.call("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1],
                            deviceScaleFactor=1, mobile=False)
            await page.call("Page.navigate", url=base + "/graphql")
            await page.wait_event("Page.loadEventFired")

            # the side panel lists the Query fields from introspection
            fields = await page.wait_for("document.getElementById('fields').dataset.state === 'loaded'"
                                         " && [...document.querySelectorAll('#fields button')]"
                                         ".map(b => b.textContent)")
            assert fields == ["contents", "content", "contentBySlug", "media", "currentUser", "authors"]

            # the default query (seed 001's first) runs from the Run button
            await page.evaluate("document.getElementById('run').click()")
            text = await page.wait_for("document.getElementById('result').dataset.state === 'done'"
                                       " && document.getElementById('result').textContent")
            result = json.loads(text)
            edges = result["data"]["contents"]["edges"]
            assert len(edges) == 5
            assert edges[0]["node"]["author"]["name"] == "Ken Matsuda"
            assert "\n  " in text  # pretty-printed
            assert await page.evaluate("document.getElementById('status').textContent.startsWith('200')")

            # a query with variables, run with Ctrl+Enter
            await page.evaluate(
                "document.getElementById('query').value = 'query Q($slug: String!) {"
                " contentBySlug(slug: $slug) { title } }';"
                "document.getElementById('variables').value = '{\"slug\": \"etags-explained\"}';"
                "document.getElementById('result').dataset.state = 'idle';"
                "document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', ctrlKey: true}));")
            text = await page.wait_for("document.getElementById('result').dataset.state === 'done'"
                                       " && document.getElementById('result').textContent")
            assert json.loads(text) == {"data": {"contentBySlug": {
                "title": "ETags Explained: Strong, Weak, and Everything in Between"}}}

            shot = await page.call("Page.captureScreenshot", format="png")
            (tmp_path / "playground.png").write_bytes(base64.b64decode(shot["data"]))
            urls = [event["params"]["request"]["url"] for event in page.events
                    if event.get("method") == "Network.requestWillBeSent"]
            logged = [event["params"]["entry"] for event in page.events if event.get("method") == "Log.entryAdded"]
            thrown = [event for event in page.events if event.get("method") == "Runtime.exceptionThrown"]
            await page.aclose()
            nursery.cancel_scope.cancel()
    assert urls
    assert all(url.startswith(base + "/") for url in urls), urls
    assert not [entry for entry in logged if entry["level"] == "error"], logged
    assert not thrown, thrown
    assert requested.count("POST /graphql") == 3  # introspection, Run, Ctrl+Enter
    assert png_size((tmp_path / "playground.png").read_bytes()) == WINDOW
    assert (tmp_path / "playground.png").stat().st_size > 10_000  # a rendered page, not a blank one


async def test_playground_runs_on_load_with_hash_run(tmp_path: Path) -> None:
    """/graphql#run runs the default query when loaded: --dump-dom shows the result JSON."""
    requested: list[str] = []
    with trio.fail_after(120):
        async with origin(tmp_path, requested) as base:
            done = await trio.run_process(
                [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chrome'}",
                 "--virtual-time-budget=10000", "--dump-dom", base + "/graphql#run"],
                capture_stdout=True, capture_stderr=True)
    dom = done.stdout.decode()
    assert 'data-state="done"' in dom
    assert "&quot;hasNextPage&quot;: true" in dom or '"hasNextPage": true' in dom
    assert "Ken Matsuda" in dom
    assert "GET /graphql" in requested
    assert "POST /graphql" in requested
