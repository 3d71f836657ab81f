#!/usr/bin/env python3
"""Edge benchmark: edgeproxy against nginx ``proxy_cache``, Varnish and hypercorn + quart-trio, in one run.

One origin (a small asyncio HTTP/1.1 server in this file: a 1 KiB JSON and a 20 KiB HTML body
with ``Cache-Control: public, s-maxage=3600`` and an ETag, 304 on ``If-None-Match``, and a
distinct 1 KiB body for any ``/obj/<n>``) and these peers, each on its own 127.0.0.1 port:

  edgeproxy      edgeproxy, 1 worker, in front of the origin (HTTP/1.1 and h2c on one port)
  nginx_cache    nginx, 1 worker, ``proxy_cache`` in front of the same origin (upstream keepalive)
  varnish        varnishd, malloc storage, ``-p feature=+http2``, the built-in VCL in front of the origin
  hypercorn      hypercorn (trio worker) + a tiny quart-trio app serving the same bodies: no cache
  nginx_static   (only with --only) nginx serving the same bodies as static files

Every peer is checked first by hand: the second request for each body must be served from
its cache (the origin's request counter does not move; plus Cache-Status / X-Cache-Status /
X-Varnish), and a request with ``If-None-Match`` must be answered 304 (a cache that forwards
it to the origin is reported as such). Then ``--rounds`` interleaved rounds, each protocol by
protocol, body by body, peer by peer, of ``wrk -t1 -c32 -d{duration}s --latency`` (HTTP/1.1)
and ``h2load -c32 -m10 -D{duration}`` (h2c, prior knowledge) on the 1 KiB body, the 20 KiB
body, and the 1 KiB body with ``If-None-Match`` (the ``304`` rows). The origin's counter is
read around every run, so a row that was not served from cache says so. Servers run on
CPU 0, the load generator on CPU 1 (``taskset``, when there are two CPUs). Medians are
reported with the ratios to nginx ``proxy_cache`` and to Varnish for the same protocol and body.

Then RSS (``VmRSS`` of the server's processes): a fresh edgeproxy (``--cache-bytes`` 512 MiB)
filled with 100,000 distinct 1 KiB objects, and a fresh edgeproxy holding 2,000 idle
keep-alive HTTP/1.1 connections (Varnish and nginx too when they are there).

Loopback only; every subprocess is bounded by a timeout; every process the bench starts is
stopped by PID (SIGTERM, then SIGKILL) on the way out, errors included. Missing
``wrk``/``nginx``/``h2load``/``varnishd`` are installed with apt-get (``--no-install`` to skip:
the peers that need them are reported as missing); without wrk the HTTP/1.1 rows use a small
built-in Python load generator (``pyload``: one core of Python; the ``gen CPU`` column shows
when it, not the server, is the limit).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import http.client
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
THIS = Path(__file__).resolve()
HOST = "127.0.0.1"
PEERS = ("edgeproxy", "nginx_cache", "varnish", "hypercorn", "nginx_static")
DEFAULT_PEERS = ("edgeproxy", "nginx_cache", "varnish", "hypercorn")
CACHES = ("edgeproxy", "nginx_cache", "varnish")  # peers that must answer from their own cache
PROTOCOLS = ("h1", "h2c")
BODIES = ("1k", "20k", "304")
BASELINES = (("vs nginx", "nginx_cache"), ("vs varnish", "varnish"))
CONNECTIONS = 32
H2_STREAMS = 10  # h2load -m
SERVER_CPU, LOADGEN_CPU = "0", "1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
OWN_SESSIONS: set[int] = set()  # sessions of the servers the bench started (see others_cpu_s)
GEN_CEILING = 0.85  # load generator CPU share above which a figure is marked as near the client's limit
OTHER_LIMIT = 0.10  # other processes' CPU share during a run above which the report warns
APT_PACKAGES = {"wrk": "wrk", "nginx": "nginx", "h2load": "nghttp2-client", "varnishd": "varnish"}
PEER_TOOL = {"nginx_cache": "nginx", "nginx_static": "nginx", "varnish": "varnishd"}
KEEPALIVE_S = 75  # idle keep-alive timeout of every server (edgeproxy's default)
RSS_OBJECTS, RSS_CONNECTIONS = 100_000, 2_000
RSS_OBJECTS_QUICK, RSS_CONNECTIONS_QUICK = 2_000, 100
RSS_CACHE_BYTES = 512 * 1024 * 1024
FILL_CONNECTIONS = 32
FILL_DEADLINE_S = 300.0  # the 100k fill stops here at the latest (and says so)
CACHE_CONTROL = b"public, s-maxage=3600"


# -- bodies ------------------------------------------------------------------------------


def _json_body(size: int) -> bytes:
    doc: dict[str, Any] = {"site": "FlowCMS", "bench": "edge hit path",
                           "items": [{"id": i, "title": f"Entry {i:03d}", "tags": ["edge", "cache"]}
                                     for i in range(8)], "pad": ""}
    bare = len(json.dumps(doc, separators=(",", ":"))) + 1
    doc["pad"] = "x" * (size - bare)
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def _html_body(size: int) -> bytes:
    head = (b'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>FlowCMS edge benchmark'
            b"</title></head>\n<body><main>\n")
    tail = b"</main></body></html>\n"
    parts = [head]
    room = size - len(head) - len(tail) - 16
    i = 0
    while True:
        para = (b"<p>Paragraph %04d of the edge benchmark page: ordinary prose as a cached HTML page "
                b"would carry it, with <a href=\"/blog/entry-%04d/\">a link</a>.</p>\n" % (i, i))
        if len(para) > room:
            break
        parts.append(para)
        room -= len(para)
        i += 1
    parts.append(b"<!-- " + b"x" * (room + 16 - 10) + b" -->\n")
    parts.append(tail)
    return b"".join(parts)


def _etag(body: bytes) -> bytes:
    return b'"' + hashlib.sha1(body, usedforsecurity=False).hexdigest()[:16].encode() + b'"'


def obj_body(n: int) -> bytes:
    """The distinct 1 KiB body of ``/obj/<n>`` (the RSS fill)."""
    prefix = b'{"n":%d,"pad":"' % n
    return prefix + b"o" * (1024 - len(prefix) - 3) + b'"}\n'


@dataclass(frozen=True)
class Target:
    """What one row requests: a path, the body it must answer, and whether it is a revalidation."""

    key: str
    path: str
    body: bytes
    etag: bytes
    ctype: bytes
    conditional: bool = False

    @property
    def status(self) -> int:
        return 304 if self.conditional else 200


BODY_1K, BODY_20K = _json_body(1024), _html_body(20 * 1024)
assert len(BODY_1K) == 1024, len(BODY_1K)
assert len(BODY_20K) == 20 * 1024, len(BODY_20K)
assert len(obj_body(0)) == len(obj_body(10**9)) == 1024
TARGETS = {
    "1k": Target("1k", "/bench/hit-1k.json", BODY_1K, _etag(BODY_1K), b"application/json"),
    "20k": Target("20k", "/bench/hit-20k.html", BODY_20K, _etag(BODY_20K), b"text/html; charset=utf-8"),
}
TARGETS["304"] = Target("304", TARGETS["1k"].path, b"", TARGETS["1k"].etag, TARGETS["1k"].ctype, conditional=True)


# -- the origin ----------------------------------------------------------------------------


def serve_origin(host: str, port: int) -> None:
    """The origin (``--_origin``): asyncio, HTTP/1.1 keep-alive, one process.

    ``/bench/…`` the two bodies (304 to a matching ``If-None-Match``), ``/obj/<n>`` a distinct
    cacheable 1 KiB body for any n, ``/_origin/count`` the requests it answered (not counted
    itself), anything else 404. Fast enough that the RSS fill measures the proxy, not it.
    """
    import asyncio
    import email.utils

    resources = {t.path.encode(): t for t in (TARGETS["1k"], TARGETS["20k"])}
    counts: Counter[str] = Counter()
    clock = [0, b""]

    def http_date() -> bytes:
        now = int(time.time())
        if now != clock[0]:
            clock[0], clock[1] = now, email.utils.formatdate(now, usegmt=True).encode()
        return clock[1]

    def head(status: bytes, fields: list[tuple[bytes, bytes]], length: int | None, close: bool) -> bytes:
        lines = [b"HTTP/1.1 " + status, b"date: " + http_date(), *(k + b": " + v for k, v in fields)]
        if length is not None:
            lines.append(b"content-length: %d" % length)
        if close:
            lines.append(b"connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def matches(inm: bytes | None, etag: bytes) -> bool:
        if inm is None:
            return False
        tags = [v.strip().removeprefix(b"W/") for v in inm.split(b",")]
        return b"*" in tags or etag in tags

    def respond(method: bytes, target: bytes, fields: dict[bytes, bytes], close: bool) -> bytes:
        path = target.split(b"?", 1)[0]
        with_body = method != b"HEAD"
        if path == b"/_origin/count":
            data = json.dumps({"requests": sum(counts.values()), **counts}).encode()
            return head(b"200 OK", [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
                        len(data), close) + data
        t = resources.get(path)
        if t is not None:
            body, etag, ctype = t.body, t.etag, t.ctype
            kind = "bench"
        elif path.startswith(b"/obj/") and path[5:].isdigit():
            n = int(path[5:])
            body, etag, ctype = obj_body(n), b'"o%d"' % n, b"application/json"
            kind = "obj"
        else:
            counts["other"] += 1
            data = b"not found\n"
            return head(b"404 Not Found", [(b"content-type", b"text/plain"), (b"cache-control", b"no-store")],
                        len(data), close) + data
        fields_out = [(b"content-type", ctype), (b"cache-control", CACHE_CONTROL), (b"etag", etag)]
        if matches(fields.get(b"if-none-match"), etag):
            counts[kind + "_304"] += 1
            return head(b"304 Not Modified", fields_out, None, close)
        counts[kind] += 1
        return head(b"200 OK", fields_out, len(body), close) + (body if with_body else b"")

    class Origin(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data
            out = []
            close = False
            while not close:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > 65536:
                        self.transport.close()
                        return
                    break
                lines = buf[:end].split(b"\r\n")
                try:
                    method, target, version = lines[0].split(b" ")
                except ValueError:
                    self.transport.close()
                    return
                fields = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    fields[name.strip().lower()] = value.strip()
                length = int(fields.get(b"content-length") or b"0")
                if len(buf) < end + 4 + length:
                    break
                buf = buf[end + 4 + length:]
                conn = fields.get(b"connection", b"").lower()
                close = conn == b"close" or (version == b"HTTP/1.0" and conn != b"keep-alive")
                out.append(respond(method, target, fields, close))
            self.buf = buf
            if out:
                self.transport.write(b"".join(out))
            if close:
                self.transport.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Origin, host, port, backlog=4096, reuse_address=True)
        print(f"origin listening on {host}:{port}", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# The hypercorn peer: a tiny quart-trio app serving the same two bodies (no cache).
QUART_APP = """
from quart import Response, request
from quart_trio import QuartTrio

