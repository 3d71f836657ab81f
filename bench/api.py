#!/usr/bin/env python3
"""API benchmark: the delivery APIs through the edge (cache hits) and at the origin (misses),
against hypercorn serving a raw ASGI app, in one run.

Setup: the bundled sample site (``content/``) is copied to a temporary folder and published
there (``python -m pipeline.cli --site TMP publish``). Then four servers, each on its own
127.0.0.1 port, pinned to CPU 0:

  origin   ``python -m pipeline.cli --site TMP serve --port P``: hypercorn + quart-trio behind the
           origin's ASGI fast lane, one process, with its per-build answer cache (the default)
  origin-uncached  the same with ``--no-answer-cache``: every API answer computed
  edge     edgeproxy, 1 worker, in front of the origin, with an API gateway (``--config`` TOML:
           ``/api/v3``, ``/public/feed`` and ``/graphql`` public, tiers of 10,000/minute, API keys)
  raw      hypercorn (trio worker, one process) serving a raw ASGI app (no framework) that answers
           a fixed 2,048-byte JSON body: the "Python web stack floor" peer

Rows (targets: REST list ``/api/v3/posts?limit=20``, single entry ``/api/v3/contents/<id>``, feed
``/public/feed/<flowKey>``, GraphQL ``GET /graphql?query=…``, static page ``/blog/``):

  edge-hit     every target through the edge, already cached (checked: ``Cache-Status: …; hit``,
               X-RateLimit-* on the API rows, the edge's origin counter unchanged); the API rows
               carry API keys, so the gateway's key path is measured
  origin-miss  every API target at the origin directly: what an edge miss costs the origin as
               deployed (after the first request of a build, answered from its answer cache)
  origin-miss-uncached  the same at the origin without the answer cache: every answer computed
  raw-asgi     the raw ASGI app

each with ``wrk -t1 -c32 --latency`` (HTTP/1.1) and h2load (h2c, prior knowledge, 32 connections
with 10 streams each), in ``--rounds`` interleaved rounds; medians. Ratios: API hit / static hit
through the edge (target ≥ 0.8×), origin miss (cached and uncached) / raw hypercorn (target ≥ 0.7×).

Rate limits: one key's bucket admits a burst of 10,000 and then 10,000/minute, which a load
generator spends in a second. So every API-hit run gets its own 32 fresh keys: wrk (one thread)
hands each request the next key of the run's pool (a Lua ``request()``), and h2c runs as 32
``h2load -c1 -m10`` processes, one key each (h2load cannot vary headers per connection). Every h2c
row uses that layout, so the ratios compare like with like. 429s are counted (the gateway's own
counter) and shown in the table. A run's 32 keys admit 32 x (10,000 + 167/s) requests: 341k in
4 s, 347k in 5 s. The API hits over h2c reach ~70k req/s, so runs default to 4 s; longer ones
run into 429s near their end (the table shows them).

Loopback only; every subprocess is bounded by a timeout; every process the bench starts is stopped
by its PID (SIGTERM, then SIGKILL) on the way out, errors, Ctrl-C and SIGTERM included. Missing
wrk/h2load are installed with apt-get (``--no-install`` to skip: their rows are reported missing).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

# The edge benchmark's process, pinning, noise and load-generator helpers (bench/ is on sys.path).
from edge import (  # noqa: E402
    CONNECTIONS,
    GEN_CEILING,
    H2_STREAMS,
    HOST,
    LOADGEN_CPU,
    OTHER_LIMIT,
    OWN_SESSIONS,
    SERVER_CPU,
    Server,
    ensure_tools,
    fmt,
    free_port,
    http_get,
    machine_info,
    others_cpu_s,
    others_delta,
    parse_h2load,
    parse_wrk,
    pct,
    pinned,
    pinning_available,
    summarise_stacks,
    tree_cpu_s,
    venv_python,
    wait_log,
    wait_port,
)
from procs import Timeout, run  # noqa: E402

SAMPLE_SITE = REPO_ROOT / "content"
SERVERS = ("origin", "origin-uncached", "edge", "raw")
KEEPALIVE_S = 75
# Every request of every row, both load generators and the checks, sends this Accept-Encoding
# (``--accept-encoding``): h2load's own default, and what browsers send a superset of. The edge
# answers it with its gzip copy of stored text and JSON (edgeproxy/encoding.py); the origin and
# the raw app ignore it. ``identity`` measures the uncoded answers.
ACCEPT_ENCODING = "gzip, deflate"
PROTOCOLS = ("h1", "h2c")
API_TARGETS = ("list", "entry", "feed", "graphql")
TARGETS = ("static", *API_TARGETS)
QUICK_TARGETS = ("static", "list")
KINDS = ("edge-hit", "origin-miss", "origin-miss-uncached", "raw-asgi")
ORIGIN_KINDS = ("origin-miss", "origin-miss-uncached")
STATIC_PATH = "/blog/"
LIST_PATH = "/api/v3/posts?limit=20"
GRAPHQL_QUERY = "{ contents(first: 10) { edges { node { id title slug } } } }"
GATEWAY_ROUTES = ("/api/v3", "/public/feed", "/graphql")
TIER_PER_MINUTE = 10_000  # the most a tier may say (edgeproxy.gateway.MAX_PER_MINUTE)
RATELIMIT_FIELDS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
HIT_TARGET, ORIGIN_TARGET = 0.8, 0.7
RAW_BYTES = 2048
SPARE_KEY_SETS = 6  # key pools beyond one per API-hit run (retries, profiles)
SETTLE_S = 0.5  # after an h2c run against hypercorn: time for its close-time crash to show


# -- the raw ASGI peer ------------------------------------------------------------------------

def raw_body(size: int = RAW_BYTES) -> bytes:
    """A fixed JSON document of exactly ``size`` bytes, shaped like an API answer."""
    doc: dict[str, Any] = {"data": [{"type": "contents", "id": f"cnt_{i:012x}",
                                     "attributes": {"title": f"Entry {i:03d}", "slug": f"entry-{i:03d}"}}
                                    for i in range(12)], "meta": {"pad": ""}}
    bare = len(json.dumps(doc, separators=(",", ":")))
    doc["meta"]["pad"] = "x" * (size - bare)
    body = json.dumps(doc, separators=(",", ":")).encode()
    assert len(body) == size, len(body)
    return body


RAW_APP = '''"""Raw ASGI app for bench/api.py: no framework, one fixed JSON answer (written by the bench)."""

BODY = {body!r}
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY)),
           (b"cache-control", b"public, max-age=0, s-maxage=31536000")]
START = {{"type": "http.response.start", "status": 200, "headers": HEADERS}}
ANSWER = {{"type": "http.response.body", "body": BODY}}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({{"type": "lifespan.startup.complete"}})
            elif message["type"] == "lifespan.shutdown":
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    if scope["type"] != "http":
        return
    await send(START)
    await send(ANSWER)
'''

# wrk: one thread, 32 connections; request() hands out pre-formatted requests in turn, so each
# request of an API-hit run carries the next key of the run's pool (one request when no keys).
WRK_LUA = """-- written by bench/api.py
local path = {path}
local keys = {{ {keys} }}
local coding = {coding}
local reqs, n, i = {{}}, 0, 0
init = function(args)
  if #keys == 0 then
    reqs[1] = wrk.format("GET", path, {{ ["Accept-Encoding"] = coding }})
  else
    for j, k in ipairs(keys) do
      reqs[j] = wrk.format("GET", path, {{ ["Authorization"] = "Bearer " .. k, ["Accept-Encoding"] = coding }})
    end
  end
  n = #reqs
