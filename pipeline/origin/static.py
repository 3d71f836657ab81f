"""The live build over HTTP: manifest paths → blobs with validators and cache headers.

The live pointer is re-read when its file changes (one ``stat`` per request), so a
publish by another process is visible on the next request with no restart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pipeline.origin.conditional import etag_for, http_date, not_modified
from pipeline.store import Manifest, ManifestItem, Store

# Edges keep pages for a year because publish purges exactly what changed; browsers
# revalidate every time (ETag → 304). stale-while-revalidate (RFC 5861) lets an edge answer
# from a copy an operator soft-purged while it asks again; a publish invalidates instead
# (edges.py: never served before the origin answered), so it is live at once. stale-if-error
# covers an origin that is down.
PAGE_CACHE_CONTROL = "public, max-age=0, s-maxage=31536000, stale-while-revalidate=60, stale-if-error=86400"
NOT_FOUND_CACHE_CONTROL = "public, max-age=0, s-maxage=60"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class LiveSite:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._stamp: tuple[int, int] | None = None
        self._live_path = os.fspath(store.live_path)  # stat'ed on every request: a str, made once
        self.build_id: str | None = None
        self.manifest: Manifest = {}
        # Last-Modified of every page: when the live pointer last moved (publish or rollback).
        # Per page it may be later than the page's own last change (a 200 where a 304 could
        # do), never earlier: a rollback changes pages back, and an older date would make an
        # If-Modified-Since client keep the rolled-back copy. ETag (If-None-Match) is exact.
        self.last_modified: int | None = None

    def refresh(self) -> None:
        try:
            st = os.stat(self._live_path)
            stamp = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            build_id = self.store.live()
            self.manifest = self.store.manifest(build_id) if build_id else {}
            self.build_id = build_id
            self.last_modified = stamp[0] // 1_000_000_000 if stamp else None
            self._stamp = stamp

    def lookup(self, path: str) -> tuple[str, ManifestItem] | tuple[str, None]:
        manifest = self.manifest
        if path in manifest:
            return path, manifest[path]
        if path.endswith("/index.html") and path[: -len("index.html")] in manifest:
            return path[: -len("index.html")], manifest[path[: -len("index.html")]]
        return path, None

    def answer(self, method: str, path: str, if_none_match: str | None,
               if_modified_since: str | None = None) -> Answer:
        self.refresh()
        if method not in ("GET", "HEAD"):
            return Answer(405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain; charset=utf-8")],
                          b"405 method not allowed: the site is read-only (GET, HEAD)\n")
        _key, item = self.lookup(path)
        if item is None:
            if not path.endswith("/") and path + "/" in self.manifest:
                return Answer(301, [("Location", path + "/"), ("Cache-Control", PAGE_CACHE_CONTROL)], b"")
            body = b"404 not found\n"
            content_type = "text/plain; charset=utf-8"
            notfound = self.manifest.get("/404.html")
            if notfound is not None:
                body, content_type = self.store.read(notfound.blob), notfound.type
            return Answer(404, [("Content-Type", content_type), ("Cache-Control", NOT_FOUND_CACHE_CONTROL)], body)
        etag = etag_for(item.blob)
        headers = [("ETag", etag)]
        if self.last_modified is not None:
            headers.append(("Last-Modified", http_date(self.last_modified)))
        headers += [
            ("Cache-Control", PAGE_CACHE_CONTROL),
            ("Surrogate-Key", " ".join(item.keys)),
            ("X-Build", self.build_id or ""),
        ]
        if not_modified(if_none_match, if_modified_since, etag=etag, last_modified=self.last_modified):
            return Answer(304, headers, b"")
        headers.append(("Content-Type", item.type))
        body = b"" if method == "HEAD" else self.store.read(item.blob)
        headers.append(("Content-Length", str(item.size)))
        return Answer(200, headers, body)