CACHE_CONTROL = {cc!r}
RESOURCES = {resources!r}  # path -> (body, etag, content type)
app = QuartTrio(__name__)


@app.route("/bench/<name>")
async def bench(name):
    found = RESOURCES.get("/bench/" + name)
    if found is None:
        return Response(b"not found\\n", status=404, content_type="text/plain")
    body, etag, ctype = found
    headers = {{"cache-control": CACHE_CONTROL, "etag": etag}}
    inm = request.headers.get("if-none-match")
    if inm is not None and etag in [tag.strip() for tag in inm.split(",")]:
        return Response(b"", status=304, headers=headers)
    return Response(body, status=200, headers=headers, content_type=ctype)
"""

HYPERCORN_TOML = """
bind = ["{host}:{port}"]
worker_class = "trio"
workers = 0
keep_alive_max_requests = 1000000000
keep_alive_timeout = {keepalive}
graceful_timeout = 1
errorlog = "-"
"""

NGINX_CONF = """
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout {keepalive}s;
    keepalive_requests 1000000000;
    types {{ application/json json; text/html html; }}
    default_type text/plain;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
{http_extra}
    server {{
        listen {host}:{port_h1};
        listen {host}:{port_h2} http2;
        server_name localhost;
{server_extra}
    }}
}}
"""

NGINX_CACHE_HTTP = """
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=edge:10m max_size=256m inactive=60m use_temp_path=off;
    upstream origin {{
        server {host}:{origin_port};
        keepalive 16;
    }}
"""

NGINX_CACHE_SERVER = """
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache edge;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status;
        }}
"""

NGINX_STATIC_SERVER = """
        root {root};
        etag on;
        location / {{
            add_header Cache-Control "public, s-maxage=3600";
        }}
"""

# Only the backend: everything else is Varnish's built-in VCL (cache GET/HEAD without
# Cookie/Authorization; TTL from s-maxage; 304 to a matching If-None-Match on a hit).
VARNISH_VCL = """vcl 4.1;

backend origin {{
    .host = "{host}";
    .port = "{port}";
}}
"""


# -- processes ---------------------------------------------------------------------------

from procs import Timeout, cpu_and_memory, run  # noqa: E402  (bench/ is on sys.path)


class Server:
    """A long-running server started by the bench; stopped by its PID (and its own process group)."""

    def __init__(self, name: str, argv: list[str], log: Path, *, cwd: Path, env: dict[str, str] | None = None):
        self.name, self.argv, self.log = name, argv, log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                                     stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        OWN_SESSIONS.add(self.pid)  # start_new_session: its session id is its pid
        self.ports: dict[str, int] = {}
        self.extra: dict[str, Any] = {}
        self.stopped = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL (to its process group: nginx workers, Varnish's child) after STOP_TIMEOUT_S."""
        if self.stopped:
            return
        self.stopped = True
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    print(f"  {self.name} (pid {self.pid}) ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s: SIGKILL",
                          file=sys.stderr)
            # Whatever is left of its group (start_new_session: pgid == pid), e.g. orphaned workers.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT_S)
        finally:
            self._log_file.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(server: Server, port: int, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}")
        with socket.socket() as s:
            s.settimeout(1.0)
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{server.name} did not listen on {HOST}:{port} within {timeout:.0f} s:\n"
                       f"{server.log_tail()}")


def wait_log(server: Server, pattern: str, timeout: float = START_TIMEOUT_S) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        m = rx.search(server.log_tail(20000))
        if m:
            return m
        if not server.alive():
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}")
        time.sleep(0.05)
    raise RuntimeError(f"{server.name}: no {pattern!r} in its log within {timeout:.0f} s:\n{server.log_tail()}")


def _stat_fields(pid: str | int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state is [0], ppid [1], session [3])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def others_cpu_s(own_sessions: set[int]) -> dict[int, float]:
    """CPU seconds (own + reaped children) of every user-space process outside the bench's sessions.

    The difference of two snapshots is the CPU that something else on the machine (a test run,
    a build) took during a measurement: the noise figure of that row. Kernel threads are left
    out (loopback softirq work done by ksoftirqd is the benchmark's own cost).
    """
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    snap: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                f = _stat_fields(entry)
                ppid, session = int(f[1]), int(f[3])
                if entry == "2" or ppid == 2 or session in own_sessions:
                    continue
                snap[int(entry)] = sum(int(x) for x in f[11:15]) / tick
    return snap


def others_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(max(0.0, v - before.get(pid, 0.0)) for pid, v in after.items())


def tree_pids(pid: int) -> set[int]:
    """A process and all its descendants (nginx master + worker, Varnish manager + child)."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    children.setdefault(int(_stat_fields(entry)[1]), []).append(int(entry))
    found, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def tree_cpu_s(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process and its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(p)
            user += int(fields[11])  # utime, stime: fields 14 and 15 of stat
            system += int(fields[12])
    return user / tick, system / tick


def tree_rss_kib(pid: int) -> tuple[int, dict[int, int]]:
    """Sum of VmRSS (KiB) over a process and its descendants, and each one's."""
    each: dict[int, int] = {}
    for p in sorted(tree_pids(pid)):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    each[p] = int(line.split()[1])
                    break
    return sum(each.values()), each


# -- tools ---------------------------------------------------------------------------------

def which(tool: str) -> str | None:
    return shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}")
                                       if os.access(p, os.X_OK)), None)


def ensure_tools(wanted: list[str], install: bool) -> dict[str, str | None]:
    """Each tool's path; missing ones installed with apt-get (root) unless ``install`` is False."""
    found = {t: which(t) for t in wanted}
    missing = [t for t, p in found.items() if p is None]
    if not missing:
        return found
    packages = [APT_PACKAGES[t] for t in missing]
    apt = shutil.which("apt-get")
    if not install:
        print(f"tools: {', '.join(missing)} not found; not installing (--no-install).", file=sys.stderr)
        return found
    if apt is None or os.geteuid() != 0:
        print(f"tools: {', '.join(missing)} not found and cannot apt-get install {' '.join(packages)} here "
              "(needs root and apt-get).", file=sys.stderr)
        return found
    print(f"tools: {', '.join(missing)} not found; installing with `apt-get install -y {' '.join(packages)}` …",
          file=sys.stderr, flush=True)
    env = {"DEBIAN_FRONTEND": "noninteractive"}

    def attempt(pkgs: list[str]) -> bool:
        try:
            run([apt, "install", "-y", "-qq", "--no-install-recommends", *pkgs], timeout=900, env=env)
            return True
        except (RuntimeError, Timeout, OSError) as exc:
            print(f"tools: apt-get install {' '.join(pkgs)} failed: {str(exc).splitlines()[0]}", file=sys.stderr)
            return False

    if not attempt(packages):
        try:
            run([apt, "update", "-qq"], timeout=300, env=env)
        except (RuntimeError, Timeout, OSError) as exc:
            print(f"tools: apt-get update failed: {str(exc).splitlines()[0]}", file=sys.stderr)
        if not attempt(packages):  # one by one: a failure skips only the peers that need it
            for p in packages:
                attempt([p])
    found = {t: which(t) for t in wanted}
    still = [t for t, p in found.items() if p is None]
    if still:
        print(f"tools: still missing after apt-get: {', '.join(still)}", file=sys.stderr)
    return found


def tool_version(argv: list[str]) -> str | None:
    with contextlib.suppress(RuntimeError, Timeout, OSError):
        r = run(argv, timeout=20, check=False)
        text = (r["stdout"] + r["stderr"]).strip().splitlines()
        return text[0].strip() if text else None
    return None


