#!/usr/bin/env python3
"""Publish benchmark: a commit → the first fresh 200 at the edge, through ``flowcms up``.

For every size N (``--sizes 1000,10000``) it generates a corpus (``bench/corpus.py``) into
a fresh git repository, publishes it once (cold, ``flowcms publish --full``), then runs the
whole stack as a user would: ``python -m pipeline.cli --site S up --port 0 --origin-port 0``
(origin + edgeproxy + the ref watcher that publishes every commit). Then:

  warm      every HTML page of the live manifest is requested once through the edge
            (16 keep-alive connections), so the cache holds the whole site;
  exact     ``--edits`` publishes of a one-entry edit (a paragraph appended to the body of
            a live entry, a different entry each time, ``git commit`` in the repository): the
            watcher builds, switches and purges exactly what changed. Measured per edit:
            from ``git commit`` returning to the edited page's new body at the edge (polled
            by this client: the headline figure), the watcher's delay (commit → the record's
            ``seen``), and from the publish record (``.flowcms/publishes.jsonl``): build_s
            (the child build + the atomic switch; the switch instant is read from
            ``history.jsonl``), purge_s, fresh_s (trigger → first fresh 200 at the edge); the
            "first byte" column is fresh_s − build_s − purge_s. After each publish a fixed
            random sample of ``--sample`` pages is requested and their ``Cache-Status`` counted
            (hit ratio of the unchanged pages: ETag equal to the one seen before), then every
            HTML page once more (the reader traffic of a whole site), and the edge's
            ``/.edge/stats`` counts the origin requests the publish cost;
  purge_all the same edits, but after each publish the whole edge cache is purged as well
            (``POST /.edge/purge {"prefixes": ["/"]}``, what Netlify and ``hugo deploy`` do),
            then the same sample and the same full crawl: origin requests per publish for
            both strategies and their ratio.

Before each commit the bench waits until ``flowcms up`` has no child process but its edge
(the previous publish, and the scheduler's build prepared ahead for the next ``publishAt``
of the corpus, are done), so every publish is measured alone. Nothing is pinned: the
build uses every core, as it would in production. Local only (127.0.0.1); every
subprocess and every wait is bounded; the stack is stopped by its PID (SIGTERM stops its
edge too; SIGKILL to its process group after 10 s) on the way out, errors included.
Results: a table on stdout and ``publish.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import build as build_mod  # noqa: E402  (bench/ is on sys.path)
import corpus as corpus_mod  # noqa: E402
from edge import Server, closed_loop, tree_pids, wait_log  # noqa: E402
from procs import run  # noqa: E402

STRATEGIES = ("exact", "purge_all")
TARGETS = {
    "fresh_p50_s": 2.0,  # 10k: commit → first fresh 200 at the edge, p50 ≤ 2 s
    "fresh_goal_s": 0.5,  # ... the goal
    "purge_all_ratio": 100.0,  # purge-everything costs ≥ 100× the origin requests of the exact purge
}
CONNECTIONS = 16  # the crawler's keep-alive connections
SAMPLE = 200  # unchanged pages requested after each publish (the hit ratio)
BIG_SITE_PAGES = 5000  # above this many HTML pages purge_all defaults to PURGE_ALL_EDITS_BIG edits
PURGE_ALL_EDITS_BIG = 10
POLL_S = 0.005  # client poll of the edited page
REQUEST_TIMEOUT_S = 10.0
QUIET_S = 0.2  # `flowcms up` must have had no child but its edge for this long before a commit
EDIT_MARK = "publish-bench-edit"
OTHER_LIMIT = 0.10  # other processes' CPU (cores) during a run above which the report warns


# -- HTTP ----------------------------------------------------------------------------------

class Client:
    """One keep-alive HTTP/1.1 connection to the edge (reconnects after an error)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
            try:
                self.conn.request(method, quote(path, safe="/?=&%:@!$'()*+,;~"), body=body, headers=headers or {})
                response = self.conn.getresponse()
                data = response.read()
                fields = {k.lower(): v for k, v in response.getheaders()}
                if fields.get("connection", "").lower() == "close":
                    self.close()
                return response.status, fields, data
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        return self.request("GET", path)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def is_hit(cache_status: str) -> bool:
    """A fresh hit (RFC 9211): ``edgeproxy; hit; ttl=…``, not a stale one sent on to the origin."""
    params = [p.strip() for p in cache_status.split(",")[0].split(";")]
    return "hit" in params and not any(p.startswith("fwd=") for p in params)


def edge_counters(client: Client) -> dict[str, int]:
    status, _, body = client.get("/.edge/stats")
    if status != 200:
        raise RuntimeError(f"/.edge/stats answered {status}: {body[:300]!r}")
    counters = json.loads(body)["counters"]
    return {k: int(counters[k]) for k in ("origin_requests", "hits", "misses", "requests", "purged_objects")}


