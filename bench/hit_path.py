#!/usr/bin/env python3
"""Hit-path benchmark: edgeproxy against nginx and hypercorn on one cached 1 KiB body, in one run.

One origin (hypercorn, trio worker, a minimal ASGI app: 1 KiB body, ``Cache-Control: public,
s-maxage=3600``, an ETag, 304 on ``If-None-Match``) and four peers, each on its own
127.0.0.1 port:

  edgeproxy      edgeproxy in front of the origin (HTTP/1.1 and h2c on one port)
  nginx_cache    nginx, 1 worker, ``proxy_cache`` in front of the same origin (upstream keepalive)
  nginx_static   nginx, 1 worker, the same 1 KiB body as a static file
  hypercorn      hypercorn (trio worker) answering from the ASGI app: a Python server, no cache

Each peer gets one warm-up request (and a check that the next one is a cache hit), then
``--rounds`` interleaved rounds (protocol by protocol, A B C D, A B C D, …) of
``wrk -t1 -c32 -d{duration}s --latency`` (HTTP/1.1) and ``h2load -c32 -m10 -D{duration}``
(h2c, prior knowledge). Servers run on CPU 0, the load generator on CPU 1 (``taskset``, when
there are two CPUs). Medians are reported, with the ratio to nginx ``proxy_cache`` for the
same protocol. Loopback only; every subprocess is bounded by a timeout; every process the
bench starts is stopped by PID (SIGTERM, then SIGKILL) on the way out, errors included.

Missing ``wrk``/``nginx``/``h2load`` are installed with apt-get (``--no-install`` to skip);
without wrk the HTTP/1.1 rows use a small built-in Python load generator (``pyload``: one
core of Python; the ``gen CPU`` column shows when it, not the server, is the limit).
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
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
HOST = "127.0.0.1"
PATH = "/bench/hit-1k"
PEERS = ("edgeproxy", "nginx_cache", "nginx_static", "hypercorn")
PROTOCOLS = ("h1", "h2c")
BASELINE = "nginx_cache"
CONNECTIONS = 32
H2_STREAMS = 10  # h2load -m
SERVER_CPU, LOADGEN_CPU = "0", "1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
OWN_SESSIONS: set[int] = set()  # sessions of the servers the bench started (see others_cpu_s)
GEN_CEILING = 0.85  # load generator CPU share above which a figure is marked as near the client's limit
OTHER_LIMIT = 0.10  # other processes' CPU share during a run above which the report warns
APT_PACKAGES = {"wrk": "wrk", "nginx": "nginx", "h2load": "nghttp2-client"}

BODY = b"".join(b"FlowCMS edge hit-path benchmark, line %04d.....................\n" % i for i in range(16))
assert len(BODY) == 1024, len(BODY)
ETAG = b'"' + hashlib.sha1(BODY, usedforsecurity=False).hexdigest()[:16].encode() + b'"'
CACHE_CONTROL = b"public, s-maxage=3600"

# The origin and the hypercorn peer: a minimal ASGI app. ``/_origin/count`` tells how many
# benchmark requests reached it (so the report can show that the proxies answered from cache).
ASGI_APP = """
BODY = {body!r}
ETAG = {etag!r}
FIELDS = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", {cc!r}), (b"etag", ETAG)]
FULL = {{"type": "http.response.start", "status": 200, "headers": [*FIELDS, (b"content-length", b"1024")]}}
NOT_MODIFIED = {{"type": "http.response.start", "status": 304, "headers": FIELDS}}
BODY_EVENT = {{"type": "http.response.body", "body": BODY}}
EMPTY = {{"type": "http.response.body", "body": b""}}
COUNT = [0]


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
    if scope["path"] == "/_origin/count":
        data = b'{{"requests": %d}}' % COUNT[0]
        await send({{"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"cache-control", b"no-store"),
            (b"content-length", b"%d" % len(data))]}})
        await send({{"type": "http.response.body", "body": data}})
        return
    COUNT[0] += 1
    for name, value in scope["headers"]:
        if name == b"if-none-match" and value == ETAG:
            await send(NOT_MODIFIED)
            await send(EMPTY)
            return
    await send(FULL)
    await send(BODY_EVENT)
