"""Smoke test of the edge benchmark (bench/edge.py --quick): 1 s, 1 round, the 1 KiB body and its 304, small RSS.

Never installs anything (``--no-install``): peers whose server is not installed (nginx,
Varnish) must show up as "missing" rows instead of failing the run; without wrk the bench
measures HTTP/1.1 with its built-in Python load generator, without h2load it skips the h2c
rows. Loopback only; the bench bounds every subprocess and stops its servers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "edge.py"
PEERS = ["edgeproxy", "nginx_cache", "varnish"]  # hypercorn is left out: it is slow to start and to drive


def installed(tool: str) -> bool:
    return shutil.which(tool) is not None or os.access(f"/usr/sbin/{tool}", os.X_OK)


def test_edge_bench_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--no-install", "--only", ",".join(PEERS), "--out", str(out)],
        capture_output=True, text=True, timeout=55, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Results (median of 1" in proc.stdout, proc.stdout[-3000:]
    table = proc.stdout.split("Results (median of", 1)[1]
    rows: dict[tuple[str, str, str], list[str]] = {}
    for line in table.splitlines():
        cols = line.split()
        if len(cols) >= 4 and cols[0] in PEERS and cols[1] in ("h1", "h2c") and cols[2] in ("1k", "20k", "304"):
            rows[(cols[0], cols[1], cols[2])] = cols
    # columns: server proto body tool req/s min max p50 p99 mean srv-CPU gen-CPU other errors vs-nginx vs-varnish
    protocols = ["h1", *(["h2c"] if installed("h2load") else [])]
    assert {b for (_, _, b) in rows} == {"1k", "304"}, table  # --quick: the 1 KiB body and its revalidation
    for proto in protocols:
        for body in ("1k", "304"):
            row = rows.get(("edgeproxy", proto, body))
            assert row is not None, f"no edgeproxy {proto} {body} row:\n{table}"
            assert row[3] in ("wrk", "pyload", "h2load"), row
            assert float(row[4]) > 0, row
            assert row[13] == "0", f"errors or a flag (!) against edgeproxy: {row}"
    for peer, tool in (("nginx_cache", "nginx"), ("varnish", "varnishd")):
        row = rows.get((peer, "h1", "1k"))
        assert row is not None, f"no {peer} row (a figure or 'missing'):\n{table}"
        if installed(tool):
            assert float(row[4]) > 0, row
            assert row[13] == "0", row
        else:
            assert row[3] == "missing:", row
    ep = rows[("edgeproxy", "h1", "1k")]
    if installed("nginx"):
        assert ep[14].endswith("x"), ep  # the ratio to nginx proxy_cache
        assert float(ep[14][:-1]) > 0, ep
    if installed("varnishd"):
        assert ep[15].endswith("x"), ep
        assert float(ep[15][:-1]) > 0, ep

    results = json.loads((out / "edge.json").read_text())
    summary = results["summary"]["edgeproxy"]["h1"]["1k"]
    assert summary["rps_median"] > 0
    assert summary["requests"] > 0
    # the caches answered every measured request, the 304s included, without the origin
    assert results["checks"]["edgeproxy"]["1k"]["from_cache"] is True
    assert results["checks"]["edgeproxy"]["304"]["status"] == 304
    assert results["checks"]["edgeproxy"]["304"]["from_cache"] is True
    for run in results["runs"]:
        assert run["origin_requests"] == 0, run
    assert results["edgeproxy_hits"] >= summary["requests"]
    assert results["machine"]["cpu_count"] >= 1
    # RSS: a fresh edgeproxy filled with distinct objects, another holding idle connections
    objects = results["rss"]["objects"]["edgeproxy"]
    assert objects["objects"] >= 0.98 * results["args"]["rss_objects"], objects
    assert objects["rss_after_kib"] > objects["rss_before_kib"] > 0
    idle = results["rss"]["connections"]["edgeproxy"]
    assert idle["connections"] == results["args"]["rss_connections"]
    assert idle["closed_by_server_before_measuring"] == 0, idle
    assert idle["stats"]["connections_open"] >= idle["connections"], idle
    # every server the bench started is gone (a live /proc entry could only be a reused pid)
    names = {p["name"] for p in results["processes"]}
    assert {"origin", "edgeproxy", "edgeproxy_rss_objects", "edgeproxy_rss_connections"} <= names
    for process in results["processes"]:
        assert process["exit"] is not None, process
        argv = process["argv"][3:] if process["argv"][0] == "taskset" else process["argv"]
        cmdline = Path(f"/proc/{process['pid']}/cmdline")
        running = cmdline.read_bytes() if cmdline.exists() else b""
        assert running != b"\0".join(a.encode() for a in argv) + b"\0", f"{process} still runs"