def pinning_available() -> bool:
    return shutil.which("taskset") is not None and {0, 1} <= os.sched_getaffinity(0)


def pinned(argv: list[str], cpu: str | None, pin: bool = True) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if pin and cpu is not None else argv


def machine_info(python: str, tools: dict[str, str | None], pin: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "platform": platform.platform(), "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
        "loadavg_at_start": os.getloadavg()[0],
        "pinning": f"servers on CPU {SERVER_CPU}, load generator on CPU {LOADGEN_CPU} (taskset)" if pin
        else "none (taskset missing or fewer than 2 usable CPUs)",
    }
    info.update(cpu_and_memory())
    with contextlib.suppress(OSError):
        info["cpu_governor"] = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip()
    with contextlib.suppress(OSError):
        # bbr paces a connection's send: a write of more than one 64 KB loopback segment goes out in
        # timed pieces, which costs the sender more than cubic does (bench/api.md, "Where the time goes")
        info["tcp_congestion_control"] = Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    code = ("import importlib.metadata as m, edgeproxy, sys; print(edgeproxy.__file__); "
            "print(' '.join(f'{p}={m.version(p)}' for p in "
            "('trio', 'h2', 'hpack', 'hyperframe', 'h11', 'hypercorn', 'quart', 'quart-trio')))")
    with contextlib.suppress(RuntimeError, Timeout, OSError, IndexError):
        out = run([python, "-c", code], timeout=60, cwd=Path(tempfile.gettempdir()))["stdout"].splitlines()
        info["edgeproxy_src"] = out[0]  # the package the servers import (PYTHONPATH puts another checkout first)
        info["packages"] = out[1]
    # The git state of the checkout that holds the measured package: uncommitted changes are named by a hash.
    checkout = Path(info.get("edgeproxy_src", REPO_ROOT / "edgeproxy" / "x")).parent.parent
    try:
        info["edgeproxy_commit"] = run(["git", "-C", str(checkout), "rev-parse", "HEAD"], timeout=30)["stdout"].strip()
        diff = run(["git", "-C", str(checkout), "diff", "HEAD", "--", "edgeproxy"], timeout=30)["stdout"].encode()
        info["edgeproxy_dirty"] = bool(diff)
        if diff:
            info["edgeproxy_diff_sha1"] = hashlib.sha1(diff, usedforsecurity=False).hexdigest()[:12]
    except (RuntimeError, Timeout, OSError):
        info["edgeproxy_commit"] = f"unknown ({checkout} is not a git checkout)"
    info["server_python"] = python
    for tool, argv in (("nginx", ["-v"]), ("varnishd", ["-V"]), ("wrk", ["-v"]), ("h2load", ["--version"])):
        if tools.get(tool):
            info[tool] = tool_version([tools[tool] or tool, *argv])
    return info


def venv_python() -> str:
    """The interpreter that has edgeproxy, hypercorn and quart-trio: this one, else the repository's venv."""
    for candidate in (sys.executable, str(REPO_ROOT / ".venv" / "bin" / "python")):
        with contextlib.suppress(RuntimeError, Timeout, OSError):
            run([candidate, "-c", "import edgeproxy, hypercorn, trio, quart_trio"], timeout=60,
                cwd=Path(tempfile.gettempdir()))
            return candidate
    sys.exit("edgeproxy/hypercorn/quart-trio not importable: run `make install` and use .venv/bin/python")


def raise_nofile(need: int) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to ``need`` (at most the hard limit); the servers it
    starts inherit it. Returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# -- servers -------------------------------------------------------------------------------

def start_origin(python: str, work: Path, pin_cpu: str | None) -> Server:
    port = free_port()
    argv = [python, str(THIS), "--_origin", f"{HOST}:{port}"]
    server = Server("origin", pinned(argv, pin_cpu), work / "origin.log", cwd=work)
    server.ports = {"h1": port}
    wait_port(server, port)
    return server


def start_hypercorn(name: str, python: str, work: Path, pin_cpu: str | None) -> Server:
    port = free_port()
    conf = work / f"{name}.toml"
    conf.write_text(HYPERCORN_TOML.format(host=HOST, port=port, keepalive=KEEPALIVE_S))
    resources = {t.path: (t.body, t.etag.decode(), t.ctype.decode()) for t in (TARGETS["1k"], TARGETS["20k"])}
    (work / "bench_quart.py").write_text(QUART_APP.format(cc=CACHE_CONTROL.decode(), resources=resources))
    argv = [python, "-m", "hypercorn", "--config", str(conf), "bench_quart:app"]
    server = Server(name, pinned(argv, pin_cpu), work / f"{name}.log", cwd=work, env={"PYTHONPATH": str(work)})
    server.ports = {"h1": port, "h2c": port}
    wait_port(server, port)
    return server


def start_edgeproxy(python: str, work: Path, origin_port: int, pin_cpu: str | None, *, name: str = "edgeproxy",
                    extra: tuple[str, ...] = ()) -> Server:
    # --no-gzip: h2load asks for gzip (Accept-Encoding: gzip, deflate) and the edge would send its gzip
    # copy, while nginx and Varnish here send the bytes as stored: like for like, nobody compresses.
    argv = [python, "-m", "edgeproxy", "--listen", f"{HOST}:0", "--origin", f"http://{HOST}:{origin_port}",
            "--workers", "1", "--log-format", "off", "--grace", "1", "--keepalive-timeout", str(KEEPALIVE_S),
            "--no-gzip", *extra]
    server = Server(name, pinned(argv, pin_cpu), work / f"{name}.log", cwd=work)
    m = wait_log(server, r"listening on [0-9.]+:(\d+)")
    port = int(m.group(1))
    server.ports = {"h1": port, "h2c": port}
    wait_port(server, port)
    return server


def start_nginx(name: str, nginx: str, work: Path, pin_cpu: str | None, *, origin_port: int | None) -> Server:
    prefix = work / name
    for sub in ("tmp", "cache", "root"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    root = prefix / "root"
    for t in (TARGETS["1k"], TARGETS["20k"]):
        (root / t.path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / t.path.lstrip("/")).write_bytes(t.body)
    # Run as root, nginx's workers switch to `nobody`: they must be able to read the tree.
    for path in (work, prefix, *prefix.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    port_h1, port_h2 = free_port(), free_port()
    fields = {"prefix": prefix, "host": HOST, "port_h1": port_h1, "port_h2": port_h2, "origin_port": origin_port,
              "root": root, "keepalive": KEEPALIVE_S}
    if origin_port is not None:
        http_extra, server_extra = NGINX_CACHE_HTTP.format(**fields), NGINX_CACHE_SERVER.format(**fields)
    else:
        http_extra, server_extra = "", NGINX_STATIC_SERVER.format(**fields)
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(http_extra=http_extra, server_extra=server_extra, **fields))
    argv = [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf), "-g", "daemon off;"]
    server = Server(name, pinned(argv, pin_cpu), work / f"{name}.log", cwd=prefix)
    server.ports = {"h1": port_h1, "h2c": port_h2}
    try:
        wait_port(server, port_h1)
        wait_port(server, port_h2)
    except RuntimeError as exc:
        err = (prefix / "error.log").read_text(errors="replace")[-2000:] if (prefix / "error.log").exists() else ""
        raise RuntimeError(f"{exc}\nerror.log:\n{err}") from None
    return server


def start_varnish(name: str, varnishd: str, work: Path, pin_cpu: str | None, *, origin_port: int) -> Server:
    """varnishd in the foreground with its own work dir (``-n``) under the bench's temp dir."""
    prefix = work / name
    prefix.mkdir(parents=True, exist_ok=True)
    vcl = prefix / "bench.vcl"
    vcl.write_text(VARNISH_VCL.format(host=HOST, port=origin_port))
    for path in (work, prefix, vcl):  # varnishd compiles the VCL as its unprivileged user
        path.chmod(0o755 if path.is_dir() else 0o644)
    port = free_port()
    argv = [varnishd, "-F", "-a", f"{HOST}:{port}", "-f", str(vcl), "-s", "malloc,256m",
            "-p", "feature=+http2", "-p", "thread_pools=1", "-p", f"timeout_idle={KEEPALIVE_S}",
            "-n", str(prefix / "workdir"), "-P", str(prefix / "varnishd.pid"), "-T", "none"]
    server = Server(name, pinned(argv, pin_cpu), work / f"{name}.log", cwd=prefix)
    server.ports = {"h1": port, "h2c": port}
    server.extra["workdir"] = str(prefix / "workdir")
    wait_port(server, port)
    return server


def varnish_counters(server: Server, varnishstat: str | None, *fields: str) -> dict[str, int]:
    """``varnishstat -1 -f FIELD…`` of a running varnishd (its own -n work dir)."""
    if not varnishstat or "workdir" not in server.extra:
        return {}
    argv = [varnishstat, "-n", server.extra["workdir"], "-1"]
    for f in fields:
        argv += ["-f", f]
    out: dict[str, int] = {}
    with contextlib.suppress(RuntimeError, Timeout, OSError):
        for line in run(argv, timeout=20, check=False)["stdout"].splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                out[parts[0]] = int(parts[1])
    return out


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def origin_requests(origin: Server) -> int | None:
    with contextlib.suppress(OSError, ValueError, KeyError, http.client.HTTPException):
        status, _, body = http_get(origin.ports["h1"], "/_origin/count")
        if status == 200:
            return int(json.loads(body)["requests"])
    return None