"""

HYPERCORN_TOML = """
bind = ["{host}:{port}"]
worker_class = "trio"
workers = 0
keep_alive_max_requests = 1000000000
keep_alive_timeout = 75
graceful_timeout = 1
errorlog = "-"
"""

NGINX_CONF = """
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000000;
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

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL (to its process group: nginx workers too) after STOP_TIMEOUT_S."""
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


def tree_cpu_s(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process and its direct children (nginx master + worker), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0
    pids = {pid}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    if int(_stat_fields(entry)[1]) == pid:
                        pids.add(int(entry))
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat_fields(p)
            user += int(fields[11])  # utime, stime: fields 14 and 15 of stat
            system += int(fields[12])
    return user / tick, system / tick


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


def pinned(argv: list[str], cpu: str, pin: bool) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if pin else argv


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
    code = ("import importlib.metadata as m, edgeproxy, sys; print(edgeproxy.__file__); "
            "print(' '.join(f'{p}={m.version(p)}' for p in ('trio', 'h2', 'hpack', 'hyperframe', 'h11', 'hypercorn')))")
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
    for tool, argv in (("nginx", ["-v"]), ("wrk", ["-v"]), ("h2load", ["--version"])):
        if tools.get(tool):
            info[tool] = tool_version([tools[tool] or tool, *argv])
    return info


def venv_python() -> str:
    """The interpreter that has edgeproxy and hypercorn: this one, else the repository's venv."""
    for candidate in (sys.executable, str(REPO_ROOT / ".venv" / "bin" / "python")):
        with contextlib.suppress(RuntimeError, Timeout, OSError):
            run([candidate, "-c", "import edgeproxy, hypercorn, trio"], timeout=60, cwd=Path(tempfile.gettempdir()))
            return candidate
    sys.exit("edgeproxy/hypercorn not importable: run `make install` and use .venv/bin/python")


# -- servers -------------------------------------------------------------------------------

def start_hypercorn(name: str, python: str, work: Path, pin_cpu: str | None) -> Server:
    port = free_port()
    conf = work / f"{name}.toml"
    conf.write_text(HYPERCORN_TOML.format(host=HOST, port=port))
    argv = [python, "-m", "hypercorn", "--config", str(conf), "bench_app:app"]
    server = Server(name, ["taskset", "-c", pin_cpu, *argv] if pin_cpu else argv, work / f"{name}.log", cwd=work,
                    env={"PYTHONPATH": str(work)})
    server.ports = {"h1": port, "h2c": port}
    wait_port(server, port)
    return server


def start_edgeproxy(python: str, work: Path, origin_port: int, pin_cpu: str | None) -> Server:
    argv = [python, "-m", "edgeproxy", "--listen", f"{HOST}:0", "--origin", f"http://{HOST}:{origin_port}",
            "--log-format", "off", "--grace", "1"]
    server = Server("edgeproxy", ["taskset", "-c", pin_cpu, *argv] if pin_cpu else argv, work / "edgeproxy.log",
                    cwd=work)
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
    (root / PATH.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    (root / PATH.lstrip("/")).write_bytes(BODY)
    # Run as root, nginx's workers switch to `nobody`: they must be able to read the tree.
    for path in (work, prefix, *prefix.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    port_h1, port_h2 = free_port(), free_port()
    fields = {"prefix": prefix, "host": HOST, "port_h1": port_h1, "port_h2": port_h2, "origin_port": origin_port,
              "root": root}
    if origin_port is not None:
        http_extra, server_extra = NGINX_CACHE_HTTP.format(**fields), NGINX_CACHE_SERVER.format(**fields)
    else:
        http_extra, server_extra = "", NGINX_STATIC_SERVER.format(**fields)
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(http_extra=http_extra, server_extra=server_extra, **fields))
    argv = [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf), "-g", "daemon off;"]
    server = Server(name, ["taskset", "-c", pin_cpu, *argv] if pin_cpu else argv, work / f"{name}.log", cwd=prefix)
    server.ports = {"h1": port_h1, "h2c": port_h2}
    try:
        wait_port(server, port_h1)
        wait_port(server, port_h2)
    except RuntimeError as exc:
        err = (prefix / "error.log").read_text(errors="replace")[-2000:] if (prefix / "error.log").exists() else ""
        raise RuntimeError(f"{exc}\nerror.log:\n{err}") from None
    return server


