"""The origin serving the live build over real HTTP on 127.0.0.1 (hypercorn + quart-trio)."""

from __future__ import annotations

import email.utils
from pathlib import Path

import h11
import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from support.sites import TINY_SITE, git_commit, make_site, write_files

from pipeline.build import BuildOptions, build_site
from pipeline.origin import create_app
from pipeline.publish import publish
from pipeline.source import GitSource
from pipeline.store import Store

AS_OF = "2026-06-01T00:00:00Z"


async def start_origin(nursery: trio.Nursery, store: Store) -> str:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    urls = await nursery.start(serve, create_app(store), config)
    return urls[0]


def published_site(tmp_path: Path) -> tuple[Path, Store]:
    site = make_site(tmp_path / "site")
    store = Store(tmp_path / "state")
    result = build_site(GitSource(site, "main"), store, previous=None, options=BuildOptions(as_of=AS_OF))
    publish(store, result.build_id)
    return site, store


async def test_origin_serves_live_build_with_validators(tmp_path: Path) -> None:
    site, store = published_site(tmp_path)
    manifest = store.manifest(store.live() or "")
    async with trio.open_nursery() as nursery:
        base = await start_origin(nursery, store)
        async with httpx.AsyncClient(base_url=base) as client:
            r = await client.get("/blog/first-post/")
            assert r.status_code == 200
            assert r.headers["content-type"] == "text/html; charset=utf-8"
            item = manifest["/blog/first-post/"]
            assert r.headers["etag"] == f'"{item.blob[:32]}"'
            assert r.content == store.read(item.blob)
            assert "s-maxage=31536000" in r.headers["cache-control"]
            assert "stale-if-error" in r.headers["cache-control"]
            assert "stale-while-revalidate=60" in r.headers["cache-control"]  # a publish invalidates (edges.py)
            assert set(r.headers["surrogate-key"].split()) == set(item.keys)
            # Last-Modified: when the live pointer moved (the publish), as an IMF-fixdate
            live_moved = int(store.live_path.stat().st_mtime)
            assert r.headers["last-modified"] == email.utils.formatdate(live_moved, usegmt=True)

            # If-Modified-Since (RFC 9110 §13.1.3): 304 at or after Last-Modified, 200 before it or
            # when the date is not a date; If-None-Match, when present, decides alone
            later, earlier = (email.utils.formatdate(live_moved + d, usegmt=True) for d in (60, -1))
            for since, status in ((r.headers["last-modified"], 304), (later, 304), (earlier, 200),
                                  ("Sunday, 06-Nov-94 08:49:37 GMT", 200), ("not a date", 200)):
                ims = await client.get("/blog/first-post/", headers={"If-Modified-Since": since})
                assert ims.status_code == status, since
            both = await client.get("/blog/first-post/", headers={"If-None-Match": '"other"',
                                                                  "If-Modified-Since": r.headers["last-modified"]})
            assert both.status_code == 200

            # 304 on If-None-Match (weak comparison, lists, *), with the validators and no body
            for inm in (r.headers["etag"], f'W/{r.headers["etag"]}', f'"x", {r.headers["etag"]}', "*"):
                nm = await client.get("/blog/first-post/", headers={"If-None-Match": inm})
                assert nm.status_code == 304, inm
                assert nm.content == b""
                assert nm.headers["etag"] == r.headers["etag"]
                assert "content-type" not in nm.headers
            miss = await client.get("/blog/first-post/", headers={"If-None-Match": '"other"'})
            assert miss.status_code == 200

            head = await client.head("/blog/first-post/")
            assert head.status_code == 200
            assert head.content == b""
            assert head.headers["content-length"] == str(item.size)

            redirect = await client.get("/blog/first-post")
            assert redirect.status_code == 301
            assert redirect.headers["location"] == "/blog/first-post/"
            nf = await client.get("/no/such/page/")
            assert nf.status_code == 404
            assert b"404" in nf.content
            post = await client.post("/blog/first-post/", content=b"x")
            assert post.status_code == 405
            assert post.headers["allow"] == "GET, HEAD"

            # publish a new build: the running origin serves it on the next request, and
            # unchanged pages keep their ETag (so clients revalidating get 304)
            old_tag = (await client.get("/docs/start-here/")).headers["etag"]
            write_files(site, {"blog/first.md": TINY_SITE["blog/first.md"].replace("Hello", "Howdy")})
            git_commit(site)
            result = build_site(GitSource(site, "main"), store, previous=store.live(),
                                options=BuildOptions(as_of=AS_OF))
            publish(store, result.build_id)
            fresh = await client.get("/blog/first-post/")
            assert b"Howdy" in fresh.content
            assert fresh.headers["etag"] != r.headers["etag"]
            same = await client.get("/docs/start-here/", headers={"If-None-Match": old_tag})
            assert same.status_code == 304
        nursery.cancel_scope.cancel()


async def test_origin_raw_http11_head_and_keepalive(tmp_path: Path) -> None:
    """A raw h11 client: keep-alive across requests, HEAD has headers and no body."""
    _, store = published_site(tmp_path)
    async with trio.open_nursery() as nursery:
        base = await start_origin(nursery, store)
        port = int(base.rsplit(":", 1)[1])
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        conn = h11.Connection(h11.CLIENT)
        for method in (b"HEAD", b"GET"):
            await stream.send_all(conn.send(h11.Request(method=method, target=b"/tags/",
                                                        headers=[(b"host", b"x")])))
            await stream.send_all(conn.send(h11.EndOfMessage()))
            body = b""
            status = 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            assert status == 200
            assert (body == b"") is (method == b"HEAD")
            conn.start_next_cycle()
        await stream.aclose()
        nursery.cancel_scope.cancel()