end
request = function()
  i = i % n + 1
  return reqs[i]
end
"""


def lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- rows ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    kind: str  # edge-hit | origin-miss | origin-miss-uncached | raw-asgi
    target: str  # static | list | entry | feed | graphql | asgi
    path: str
    server: str  # edge | origin | origin-uncached | raw
    keyed: bool  # carries an API key (the gateway's key path)

    @property
    def name(self) -> str:
        return f"{self.kind} {self.target}"


def make_rows(targets: list[str], paths: dict[str, str]) -> list[Row]:
    rows = [Row("edge-hit", t, paths[t], "edge", t in API_TARGETS) for t in targets]
    rows += [Row("origin-miss", t, paths[t], "origin", False) for t in targets if t in API_TARGETS]
    rows += [Row("origin-miss-uncached", t, paths[t], "origin-uncached", False) for t in targets if t in API_TARGETS]
    rows.append(Row("raw-asgi", "asgi", "/", "raw", False))
    return rows


class KeyPool:
    """API keys for the gateway: a check key, then 32 fresh keys per API-hit run (a fresh bucket
    each: 10,000 burst), so the rate limit stays out of the measurement."""

    def __init__(self, sets: int, size: int) -> None:
        self.check = "bench-check-" + secrets.token_hex(16)
        self.sets = [[f"bench-{n:03d}-{c:02d}-{secrets.token_hex(12)}" for c in range(size)] for n in range(sets)]
        self.used = 0
        self.reused = 0

    def all_keys(self) -> list[tuple[str, str]]:
        keys = [("check", self.check)]
        keys += [(f"run{n:03d}c{c:02d}", k) for n, ks in enumerate(self.sets) for c, k in enumerate(ks)]
        return keys

    def next_set(self) -> list[str]:
        if self.used >= len(self.sets):
            self.reused += 1  # spent buckets may answer 429: the table shows it
        keys = self.sets[self.used % len(self.sets)]
        self.used += 1
        return keys


def gateway_toml(pool: KeyPool) -> str:
    lines = ["# written by bench/api.py: the API gateway of the benchmark's edge", "[gateway]",
             'anonymous_tier = "anonymous"', "", "[gateway.tiers]", f"anonymous = {TIER_PER_MINUTE}",
             f"bench = {TIER_PER_MINUTE}", ""]
    for prefix in GATEWAY_ROUTES:
        lines += ["[[gateway.routes]]", f'prefix = "{prefix}"', "public = true", ""]
    for key_id, key in pool.all_keys():
        digest = hashlib.sha256(key.encode()).hexdigest()
        lines += ["[[gateway.keys]]", f'id = "{key_id}"', f'hash = "{digest}"', 'role = "viewer"', 'tier = "bench"', ""]
    return "\n".join(lines)


# -- servers -------------------------------------------------------------------------------------

def publish_site(python: str, work: Path) -> tuple[Path, dict[str, Any]]:
    site = work / "site"
    shutil.copytree(SAMPLE_SITE, site, ignore=shutil.ignore_patterns(".flowcms", ".git"))
    # --no-purge: the copy has no edges to purge; nothing leaves the machine
    r = run([python, "-m", "pipeline.cli", "--site", str(site), "publish", "--no-purge", "--json"], timeout=300,
            cwd=work)
    info = json.loads(r["stdout"].strip().splitlines()[-1])
    return site, {"build": info.get("build", {}).get("id"), "seconds": round(r["wall"], 2)}


def start_origin(python: str, work: Path, site: Path, cpu: str | None, *, answer_cache: bool = True) -> Server:
    """``flowcms serve``; ``answer_cache=False``: ``--no-answer-cache`` (every API answer computed)."""
    port = free_port()
    name = "origin" if answer_cache else "origin-uncached"
    argv = [python, "-m", "pipeline.cli", "--site", str(site), "serve", "--host", HOST, "--port", str(port),
            *(() if answer_cache else ("--no-answer-cache",))]
    server = Server(name, pinned(argv, cpu), work / f"{name}.log", cwd=work)
    server.ports = {"h1": port, "h2c": port}
    wait_port(server, port)
    return server


def start_edge(python: str, work: Path, origin_port: int, config: Path, cpu: str | None) -> Server:
    argv = [python, "-m", "edgeproxy", "--listen", f"{HOST}:0", "--origin", f"http://{HOST}:{origin_port}",
            "--workers", "1", "--log-format", "off", "--grace", "1", "--keepalive-timeout", str(KEEPALIVE_S),
            "--config", str(config)]
    server = Server("edge", pinned(argv, cpu), work / "edge.log", cwd=work)
    port = int(wait_log(server, r"listening on [0-9.]+:(\d+)").group(1))
    server.ports = {"h1": port, "h2c": port}
    wait_port(server, port)
    return server


def start_raw(python: str, work: Path, cpu: str | None) -> Server:
    (work / "bench_raw_asgi.py").write_text(RAW_APP.format(body=raw_body()))
    port = free_port()
    # the origin's own hypercorn settings: Config() defaults, one process (workers 0), no access log
    argv = [python, "-m", "hypercorn", "--worker-class", "trio", "--workers", "0", "--bind", f"{HOST}:{port}",
            "bench_raw_asgi:app"]
    server = Server("raw", pinned(argv, cpu), work / "raw.log", cwd=work, env={"PYTHONPATH": str(work)})
    server.ports = {"h1": port, "h2c": port}
    wait_port(server, port)
    return server


def edge_counters(server: Server) -> dict[str, int]:
    """The edge's origin requests, hits and gateway counters from ``/.edge/stats`` (empty on failure)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, http.client.HTTPException):
        status, _, body = http_get(server.ports["h1"], "/.edge/stats")
        if status == 200:
            data = json.loads(body)
            gw = data.get("gateway") or {}
            return {"origin_requests": data["counters"]["origin_requests"], "hits": data["counters"]["hits"],
                    "misses": data["counters"]["misses"], "gateway_allowed": gw.get("allowed", 0),
                    "gateway_limited": gw.get("limited", 0), "gateway_unauthenticated": gw.get("unauthenticated", 0)}
    return {}