def http_get(port: int, path: str = PATH) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def warm(name: str, server: Server) -> dict[str, Any]:
    """One warm-up request, then one more that must be a cache hit (for the caches) with the body."""
    port = server.ports["h1"]
    first = http_get(port)
    status, headers, body = http_get(port)
    if status != 200 or body != BODY:
        raise RuntimeError(f"{name}: warm-up answered {status} with {len(body)} bytes (want 200, the 1 KiB body)")
    check: dict[str, Any] = {"status": status, "first_status": first[0]}
    if name == "edgeproxy":
        check["cache_status"] = headers.get("cache-status")
        if "hit" not in (headers.get("cache-status") or "").lower():
            raise RuntimeError(f"edgeproxy: second request is not a hit: cache-status {headers.get('cache-status')!r}")
    elif name == "nginx_cache":
        check["cache_status"] = headers.get("x-cache-status")
        if headers.get("x-cache-status") != "HIT":
            raise RuntimeError(f"nginx_cache: second request is not a hit: X-Cache-Status "
                               f"{headers.get('x-cache-status')!r}")
    return check


def origin_requests(origin: Server) -> int | None:
    with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
        status, _, body = http_get(origin.ports["h1"], "/_origin/count")
        if status == 200:
            return int(json.loads(body)["requests"])
    return None


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
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    if p99:
        res["p99_ms"] = _ms(p99.group(1))
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
    res["errors"] = int(req.group(5)) + int(req.group(6)) + int(req.group(7))
    if codes:
        res["errors"] += int(codes.group(3)) + int(codes.group(4))
        res["ok_2xx"] = int(codes.group(1))
    lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if lat:
        res["mean_ms"] = _ms(lat.group(3))
    if res["requests"] == 0:
        res["rps"] = 0.0
    return res


def measure(tool: str, tools: dict[str, str | None], port: int, duration: float, pin: bool,
            server: Server, python: str) -> dict[str, Any]:
    """One load run against one server: req/s, latency, errors, server and generator CPU share."""
    url = f"http://{HOST}:{port}{PATH}"
    if tool == "wrk":
        argv = [tools["wrk"] or "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(duration))}s", "--latency", url]
    elif tool == "h2load":
        argv = [tools["h2load"] or "h2load", f"-c{CONNECTIONS}", f"-m{H2_STREAMS}", f"-D{max(1, round(duration))}",
                url]
    else:  # pyload: this file's own generator, in its own process
        argv = [python, str(Path(__file__).resolve()), "--_pyload", f"{HOST}:{port}", str(CONNECTIONS),
                str(duration)]
    others0 = others_cpu_s(OWN_SESSIONS)
    cpu0 = tree_cpu_s(server.pid)
    r = run(pinned(argv, LOADGEN_CPU, pin), timeout=duration + 60, env={"LC_ALL": "C"}, check=False)
    cpu1 = tree_cpu_s(server.pid)
    srv_user, srv_sys = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    other = others_delta(others0, others_cpu_s(OWN_SESSIONS))
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
               other_cpu=other / r["wall"])
    return res


