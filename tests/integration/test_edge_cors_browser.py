"""CORS with a real browser: headless Chromium, a page on one origin calling the API on another.

The page is ``http://app.test:PORT/app.html`` (Chromium maps app.test to 127.0.0.1 and resolves
nothing else), served through the edge from the origin stub; it fetches the API at
``http://127.0.0.1:PORT`` (another origin) with an API key, which makes Chromium send a preflight
first. It also fetches a page outside the gateway's routes, which carries no CORS fields: the
browser must refuse that one, or the test would prove nothing about the fields.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import trio
from support.loopback import Answer, start_edge, start_origin

from edgeproxy.config import ProxyConfig
from edgeproxy.gateway_config import parse_gateway

KEY = "fc_test_browser_key_0123456789"
GATEWAY = {
    "anonymous_tier": "anonymous",
    "tiers": {"anonymous": 100, "starter": 1000},
    "routes": [{"prefix": "/api/v3", "public": True}],
    "keys": [{"id": "browser", "key": KEY, "role": "viewer", "tier": "starter"}],
}
PAGE = """<!doctype html><html><body><pre id="api">pending</pre><pre id="other">pending</pre><script>
function show(id, promise) {
  promise.then(async r => { document.getElementById(id).textContent = "status=" + r.status
      + " remaining=" + r.headers.get("x-ratelimit-remaining") + " body=" + (await r.text()); })
    .catch(e => { document.getElementById(id).textContent = "refused: " + e.name; });
}
show("api", fetch("http://127.0.0.1:PORT/api/v3/contents", {headers: {"Authorization": "Bearer KEY"}}));
show("other", fetch("http://127.0.0.1:PORT/blog/post"));
</script></body></html>"""
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--no-default-browser-check",
         "--host-resolver-rules=MAP app.test 127.0.0.1 , MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]


async def test_a_page_on_another_origin_reads_the_api(tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is required (make test installs it via scripts/system-deps.sh)"
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            origin = await start_origin(nursery)
            edge = await start_edge(nursery, ProxyConfig(origin_port=origin.port,
                                                         gateway=parse_gateway(GATEWAY, source="test")))
            page = PAGE.replace("PORT", str(edge.port)).replace("KEY", KEY).encode()
            origin.route("/app.html", Answer(headers=((b"content-type", b"text/html"),), body=page))
            origin.route("/api/v3/contents", Answer(headers=(
                (b"content-type", b"application/vnd.api+json"), (b"cache-control", b"public, s-maxage=60")),
                body=b'{"data": ["from the api"]}'))
            origin.route("/blog/post", Answer(headers=((b"content-type", b"text/plain"),), body=b"a page"))
            done = await trio.run_process(
                [browser, *FLAGS, f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=10000",
                 "--dump-dom", f"http://app.test:{edge.port}/app.html"],
                capture_stdout=True, capture_stderr=True)
            nursery.cancel_scope.cancel()
    dom = done.stdout.decode()
    assert 'status=200 remaining=999 body={"data": ["from the api"]}' in dom, dom
    assert "refused: TypeError" in dom, dom  # no CORS fields outside the routes: the browser refuses
    api = origin.requests_for("/api/v3/contents")
    assert len(api) == 1  # the preflight was answered at the edge
    assert api[0].method == b"GET"