def discover(origin: Server, site: Path) -> dict[str, Any]:
    """An entry id from the REST list and a flowKey from the site's flowcms.toml."""
    status, _, body = http_get(origin.ports["h1"], LIST_PATH)
    if status != 200:
        raise RuntimeError(f"GET {LIST_PATH} at the origin answered {status}: {body[:300]!r}")
    entries = json.loads(body)["data"]
    if not entries:
        raise RuntimeError(f"GET {LIST_PATH} listed no entries")
    feeds = tomllib.loads((site / "flowcms.toml").read_text()).get("feeds") or {}
    if not feeds:
        raise RuntimeError(f"{site / 'flowcms.toml'} defines no [feeds]")
    flow_key = next(iter(feeds))
    entry_id = entries[0]["id"]
    paths = {"static": STATIC_PATH, "list": LIST_PATH, "entry": f"/api/v3/contents/{quote(entry_id)}",
             "feed": f"/public/feed/{quote(flow_key)}", "graphql": "/graphql?query=" + quote(GRAPHQL_QUERY, safe=""),
             "asgi": "/"}
    return {"entry_id": entry_id, "flow_key": flow_key, "paths": paths}


# -- checks --------------------------------------------------------------------------------------

def check_edge(row: Row, edge_srv: Server, key: str) -> dict[str, Any]:
    """Two requests (warm, then the check): the second must be a hit (Cache-Status, and the edge's
    origin counter unchanged), with the same body, and carry X-RateLimit-* on the API rows."""
    port = edge_srv.ports["h1"]
    headers = {"Authorization": f"Bearer {key}"} if row.keyed else {}
    headers["Accept-Encoding"] = ACCEPT_ENCODING
    first, _, body1 = http_get(port, row.path, headers)
    before = edge_counters(edge_srv)
    status, fields, body = http_get(port, row.path, headers)
    after = edge_counters(edge_srv)
    forwarded = after["origin_requests"] - before["origin_requests"] if before and after else None
    cache_status = fields.get("cache-status", "")
    hit = "hit" in [p.strip() for p in cache_status.split(";")]
    limits = {f: fields.get(f) for f in RATELIMIT_FIELDS}
    check: dict[str, Any] = {"first_status": first, "status": status, "bytes": len(body),
                             "content_type": fields.get("content-type"),
                             "content_encoding": fields.get("content-encoding"), "cache_status": cache_status,
                             "origin_requests": forwarded, "from_cache": hit and forwarded == 0,
                             "ratelimit": limits if row.keyed else None}
    if status != 200 or not body or body != body1:
        check["wrong"] = f"answered {status} with {len(body)} bytes (want 200 and the body of the first answer)"
    problems = []
    if not check["from_cache"]:
        problems.append(f"not served from the cache (Cache-Status: {cache_status or '-'}; origin +{forwarded})")
    if row.keyed and not all(limits.values()):
        problems.append(f"X-RateLimit-* missing ({limits})")
    if row.keyed and (after.get("gateway_allowed", 0) - before.get("gateway_allowed", 0)) != 1:
        problems.append("the gateway did not admit the request")
    if problems:
        check["problem"] = "; ".join(problems)
    return check


def check_direct(row: Row, srv: Server) -> dict[str, Any]:
    status, fields, body = http_get(srv.ports["h1"], row.path, {"Accept-Encoding": ACCEPT_ENCODING})
    check: dict[str, Any] = {"status": status, "bytes": len(body), "content_type": fields.get("content-type"),
                             "content_encoding": fields.get("content-encoding"),
                             "cache_control": fields.get("cache-control")}
    if status != 200 or not body or (row.kind == "raw-asgi" and body != raw_body()):
        check["wrong"] = f"answered {status} with {len(body)} bytes"
    return check


# -- load ----------------------------------------------------------------------------------------

def run_group(argvs: list[list[str]], timeout: float) -> tuple[list[dict[str, Any]], float]:
    """Start every argv at once (each in its own session) and wait for all within ``timeout``.

    Returns each one's output, exit code and CPU (wait4 rusage), and the wall time of the group.
    All are killed on timeout or when the caller is interrupted.
    """
    env = {**os.environ, "LC_ALL": "C"}
    procs: list[tuple[subprocess.Popen[bytes], Any]] = []
    timed_out = threading.Event()

    def kill_all() -> None:
        timed_out.set()
        for p, _ in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)

    started = time.perf_counter()
    timer = threading.Timer(timeout, kill_all)
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as files:
        try:
            for argv in argvs:
                out = files.enter_context(tempfile.TemporaryFile())
                p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
                procs.append((p, out))
            timer.start()
            for p, out in procs:
                _, status, usage = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                out.seek(0)
                results.append({"rc": p.returncode, "output": out.read().decode(errors="replace"),
                                "cpu": usage.ru_utime + usage.ru_stime})
        except BaseException:
            kill_all()
            for p, _ in procs:
                with contextlib.suppress(ChildProcessError, OSError):
                    if p.returncode is None:
                        os.waitpid(p.pid, 0)
            raise
        finally:
            timer.cancel()
    wall = time.perf_counter() - started
    if timed_out.is_set():
        raise Timeout(f"load generators timed out after {timeout:.0f} s: {' '.join(argvs[0])}")
    return results, wall


H2LOAD_FINISHED = re.compile(r"finished in ([0-9.]+)(ms|s),")
H2LOAD_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                             r"(\d+) errored, (\d+) timeout")
H2LOAD_CODES = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def parse_h2load_run(out: str) -> dict[str, Any]:
    """One h2load run. Its own req/s is done / time (4xx included) and its ``failed`` already counts
    the 4xx/5xx answers; ``succeeded`` is the completed 2xx/3xx answers, what req/s is made of here."""
    fin, req, codes = H2LOAD_FINISHED.search(out), H2LOAD_REQUESTS.search(out), H2LOAD_CODES.search(out)
    if not fin or not req or not codes:
        raise ValueError(f"unexpected h2load output:\n{out[-2000:]}")
    seconds = float(fin.group(1)) / (1000 if fin.group(2) == "ms" else 1)
    _, _, done, succeeded, failed, errored, timeout = (int(x) for x in req.groups())
    statuses = dict(zip(("2xx", "3xx", "4xx", "5xx"), (int(x) for x in codes.groups()), strict=True))
    parsed = parse_h2load(out)  # the mean time per request
    return {"seconds": seconds, "done": done, "ok": succeeded, "errors": failed + errored + timeout,
            "statuses": statuses, "ok_rps": succeeded / seconds if seconds > 0 else 0.0,
            "rps": done / seconds if seconds > 0 else 0.0, "mean_ms": parsed.get("mean_ms")}