def edge_publish(client: Client, publish_id: str | None) -> dict[str, Any] | None:
    """The edge's own view of one publish (``/.edge/stats`` → ``publish.recent``), if it has it."""
    status, _, body = client.get("/.edge/stats")
    if status != 200 or publish_id is None:
        return None
    recent = (json.loads(body).get("publish") or {}).get("recent") or []
    return next((r for r in recent if r.get("id") == publish_id), None)


def crawl(host: str, port: int, paths: list[str], conns: int, deadline_s: float) -> dict[str, Any]:
    """Every path once, ``conns`` keep-alive connections (edge.py's closed-loop client)."""
    requests = iter([f"GET {quote(p, safe='/?=&%:@!$()*+,;~')} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
                     for p in paths])
    res = closed_loop(host, port, min(conns, max(1, len(paths))), lambda: next(requests, None), deadline_s)
    keep = ("rps", "requests", "errors", "elapsed_s", "complete", "status_codes", "p50_ms", "p99_ms")
    return {k: res[k] for k in keep}


def sample_crawl(client: Client, paths: list[str], etags: dict[str, str]) -> dict[str, Any]:
    """Request each sampled page once: hits among the unchanged ones (same ETag as before)."""
    out = {"requests": 0, "unchanged": 0, "hits": 0, "changed": 0, "not_200": 0, "statuses": {}}
    statuses: dict[str, int] = {}
    for path in paths:
        status, fields, _ = client.get(path)
        out["requests"] += 1
        cs = fields.get("cache-status", "")
        fwd = re.search(r"fwd=([\w-]+)", cs)
        verdict = "hit" if is_hit(cs) else (fwd.group(1) if fwd else "other")
        statuses[verdict] = statuses.get(verdict, 0) + 1
        if status != 200:
            out["not_200"] += 1
            continue
        etag = fields.get("etag", "")
        if etags.get(path) not in (None, etag):
            out["changed"] += 1  # its content changed: a miss is what it should be
        else:
            out["unchanged"] += 1
            out["hits"] += is_hit(cs)
        etags[path] = etag
    out["statuses"] = statuses
    return out


# -- the stack -------------------------------------------------------------------------------

