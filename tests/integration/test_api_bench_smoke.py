"""Smoke test of the API benchmark (bench/api.py --quick): 1 s, 1 round, HTTP/1.1, two targets.

Publishes the bundled sample site into a temporary folder, starts the origin, edgeproxy with its
API gateway in front, and hypercorn serving a raw ASGI app, then measures the static page and the
REST list through the edge (cache hits, the list with API keys), the REST list at the origin (with
and without its answer cache), and the raw app. Never installs anything (``--no-install``):
without wrk the rows must say ``missing:`` instead of failing the run. Loopback only; the bench bounds every subprocess and
stops every process it started.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "api.py"
ROWS = [("edge-hit", "static"), ("edge-hit", "list"), ("origin-miss", "list"), ("origin-miss-uncached", "list"),
        ("raw-asgi", "asgi")]


def test_api_bench_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--no-install", "--out", str(out)],
                          capture_output=True, text=True, timeout=55, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Results (median of 1" in proc.stdout, proc.stdout[-3000:]
    table = proc.stdout.split("Results (median of", 1)[1]
    rows: dict[tuple[str, str], list[str]] = {}
    for line in table.splitlines():
        cols = line.split()
        if len(cols) >= 4 and (cols[0], cols[1]) in ROWS and cols[2] in ("h1", "h2c"):
            assert cols[2] == "h1", line  # --quick: HTTP/1.1 only
            rows[(cols[0], cols[1])] = cols
    assert set(rows) == set(ROWS), table
    # columns: row target proto tool bytes req/s min max p50 p99 mean srv-CPU gen-CPU other errors 429 ratio target
    results = json.loads((out / "api.json").read_text())
    if shutil.which("wrk") is None:
        for cols in rows.values():
            assert cols[3] == "missing:", cols
    else:
        for key, cols in rows.items():
            assert cols[3] == "wrk", cols
            assert int(cols[4]) > 0, cols  # the body's size
            assert float(cols[5]) > 0, cols
            assert cols[14] == "0", f"errors or a flag (!) in {key}: {cols}"
        assert rows[("edge-hit", "list")][15] == "0", "429s from the gateway"
        assert rows[("edge-hit", "static")][16:18] == ["1.00x", "(base)"]
        for key in (("edge-hit", "list"), ("origin-miss", "list"), ("origin-miss-uncached", "list")):
            ratio = rows[key][16]
            assert ratio.endswith("x"), rows[key]
            assert float(ratio[:-1]) > 0, rows[key]
            assert rows[key][17].startswith(">="), rows[key]
        # every edge run was answered from the cache, the API one through the gateway
        edge_runs = [r for r in results["runs"] if r["kind"] == "edge-hit"]
        assert len(edge_runs) == 2
        for run in edge_runs:
            assert run["origin_requests"] == 0, run
            assert run["gateway_limited"] == 0, run
        keyed = next(r for r in edge_runs if r["target"] == "list")
        assert keyed["keys"] == results["args"]["keys_per_run"]
        assert keyed["gateway_allowed"] >= keyed["requests"] > 0, keyed
        assert results["ratios"]["edge-hit list"]["h1"]["ratio"] > 0
        assert results["ratios"]["origin-miss list"]["h1"]["ratio"] > 0
        assert results["ratios"]["origin-miss-uncached list"]["h1"]["ratio"] > 0
    # the checks ran whether or not wrk is there: hits, with the gateway's rate-limit fields on the API row
    checks = results["checks"]
    assert checks["edge-hit static"]["from_cache"] is True, checks
    assert checks["edge-hit list"]["from_cache"] is True, checks
    assert all(checks["edge-hit list"]["ratelimit"].values()), checks
    # every request asks Accept-Encoding: gzip, deflate; the edge answers with its gzip copy, the origin uncoded
    assert checks["edge-hit static"]["content_encoding"] == checks["edge-hit list"]["content_encoding"] == "gzip"
    assert checks["origin-miss list"]["content_encoding"] is None, checks
    assert checks["edge-hit list"]["bytes"] < checks["origin-miss list"]["bytes"] // 2, checks
    assert checks["origin-miss list"]["status"] == 200, checks
    assert checks["origin-miss-uncached list"]["status"] == 200, checks
    assert checks["raw-asgi asgi"]["bytes"] == 2048, checks
    assert results["site"]["entry_id"]
    assert results["site"]["flow_key"]
    # every server the bench started is gone (a live /proc entry could only be a reused pid)
    names = {p["name"] for p in results["processes"]}
    assert {"origin", "origin-uncached", "edge", "raw"} <= names
    for process in results["processes"]:
        assert process["exit"] is not None, process
        argv = process["argv"][3:] if process["argv"][0] == "taskset" else process["argv"]
        cmdline = Path(f"/proc/{process['pid']}/cmdline")
        running = cmdline.read_bytes() if cmdline.exists() else b""
        assert running != b"\0".join(a.encode() for a in argv) + b"\0", f"{process} still runs"