def pyload(target: str, conns: int, duration: float) -> dict[str, Any]:
    """A small HTTP/1.1 keep-alive load generator (the fallback when wrk is missing): closed loop,
    ``conns`` connections, one request in flight on each, for ``duration`` seconds."""
    import selectors

    host, port_s = target.rsplit(":", 1)
    port = int(port_s)
    request = f"GET {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    latencies: list[float] = []
    errors = 0
    state: dict[socket.socket, list[Any]] = {}  # sock -> [buffer, sent_at]

    def connect() -> None:
        s = socket.create_connection((host, port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        state[s] = [b"", time.perf_counter()]
        s.send(request)
        sel.register(s, selectors.EVENT_READ)

    def drop(s: socket.socket) -> None:
        sel.unregister(s)
        del state[s]
        s.close()

    for _ in range(conns):
        connect()
    started = time.perf_counter()
    end = started + duration
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        for key, _ in sel.select(timeout=min(0.1, end - now)):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            try:
                data = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                errors += 1
                drop(s)
                if time.perf_counter() < end:
                    connect()
                continue
            st = state[s]
            buf = st[0] + data
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                st[0] = buf
                continue
            head = buf[:head_end].lower()
            m = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
            need = head_end + 4 + (int(m.group(1)) if m else 0)
            if len(buf) < need:
                st[0] = buf
                continue
            t = time.perf_counter()
            if head.startswith((b"http/1.1 2", b"http/1.1 3")):
                latencies.append(t - st[1])
            else:
                errors += 1
            st[0], st[1] = buf[need:], t
            if b"\r\nconnection: close" in head:
                drop(s)
                connect()
            else:
                s.send(request)
    elapsed = time.perf_counter() - started
    for s in list(state):
        drop(s)
    latencies.sort()
    n = len(latencies)
    return {"rps": n / elapsed, "requests": n, "errors": errors,
            "mean_ms": 1000 * sum(latencies) / n if n else None,
            "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if n else None}


# -- profile -------------------------------------------------------------------------------

def profile_edgeproxy(server: Server, tools: dict[str, str | None], h1_tool: str, protocols: list[str],
                      duration: float, pin: bool, python: str, out: Path, top: int) -> dict[str, Any]:
    """py-spy (sampling, attached to the running edgeproxy) under the same load as the measurement."""
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
            res = measure(tool, tools, server.ports[proto], duration, pin, server, python)
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
        print(f"\n== py-spy: edgeproxy {proto} ({tool}, {res['rps']:.0f} req/s while sampled; "
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

    return {"rps_median": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps), "rps_runs": rps,
            "p99_ms_median": med("p99_ms"), "mean_ms_median": med("mean_ms"), "srv_cpu_median": med("srv_cpu"),
            "srv_sys_share_median": med("srv_sys_share"),
            "gen_cpu_median": med("gen_cpu"), "other_cpu_median": med("other_cpu"),
            "other_cpu_max": max((r.get("other_cpu") or 0.0) for r in runs), "errors": sum(r.get("errors", 0) for r in runs),
            "requests": sum(r.get("requests", 0) for r in runs), "tool": runs[0]["tool"], "rounds": len(runs)}


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_report(results: dict[str, Any], args: argparse.Namespace) -> str:
    summary = results["summary"]
    lines = ["", f"Results (median of {args.rounds} interleaved round(s) of {args.duration:g} s; "
                 f"{results['machine']['pinning']})"]
    header = (f"{'server':<13} {'proto':<5} {'tool':<7} {'req/s':>8} {'min':>8} {'max':>8} {'p99 ms':>7} "
              f"{'mean ms':>7} {'srv CPU':>7} {'gen CPU':>8} {'other':>6} {'errors':>6}  {'vs nginx_cache':>14}")
    lines += [header, "-" * len(header)]
    marked = False
    for proto in PROTOCOLS:
        base = summary.get(BASELINE, {}).get(proto)
        if not any(proto in per for per in summary.values()):
            continue
        for peer in PEERS:
            s = summary.get(peer, {}).get(proto)
            if not s:
                continue
            ratio = f"{s['rps_median'] / base['rps_median']:.2f}x" if base and base["rps_median"] > 0 else "-"
            gen = s["gen_cpu_median"]
            mark = "*" if gen is not None and gen >= GEN_CEILING else " "
            marked = marked or mark == "*"
            lines.append(
                f"{peer:<13} {proto:<5} {s['tool']:<7} {s['rps_median']:>8.0f} {s['rps_min']:>8.0f} "
                f"{s['rps_max']:>8.0f} {fmt(s['p99_ms_median'], '.2f'):>7} {fmt(s['mean_ms_median'], '.2f'):>7} "
                f"{fmt(None if s['srv_cpu_median'] is None else 100 * s['srv_cpu_median'], '.0f'):>6}% "
                f"{fmt(None if gen is None else 100 * gen, '.0f'):>6}%{mark} "
                f"{fmt(None if s['other_cpu_median'] is None else 100 * s['other_cpu_median'], '.0f'):>5}% "
                f"{s['errors']:>6}  {ratio:>14}")
        lines.append("")
    lines.append("req/s: median over rounds (min, max beside it); p99 ms: wrk's latency distribution (h2load gives "
                 "none);\nmean ms: mean time per request; srv CPU: server process tree's CPU time / wall time (one "
                 "core = 100%);\ngen CPU: the load generator's; other: every other process on the machine (noise; "
                 "should be ~0%);\nerrors: socket errors, failed requests and 4xx/5xx, "
                 "summed over rounds.")
    noisy = [f"{peer} {proto} ({100 * s['other_cpu_max']:.0f}%)" for peer, per in summary.items()
             for proto, s in per.items() if s.get("other_cpu_max", 0) > OTHER_LIMIT]
    if noisy:
        lines.append(f"WARNING: other processes took more than {100 * OTHER_LIMIT:.0f}% of a core during: "
                     f"{', '.join(noisy)} — the machine was not idle; rerun for figures to record.")
    if marked:
        lines.append(f"* load generator at ≥{100 * GEN_CEILING:.0f}% of its core: that figure is near the client's "
                     "ceiling, the server may be faster.")
    if any(s.get("h1", {}).get("tool") == "pyload" for s in summary.values()):
        lines.append("pyload: the built-in Python load generator (no wrk): a row whose gen CPU is marked * is capped "
                     "by it.")
    if results.get("origin_requests") is not None:
        lines.append(f"origin requests during the run (warm-ups included): {results['origin_requests']}")
    if results.get("edgeproxy_hits") is not None:
        lines.append(f"edgeproxy's own hit counter: {results['edgeproxy_hits']} (load generators counted "
                     f"{results['edgeproxy_hits_by_loadgen']} completed responses, plus the warm-up)")
    for note, count in Counter(results.get("notes", [])).items():
        lines.append(f"note: {note}" + (f" (×{count})" if count > 1 else ""))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


# -- main ------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, help="seconds per load run (default 5; --quick: 1)")
    p.add_argument("--rounds", type=int, help="interleaved rounds; medians are reported (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 s, 1 round")
    p.add_argument("--out", type=Path, help="folder for hit_path.json (and profiles); default: a new temporary one")
    p.add_argument("--only", help=f"comma list of peers (default all: {','.join(PEERS)})")
    p.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma list of h1,h2c (default both)")
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                   help="HTTP/1.1 load generator: wrk, the built-in Python one, or auto (wrk when there is one)")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing tools")
    p.add_argument("--no-pin", action="store_true", help="do not pin servers / load generator with taskset")
    p.add_argument("--profile", action="store_true",
                   help="after the measurement, sample edgeproxy with py-spy under the same load (per protocol)")
    p.add_argument("--profile-top", type=int, default=25, help="functions printed per profile table")
    p.add_argument("--keep", action="store_true", help="keep the servers' work folder (configs, logs)")
    p.add_argument("--_pyload", nargs=3, metavar=("HOST:PORT", "CONNS", "SECONDS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._pyload:
        return args
    args.duration = args.duration or (1.0 if args.quick else 5.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.duration <= 0 or args.rounds <= 0:
        p.error("--duration and --rounds must be positive")
    args.peers = [x.strip() for x in (args.only or ",".join(PEERS)).split(",") if x.strip()]
    bad = [x for x in args.peers if x not in PEERS]
    if bad or not args.peers:
        p.error(f"unknown peer(s) {bad}: choose from {', '.join(PEERS)}")
    args.protocols = [x.strip() for x in args.protocols.split(",") if x.strip()]
    if not args.protocols or any(x not in PROTOCOLS for x in args.protocols):
        p.error(f"--protocols: choose from {', '.join(PROTOCOLS)}")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: every server is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._pyload:
        target, conns, seconds = args._pyload
        print(json.dumps(pyload(target, int(conns), float(seconds))))
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    wanted = []
    if {"nginx_cache", "nginx_static"} & set(args.peers):
        wanted.append("nginx")
    if "h1" in args.protocols and args.loadgen != "python":
        wanted.append("wrk")
    if "h2c" in args.protocols:
        wanted.append("h2load")
    tools = ensure_tools(wanted, install=not args.no_install)
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
    peers = list(args.peers)
    if not tools.get("nginx") and {"nginx_cache", "nginx_static"} & set(peers):
        notes.append("nginx missing (apt-get install nginx): nginx peers skipped, no ratios.")
        peers = [p for p in peers if not p.startswith("nginx")]
    for note in notes:
        print(f"note: {note}", file=sys.stderr)

    pin = pinning_available() and not args.no_pin
    python = venv_python()
    out = (args.out or Path(tempfile.mkdtemp(prefix="edgeproxy-hitpath-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="edgeproxy-hitpath-work-"))
    work.chmod(0o755)
    (work / "bench_app.py").write_text(ASGI_APP.format(body=BODY, etag=ETAG, cc=CACHE_CONTROL))
    info = machine_info(python, tools, pin)
    before = others_cpu_s(OWN_SESSIONS)
    time.sleep(1.0)
    info["other_cpu_before"] = round(others_delta(before, others_cpu_s(OWN_SESSIONS)), 3)
    if info["other_cpu_before"] > OTHER_LIMIT:
        print(f"WARNING: other processes use {100 * info['other_cpu_before']:.0f}% of a core right now: the machine "
              "is not idle, the figures will be noisy.", file=sys.stderr)
    print("edgeproxy hit-path benchmark")
    for k, v in info.items():
        print(f"  {k}: {v}")
    print(f"  peers: {peers}  protocols: {protocols}  duration: {args.duration:g} s  rounds: {args.rounds}  "
          f"h1 tool: {h1_tool}  out: {out}", flush=True)
    results: dict[str, Any] = {
        "machine": info, "notes": notes, "servers": {}, "runs": [], "summary": {}, "warm": {},
        "args": {"duration": args.duration, "rounds": args.rounds, "quick": args.quick, "peers": peers,
                 "protocols": protocols, "h1_tool": h1_tool, "connections": CONNECTIONS, "h2_streams": H2_STREAMS,
                 "body_bytes": len(BODY), "path": PATH},
    }
    servers: dict[str, Server] = {}
    started: list[Server] = []
    server_cpu = SERVER_CPU if pin else None
    try:
        origin = start_hypercorn("origin", python, work, LOADGEN_CPU if pin else None)
        started.append(origin)
        results["servers"]["origin"] = {"pid": origin.pid, "ports": origin.ports, "argv": origin.argv}
        print(f"  origin: hypercorn pid {origin.pid} on {HOST}:{origin.ports['h1']}", flush=True)

        def start_peer(peer: str) -> Server | None:
            """Start and warm one peer; None (with a note) when it cannot be measured."""
            try:
                if peer == "edgeproxy":
                    srv = start_edgeproxy(python, work, origin.ports["h1"], server_cpu)
                elif peer == "nginx_cache":
                    srv = start_nginx(peer, tools["nginx"] or "nginx", work, server_cpu, origin_port=origin.ports["h1"])
                elif peer == "nginx_static":
                    srv = start_nginx(peer, tools["nginx"] or "nginx", work, server_cpu, origin_port=None)
                else:
                    srv = start_hypercorn("hypercorn", python, work, server_cpu)
            except RuntimeError as exc:
                note = f"{peer} did not start, skipped: {str(exc)[:1500]}"
                print(f"note: {note}", file=sys.stderr)
                notes.append(note.splitlines()[0])
                return None
            started.append(srv)
            results["servers"].setdefault(peer, {"pid": srv.pid, "ports": srv.ports, "argv": srv.argv})
            try:
                results["warm"][peer] = warm(peer, srv)
            except (RuntimeError, OSError, http.client.HTTPException) as exc:
                note = f"{peer} failed its warm-up, skipped: {exc}"
                print(f"note: {note}", file=sys.stderr)
                notes.append(note)
                return None
            print(f"  {peer}: pid {srv.pid} on {HOST} ports {srv.ports} warm {results['warm'][peer]}", flush=True)
            return srv

        for peer in peers:
            srv = start_peer(peer)
            if srv is not None:
                servers[peer] = srv

        crashes: Counter[str] = Counter()
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {p: {q: [] for q in protocols} for p in servers}
        for rnd in range(args.rounds):
            print(f"\nround {rnd + 1}/{args.rounds}", flush=True)
            for proto in protocols:
                tool = h1_tool if proto == "h1" else "h2load"
                for peer in list(servers):
                    srv = servers[peer]
                    if not srv.alive():  # it crashed since its last run: record why, start a fresh one
                        crashes[peer] += 1
                        tail = srv.log_tail(4000)
                        results.setdefault("crash_logs", []).append({"peer": peer, "round": rnd + 1, "log": tail})
                        last = next((ln for ln in reversed(tail.splitlines()) if ln.strip(" |+-")), "?").strip(" |")
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
                        res = measure(tool, tools, srv.ports[proto], args.duration, pin, srv, python)
                    except (RuntimeError, Timeout, ValueError) as exc:
                        note = f"{peer} {proto} round {rnd + 1}: {str(exc)[:300]}"
                        print(f"  {peer:<13} {proto:<4} FAILED: {str(exc)[:500]}", flush=True)
                        notes.append(note)
                        continue
                    res.update(peer=peer, proto=proto, round=rnd + 1, server_pid=srv.pid,
                               server_alive_after=srv.alive())
                    results["runs"].append(res)
                    raw[peer][proto].append(res)
                    print(f"  {peer:<13} {proto:<4} {tool:<7} {res['rps']:>9.0f} req/s  "
                          f"p99 {fmt(res.get('p99_ms'), '.2f'):>6} ms  mean {fmt(res.get('mean_ms'), '.2f'):>6} ms  "
                          f"srv CPU {100 * res['srv_cpu']:3.0f}%  gen CPU {100 * res['gen_cpu']:3.0f}%  "
                          f"errors {res.get('errors', 0)}", flush=True)
        # a crash at the very end (after the last run) is a crash too
        for peer, srv in servers.items():
            if not srv.alive():
                crashes[peer] += 1
                results.setdefault("crash_logs", []).append({"peer": peer, "round": "end", "log": srv.log_tail(4000)})
                notes.append(f"{peer} crashed after its last run (exit {srv.proc.returncode}); its rows stand")
        results["crashes"] = dict(crashes)
        results["summary"] = {p: {q: summarise(runs) for q, runs in per.items() if runs} for p, per in raw.items()}
        results["origin_requests"] = origin_requests(origin)
        if "edgeproxy" in servers and not crashes["edgeproxy"]:  # its own hit count vs the load generators'
            with contextlib.suppress(OSError, ValueError, KeyError, http.client.HTTPException):
                _, _, body = http_get(servers["edgeproxy"].ports["h1"], "/.edge/stats")
                stats = json.loads(body)
                results["edgeproxy_hits"] = stats["cache"]["hits"]
                results["edgeproxy_hits_by_loadgen"] = sum(run.get("requests", 0) for runs in raw["edgeproxy"].values()
                                                           for run in runs)
        if results["origin_requests"] is not None and results["origin_requests"] > 50:
            notes.append(f"the origin answered {results['origin_requests']} requests: some rows did not measure hits")
        results["report"] = print_report(results, args)
        if args.profile and "edgeproxy" in servers:
            try:
                results["profile"] = profile_edgeproxy(servers["edgeproxy"], tools, h1_tool, protocols,
                                                       args.duration, pin, python, out, args.profile_top)
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
        (out / "hit_path.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"results: {out / 'hit_path.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