def cache_evidence(peer: str, headers: dict[str, str]) -> tuple[bool | None, str]:
    """What the peer's own headers say about a hit: (hit?, the header quoted); None for non-caches."""
    if peer == "edgeproxy":
        value = headers.get("cache-status", "")
        return "hit" in value.lower(), f"Cache-Status: {value}"
    if peer == "nginx_cache":
        value = headers.get("x-cache-status", "")
        return value == "HIT", f"X-Cache-Status: {value}"
    if peer == "varnish":  # a hit names two transactions: this one and the one that fetched the object
        value = headers.get("x-varnish", "")
        return len(value.split()) == 2, f"X-Varnish: {value}, Age: {headers.get('age', '-')}"
    return None, ""


def verify(peer: str, server: Server, origin: Server, bodies: list[str]) -> dict[str, Any]:
    """The by-hand check before any load: every body served (from cache, for the caches), and 304.

    A wrong answer (status or body) is recorded as ``wrong`` and that body's rows are skipped
    for this peer. A cache that answers correctly but goes to the origin is *not* skipped: the
    check records ``from_cache: False`` and its rows are flagged in the report.
    """
    port = server.ports["h1"]
    checks: dict[str, Any] = {}
    for key in sorted(bodies, key=lambda k: TARGETS[k].conditional):  # the 304 check after 1k is cached
        t = TARGETS[key]
        if t.conditional:
            http_get(port, t.path)  # cached by now (or cached here)
            before = origin_requests(origin)
            status, headers, body = http_get(port, t.path, {"If-None-Match": t.etag.decode()})
        else:
            first = http_get(port, t.path)[0]
            before = origin_requests(origin)
            status, headers, body = http_get(port, t.path)
        after = origin_requests(origin)
        forwarded = None if before is None or after is None else after - before
        hit, evidence = cache_evidence(peer, headers)
        check: dict[str, Any] = {"status": status, "origin_requests": forwarded, "evidence": evidence}
        if status != t.status or body != t.body:
            check["wrong"] = (f"answered {status} with {len(body)} bytes (want {t.status}"
                              f"{f' and the {len(t.body)}-byte body' if t.body else ''}; origin +{forwarded})")
        if not t.conditional:
            check["first_status"] = first
        if peer in CACHES:
            check["from_cache"] = forwarded == 0 and hit is not False
            if not check["from_cache"]:
                check["problem"] = (f"{'revalidation' if t.conditional else 'second request'} went to the origin "
                                    f"(origin +{forwarded}; {evidence})")
        checks[key] = check
    return checks