def combine_h2load(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum of the per-connection h2load processes: req/s (each over its own run time), answers,
    errors (failed, errored, timed out: 4xx/5xx are failed), status classes, the weighted mean."""
    runs = [parse_h2load_run(p["output"]) for p in parts]
    res: dict[str, Any] = {"rps": sum(r["rps"] for r in runs), "ok_rps": sum(r["ok_rps"] for r in runs),
                           "requests": sum(r["done"] for r in runs), "ok": sum(r["ok"] for r in runs),
                           "errors": sum(r["errors"] for r in runs),
                           "statuses": {c: sum(r["statuses"][c] for r in runs) for c in ("2xx", "3xx", "4xx", "5xx")}}
    means = [(r["mean_ms"], r["done"]) for r in runs if r.get("mean_ms") is not None]
    weight = sum(n for _, n in means)
    res["mean_ms"] = sum(m * n for m, n in means) / weight if weight else None
    return res


def measure(row: Row, proto: str, srv: Server, edge_srv: Server | None, tools: dict[str, str | None],
            duration: float, pin: bool, keys: list[str] | None, work: Path) -> dict[str, Any]:
    """One load run: req/s (2xx answers), latency, errors, CPU shares, and for edge rows what
    reached the origin and what the gateway admitted or refused meanwhile."""
    port = srv.ports[proto]
    url = f"http://{HOST}:{port}{row.path}"
    seconds = max(1, round(duration))
    counters0 = edge_counters(edge_srv) if edge_srv else {}
    others0 = others_cpu_s(OWN_SESSIONS)
    cpu0 = tree_cpu_s(srv.pid)
    if proto == "h1":
        script = work / "wrk-request.lua"
        script.write_text(WRK_LUA.format(path=lua_string(row.path), keys=", ".join(lua_string(k) for k in keys or []),
                                         coding=lua_string(ACCEPT_ENCODING)))
        argv = [tools["wrk"] or "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), url]
        r = run(pinned(argv, LOADGEN_CPU, pin), timeout=duration + 60, env={"LC_ALL": "C"}, check=False)
        wall, gen_cpu = r["wall"], r["cpu"]
        res = parse_wrk(r["stdout"] + r["stderr"])
        non2xx = 0
        for line in r["stdout"].splitlines():
            if "Non-2xx or 3xx responses:" in line:
                non2xx = int(line.split(":")[1])
        res["ok"] = max(0, res["requests"] - non2xx)
        res["ok_rps"] = res["rps"] * res["ok"] / res["requests"] if res["requests"] else 0.0
        res["tool"] = "wrk"
    else:
        argvs = []
        for c in range(CONNECTIONS):  # one process per connection: each can carry its own API key
            header = ["-H", f"accept-encoding: {ACCEPT_ENCODING}"]  # replaces h2load's own
            header += ["-H", f"authorization: Bearer {keys[c % len(keys)]}"] if keys else []
            argvs.append(pinned([tools["h2load"] or "h2load", "-c1", f"-m{H2_STREAMS}", f"-D{seconds}", *header, url],
                                LOADGEN_CPU, pin))
        parts, wall = run_group(argvs, timeout=duration + 60)
        failed = [p for p in parts if p["rc"] != 0]
        if failed:
            raise RuntimeError(f"h2load exited {failed[0]['rc']}:\n{failed[0]['output'][-2000:]}")
        res = combine_h2load(parts)
        gen_cpu = sum(p["cpu"] for p in parts)
        res["tool"] = "h2load"
    cpu1 = tree_cpu_s(srv.pid)
    other = others_delta(others0, others_cpu_s(OWN_SESSIONS))
    counters1 = edge_counters(edge_srv) if edge_srv else {}
    for _ in range(10):  # a miss's fetch can land after the client stopped: let the counters settle
        if not counters1 or counters1.get("origin_requests") == counters0.get("origin_requests"):
            break
        time.sleep(0.2)
        settled = edge_counters(edge_srv) if edge_srv else {}
        if settled == counters1:
            break
        counters1 = settled
    srv_user, srv_sys = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    res.update(wall_s=wall, gen_cpu=gen_cpu / wall, srv_cpu=(srv_user + srv_sys) / wall,
               srv_sys_share=srv_sys / max(srv_user + srv_sys, 1e-9), other_cpu=other / wall,
               keys=len(keys or []))
    if counters0 and counters1:
        res.update({name: counters1[name] - counters0[name] for name in counters1 if name in counters0})
    return res


# -- report --------------------------------------------------------------------------------------

def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rps = [r["ok_rps"] for r in runs]

    def med(key: str) -> float | None:
        vals = [r[key] for r in runs if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    def total(key: str) -> int | None:
        vals = [r[key] for r in runs if r.get(key) is not None]
        return sum(vals) if vals else None

    return {"rps_median": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps), "rps_runs": rps,
            "p50_ms_median": med("p50_ms"), "p99_ms_median": med("p99_ms"), "mean_ms_median": med("mean_ms"),
            "srv_cpu_median": med("srv_cpu"), "srv_sys_share_median": med("srv_sys_share"),
            "gen_cpu_median": med("gen_cpu"), "other_cpu_median": med("other_cpu"),
            "other_cpu_max": max((r.get("other_cpu") or 0.0) for r in runs),
            "errors": sum(r.get("errors", 0) for r in runs), "requests": sum(r.get("requests", 0) for r in runs),
            "ok": sum(r.get("ok", 0) for r in runs), "fourxx": total("fourxx"), "fivexx": total("fivexx"),
            "origin_requests": total("origin_requests"), "gateway_allowed": total("gateway_allowed"),
            "gateway_limited": total("gateway_limited"), "tool": runs[0]["tool"], "rounds": len(runs)}


def ratios(summary: dict[str, dict[str, dict[str, Any]]], rows: list[Row], protocols: list[str]) -> dict[str, Any]:
    """API hit / static hit (edge), origin miss / raw hypercorn, per protocol."""
    out: dict[str, Any] = {}
    for proto in protocols:
        for row in rows:
            s = summary.get(row.name, {}).get(proto)
            if row.kind == "edge-hit" and row.target != "static":
                base_name, target = "edge-hit static", HIT_TARGET
            elif row.kind in ORIGIN_KINDS:
                base_name, target = "raw-asgi asgi", ORIGIN_TARGET
            else:
                continue
            base = summary.get(base_name, {}).get(proto)
            value = s["rps_median"] / base["rps_median"] if s and base and base["rps_median"] > 0 else None
            out.setdefault(row.name, {})[proto] = {"ratio": value, "target": target, "base": base_name,
                                                   "met": None if value is None else value >= target}
    return out


def print_report(results: dict[str, Any], rows: list[Row], args: argparse.Namespace) -> str:
    summary, checks, rat = results["summary"], results["checks"], results["ratios"]
    missing: dict[str, str] = results["missing_protocols"]
    lines = ["", f"Results (median of {args.rounds} interleaved round(s) of {args.duration:g} s; "
                 f"{results['machine']['pinning']}; {CONNECTIONS} connections, h2c {H2_STREAMS} streams each)"]
    header = (f"{'row':<20} {'target':<7} {'proto':<5} {'tool':<6} {'bytes':>6} {'req/s':>7} {'min':>7} {'max':>7} "
              f"{'p50 ms':>6} {'p99 ms':>7} {'mean ms':>7} {'srv CPU':>7} {'gen CPU':>8} {'other':>5} {'errors':>6} "
              f"{'429':>5}  {'ratio':>6}  {'target':<12}")
    lines += [header, "-" * len(header)]
    flagged: list[str] = []
    marked = False
    for proto in args.protocols:
        for row in rows:
            lead = f"{row.kind:<20} {row.target:<7} {proto:<5}"
            check = checks.get(row.name, {})
            s = summary.get(row.name, {}).get(proto)
            if proto in missing:
                lines.append(f"{lead} missing: {missing[proto]}")
                continue
            if not s:
                why = f"skipped: the check {check['wrong']}" if check.get("wrong") else "no figure (see notes)"
                lines.append(f"{lead} {why}")
                continue
            gen = s["gen_cpu_median"]
            mark = "*" if gen is not None and gen >= GEN_CEILING else " "
            marked = marked or mark == "*"
            flag = " "
            if row.kind == "edge-hit" and (s["origin_requests"] or not check.get("from_cache", False)):
                flag = "!"
                flagged.append(f"{row.name} {proto}: the edge's origin requests during the runs: "
                               f"{s['origin_requests']}{'; check: ' + check['problem'] if check.get('problem') else ''}"
                               " — NOT (only) cache hits")
            elif check.get("problem"):
                flag = "!"
                flagged.append(f"{row.name} {proto}: check: {check['problem']}")
            limited = s["gateway_limited"] if row.kind == "edge-hit" else None
            r = rat.get(row.name, {}).get(proto)
            if r is None:
                ratio, target = ("1.00x", "(base)") if row.target in ("static", "asgi") else ("-", "")
            elif r["ratio"] is None:
                ratio, target = "-", f">={r['target']:.1f}x ?"
            else:
                ratio, target = f"{r['ratio']:.2f}x", f">={r['target']:.1f}x {'met' if r['met'] else 'MISSED'}"
            lines.append(
                f"{lead} {s['tool']:<6} {check.get('bytes', 0):>6} {s['rps_median']:>7.0f} {s['rps_min']:>7.0f} "
                f"{s['rps_max']:>7.0f} {fmt(s['p50_ms_median'], '.2f'):>6} {fmt(s['p99_ms_median'], '.2f'):>7} "
                f"{fmt(s['mean_ms_median'], '.2f'):>7} {pct(s['srv_cpu_median']):>7} {pct(gen):>7}{mark} "
                f"{pct(s['other_cpu_median']):>5} {s['errors']:>6}{flag}{fmt(limited, 'd'):>5}  {ratio:>6}  {target:<12}")
        lines.append("")
    lines.append(
        "req/s: 2xx answers per second, median over rounds (min, max beside it); bytes: the answer's body;\n"
        "p50/p99 ms: wrk's latency distribution (h2load gives none: -); mean ms: mean time per request;\n"
        "srv CPU: the server's CPU time / wall time (one core = 100%; edge rows: edgeproxy, origin rows: the\n"
        "origin (origin-miss: with its per-build answer cache, -uncached: without), raw rows: hypercorn);\n"
        "gen CPU: the load generators'; other: every other process on the machine (noise; should be ~0%);\n"
        "errors: socket errors, failed requests and non-2xx answers, summed over rounds (429s included);\n"
        "429: the edge gateway's own count of rate-limited requests during those runs;\n"
        f"ratio: API hit / static hit through the edge (target >= {HIT_TARGET}x), origin miss (cached or\n"
        f"uncached) / raw hypercorn (target >= {ORIGIN_TARGET}x), same protocol.\n"
        f"h1: wrk -t1 -c{CONNECTIONS}; h2c: {CONNECTIONS} h2load processes of -c1 -m{H2_STREAMS} (one API key per "
        "connection); API-hit runs carry 32 fresh API keys each.")
    noisy = [f"{name} {proto} ({100 * s['other_cpu_max']:.0f}%)" for name, per in summary.items()
             for proto, s in per.items() if s.get("other_cpu_max", 0) > OTHER_LIMIT]
    if noisy:
        lines.append(f"WARNING: other processes took more than {100 * OTHER_LIMIT:.0f}% of a core during: "
                     f"{', '.join(noisy)} — the machine was not idle; rerun for figures to record.")
    if marked:
        lines.append(f"* load generator at >={100 * GEN_CEILING:.0f}% of its core: near the client's ceiling.")
    lines += [f"! {f}" for f in flagged]
    limited = sum(s.get("gateway_limited") or 0 for per in summary.values() for s in per.values())
    if limited:
        lines.append(f"RATE LIMIT: the gateway answered {limited} requests with 429 during the measured runs "
                     "(counted as errors; the req/s columns count 2xx answers only).")
    refused = [f"{name} {proto}: {s.get('fourxx') or 0} 4xx, {s.get('fivexx') or 0} 5xx"
               for name, per in summary.items() for proto, s in per.items()
               if (s.get("fourxx") or s.get("fivexx")) and not name.startswith("edge-hit")]
    if refused:
        lines.append("error answers at the origin (h2load's count; GraphQL answers 503 when it is at capacity, "
                     f"graphql_api.MAX_IN_FLIGHT queries in flight): {'; '.join(refused)}")
    lines.append("checks (HTTP/1.1, by hand, before the runs):")
    for name, c in checks.items():
        if name.startswith("edge-hit"):
            how = "WRONG: " + c["wrong"] if c.get("wrong") else ("hit" if c.get("from_cache") else "NOT A HIT")
            rl = c.get("ratelimit")
            rl_text = (f"; X-RateLimit-Limit {rl['x-ratelimit-limit']}, -Remaining {rl['x-ratelimit-remaining']}"
                       if rl else "")
            lines.append(f"  {name:<28} {c['status']} {how} (Cache-Status: {c.get('cache_status') or '-'}{rl_text})")
        else:
            how = "WRONG: " + c["wrong"] if c.get("wrong") else "ok"
            lines.append(f"  {name:<28} {c['status']} {how} ({c['bytes']} bytes{' ' + c['content_encoding'] if c.get('content_encoding') else ''}, {c.get('content_type')})")
    edge_runs = [r for r in results["runs"] if r["kind"] == "edge-hit"]
    if edge_runs:
        lines.append(f"edge: origin requests during the measured edge runs: "
                     f"{sum(r.get('origin_requests') or 0 for r in edge_runs)}; gateway admitted "
                     f"{sum(r.get('gateway_allowed') or 0 for r in edge_runs if r['target'] != 'static')} requests "
                     f"in the API-hit runs (load generators counted "
                     f"{sum(r.get('requests', 0) for r in edge_runs if r['target'] != 'static')} answers)")
    for note in dict.fromkeys(results.get("notes", [])):
        count = results["notes"].count(note)
        lines.append(f"note: {note}" + (f" (x{count})" if count > 1 else ""))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


# -- profile -------------------------------------------------------------------------------------

def profile_rows(results: dict[str, Any], rows: list[Row], servers: dict[str, Server], tools: dict[str, str | None],
                 args: argparse.Namespace, pin: bool, pool: KeyPool, work: Path, out: Path) -> dict[str, Any]:
    """py-spy on the server of the worst row of each ratio (lowest ratio / target), under its load."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(spy, os.X_OK):
        print("profile: py-spy not found (`.venv/bin/pip install py-spy`); skipped.", file=sys.stderr)
        return {}
    proto = "h1" if "h1" in args.protocols and "h1" not in results["missing_protocols"] else "h2c"
    worst: dict[str, tuple[float, Row]] = {}
    for row in rows:
        r = results["ratios"].get(row.name, {}).get(proto)
        if r and r["ratio"] is not None:
            score = r["ratio"] / r["target"]
            if row.kind not in worst or score < worst[row.kind][0]:
                worst[row.kind] = (score, row)
    chosen = [row for _, row in worst.values()]
    if args.profile_rows:  # named rows instead of the worst ones
        by_name = {row.name.replace(" ", "/"): row for row in rows}
        chosen = [by_name[name] for name in args.profile_rows if name in by_name]
        unknown = [name for name in args.profile_rows if name not in by_name]
        if unknown:
            print(f"profile: no row {', '.join(unknown)} in this run (rows: {', '.join(by_name)})", file=sys.stderr)
    report: dict[str, Any] = {}
    for row in chosen:
        srv = servers[row.server]
        raw_file = out / f"profile-{row.kind}-{row.target}-{proto}.txt"
        # The origin runs its index reads in worker threads that py-spy would count as busy while they
        # wait: there, only samples of the thread holding the GIL (what the one core is spent on).
        gil = ["--gil"] if row.server.startswith("origin") else []
        argv = [spy, "record", "--pid", str(srv.pid), "--duration", str(max(1, round(args.duration))), "--rate", "250",
                "--format", "raw", "--function", "--nonblocking", *gil, "-o", str(raw_file)]
        spy_proc = subprocess.Popen(pinned(argv, LOADGEN_CPU, pin), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        OWN_SESSIONS.add(spy_proc.pid)
        try:
            time.sleep(0.5)  # attached before the load starts
            res = measure(row, proto, srv, servers["edge"] if row.server == "edge" else None, tools, args.duration,
                          pin, pool.next_set() if row.keyed else None, work)
            _, err = spy_proc.communicate(timeout=args.duration + 60)
        finally:
            if spy_proc.poll() is None:
                spy_proc.kill()
                spy_proc.wait()
        if not raw_file.exists():
            print(f"profile: py-spy wrote nothing ({err.decode(errors='replace')[-500:]})", file=sys.stderr)
            continue
        summary = summarise_stacks(raw_file.read_text(), args.profile_top)
        summary.update(rps_under_profiler=res["ok_rps"], file=str(raw_file), row=row.name, proto=proto)
        report[f"{row.name} {proto}"] = summary
        text = [f"\n== py-spy: {row.server} under {row.name} {proto} ({res['ok_rps']:.0f} req/s while sampled; "
                f"{summary['samples']} samples{'; GIL holder only' if gil else ''}) — top by own time (a system call "
                "counts to its caller), then by inclusive time (a lower bound)"]
        for label in ("self", "inclusive"):
            text.append(f"  {label:>9}  function")
            text += [f"  {100 * share:8.1f}%  {name}" for name, share in summary[label]]
        print("\n".join(text), flush=True)
        summary["text"] = "\n".join(text)
    return report


# -- main ----------------------------------------------------------------------------------------

def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, help="seconds per load run (default 4; --quick: 1)")
    p.add_argument("--rounds", type=int, help="interleaved rounds; medians are reported (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: 1 s, 1 round, h1 only, targets {','.join(QUICK_TARGETS)} (plus raw hypercorn)")
    p.add_argument("--out", type=Path, help="folder for api.json (and profiles); default: a new temporary one")
    p.add_argument("--targets", help=f"comma list of {','.join(TARGETS)} (default all; --quick: "
                                     f"{','.join(QUICK_TARGETS)}); raw hypercorn is always measured")
    p.add_argument("--protocols", help="comma list of h1,h2c (default both; --quick: h1)")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing wrk/h2load")
    p.add_argument("--no-pin", action="store_true", help="do not pin servers / load generators with taskset")
    p.add_argument("--profile", action="store_true",
                   help="after the table, sample (py-spy) the server of the worst row of each kind (edge-hit, "
                        "origin-miss, origin-miss-uncached) under the same load")
    p.add_argument("--profile-rows", help="with --profile: comma list of rows to sample instead of the worst ones, "
                                          "as KIND/TARGET (e.g. edge-hit/static,edge-hit/list)")
    p.add_argument("--profile-top", type=int, default=25, help="functions printed per profile table")
    p.add_argument("--accept-encoding", default=ACCEPT_ENCODING,
                   help=f"the Accept-Encoding every request sends (default {ACCEPT_ENCODING!r}, h2load's own; "
                        "'identity' for uncoded answers)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (site, configs, server logs)")
    args = p.parse_args(argv)
    args.duration = args.duration or (1.0 if args.quick else 4.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.duration <= 0 or args.rounds <= 0:
        p.error("--duration and --rounds must be positive")
    args.protocols = _csv(args.protocols or ("h1" if args.quick else ",".join(PROTOCOLS)))
    if not args.protocols or any(x not in PROTOCOLS for x in args.protocols):
        p.error(f"--protocols: choose from {', '.join(PROTOCOLS)}")
    args.protocols = [x for x in PROTOCOLS if x in args.protocols]
    args.targets = _csv(args.targets or ",".join(QUICK_TARGETS if args.quick else TARGETS))
    if not args.targets or any(x not in TARGETS for x in args.targets):
        p.error(f"--targets: choose from {', '.join(TARGETS)}")
    args.targets = [x for x in TARGETS if x in args.targets]
    args.profile_rows = _csv(args.profile_rows or "")
    if args.profile_rows:
        args.profile = True
    return args


def last_line(log: str) -> str:
    """The last line of a server log that says something (not a traceback box's border)."""
    return next((ln for ln in reversed(log.splitlines()) if ln.strip(" |+-")), "?").strip(" |")


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: every server is stopped


def git_state(python: str) -> dict[str, Any]:
    """The commit and uncommitted changes of the checkout the servers import pipeline/edgeproxy from."""
    info: dict[str, Any] = {}
    with contextlib.suppress(RuntimeError, Timeout, OSError, IndexError):
        src = run([python, "-c", "import pipeline; print(pipeline.__file__)"], timeout=60,
                  cwd=Path(tempfile.gettempdir()))["stdout"].strip()
        info["pipeline_src"] = src
        checkout = Path(src).parent.parent
        diff = run(["git", "-C", str(checkout), "diff", "HEAD", "--", "pipeline", "edgeproxy", "site_templates",
                    "content"], timeout=30)["stdout"].encode()
        info["flowcms_commit"] = run(["git", "-C", str(checkout), "rev-parse", "HEAD"], timeout=30)["stdout"].strip()
        info["flowcms_dirty"] = bool(diff)
        if diff:
            info["flowcms_diff_sha1"] = hashlib.sha1(diff, usedforsecurity=False).hexdigest()[:12]
    return info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    global ACCEPT_ENCODING
    ACCEPT_ENCODING = args.accept_encoding
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    wanted = (["wrk"] if "h1" in args.protocols else []) + (["h2load"] if "h2c" in args.protocols else [])
    tools = ensure_tools(wanted, install=not args.no_install)
    missing_protocols: dict[str, str] = {}
    for proto, tool, package in (("h1", "wrk", "wrk"), ("h2c", "h2load", "nghttp2-client")):
        if proto in args.protocols and not tools.get(tool):
            missing_protocols[proto] = (f"{tool} not installed (apt-get install {package}"
                                        f"{'; --no-install' if args.no_install else ''})")
    notes: list[str] = [f"{p} rows not measured: {why}" for p, why in missing_protocols.items()]
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    protocols = [p for p in args.protocols if p not in missing_protocols]

    pin = pinning_available() and not args.no_pin
    server_cpu = SERVER_CPU if pin else None
    python = venv_python()
    out = (args.out or Path(tempfile.mkdtemp(prefix="flowcms-api-bench-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="flowcms-api-bench-work-"))
    info = machine_info(python, tools, pin)
    info.update(git_state(python))
    before = others_cpu_s(OWN_SESSIONS)
    time.sleep(1.0)
    info["other_cpu_before"] = round(others_delta(before, others_cpu_s(OWN_SESSIONS)), 3)
    if info["other_cpu_before"] > OTHER_LIMIT:
        print(f"WARNING: other processes use {100 * info['other_cpu_before']:.0f}% of a core right now: the machine "
              "is not idle, the figures will be noisy.", file=sys.stderr)
    print("FlowCMS API benchmark")
    for k, v in info.items():
        print(f"  {k}: {v}")
    print(f"  targets: {args.targets}  protocols: {args.protocols}  duration: {args.duration:g} s  "
          f"rounds: {args.rounds}  accept-encoding: {args.accept_encoding!r}  out: {out}", flush=True)

    if info.get("tcp_congestion_control") == "bbr" and "h2c" in protocols and "gzip" not in args.accept_encoding:
        notes.append("TCP congestion control is bbr: it paces each connection's sends, and the h2c list row (10 "
                     "uncoded answers of 14.5 KB per connection and batch) reads about 0.1 lower than under cubic "
                     "(0.69x against 0.79x at ff25ee1; bench/api.md, 'Where the time goes')")
    api_runs = len([t for t in args.targets if t in API_TARGETS]) * len(protocols) * args.rounds
    pool = KeyPool(api_runs + SPARE_KEY_SETS, CONNECTIONS)
    results: dict[str, Any] = {
        "machine": info, "notes": notes, "missing_protocols": missing_protocols, "servers": {}, "checks": {},
        "runs": [], "summary": {}, "ratios": {},
        "args": {"duration": args.duration, "rounds": args.rounds, "quick": args.quick, "targets": args.targets,
                 "protocols": args.protocols, "measured_protocols": protocols, "connections": CONNECTIONS,
                 "h2_streams": H2_STREAMS, "tier_per_minute": TIER_PER_MINUTE, "keys_per_run": CONNECTIONS,
                 "key_sets": len(pool.sets)},
    }
    started: list[Server] = []
    servers: dict[str, Server] = {}
    try:
        site, published = publish_site(python, work)
        results["site"] = {"path": str(site), **published}
        print(f"  published the sample site in {published['seconds']} s (build {published['build']})", flush=True)
        config = work / "edge.toml"
        config.write_text(gateway_toml(pool))

        def start(name: str) -> Server:
            if name == "origin":
                srv = start_origin(python, work, site, server_cpu)
            elif name == "origin-uncached":
                srv = start_origin(python, work, site, server_cpu, answer_cache=False)
            elif name == "edge":
                srv = start_edge(python, work, servers["origin"].ports["h1"], config, server_cpu)
            else:
                srv = start_raw(python, work, server_cpu)
            started.append(srv)
            servers[name] = srv
            results["servers"].setdefault(name, []).append({"pid": srv.pid, "ports": srv.ports, "argv": srv.argv})
            print(f"  {name}: pid {srv.pid} on {HOST}:{srv.ports['h1']}", flush=True)
            return srv

        for name in SERVERS:
            start(name)
        found = discover(servers["origin"], site)
        results["site"].update(entry_id=found["entry_id"], flow_key=found["flow_key"])
        rows = make_rows(args.targets, found["paths"])
        results["rows"] = [{"name": r.name, "kind": r.kind, "target": r.target, "path": r.path, "server": r.server,
                            "keyed": r.keyed} for r in rows]

        def check_all(kinds: tuple[str, ...]) -> None:
            for row in rows:
                if row.kind in kinds:
                    c = (check_edge(row, servers["edge"], pool.check) if row.kind == "edge-hit"
                         else check_direct(row, servers[row.server]))
                    results["checks"][row.name] = c
                    state = c.get("wrong") or c.get("problem") or (
                        f"hit, {c['cache_status']}" if row.kind == "edge-hit" else "ok")
                    print(f"  check {row.name:<28} {c['status']} {c['bytes']:>6} bytes {c.get('content_encoding') or '':<4}  {state}",
                          flush=True)

        check_all(KINDS)
        crashes: dict[str, int] = {}

        def restart(name: str, rnd: int | str) -> Server:
            """A crashed server: its log kept, a fresh one started (and the edge's cache warmed again)."""
            srv = servers[name]
            crashes[name] = crashes.get(name, 0) + 1
            tail = srv.log_tail(4000)
            last = last_line(tail)
            print(f"  {name} (pid {srv.pid}) had exited ({srv.proc.returncode}): {last}; restarting", flush=True)
            notes.append(f"{name} crashed (exit {srv.proc.returncode}: {last[:200]}); restarted")
            results.setdefault("crash_logs", []).append({"server": name, "round": rnd, "log": tail})
            srv.stop()
            fresh = start(name)
            if name == "edge":  # an empty cache: warm it again
                check_all(("edge-hit",))
            return fresh

        raw_runs: dict[str, dict[str, list[dict[str, Any]]]] = {r.name: {p: [] for p in protocols} for r in rows}
        for rnd in range(args.rounds):
            print(f"\nround {rnd + 1}/{args.rounds}", flush=True)
            for proto in protocols:
                for row in rows:
                    if results["checks"].get(row.name, {}).get("wrong"):
                        continue  # a wrong answer at the check: nothing to measure (the table says so)
                    res = None
                    for attempt in (1, 2):  # a run that got no answer at all (a dead server) is tried again
                        srv = servers[row.server]
                        if not srv.alive():  # hypercorn's trio worker can die when h2load closes: restart it
                            srv = restart(row.server, rnd + 1)
                        keys = pool.next_set() if row.keyed else None
                        try:
                            res = measure(row, proto, srv, servers["edge"] if row.server == "edge" else None, tools,
                                          args.duration, pin, keys, work)
                        except (RuntimeError, Timeout, ValueError, StopIteration) as exc:
                            again = attempt == 1 and not srv.alive()  # it died under us: once more
                            print(f"  {row.name:<28} {proto:<4} FAILED{' (server dead; again)' if again else ''}: "
                                  f"{str(exc)[:500]}", flush=True)
                            notes.append(f"{row.name} {proto} round {rnd + 1}: {str(exc)[:300]}")
                            res = None
                            if again:
                                continue
                            break
                        if proto == "h2c" and row.server != "edge":
                            # the crash comes as h2load closes its connections: give it time to show
                            with contextlib.suppress(subprocess.TimeoutExpired):
                                srv.proc.wait(SETTLE_S)
                        if res["requests"] > 0:
                            break
                        note = (f"{row.name} {proto} round {rnd + 1}: no answer at all (server "
                                f"{'alive' if srv.alive() else 'dead'}){'; tried again' if attempt == 1 else ''}")
                        print(f"  {note}", flush=True)
                        notes.append(note)
                        res = None
                    if res is None:
                        continue
                    if proto == "h2c" and row.kind != "edge-hit":
                        res["fourxx"] = res["statuses"].get("4xx", 0)
                        res["fivexx"] = res["statuses"].get("5xx", 0)
                    res.update(kind=row.kind, target=row.target, proto=proto, round=rnd + 1, server_pid=srv.pid,
                               server_alive_after=srv.alive())
                    results["runs"].append(res)
                    raw_runs[row.name][proto].append(res)
                    extra = (f"  origin +{res.get('origin_requests')}  gateway +{res.get('gateway_allowed')} "
                             f"429 +{res.get('gateway_limited')}" if row.server == "edge" else "")
                    print(f"  {row.name:<28} {proto:<4} {res['tool']:<6} {res['ok_rps']:>8.0f} req/s  "
                          f"p50 {fmt(res.get('p50_ms'), '.2f'):>6} ms  p99 {fmt(res.get('p99_ms'), '.2f'):>7} ms  "
                          f"srv CPU {100 * res['srv_cpu']:3.0f}%  gen CPU {100 * res['gen_cpu']:3.0f}%  "
                          f"other {100 * res['other_cpu']:3.0f}%  errors {res.get('errors', 0)}{extra}", flush=True)
        for name, srv in servers.items():
            if not srv.alive():
                crashes[name] = crashes.get(name, 0) + 1
                notes.append(f"{name} crashed after its last run (exit {srv.proc.returncode}: "
                             f"{last_line(srv.log_tail(4000))[:200]}); its rows stand")
        if pool.reused:
            notes.append(f"the key pool ran out: {pool.reused} runs reused spent keys (429s possible)")
        results["crashes"] = crashes
        results["summary"] = {name: {p: summarise(runs) for p, runs in per.items() if runs}
                              for name, per in raw_runs.items()}
        results["ratios"] = ratios(results["summary"], rows, protocols)
        results["report"] = print_report(results, rows, args)
        if args.profile:
            for name in SERVERS:
                if not servers[name].alive():
                    restart(name, "profile")
            try:
                results["profile"] = profile_rows(results, rows, servers, tools, args, pin, pool, work, out)
            except (RuntimeError, Timeout, ValueError, OSError, subprocess.TimeoutExpired) as exc:
                print(f"profile failed: {exc}", file=sys.stderr)
                notes.append(f"profile failed: {str(exc)[:300]}")
    finally:
        for srv in reversed(started):
            srv.stop()
        results["processes"] = [{"name": srv.name, "pid": srv.pid, "argv": srv.argv, "exit": srv.proc.returncode}
                                for srv in started]
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        (out / "api.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"results: {out / 'api.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