def children(pid: int) -> set[int]:
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found.update(int(c) for c in (task / "children").read_text().split())
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def system_busy_s() -> float:
    """CPU seconds the whole machine spent in user and system mode (/proc/stat; irq and softirq
    left out: loopback packet work is the benchmark's own)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:4]
    return sum(int(x) for x in fields) / os.sysconf("SC_CLK_TCK")


def own_cpu_s(stack_pid: int) -> float:
    """CPU seconds of the bench (with the git commands it waited for) and of the stack's process
    tree (with the builds it waited for: cutime/cstime)."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    ticks = 0
    for pid in tree_pids(stack_pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total + ticks / os.sysconf("SC_CLK_TCK")


def wait_quiet(pid: int, keep: set[int], timeout: float) -> float:
    """Seconds waited until ``pid`` has had no child but ``keep`` for QUIET_S (bounded)."""
    started = time.perf_counter()
    quiet_since: float | None = None
    while True:
        now = time.perf_counter()
        busy = children(pid) - keep
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= QUIET_S:
            return now - started - QUIET_S
        if now - started > timeout:
            print(f"  warning: flowcms up still has children {sorted(busy)} after {timeout:.0f} s; going on",
                  file=sys.stderr)
            return now - started
        time.sleep(0.02)


def start_stack(python: str, site: Path, log: Path, timeout: float) -> tuple[Server, dict[str, Any]]:
    argv = [python, "-m", "pipeline.cli", "--site", str(site), "up", "--port", "0", "--origin-port", "0"]
    server = Server("flowcms_up", argv, log, cwd=REPO_ROOT, env={"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"})
    try:
        wait_log(server, r"stops\.", timeout=timeout)
        text = server.log_tail(200_000)
        url = re.search(r"site:\s+(http://\S+?)/?\s", text)
        token = re.search(r"admin token for this session: (\S+)", text)
        origin = re.search(r"origin:\s+(http://\S+?)/?\s", text)
        if url is None or token is None:
            raise RuntimeError(f"could not read the site URL / admin token from flowcms up:\n{text[-2000:]}")
        m = re.fullmatch(r"http://([^:/]+):(\d+)", url.group(1))
        assert m is not None, url.group(1)
        edge = {p for p in children(server.pid) if "edgeproxy" in cmdline(p)}
        secret = token.group(1)
        return server, {"url": url.group(1), "host": m.group(1), "port": int(m.group(2)), "token": token.group(1),
                        "origin": origin.group(1) if origin else None, "edge_pids": sorted(edge),
                        "edge_argv": [cmdline(p).replace(secret, "<token>") for p in sorted(edge)]}
    except BaseException:
        server.stop()
        raise


def read_records(site: Path) -> list[dict[str, Any]]:
    path = site / ".flowcms" / "publishes.jsonl"
    out = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
    return out


def wait_record(site: Path, before: int, commit: str, timeout: float) -> dict[str, Any] | None:
    """The publish record of ``commit`` (among those after the first ``before``), or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for rec in read_records(site)[before:]:
            if rec.get("commit") == commit or (rec.get("status") == "failed" and commit[:12] in rec.get("trigger", "")):
                return rec
        time.sleep(0.02)
    return None


def switch_time(site: Path, build_id: str | None) -> float | None:
    """When the live pointer moved to ``build_id`` (``history.jsonl``, epoch seconds)."""
    if not build_id:
        return None
    with contextlib.suppress(FileNotFoundError):
        for line in reversed((site / ".flowcms" / "history.jsonl").read_text().splitlines()):
            with contextlib.suppress(json.JSONDecodeError):
                h = json.loads(line)
                if h.get("build") == build_id and h.get("action") == "publish":
                    return float(h["time"])
    return None


def live_pages(site: Path) -> tuple[str, list[str], dict[str, Any]]:
    state = site / ".flowcms"
    live = (state / "LIVE").read_text().strip()
    started = time.perf_counter()
    manifest = json.loads((state / "builds" / live / "manifest.json").read_bytes())
    parse_s = time.perf_counter() - started
    pages = sorted(p for p, item in manifest.items() if str(item["type"]).startswith("text/html"))
    return live, pages, {"outputs": len(manifest), "html_pages": len(pages), "manifest_json_parse_s": parse_s,
                         "html_bytes": sum(int(manifest[p]["size"]) for p in pages)}


def store_manifest_s(python: str, site: Path, build_id: str) -> float | None:
    """What ``Store.manifest`` costs for this site (the origin and the publisher both parse the new
    manifest after a switch, in the stack's one event loop): median of 3, in a fresh process."""
    code = ("import sys, time; from pathlib import Path; from pipeline.store import Store\n"
            "s = Store(Path(sys.argv[1])); t = []\n"
            "for _ in range(3):\n    a = time.perf_counter(); s.manifest(sys.argv[2]); t.append(time.perf_counter() - a)\n"
            "print(sorted(t)[1])")
    with contextlib.suppress(Exception):
        return float(run([python, "-c", code, str(site / ".flowcms"), build_id], timeout=120,
                         cwd=REPO_ROOT)["stdout"].strip())
    return None


# -- edits -----------------------------------------------------------------------------------

def pick_entries(c: corpus_mod.Corpus, pages: set[str], count: int, seed: int) -> list[corpus_mod.Entry]:
    """Distinct live entries with a page of their own (bodies over 600 characters when there are
    enough), drawn at random over the whole corpus; rotated when the corpus has too few."""
    live = [e for e in c.entries if e.live and f"/{e.ctype}/{e.slug}/" in pages]
    preferred = [e for e in live if len(e.body) > 600] or live
    rng = random.Random(seed)
    picked = rng.sample(preferred, min(count, len(preferred)))
    while len(picked) < count:  # a tiny corpus: rotate
        picked.append(preferred[len(picked) % len(preferred)])
    return picked


def entry_page(e: corpus_mod.Entry) -> str:
    return f"/{e.ctype}/{e.slug}/"


def pct(values: list[float], q: float) -> float | None:
    """The median for q = 0.5, else the q-quantile by nearest rank (p99 of 50 edits is the slowest);
    None when empty."""
    vals = sorted(values)
    if not vals:
        return None
    if q == 0.5:
        return statistics.median(vals)
    return vals[min(len(vals) - 1, max(0, math.ceil(q * len(vals)) - 1))]


def run_strategy(strategy: str, n_edits: int, ctx: dict[str, Any], out_edits: list[dict[str, Any]]) -> None:
    site: Path = ctx["site"]
    server: Server = ctx["server"]
    stack = ctx["stack"]
    client: Client = ctx["client"]
    poller = Client(stack["host"], stack["port"])
    entries: list[corpus_mod.Entry] = ctx["entries"]
    current: dict[str, corpus_mod.Entry] = ctx["current"]
    keep = set(stack["edge_pids"])
    size = ctx["size"]
    for i in range(n_edits):
        k = ctx["edit_no"]
        ctx["edit_no"] += 1
        entry = entries[k % len(entries)]
        e = current.get(entry.path, entry)
        marker = f"{EDIT_MARK}-{size}-{strategy}-{i:03d}"
        edited = replace(e, body=e.body.rstrip("\n") + f"\n\nEdited by the publish benchmark: {marker}.\n")
        current[entry.path] = edited
        page = entry_page(entry)
        rec: dict[str, Any] = {"strategy": strategy, "i": i, "entry": entry.path, "page": page, "marker": marker}
        if not server.alive():
            raise RuntimeError(f"flowcms up exited with {server.proc.returncode}:\n{server.log_tail()}")
        rec["quiet_wait_s"] = wait_quiet(server.pid, keep, ctx["quiet_timeout"])
        before = len(read_records(site))
        c0 = edge_counters(client)
        (site / entry.path).write_text(corpus_mod.flowcms_text(edited))
        g = run(["git", "commit", "-q", "-a", "--no-verify", "-m", f"bench: {marker}"], cwd=site,
                env=build_mod.GIT_ENV, timeout=60)
        committed, committed_epoch = time.perf_counter(), time.time()
        rec["git_commit_s"] = g["wall"]
        # the headline figure: from the commit to the new body through the edge, as a reader sees it
        polls, fresh, deadline = 0, None, committed + ctx["fresh_timeout"]
        status, fields = 0, {}
        while time.perf_counter() < deadline:
            polls += 1
            try:
                status, fields, body = poller.get(page)
            except (OSError, http.client.HTTPException):
                status, fields, body = 0, {}, b""
            if status == 200 and marker.encode() in body:
                fresh = time.perf_counter() - committed
                break
            time.sleep(POLL_S)
        rec.update(fresh_client_s=fresh, polls=polls, fresh_cache_status=fields.get("cache-status"))
        head = run(["git", "rev-parse", "HEAD"], cwd=site, timeout=30)["stdout"].strip()
        record = wait_record(site, before, head, ctx["record_timeout"])
        c1 = edge_counters(client)
        if record is None:
            rec["error"] = f"no publish record for {head[:12]} within {ctx['record_timeout']:.0f} s"
        else:
            switched = switch_time(site, record.get("build"))
            build_s, purge_s, fresh_s = record.get("build_s"), record.get("purge_s"), record.get("fresh_s")
            rec.update(
                publish_id=record.get("id"), status=record.get("status"), error=record.get("error"),
                changed=record.get("changed"), added=record.get("added"), removed=record.get("removed"),
                purge_paths=record.get("purge_paths"), purge_keys=record.get("purge_keys"),
                trigger_s=record["seen"] - committed_epoch, build_s=build_s, purge_s=purge_s, fresh_s=fresh_s,
                to_switch_s=None if switched is None else switched - record["seen"],
                first_byte_s=(fresh_s - build_s - purge_s) if None not in (fresh_s, build_s, purge_s) else None)
            seen_at_edge = edge_publish(client, record.get("id"))
            if seen_at_edge is not None:  # the edge's own metrics (publish_metrics.py)
                rec["edge_fresh_s"] = seen_at_edge.get("commit_to_first_fresh_s")
                rec["edge_purge_to_fresh_s"] = seen_at_edge.get("purge_to_first_fresh_s")
        if strategy == "purge_all":
            t = time.perf_counter()
            st, _, body = client.request("POST", "/.edge/purge", json.dumps({"prefixes": ["/"], "soft": False}).encode(),
                                         {"Authorization": f"Bearer {stack['token']}",
                                          "Content-Type": "application/json"})
            if st != 200:
                raise RuntimeError(f"POST /.edge/purge answered {st}: {body[:300]!r}")
            rec["purge_all"] = {"seconds": time.perf_counter() - t, "purged": json.loads(body).get("purged")}
        rec["sample"] = sample_crawl(client, ctx["sample"], ctx["etags"])
        c2 = edge_counters(client)
        if ctx["full_crawl"]:
            rec["crawl"] = crawl(stack["host"], stack["port"], ctx["pages"], ctx["conns"], ctx["crawl_timeout"])
        c3 = edge_counters(client)
        rec["origin"] = {"publish": c1["origin_requests"] - c0["origin_requests"],
                         "sample": c2["origin_requests"] - c1["origin_requests"],
                         "crawl": c3["origin_requests"] - c2["origin_requests"],
                         "total": c3["origin_requests"] - c0["origin_requests"]}
        rec["crawl_hits"] = c3["hits"] - c2["hits"]
        rec["crawl_misses"] = c3["misses"] - c2["misses"]
        out_edits.append(rec)
        s = rec["sample"]
        print(f"  N={size} {strategy:<9} {i + 1:>3}/{n_edits}  commit→fresh {ms(rec['fresh_client_s'])}  "
              f"trigger {ms(rec.get('trigger_s'))} build {ms(rec.get('build_s'))} purge {ms(rec.get('purge_s'))} "
              f"first byte {ms(rec.get('first_byte_s'))}  ~{rec.get('changed')} {rec.get('status')}  "
              f"sample hits {s['hits']}/{s['unchanged']}  origin {rec['origin']['total']}  "
              f"(waited {rec['quiet_wait_s']:.2f} s for the stack to be idle)", flush=True)
        if rec.get("error") or rec["fresh_client_s"] is None:
            print(f"  warning: {rec.get('error') or 'the edit never showed up at the edge'}", file=sys.stderr)
    poller.close()


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms"


def summarise(edits: list[dict[str, Any]]) -> dict[str, Any]:
    def col(key: str) -> list[float]:
        return [e[key] for e in edits if e.get(key) is not None]

    s: dict[str, Any] = {"edits": len(edits),
                         "failed": sum(1 for e in edits if e.get("error") or e.get("fresh_client_s") is None
                                       or e.get("status") != "live everywhere")}
    for key in ("fresh_client_s", "trigger_s", "build_s", "to_switch_s", "purge_s", "first_byte_s", "fresh_s",
                "git_commit_s", "quiet_wait_s", "edge_fresh_s", "edge_purge_to_fresh_s"):
        vals = col(key)
        s[key] = {"p50": pct(vals, 0.5), "p99": pct(vals, 0.99), "min": min(vals) if vals else None,
                  "max": max(vals) if vals else None, "mean": statistics.fmean(vals) if vals else None}
    unchanged = sum(e["sample"]["unchanged"] for e in edits)
    hits = sum(e["sample"]["hits"] for e in edits)
    s["sample"] = {"requests": sum(e["sample"]["requests"] for e in edits), "unchanged": unchanged, "hits": hits,
                   "changed": sum(e["sample"]["changed"] for e in edits),
                   "hit_ratio": hits / unchanged if unchanged else None}
    origin = [e["origin"]["total"] for e in edits]
    s["origin_per_publish"] = statistics.fmean(origin) if origin else None
    s["origin_by_phase"] = {k: statistics.fmean(e["origin"][k] for e in edits) if edits else None
                            for k in ("publish", "sample", "crawl")}
    crawled = [e["crawl"] for e in edits if e.get("crawl")]
    if crawled:
        s["crawl"] = {"rps_median": statistics.median(c["rps"] for c in crawled),
                      "errors": sum(c["errors"] for c in crawled),
                      "incomplete": sum(1 for c in crawled if not c["complete"]),
                      "hit_ratio": (sum(e["crawl_hits"] for e in edits)
                                    / max(1, sum(e["crawl_hits"] + e["crawl_misses"] for e in edits)))}
    s["changed_paths"] = sorted({e.get("changed") for e in edits if e.get("changed") is not None})
    return s


# -- one size --------------------------------------------------------------------------------

def measure_size(n: int, args: argparse.Namespace, flowcms: str, python: str, out: Path,
                 started: list[Server]) -> dict[str, Any]:
    base_dir = out / f"n{n}"
    shutil.rmtree(base_dir, ignore_errors=True)
    site = base_dir / "site"
    timeout = args.timeout or (120 + 0.12 * n)
    t = time.perf_counter()
    c = corpus_mod.generate(n, args.seed)
    corpus_mod.write_flowcms(c, site)
    build_mod.git(site, "init", "-q", "-b", "main")
    build_mod.commit_all(site, f"corpus: {n} entries", timeout)
    result: dict[str, Any] = {"corpus": {**c.stats(), "generate_s": round(time.perf_counter() - t, 2)}}
    print(f"\nN={n}: corpus {result['corpus']['entries']} entries ({result['corpus']['live']} live) in {site}",
          flush=True)
    # cold publish as of now: the watcher's publishes are as of now too, so nothing flips between them
    r = run([flowcms, "--site", str(site), "publish", "--full"], timeout=timeout,
            env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    result["cold_publish"] = {"wall_s": r["wall"], "rss_mb": r["rss_mb"], **build_mod.parse_flowcms(r["stdout"])}
    print(f"  cold publish {r['wall']:.2f} s ({result['cold_publish']['outputs']} outputs)", flush=True)
    live, pages, info = live_pages(site)
    info["store_manifest_s"] = store_manifest_s(python, site, live)
    result["site"] = info
    page_set = set(pages)
    n_edits = args.edits
    n_purge_all = args.purge_all_edits if args.purge_all_edits is not None else (
        n_edits if len(pages) <= BIG_SITE_PAGES else min(n_edits, PURGE_ALL_EDITS_BIG))
    entries = pick_entries(c, page_set, n_edits + n_purge_all, args.seed)
    edited_pages = {entry_page(e) for e in entries}
    rng = random.Random(args.seed + n)
    unchanged_pool = [p for p in pages if p not in edited_pages]
    sample = sorted(rng.sample(unchanged_pool, min(args.sample, len(unchanged_pool))))

    server, stack = start_stack(python, site, base_dir / "flowcms-up.log", timeout)
    started.append(server)
    result["stack"] = {k: v for k, v in stack.items() if k != "token"}
    result["stack"]["pid"] = server.pid
    print(f"  flowcms up (pid {server.pid}): site {stack['url']}, origin {stack['origin']}, edge pids "
          f"{stack['edge_pids']}", flush=True)
    client = Client(stack["host"], stack["port"])
    try:
        wait_quiet(server.pid, set(stack["edge_pids"]), timeout)  # the scheduler's first prepared build
        warm = crawl(stack["host"], stack["port"], pages, args.conns, timeout)
        result["warm"] = warm
        print(f"  warm: {warm['requests']} pages in {warm['elapsed_s']:.1f} s ({warm['rps']:.0f}/s, "
              f"statuses {warm['status_codes']}, errors {warm['errors']})", flush=True)
        if not warm["complete"] or warm["errors"]:
            raise RuntimeError(f"the warm-up crawl did not complete cleanly: {warm}")
        etags: dict[str, str] = {}
        baseline = sample_crawl(client, sample, etags)
        result["baseline_sample"] = baseline
        print(f"  sample of {len(sample)} unchanged pages after warm-up: {baseline['hits']} hits", flush=True)
        ctx = {"site": site, "server": server, "stack": stack, "client": client, "entries": entries,
               "current": {}, "size": n, "sample": sample, "etags": etags, "pages": pages, "conns": args.conns,
               "full_crawl": not args.no_crawl, "edit_no": 0, "quiet_timeout": timeout,
               "fresh_timeout": 60 + 0.02 * n, "record_timeout": 60 + 0.02 * n, "crawl_timeout": timeout}
        result["edits"] = []
        for strategy, count in (("exact", n_edits), ("purge_all", n_purge_all)):
            if count <= 0:
                continue
            edits: list[dict[str, Any]] = []
            busy, own, t = system_busy_s(), own_cpu_s(server.pid), time.perf_counter()
            run_strategy(strategy, count, ctx, edits)
            wall = time.perf_counter() - t
            result["edits"] += edits
            summary = result.setdefault("summary", {})[strategy] = summarise(edits)
            # CPU that processes outside the bench took meanwhile, in cores: the noise figure of the row
            summary["wall_s"] = wall
            summary["other_cpu"] = max(0.0, (system_busy_s() - busy) - (own_cpu_s(server.pid) - own)) / wall
            if summary["other_cpu"] > OTHER_LIMIT:
                print(f"  WARNING: other processes used {100 * summary['other_cpu']:.0f}% of a core during the "
                      f"{strategy} run: the machine was not idle, the latencies are noisy.", file=sys.stderr)
        summ = result.get("summary", {})
        if "exact" in summ and "purge_all" in summ and summ["exact"]["origin_per_publish"] is not None:
            exact_cost = summ["exact"]["origin_per_publish"]
            result["purge_all_ratio"] = (summ["purge_all"]["origin_per_publish"] / exact_cost if exact_cost
                                         else float("inf"))
    finally:
        client.close()
        server.stop()
    result["stack"]["exit"] = server.proc.returncode
    result["stack"]["edge_left"] = [p for p, argv in zip(stack["edge_pids"], stack["edge_argv"], strict=True)
                                    if cmdline(p).replace(stack["token"], "<token>") == argv]
    if not args.keep and args.out is None:
        shutil.rmtree(base_dir, ignore_errors=True)
    return result


# -- report ----------------------------------------------------------------------------------

def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def print_report(results: dict[str, Any]) -> str:
    lines: list[str] = []
    header = (f"{'size':>6}  {'strategy':<9} {'edits':>5}  {'fresh p50':>9} {'fresh p99':>9}  {'trigger':>7} "
              f"{'build':>6} {'(switch)':>8} {'purge':>6} {'1st byte':>8} {'rec fresh':>9}  {'unchanged HIT':>13} "
              f"{'origin/pub':>10} {'ratio':>8} {'other CPU':>9}")
    lines += ["", "Results: commit → first fresh 200 at the edge (ms; p50 over the edits unless p99)", header,
              "-" * len(header)]
    for size, per in results["sizes"].items():
        summ = per.get("summary", {})
        exact_cost = (summ.get("exact") or {}).get("origin_per_publish")
        for strategy in STRATEGIES:
            s = summ.get(strategy)
            if not s:
                continue
            hr = s["sample"]["hit_ratio"]
            cost = s["origin_per_publish"]
            ratio = "-"
            if strategy == "purge_all" and exact_cost is not None and cost is not None:
                ratio = f"{cost / exact_cost:.0f}x" if exact_cost else "inf"
            failed = f" ({s['failed']} failed)" if s["failed"] else ""
            other = "-" if s.get("other_cpu") is None else f"{100 * s['other_cpu']:.0f}%"
            lines.append(
                f"{size:>6}  {strategy:<9} {s['edits']:>5}  {fmt_ms(s['fresh_client_s']['p50']):>9} "
                f"{fmt_ms(s['fresh_client_s']['p99']):>9}  {fmt_ms(s['trigger_s']['p50']):>7} "
                f"{fmt_ms(s['build_s']['p50']):>6} {'(' + fmt_ms(s['to_switch_s']['p50']) + ')':>8} "
                f"{fmt_ms(s['purge_s']['p50']):>6} {fmt_ms(s['first_byte_s']['p50']):>8} "
                f"{fmt_ms(s['fresh_s']['p50']):>9}  {'-' if hr is None else f'{100 * hr:.1f}%':>13} "
                f"{'-' if cost is None else f'{cost:.1f}':>10} {ratio:>8} {other:>9}{failed}")
    lines += [
        "",
        "fresh: wall time from `git commit` returning to the edited page's new body through the edge (this client);",
        "trigger: commit → the watcher's trigger; build: the record's build_s (child build + atomic switch; (switch):",
        "trigger → live pointer moved, from history.jsonl); purge: switched → every edge acknowledged; 1st byte:",
        "record fresh_s − build_s − purge_s (the probe's first fresh 200 after the purge); rec fresh: the record's",
        "fresh_s (trigger → first fresh 200). unchanged HIT: Cache-Status hits of the sampled unchanged pages right",
        "after each publish; origin/pub: origin requests per publish (/.edge/stats) with every HTML page read once",
        "after each publish in both strategies; ratio: purge_all origin requests / exact origin requests;",
        "other CPU: CPU of processes outside the bench during the row, in % of one core (noise; > 10% is noisy).",
    ]
    for size, per in results["sizes"].items():
        site, warm, cold = per.get("site", {}), per.get("warm", {}), per.get("cold_publish", {})
        lines.append(f"  N={size}: {site.get('html_pages')} HTML pages ({site.get('outputs')} outputs); cold publish "
                     f"{cold.get('wall_s', 0):.1f} s; warm-up crawl {warm.get('elapsed_s', 0):.1f} s "
                     f"({warm.get('rps', 0):.0f} pages/s from the origin); Store.manifest parse "
                     f"{fmt_ms(site.get('store_manifest_s'))} ms")
        for strategy, s in per.get("summary", {}).items():
            c, w = s.get("crawl"), s["quiet_wait_s"]["p50"]
            crawl_hr = "-" if not c else f"{100 * c['hit_ratio']:.2f}%"
            lines.append(f"    {strategy}: full-crawl hit ratio {crawl_hr} (changed pages included), "
                         f"origin requests per publish: {s['origin_by_phase']['publish']:.1f} publish + poll, "
                         f"{s['origin_by_phase']['sample']:.1f} sample, {s['origin_by_phase']['crawl']:.1f} crawl; "
                         f"idle wait before a commit p50 {fmt_ms(w)} ms (the scheduler's prepared build)")
            ef, ep = s["edge_fresh_s"], s["edge_purge_to_fresh_s"]
            lines.append(f"    {strategy}: the edge's own metrics (/.edge/stats): commit → first fresh p50 "
                         f"{fmt_ms(ef['p50'])} ms (p99 {fmt_ms(ef['p99'])} ms), purge → first fresh p50 "
                         f"{fmt_ms(ep['p50'])} ms, over {s['edits']} publishes")
    lines += ["", "Targets (issue)", *target_lines(results), ""]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def target_lines(results: dict[str, Any]) -> list[str]:
    sizes = sorted(int(k) for k in results["sizes"])
    if not sizes:
        return ["  (nothing measured)"]
    big = 10000 if 10000 in sizes else sizes[-1]
    note = "" if big == 10000 else f" [measured at N={big}, not 10000]"
    out = []

    def status(ok: bool | None) -> str:
        return "n/a " if ok is None else ("ok  " if ok else "MISS")

    summ = results["sizes"][str(big)].get("summary", {})
    exact = summ.get("exact")
    if exact and exact["fresh_client_s"]["p50"] is not None:
        v = exact["fresh_client_s"]["p50"]
        out.append(f"  {status(v <= TARGETS['fresh_p50_s'])} 10k commit → first fresh 200 at the edge, p50 ≤ 2 s "
                   f"(goal 0.5 s: {'met' if v <= TARGETS['fresh_goal_s'] else 'not met'}): {v:.3f} s "
                   f"(p99 {exact['fresh_client_s']['p99']:.3f} s){note}")
    else:
        out.append(f"  {status(None)} 10k commit → first fresh 200 at the edge, p50 ≤ 2 s: not measured{note}")
    for size in sizes:
        per = results["sizes"][str(size)]
        ratio = per.get("purge_all_ratio")
        s = per.get("summary", {})
        if ratio is None:
            out.append(f"  {status(None)} purge-everything ≥ 100x the origin requests of the exact purge at N={size}: "
                       "not measured")
            continue
        out.append(f"  {status(ratio >= TARGETS['purge_all_ratio'])} purge-everything ≥ 100x the origin requests of "
                   f"the exact purge at N={size}: {ratio:.0f}x ({s['purge_all']['origin_per_publish']:.1f} vs "
                   f"{s['exact']['origin_per_publish']:.1f} per publish)")
    for size in sizes:
        exact = results["sizes"][str(size)].get("summary", {}).get("exact")
        if exact and exact["sample"]["hit_ratio"] is not None:
            hr = exact["sample"]["hit_ratio"]
            out.append(f"  {status(hr >= 0.999)} unchanged pages stay HITs across exact publishes at N={size}: "
                       f"{100 * hr:.2f}% ({exact['sample']['hits']} of {exact['sample']['unchanged']})")
    return out


# -- main ------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", help="comma-separated corpus sizes (default 1000,10000; --quick: 50)")
    p.add_argument("--edits", type=int, help="one-entry edits published per size (default 50; --quick: 3)")
    p.add_argument("--purge-all-edits", type=int,
                   help=f"edits of the purge-everything comparison (default: --edits, at most "
                        f"{PURGE_ALL_EDITS_BIG} on sites of more than {BIG_SITE_PAGES} HTML pages)")
    p.add_argument("--sample", type=int, default=SAMPLE, help="unchanged pages requested after each publish")
    p.add_argument("--conns", type=int, default=CONNECTIONS, help="keep-alive connections of the crawler")
    p.add_argument("--no-crawl", action="store_true",
                   help="do not read every page after each publish (origin counts then cover the sample only)")
    p.add_argument("--out", type=Path, help="output folder (default: a new temporary folder)")
    p.add_argument("--quick", action="store_true", help="smoke run: 50 entries, 3 edits per strategy")
    p.add_argument("--seed", type=int, default=42, help="corpus generator seed")
    p.add_argument("--timeout", type=float, help="seconds per subprocess and per wait (default 120 + 0.12 s per entry)")
    p.add_argument("--flowcms", help="path of the flowcms executable (default: the venv's)")
    p.add_argument("--keep", action="store_true", help="keep the generated sites (default: removed unless --out)")
    args = p.parse_args(argv)
    sizes = args.sizes or ("50" if args.quick else "1000,10000")
    args.sizes = [int(s) for s in sizes.split(",") if s.strip()]
    if any(n < 10 for n in args.sizes):
        p.error("sizes must be at least 10")
    args.edits = args.edits if args.edits is not None else (3 if args.quick else 50)
    if args.edits < 1:
        p.error("--edits must be at least 1")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: the stack is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    flowcms = build_mod.find_flowcms(args.flowcms)
    python = build_mod.python_for(flowcms)
    out = (args.out or Path(tempfile.mkdtemp(prefix="flowcms-bench-publish-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    info = build_mod.machine_info(None, flowcms)
    info["loadavg_at_start"] = os.getloadavg()[0]
    info["pinning"] = "none: the build uses every core, as in production"
    print("FlowCMS publish benchmark (commit → first fresh 200 at the edge)")
    for k, v in info.items():
        print(f"  {k}: {v}")
    print(f"  sizes: {args.sizes}  edits: {args.edits}  purge_all edits: "
          f"{args.purge_all_edits if args.purge_all_edits is not None else 'default'}  sample: {args.sample}  "
          f"out: {out}", flush=True)
    results: dict[str, Any] = {"machine": info, "targets": TARGETS, "sizes": {}, "processes": [],
                               "args": {"sizes": args.sizes, "edits": args.edits,
                                        "purge_all_edits": args.purge_all_edits, "sample": args.sample,
                                        "conns": args.conns, "crawl": not args.no_crawl, "seed": args.seed,
                                        "quick": args.quick}}
    started: list[Server] = []
    t0 = time.perf_counter()
    try:
        for n in args.sizes:
            results["sizes"][str(n)] = measure_size(n, args, flowcms, python, out, started)
            (out / "publish.json").write_text(json.dumps(results, indent=2, default=str))
        results["report"] = print_report(results)
    finally:
        for srv in reversed(started):
            srv.stop()
        results["processes"] = [{"name": srv.name, "pid": srv.pid, "argv": srv.argv, "exit": srv.proc.returncode}
                                for srv in started]
        results["elapsed_s"] = time.perf_counter() - t0
        (out / "publish.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"results: {out / 'publish.json'} ({results['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