# -- load generators ---------------------------------------------------------------------

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s*([0-9.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not rps or not total:
        raise ValueError(f"unexpected wrk output:\n{out[-2000:]}")
    res: dict[str, Any] = {"rps": float(rps.group(1)), "requests": int(total.group(1))}
    lat = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if lat:
        res["mean_ms"] = _ms(lat.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s*{pct}%\s+(\S+)", out, re.M)
        if m:
            res[key] = _ms(m.group(1))
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    res["errors"] = errors
    return res


def parse_h2load(out: str) -> dict[str, Any]:
    fin = re.search(r"finished in [0-9.]+\w*, ([0-9.]+) req/s", out)
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not fin or not req:
        raise ValueError(f"unexpected h2load output:\n{out[-2000:]}")
    res: dict[str, Any] = {"rps": float(fin.group(1)), "requests": int(req.group(4))}
    # h2load's "failed" already counts 4xx/5xx answers (HTTP-level failures): not added again
    res["errors"] = int(req.group(5)) + int(req.group(6)) + int(req.group(7))
    if codes:
        res["statuses"] = {"2xx": int(codes.group(1)), "3xx": int(codes.group(2))}
    lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if lat:
        res["mean_ms"] = _ms(lat.group(3))
    if res["requests"] == 0:
        res["rps"] = 0.0
    return res


def unexpected_statuses(res: dict[str, Any], target: Target) -> int:
    """Answers of the wrong class (200 in a 304 row, 304 in a 200 row), where the tool tells."""
    statuses = res.get("statuses") or {}
    wrong = "2xx" if target.conditional else "3xx"
    return int(statuses.get(wrong, 0))


def measure(tool: str, tools: dict[str, str | None], port: int, target: Target, duration: float, pin: bool,
            server: Server, python: str, origin: Server | None) -> dict[str, Any]:
    """One load run against one server: req/s, latency, errors, server and generator CPU share,
    and how many requests reached the origin meanwhile."""
    url = f"http://{HOST}:{port}{target.path}"
    headers = [f"If-None-Match: {target.etag.decode()}"] if target.conditional else []
    hflags = [x for h in headers for x in ("-H", h)]
    if tool == "wrk":
        argv = [tools["wrk"] or "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(duration))}s", "--latency",
                *hflags, url]
    elif tool == "h2load":
        argv = [tools["h2load"] or "h2load", f"-c{CONNECTIONS}", f"-m{H2_STREAMS}", f"-D{max(1, round(duration))}",
                *hflags, url]
    else:  # pyload: this file's own generator, in its own process
        spec = {"host": HOST, "port": port, "conns": CONNECTIONS, "seconds": duration, "path": target.path,
                "headers": headers}
        argv = [python, str(THIS), "--_pyload", json.dumps(spec)]
    origin0 = origin_requests(origin) if origin else None
    others0 = others_cpu_s(OWN_SESSIONS)
    cpu0 = tree_cpu_s(server.pid)
    r = run(pinned(argv, LOADGEN_CPU, pin), timeout=duration + 60, env={"LC_ALL": "C"}, check=False)
    cpu1 = tree_cpu_s(server.pid)
    srv_user, srv_sys = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    other = others_delta(others0, others_cpu_s(OWN_SESSIONS))
    origin1 = origin_requests(origin) if origin else None
    for _ in range(10):  # a forwarding peer's last origin fetches land after the client stopped: wait for them
        if origin1 is None or origin1 == origin0:
            break
        time.sleep(0.2)
        settled = origin_requests(origin) if origin else None
        if settled == origin1:
            break
        origin1 = settled
    out = r["stdout"] + r["stderr"]
    if r["rc"] != 0 and tool != "wrk":  # `wrk` exits 0; anything else is a failure to report
        raise RuntimeError(f"{tool} exited {r['rc']}:\n{out[-2000:]}")
    if tool == "wrk":
        res = parse_wrk(out)
    elif tool == "h2load":
        res = parse_h2load(out)
    else:
        res = json.loads(next(ln for ln in r["stdout"].splitlines() if ln.startswith("{")))
    res.update(tool=tool, wall_s=r["wall"], gen_cpu=r["cpu"] / r["wall"],
               srv_cpu=(srv_user + srv_sys) / r["wall"], srv_sys_share=srv_sys / max(srv_user + srv_sys, 1e-9),
               other_cpu=other / r["wall"], unexpected_status=unexpected_statuses(res, target),
               origin_requests=None if origin0 is None or origin1 is None else origin1 - origin0)
    return res


def _parse_response(buf: bytes) -> tuple[int, int, bool] | None:
    """(status, length of the whole response in ``buf``, connection: close) or None while incomplete."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = buf[:head_end].lower()
    status = int(head[9:12])
    need = head_end + 4
    if status not in (204, 304) and status >= 200:
        m = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
        need += int(m.group(1)) if m else 0
    if len(buf) < need:
        return None
    return status, need, b"\r\nconnection: close" in head


def closed_loop(host: str, port: int, conns: int, next_request: Callable[[], bytes | None],
                duration: float) -> dict[str, Any]:
    """HTTP/1.1 keep-alive client: ``conns`` connections, one request in flight on each, until
    ``next_request`` returns None (and all answers are in) or ``duration`` seconds have passed."""
    sel = selectors.DefaultSelector()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    state: dict[socket.socket, list[Any]] = {}  # sock -> [buffer, sent_at]

    def send_next(s: socket.socket) -> bool:
        request = next_request()
        if request is None:
            return False
        state[s][1] = time.perf_counter()
        s.send(request)  # small: fits the empty send buffer of a socket with nothing in flight
        return True

    def connect() -> None:
        s = socket.create_connection((host, port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        state[s] = [b"", 0.0]
        sel.register(s, selectors.EVENT_READ)
        if not send_next(s):
            drop(s)

    def drop(s: socket.socket) -> None:
        sel.unregister(s)
        del state[s]
        s.close()

    for _ in range(conns):
        connect()
    started = time.perf_counter()
    end = started + duration
    while state:
        now = time.perf_counter()
        if now >= end:
            break
        for key, _ in sel.select(timeout=min(0.1, end - now)):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            if s not in state:
                continue
            try:
                data = s.recv(262144)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:  # closed by the server with a request in flight
                errors += 1
                drop(s)
                if time.perf_counter() < end:
                    connect()
                continue
            st = state[s]
            buf = st[0] + data
            try:
                parsed = _parse_response(buf)
            except ValueError:
                errors += 1
                drop(s)
                continue
            if parsed is None:
                st[0] = buf
                continue
            status, need, close = parsed
            t = time.perf_counter()
            statuses[status] += 1
            if 200 <= status < 400:
                latencies.append(t - st[1])
            else:
                errors += 1
            st[0] = buf[need:]
            if close:
                drop(s)
                connect()
            elif not send_next(s):
                drop(s)
    elapsed = time.perf_counter() - started
    for s in list(state):
        drop(s)
    latencies.sort()
    n = len(latencies)
    return {"rps": n / elapsed, "requests": n, "errors": errors, "elapsed_s": elapsed,
            "complete": not state, "status_codes": {str(k): v for k, v in statuses.items()},
            "statuses": {"2xx": sum(v for k, v in statuses.items() if 200 <= k < 300),
                         "3xx": sum(v for k, v in statuses.items() if 300 <= k < 400)},
            "mean_ms": 1000 * sum(latencies) / n if n else None,
            "p50_ms": 1000 * latencies[n // 2] if n else None,
            "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if n else None}


def pyload(spec: dict[str, Any]) -> dict[str, Any]:
    """The fallback HTTP/1.1 load generator when wrk is missing (``--_pyload``)."""
    host, port = spec["host"], int(spec["port"])
    extra = "".join(f"{h}\r\n" for h in spec.get("headers", []))
    request = f"GET {spec['path']} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()
    end = time.perf_counter() + float(spec["seconds"])

    def next_request() -> bytes | None:
        return request if time.perf_counter() < end else None

    return closed_loop(host, port, int(spec["conns"]), next_request, float(spec["seconds"]) + 5)


def pyfill(spec: dict[str, Any]) -> dict[str, Any]:
    """``GET /obj/0`` … ``/obj/<n-1>`` once each over keep-alive connections (``--_fill``)."""
    host, port, n = spec["host"], int(spec["port"]), int(spec["n"])
    counter = iter(range(n))

    def next_request() -> bytes | None:
        i = next(counter, None)
        return None if i is None else f"GET /obj/{i} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    res = closed_loop(host, port, int(spec["conns"]), next_request, float(spec["deadline_s"]))
    res["asked"] = n
    return res


# -- RSS -------------------------------------------------------------------------------------

def read_response(sock: socket.socket) -> int:
    """Read one whole HTTP/1.1 response from a blocking socket; its status."""
    buf = b""
    while True:
        parsed = _parse_response(buf) if buf else None
        if parsed is not None:
            return parsed[0]
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before a whole response")
        buf += data


def rss_fill(server: Server, python: str, n: int, deadline_s: float, stats: Callable[[], dict[str, Any]]
             ) -> dict[str, Any]:
    """RSS of a fresh cache before and after ``n`` distinct 1 KiB objects went through it."""
    port = server.ports["h1"]
    for _ in range(2):  # warm: first imports and allocations of the request path
        http_get(port, TARGETS["1k"].path)
    time.sleep(0.3)
    before, _ = tree_rss_kib(server.pid)
    spec = {"host": HOST, "port": port, "n": n, "conns": FILL_CONNECTIONS, "deadline_s": deadline_s}
    r = run([python, str(THIS), "--_fill", json.dumps(spec)], timeout=deadline_s + 60, check=False)
    if r["rc"] != 0:
        raise RuntimeError(f"fill client exited {r['rc']}: {(r['stdout'] + r['stderr'])[-1500:]}")
    fill = json.loads(next(ln for ln in r["stdout"].splitlines() if ln.startswith("{")))
    time.sleep(0.5)
    after, each = tree_rss_kib(server.pid)
    st = stats()
    objects = st.get("objects")
    per_1k = (after - before) / 1024 / (objects / 1000) if objects else None
    return {"objects_asked": n, "fill": {k: fill[k] for k in ("requests", "errors", "elapsed_s", "rps",
                                                              "complete", "status_codes")},
            "stats": st, "objects": objects, "rss_before_kib": before, "rss_after_kib": after,
            "rss_after_by_pid_kib": each, "mib_per_1k_objects": per_1k}


def rss_idle(server: Server, n: int, stats: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """RSS before and after ``n`` idle keep-alive connections (one request each), then all closed."""
    port = server.ports["h1"]
    t = TARGETS["1k"]
    for _ in range(2):
        http_get(port, t.path)
    time.sleep(0.3)
    before, _ = tree_rss_kib(server.pid)
    request = f"GET {t.path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    socks: list[socket.socket] = []
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    try:
        batch: list[socket.socket] = []
        for i in range(n):
            s = socket.create_connection((HOST, port), timeout=15)
            socks.append(s)
            s.sendall(request)
            batch.append(s)
            if len(batch) == 100 or i == n - 1:  # read the answers a batch at a time: bounded backlog
                for b in batch:
                    statuses[read_response(b)] += 1
                batch = []
        opened_s = time.perf_counter() - started
        time.sleep(1.0)
        after, each = tree_rss_kib(server.pid)
        st = stats()
        # a readable idle socket is one the server closed (or sent something unexpected to)
        sel = selectors.DefaultSelector()
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        closed = len(sel.select(timeout=0))
        sel.close()
    finally:
        for s in socks:
            s.close()
    time.sleep(1.0)
    after_close, _ = tree_rss_kib(server.pid)
    return {"connections": n, "statuses": {str(k): v for k, v in statuses.items()}, "open_s": opened_s,
            "closed_by_server_before_measuring": closed, "stats": st, "rss_before_kib": before,
            "rss_after_kib": after, "rss_after_by_pid_kib": each, "rss_after_close_kib": after_close,
            "kib_per_connection": (after - before) / n}


def edge_stats(server: Server) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError, KeyError, http.client.HTTPException):
        _, _, body = http_get(server.ports["h1"], "/.edge/stats")
        data = json.loads(body)
        return {"objects": data["cache"]["objects"], "bytes_used": data["cache"]["bytes_used"],
                "hits": data["cache"]["hits"], "misses": data["cache"]["misses"],
                "connections_open": data["counters"]["connections_open"]}
    return {}


def run_rss(peers: list[str], python: str, work: Path, origin: Server, tools: dict[str, str | None],
            server_cpu: str | None, objects: int, connections: int, started: list[Server],
            notes: list[str]) -> dict[str, Any]:
    """The RSS section: fresh servers, one per measurement, stopped right after it."""
    report: dict[str, Any] = {"objects": {}, "connections": {}, "objects_asked": objects,
                              "connections_asked": connections}

    def fresh(peer: str, what: str) -> tuple[Server, Callable[[], dict[str, Any]]]:
        name = f"{peer}_rss_{what}"
        if peer == "edgeproxy":
            srv = start_edgeproxy(python, work, origin.ports["h1"], server_cpu, name=name,
                                  extra=("--cache-bytes", str(RSS_CACHE_BYTES)))
            started.append(srv)
            return srv, lambda: edge_stats(srv)
        if peer == "varnish":
            srv = start_varnish(name, tools["varnishd"] or "varnishd", work, server_cpu, origin_port=origin.ports["h1"])
            started.append(srv)

            def vstats() -> dict[str, Any]:
                c = varnish_counters(srv, tools.get("varnishstat"), "MAIN.n_object", "MAIN.sess_conn",
                                     "MAIN.cache_hit", "MAIN.cache_miss")
                return {"objects": c.get("MAIN.n_object"), **c}
            return srv, vstats
        srv = start_nginx(name, tools["nginx"] or "nginx", work, server_cpu, origin_port=origin.ports["h1"])
        started.append(srv)
        return srv, dict

    for what in ("objects", "connections"):
        for peer in peers:
            if what == "objects" and peer == "nginx_cache":  # its cache is files (page cache), not process memory
                line = (f"  {peer:<12} objects: not measured (proxy_cache keeps cached bodies in files: page cache, "
                        "not process RSS)")
                report[what][peer] = {"skipped": True, "line": line}
                print(line, flush=True)
                continue
            srv = None
            try:
                srv, stats = fresh(peer, what)
                if what == "objects":
                    deadline = FILL_DEADLINE_S if objects > 10_000 else 60.0
                    res = rss_fill(srv, python, objects, deadline, stats)
                    fill = res["fill"]
                    line = (f"  {peer:<12} {objects} x 1 KiB objects: RSS {res['rss_before_kib'] / 1024:.1f} -> "
                            f"{res['rss_after_kib'] / 1024:.1f} MiB "
                            f"(+{(res['rss_after_kib'] - res['rss_before_kib']) / 1024:.1f} MiB, "
                            f"{fmt(res['mib_per_1k_objects'], '.2f')} MiB per 1k objects); cached objects: "
                            f"{res['objects']}; fill {fill['elapsed_s']:.1f} s at {fill['rps']:.0f} req/s, "
                            f"{fill['errors']} errors{'' if fill['complete'] else ', CUT at the deadline'}")
                    if res["objects"] is None or res["objects"] < 0.98 * objects:
                        notes.append(f"RSS {peer}: only {res['objects']} of {objects} objects are in the cache")
                else:
                    res = rss_idle(srv, connections, stats)
                    opened = res["stats"].get("connections_open")
                    line = (f"  {peer:<12} {connections} idle keep-alive connections: RSS "
                            f"{res['rss_before_kib'] / 1024:.1f} -> {res['rss_after_kib'] / 1024:.1f} MiB "
                            f"(+{(res['rss_after_kib'] - res['rss_before_kib']) / 1024:.1f} MiB, "
                            f"{res['kib_per_connection']:.1f} KiB per connection); "
                            f"{'' if opened is None else f'connections_open {opened}; '}"
                            f"closed by the server: {res['closed_by_server_before_measuring']}; after closing all: "
                            f"{res['rss_after_close_kib'] / 1024:.1f} MiB")
                    if res["closed_by_server_before_measuring"]:
                        notes.append(f"RSS {peer}: {res['closed_by_server_before_measuring']} of the idle "
                                     "connections were closed by the server before RSS was read")
                res["line"] = line
                report[what][peer] = res
                print(line, flush=True)
            except (RuntimeError, Timeout, OSError, ValueError, StopIteration, http.client.HTTPException) as exc:
                note = f"RSS {what} {peer} failed: {str(exc)[:500]}"
                print(f"  {note}", file=sys.stderr, flush=True)
                notes.append(note.splitlines()[0])
            finally:
                if srv is not None:
                    srv.stop()
    return report


# -- profile -------------------------------------------------------------------------------

def profile_edgeproxy(server: Server, tools: dict[str, str | None], h1_tool: str, protocols: list[str],
                      duration: float, pin: bool, python: str, out: Path, top: int) -> dict[str, Any]:
    """py-spy (sampling, attached to the running edgeproxy) under the same load as the 1 KiB rows."""
    spy = shutil.which("py-spy") or str(Path(python).parent / "py-spy")
    if not os.access(spy, os.X_OK):
        print("profile: py-spy not found (`.venv/bin/pip install py-spy`); skipped.", file=sys.stderr)
        return {}
    report: dict[str, Any] = {}
    for proto in protocols:
        tool = h1_tool if proto == "h1" else "h2load"
        if tool == "h2load" and not tools.get("h2load"):
            continue
        raw = out / f"profile-edgeproxy-{proto}.txt"
        argv = [spy, "record", "--pid", str(server.pid), "--duration", str(max(1, round(duration))),
                "--rate", "500", "--format", "raw", "--function", "--nonblocking", "-o", str(raw)]
        spy_proc = subprocess.Popen(pinned(argv, LOADGEN_CPU, pin), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
        OWN_SESSIONS.add(spy_proc.pid)
        try:
            time.sleep(0.5)  # attach before the load starts
            res = measure(tool, tools, server.ports[proto], TARGETS["1k"], duration, pin, server, python, None)
            _, err = spy_proc.communicate(timeout=duration + 60)
        finally:
            if spy_proc.poll() is None:
                spy_proc.kill()
                spy_proc.wait()
        if not raw.exists():
            print(f"profile: py-spy wrote nothing ({err.decode(errors='replace')[-500:]})", file=sys.stderr)
            continue
        summary = summarise_stacks(raw.read_text(), top)
        summary["rps_under_profiler"] = res["rps"]
        summary["file"] = str(raw)
        report[proto] = summary
        print(f"\n== py-spy: edgeproxy {proto} 1k ({tool}, {res['rps']:.0f} req/s while sampled; "
              f"{summary['samples']} samples) — top by own time (time in a system call counts to its caller), "
              "then by inclusive time (a lower bound: --nonblocking sampling cuts some stacks short)")
        for label in ("self", "inclusive"):
            print(f"  {label:>9}  function")
            for name, share in summary[label]:
                print(f"  {100 * share:8.1f}%  {name}")
    return report


# Frames every sample passes through (interpreter start, click, trio's run loop): left out of the
# inclusive table, where they would only say 100%.
BOILERPLATE = re.compile(r"(_run_module_as_main \(<frozen runpy>|_run_code \(<frozen runpy>|<module> \(__main__\.py"
                         r"|Command\.\w+ \(core\.py|Context\.invoke \(core\.py|main \(__main__\.py|_serve \(__main__\.py"
                         r"|run \(_run\.py|unrolled_run \(_run\.py)[:)]")


def summarise_stacks(text: str, top: int) -> dict[str, Any]:
    """Collapsed stacks (``a;b;c count``) → shares of samples by leaf function and by any frame."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [re.sub(r"^(.*?) \((.*?/)?([^/]*?)(:\d+)?\)$", r"\1 (\3\4)", f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for f in set(frames):
            if not BOILERPLATE.match(f):
                incl[f] += count
    return {"samples": total,
            "self": [(f, c / total) for f, c in own.most_common(top)] if total else [],
            "inclusive": [(f, c / total) for f, c in incl.most_common(top)] if total else []}


# -- report ----------------------------------------------------------------------------

def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rps = [r["rps"] for r in runs]

    def med(key: str) -> float | None:
        vals = [r[key] for r in runs if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    origin = [r["origin_requests"] for r in runs if r.get("origin_requests") is not None]
    return {"rps_median": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps), "rps_runs": rps,
            "p50_ms_median": med("p50_ms"), "p99_ms_median": med("p99_ms"), "mean_ms_median": med("mean_ms"),
            "srv_cpu_median": med("srv_cpu"), "srv_sys_share_median": med("srv_sys_share"),
            "gen_cpu_median": med("gen_cpu"), "other_cpu_median": med("other_cpu"),
            "other_cpu_max": max((r.get("other_cpu") or 0.0) for r in runs),
            "errors": sum(r.get("errors", 0) for r in runs),
            "unexpected_status": sum(r.get("unexpected_status", 0) for r in runs),
            "origin_requests": sum(origin) if origin else None,
            "requests": sum(r.get("requests", 0) for r in runs), "tool": runs[0]["tool"], "rounds": len(runs)}


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def pct(v: float | None) -> str:
    return fmt(None if v is None else 100 * v, ".0f") + "%"


def print_report(results: dict[str, Any], args: argparse.Namespace) -> str:
    summary = results["summary"]
    unavailable: dict[str, str] = results["unavailable"]
    checks: dict[str, dict[str, Any]] = results["checks"]
    lines = ["", f"Results (median of {args.rounds} interleaved round(s) of {args.duration:g} s; "
                 f"{results['machine']['pinning']}; {CONNECTIONS} connections, h2c {H2_STREAMS} streams each)"]
    header = (f"{'server':<12} {'proto':<5} {'body':<4} {'tool':<7} {'req/s':>8} {'min':>8} {'max':>8} "
              f"{'p50 ms':>6} {'p99 ms':>6} {'mean ms':>7} {'srv CPU':>7} {'gen CPU':>8} {'other':>5} "
              f"{'errors':>6}  {'vs nginx':>8} {'vs varnish':>10}")
    lines += [header, "-" * len(header)]
    marked = False
    flagged: list[str] = []
    for proto in results["args"]["protocols"]:
        for body in results["args"]["bodies"]:
            group = []
            for peer in results["args"]["peers"]:
                s = summary.get(peer, {}).get(proto, {}).get(body)
                wrong = checks.get(peer, {}).get(body, {}).get("wrong")
                if not s:
                    why = (f"missing: {unavailable[peer]}" if peer in unavailable
                           else f"skipped: the check {wrong}" if wrong else "no figure (see notes)")
                    group.append(f"{peer:<12} {proto:<5} {body:<4} {why}")
                    continue
                ratios = []
                for _, base_peer in BASELINES:
                    base = summary.get(base_peer, {}).get(proto, {}).get(body)
                    ratios.append(f"{s['rps_median'] / base['rps_median']:.2f}x"
                                  if base and base["rps_median"] > 0 else "-")
                gen = s["gen_cpu_median"]
                mark = "*" if gen is not None and gen >= GEN_CEILING else " "
                marked = marked or mark == "*"
                flag = " "
                check = checks.get(peer, {}).get(body, {})
                if peer in CACHES and (s["origin_requests"] or not check.get("from_cache", True)):
                    flag = "!"
                    flagged.append(f"{peer} {proto} {body}: the origin answered {s['origin_requests']} requests "
                                   f"during the runs{'; check: ' + check['problem'] if check.get('problem') else ''}"
                                   " — NOT (only) served from the cache")
                if s["unexpected_status"]:
                    flag = "!"
                    flagged.append(f"{peer} {proto} {body}: {s['unexpected_status']} answers with the wrong status "
                                   f"(want {TARGETS[body].status})")
                group.append(
                    f"{peer:<12} {proto:<5} {body:<4} {s['tool']:<7} {s['rps_median']:>8.0f} {s['rps_min']:>8.0f} "
                    f"{s['rps_max']:>8.0f} {fmt(s['p50_ms_median'], '.2f'):>6} {fmt(s['p99_ms_median'], '.2f'):>6} "
                    f"{fmt(s['mean_ms_median'], '.2f'):>7} {pct(s['srv_cpu_median']):>7} {pct(gen):>7}{mark} "
                    f"{pct(s['other_cpu_median']):>5} {s['errors']:>6}{flag} {ratios[0]:>8} {ratios[1]:>10}")
            lines += [*group, ""]
    lines.append("req/s: median over rounds (min, max beside it); p50/p99 ms: wrk's latency distribution (h2load "
                 "gives none: -);\nmean ms: mean time per request; srv CPU: server process tree's CPU time / wall "
                 "time (one core = 100%);\ngen CPU: the load generator's; other: every other process on the machine "
                 "(noise; should be ~0%);\nerrors: socket errors, failed requests and 4xx/5xx, summed over rounds; "
                 "304: the 1 KiB object requested with If-None-Match;\nvs nginx / vs varnish: req/s over nginx "
                 "proxy_cache's / Varnish's for the same protocol and body.")
    noisy = [f"{peer} {proto} {body} ({100 * s['other_cpu_max']:.0f}%)" for peer, per in summary.items()
             for proto, per_body in per.items() for body, s in per_body.items() if s.get("other_cpu_max", 0) > OTHER_LIMIT]
    if noisy:
        lines.append(f"WARNING: other processes took more than {100 * OTHER_LIMIT:.0f}% of a core during: "
                     f"{', '.join(noisy)} — the machine was not idle; rerun for figures to record.")
    if marked:
        lines.append(f"* load generator at ≥{100 * GEN_CEILING:.0f}% of its core: that figure is near the client's "
                     "ceiling, the server may be faster.")
    for f in flagged:
        lines.append(f"! {f}")
    if any(s.get("h1", {}).get(b, {}).get("tool") == "pyload" for s in summary.values() for b in BODIES):
        lines.append("pyload: the built-in Python load generator (no wrk): a row whose gen CPU is marked * is capped "
                     "by it.")
    if checks:
        lines.append("hit checks (HTTP/1.1, by hand, before the runs: the second request, and If-None-Match):")
        for peer, per in checks.items():
            parts = []
            for body, c in per.items():
                how = ("from cache" if c.get("from_cache") else "FROM THE ORIGIN") if "from_cache" in c else "no cache"
                how = f"WRONG: {c['wrong']}" if c.get("wrong") else how
                parts.append(f"{body} {c['status']} {how}" + (f" ({c['evidence']})" if c.get("evidence") else ""))
            lines.append(f"  {peer:<12} " + "; ".join(parts))
    runs_origin = sum(r.get("origin_requests") or 0 for r in results["runs"])
    lines.append(f"origin requests during the measured runs: {runs_origin}; in all (checks included): "
                 f"{results.get('origin_requests')}")
    if results.get("edgeproxy_hits") is not None:
        lines.append(f"edgeproxy's own hit counter: {results['edgeproxy_hits']} (load generators counted "
                     f"{results['edgeproxy_hits_by_loadgen']} completed responses, plus the checks)")
    if results.get("varnish_counters"):
        lines.append(f"varnishstat: {results['varnish_counters']}")
    for note, count in Counter(results.get("notes", [])).items():
        lines.append(f"note: {note}" + (f" (×{count})" if count > 1 else ""))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def rss_report(rss: dict[str, Any], notes: list[str]) -> str:
    lines = ["", "RSS (VmRSS summed over the server's processes; fresh server per line, configured and pinned as for the "
                 "rows above):"]
    lines += [res["line"].strip() for what in ("objects", "connections") for res in rss[what].values()]
    if len(lines) == 2:
        lines.append("  (no figure: see notes)")
    lines += [f"note: {note}" for note in notes]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


# -- main ------------------------------------------------------------------------------

def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, help="seconds per load run (default 5; --quick: 1)")
    p.add_argument("--rounds", type=int, help="interleaved rounds; medians are reported (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 s, 1 round, the 1 KiB body (and its 304), RSS with "
                        f"{RSS_OBJECTS_QUICK} objects and {RSS_CONNECTIONS_QUICK} connections")
    p.add_argument("--out", type=Path, help="folder for edge.json (and profiles); default: a new temporary one")
    p.add_argument("--only", "--peers", dest="only",
                   help=f"comma list of peers (default {','.join(DEFAULT_PEERS)}; also: nginx_static)")
    p.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma list of h1,h2c (default both)")
    p.add_argument("--bodies", help="comma list of 1k,20k,304 (default all; --quick: 1k,304); "
                                    "304 = the 1 KiB object with If-None-Match")
    p.add_argument("--rss", action=argparse.BooleanOptionalAction, default=True,
                   help="measure RSS with many cached objects and many idle connections (default on)")
    p.add_argument("--rss-objects", type=int, help=f"objects for the RSS fill (default {RSS_OBJECTS}; "
                                                   f"--quick: {RSS_OBJECTS_QUICK})")
    p.add_argument("--rss-connections", type=int, help=f"idle connections for RSS (default {RSS_CONNECTIONS}; "
                                                       f"--quick: {RSS_CONNECTIONS_QUICK})")
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                   help="HTTP/1.1 load generator: wrk, the built-in Python one, or auto (wrk when there is one)")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing tools")
    p.add_argument("--no-pin", action="store_true", help="do not pin servers / load generator with taskset")
    p.add_argument("--profile", action="store_true",
                   help="after the measurement, sample edgeproxy with py-spy under the same load (per protocol)")
    p.add_argument("--profile-top", type=int, default=25, help="functions printed per profile table")
    p.add_argument("--keep", action="store_true", help="keep the servers' work folder (configs, logs)")
    p.add_argument("--_pyload", metavar="JSON", help=argparse.SUPPRESS)
    p.add_argument("--_fill", metavar="JSON", help=argparse.SUPPRESS)
    p.add_argument("--_origin", metavar="HOST:PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._pyload or args._fill or args._origin:
        return args
    args.duration = args.duration or (1.0 if args.quick else 5.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.duration <= 0 or args.rounds <= 0:
        p.error("--duration and --rounds must be positive")
    args.peers = _csv(args.only or ",".join(DEFAULT_PEERS))
    bad = [x for x in args.peers if x not in PEERS]
    if bad or not args.peers:
        p.error(f"unknown peer(s) {bad}: choose from {', '.join(PEERS)}")
    args.peers = [x for x in PEERS if x in args.peers]
    args.protocols = _csv(args.protocols)
    if not args.protocols or any(x not in PROTOCOLS for x in args.protocols):
        p.error(f"--protocols: choose from {', '.join(PROTOCOLS)}")
    args.bodies = _csv(args.bodies or ("1k,304" if args.quick else ",".join(BODIES)))
    if not args.bodies or any(x not in BODIES for x in args.bodies):
        p.error(f"--bodies: choose from {', '.join(BODIES)}")
    args.bodies = [x for x in BODIES if x in args.bodies]
    args.rss_objects = args.rss_objects or (RSS_OBJECTS_QUICK if args.quick else RSS_OBJECTS)
    args.rss_connections = args.rss_connections or (RSS_CONNECTIONS_QUICK if args.quick else RSS_CONNECTIONS)
    if args.rss_objects <= 0 or args.rss_connections <= 0:
        p.error("--rss-objects and --rss-connections must be positive")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: every server is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._pyload:
        print(json.dumps(pyload(json.loads(args._pyload))))
        return 0
    if args._fill:
        print(json.dumps(pyfill(json.loads(args._fill))))
        return 0
    if args._origin:
        host, port = args._origin.rsplit(":", 1)
        serve_origin(host, int(port))
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    wanted = sorted({PEER_TOOL[p] for p in args.peers if p in PEER_TOOL})
    if "h1" in args.protocols and args.loadgen != "python":
        wanted.append("wrk")
    if "h2c" in args.protocols:
        wanted.append("h2load")
    tools = ensure_tools(wanted, install=not args.no_install)
    if tools.get("varnishd"):
        tools["varnishstat"] = which("varnishstat")
    notes: list[str] = []
    h1_tool = "wrk" if args.loadgen != "python" and tools.get("wrk") else "pyload"
    if "h1" in args.protocols and args.loadgen == "wrk" and not tools.get("wrk"):
        sys.exit("wrk not available (--loadgen wrk)")
    if "h1" in args.protocols and h1_tool == "pyload" and args.loadgen == "auto":
        notes.append("wrk missing: HTTP/1.1 measured with the built-in Python load generator (pyload).")
    protocols = list(args.protocols)
    if "h2c" in protocols and not tools.get("h2load"):
        notes.append("h2load missing (apt-get install nghttp2-client): h2c rows skipped.")
        protocols.remove("h2c")
    unavailable: dict[str, str] = {}
    for peer in args.peers:
        tool = PEER_TOOL.get(peer)
        if tool and not tools.get(tool):
            unavailable[peer] = (f"{tool} not installed (apt-get install {APT_PACKAGES[tool]}"
                                 f"{'; --no-install' if args.no_install else ''})")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)

    pin = pinning_available() and not args.no_pin
    python = venv_python()
    out = (args.out or Path(tempfile.mkdtemp(prefix="edgeproxy-edge-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="edgeproxy-edge-work-"))
    work.chmod(0o755)
    nofile = None
    if args.rss:  # the servers inherit the limit: they need one descriptor per idle connection too
        soft, hard = raise_nofile(args.rss_connections + 1024)
        nofile = {"soft": soft, "hard": hard}
        if soft < args.rss_connections + 256:
            fit = max(1, soft - 256)
            notes.append(f"RLIMIT_NOFILE hard limit {hard} is too low for {args.rss_connections} connections: "
                         f"measuring {fit}")
            args.rss_connections = fit
    info = machine_info(python, tools, pin)
    info["rlimit_nofile"] = nofile
    before = others_cpu_s(OWN_SESSIONS)
    time.sleep(1.0)
    info["other_cpu_before"] = round(others_delta(before, others_cpu_s(OWN_SESSIONS)), 3)
    if info["other_cpu_before"] > OTHER_LIMIT:
        print(f"WARNING: other processes use {100 * info['other_cpu_before']:.0f}% of a core right now: the machine "
              "is not idle, the figures will be noisy.", file=sys.stderr)
    print("edgeproxy edge benchmark")
    for k, v in info.items():
        print(f"  {k}: {v}")
    print(f"  peers: {args.peers}  protocols: {protocols}  bodies: {args.bodies}  duration: {args.duration:g} s  "
          f"rounds: {args.rounds}  h1 tool: {h1_tool}  out: {out}", flush=True)
    results: dict[str, Any] = {
        "machine": info, "notes": notes, "servers": {}, "runs": [], "summary": {}, "checks": {},
        "unavailable": unavailable,
        "args": {"duration": args.duration, "rounds": args.rounds, "quick": args.quick, "peers": args.peers,
                 "protocols": protocols, "bodies": args.bodies, "h1_tool": h1_tool, "connections": CONNECTIONS,
                 "h2_streams": H2_STREAMS, "rss": args.rss, "rss_objects": args.rss_objects,
                 "rss_connections": args.rss_connections,
                 "targets": {k: {"path": t.path, "bytes": len(t.body), "etag": t.etag.decode(),
                                 "content_type": t.ctype.decode(), "status": t.status} for k, t in TARGETS.items()}},
    }
    servers: dict[str, Server] = {}
    started: list[Server] = []
    server_cpu = SERVER_CPU if pin else None
    try:
        origin = start_origin(python, work, LOADGEN_CPU if pin else None)
        started.append(origin)
        results["servers"]["origin"] = {"pid": origin.pid, "ports": origin.ports, "argv": origin.argv}
        print(f"  origin: pid {origin.pid} on {HOST}:{origin.ports['h1']}", flush=True)

        def start_peer(peer: str) -> Server | None:
            """Start and check one peer; None (with a note) when it cannot be measured."""
            try:
                if peer == "edgeproxy":
                    srv = start_edgeproxy(python, work, origin.ports["h1"], server_cpu)
                elif peer == "nginx_cache":
                    srv = start_nginx(peer, tools["nginx"] or "nginx", work, server_cpu, origin_port=origin.ports["h1"])
                elif peer == "nginx_static":
                    srv = start_nginx(peer, tools["nginx"] or "nginx", work, server_cpu, origin_port=None)
                elif peer == "varnish":
                    srv = start_varnish(peer, tools["varnishd"] or "varnishd", work, server_cpu,
                                        origin_port=origin.ports["h1"])
                else:
                    srv = start_hypercorn("hypercorn", python, work, server_cpu)
            except RuntimeError as exc:
                note = f"{peer} did not start, skipped: {str(exc)[:1500]}"
                print(f"note: {note}", file=sys.stderr)
                notes.append(note.splitlines()[0])
                unavailable[peer] = "did not start (see notes)"
                return None
            started.append(srv)
            results["servers"].setdefault(peer, {"pid": srv.pid, "ports": srv.ports, "argv": srv.argv})
            try:
                results["checks"][peer] = verify(peer, srv, origin, args.bodies)
            except (RuntimeError, OSError, http.client.HTTPException) as exc:
                note = f"{peer} failed its check, skipped: {exc}"
                print(f"note: {note}", file=sys.stderr)
                notes.append(note)
                unavailable[peer] = "failed its check (see notes)"
                srv.stop()
                return None
            print(f"  {peer}: pid {srv.pid} on {HOST} ports {srv.ports} checks "
                  f"{ {b: (c['status'], c.get('from_cache')) for b, c in results['checks'][peer].items()} }",
                  flush=True)
            return srv

        for peer in args.peers:
            if peer not in unavailable:
                srv = start_peer(peer)
                if srv is not None:
                    servers[peer] = srv

        crashes: Counter[str] = Counter()
        raw: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {
            p: {q: {b: [] for b in args.bodies} for q in protocols} for p in servers}
        for rnd in range(args.rounds):
            print(f"\nround {rnd + 1}/{args.rounds}", flush=True)
            for proto in protocols:
                tool = h1_tool if proto == "h1" else "h2load"
                for body in args.bodies:
                    target = TARGETS[body]
                    for peer in list(servers):
                        if results["checks"].get(peer, {}).get(body, {}).get("wrong"):
                            continue  # a wrong answer at the check: nothing to measure (the table says so)
                        srv = servers[peer]
                        if not srv.alive():  # it crashed since its last run: record why, start a fresh one
                            crashes[peer] += 1
                            tail = srv.log_tail(4000)
                            results.setdefault("crash_logs", []).append({"peer": peer, "round": rnd + 1, "log": tail})
                            last = next((ln for ln in reversed(tail.splitlines()) if ln.strip(" |+-")),
                                        "?").strip(" |")
                            print(f"  {peer} (pid {srv.pid}) had exited ({srv.proc.returncode}): {last}; restarting",
                                  flush=True)
                            notes.append(f"{peer} crashed (exit {srv.proc.returncode}: {last[:200]}); restarted, "
                                         "the crash log is in the JSON (crash_logs)")
                            srv.stop()
                            fresh = start_peer(peer)
                            if fresh is None:
                                del servers[peer]
                                continue
                            servers[peer] = srv = fresh
                        try:
                            res = measure(tool, tools, srv.ports[proto], target, args.duration, pin, srv, python,
                                          origin)
                        except (RuntimeError, Timeout, ValueError) as exc:
                            note = f"{peer} {proto} {body} round {rnd + 1}: {str(exc)[:300]}"
                            print(f"  {peer:<12} {proto:<4} {body:<4} FAILED: {str(exc)[:500]}", flush=True)
                            notes.append(note)
                            continue
                        res.update(peer=peer, proto=proto, body=body, round=rnd + 1, server_pid=srv.pid,
                                   server_alive_after=srv.alive())
                        results["runs"].append(res)
                        raw[peer][proto][body].append(res)
                        print(f"  {peer:<12} {proto:<4} {body:<4} {tool:<7} {res['rps']:>9.0f} req/s  "
                              f"p50 {fmt(res.get('p50_ms'), '.2f'):>6} ms  p99 {fmt(res.get('p99_ms'), '.2f'):>6} ms  "
                              f"mean {fmt(res.get('mean_ms'), '.2f'):>6} ms  srv CPU {100 * res['srv_cpu']:3.0f}%  "
                              f"gen CPU {100 * res['gen_cpu']:3.0f}%  errors {res.get('errors', 0)}  "
                              f"origin +{res.get('origin_requests')}", flush=True)
        # a crash at the very end (after the last run) is a crash too
        for peer, srv in servers.items():
            if not srv.alive():
                crashes[peer] += 1
                results.setdefault("crash_logs", []).append({"peer": peer, "round": "end", "log": srv.log_tail(4000)})
                notes.append(f"{peer} crashed after its last run (exit {srv.proc.returncode}); its rows stand")
        results["crashes"] = dict(crashes)
        results["summary"] = {p: {q: {b: summarise(runs) for b, runs in per_body.items() if runs}
                                  for q, per_body in per.items()} for p, per in raw.items()}
        results["origin_requests"] = origin_requests(origin)
        if "edgeproxy" in servers and not crashes["edgeproxy"]:  # its own hit count vs the load generators'
            st = edge_stats(servers["edgeproxy"])
            if st:
                results["edgeproxy_hits"] = st["hits"]
                results["edgeproxy_hits_by_loadgen"] = sum(run.get("requests", 0) for per in raw["edgeproxy"].values()
                                                           for runs in per.values() for run in runs)
        if "varnish" in servers:
            results["varnish_counters"] = varnish_counters(servers["varnish"], tools.get("varnishstat"),
                                                           "MAIN.cache_hit", "MAIN.cache_miss", "MAIN.backend_req")
        results["report"] = print_report(results, args)
        if args.profile and "edgeproxy" in servers:
            try:
                results["profile"] = profile_edgeproxy(servers["edgeproxy"], tools, h1_tool, protocols,
                                                       args.duration, pin, python, out, args.profile_top)
            except (RuntimeError, Timeout, ValueError, OSError, subprocess.TimeoutExpired) as exc:
                print(f"profile failed: {exc}", file=sys.stderr)
                notes.append(f"profile failed: {str(exc)[:300]}")
        for srv in servers.values():  # the RSS servers get the machine to themselves
            srv.stop()
        if args.rss:
            rss_peers = ["edgeproxy"]
            if not args.quick:
                rss_peers += [p for p in ("varnish", "nginx_cache") if p in args.peers and p not in unavailable]
            print(f"\nRSS: {args.rss_objects} objects, {args.rss_connections} idle connections "
                  f"({', '.join(rss_peers)}; RLIMIT_NOFILE {nofile})", flush=True)
            seen = len(notes)
            results["rss"] = run_rss(rss_peers, python, work, origin, tools, server_cpu, args.rss_objects,
                                     args.rss_connections, started, notes)
            results["report"] += "\n" + rss_report(results["rss"], notes[seen:])
    finally:
        for srv in reversed(started):
            srv.stop()
        results["processes"] = [{"name": srv.name, "pid": srv.pid, "argv": srv.argv, "exit": srv.proc.returncode}
                                for srv in started]
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        (out / "edge.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"results: {out / 'edge.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
