"""The default theme in a real browser: headless Chromium renders the sample site with its CSS."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import request
from support.sites import copy_sample

from pipeline.build import BuildOptions, build_site
from pipeline.origin import create_app
from pipeline.publish import publish
from pipeline.source import GitSource
from pipeline.store import Store

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def png_pixels(data: bytes) -> tuple[int, int, set[bytes]]:
    """Width, height and the set of distinct colours of an 8-bit RGB(A) non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos: pos + 8])
        chunk = data[pos + 8: pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8
            assert colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    prev = bytearray(stride)
    colours: set[bytes] = set()
    for y in range(height):
        filt = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1: (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if filt == 1:
                line[i] = (line[i] + a) & 255
            elif filt == 2:
                line[i] = (line[i] + b) & 255
            elif filt == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif filt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 8 == 0:
            colours.update(bytes(line[i: i + 3]) for i in range(0, stride, channels * 8))
        prev = line
    return width, height, colours


async def test_sample_site_renders_in_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is required (make test installs it via scripts/system-deps.sh)"
    site = copy_sample(tmp_path / "site")
    store = Store(tmp_path / "state")
    result = build_site(GitSource(site, "main"), store, previous=None,
                        options=BuildOptions(as_of="2026-11-20T00:00:00Z"))
    publish(store, result.build_id)
    app = create_app(store)
    requested: list[str] = []

    @app.before_request
    async def record() -> None:
        requested.append(request.path)

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        base = (await nursery.start(serve, app, config))[0]
        shots = {}
        for name, size, path in (("desktop", "1280,900", "/"), ("mobile", "390,844", "/docs/")):
            out = tmp_path / f"{name}.png"
            with trio.fail_after(90):
                await trio.run_process(
                    [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / ('chrome-' + name)}",
                     f"--window-size={size}", f"--screenshot={out}", base + path],
                    capture_stdout=True, capture_stderr=True)
            shots[name] = png_pixels(out.read_bytes())
        nursery.cancel_scope.cancel()
    assert "/assets/style.css" in requested  # the browser loaded the theme's stylesheet
    (w, h, colours) = shots["desktop"]
    assert (w, h) == (1280, 900)
    assert len(colours) > 20  # text, cards, chips: a styled page, not a blank one
    (w, h, colours) = shots["mobile"]
    assert (w, h) == (390, 844)
    assert len(colours) > 10
