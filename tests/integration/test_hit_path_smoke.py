"""Smoke test of the hit-path benchmark: edgeproxy (and nginx proxy_cache when installed), 1 s, 1 round.

Never installs anything (``--no-install``): without wrk the bench measures HTTP/1.1 with its
built-in Python load generator, without h2load it skips the h2c rows, without nginx there is
no peer and no ratio. Loopback only; the bench bounds every subprocess and stops its servers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "hit_path.py"


def has_nginx() -> bool:
    return shutil.which("nginx") is not None or os.access("/usr/sbin/nginx", os.X_OK)


def test_hit_path_quick_run_measures_edgeproxy(tmp_path: Path) -> None:
    peers = ["edgeproxy", *(["nginx_cache"] if has_nginx() else [])]
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--no-install", "--only", ",".join(peers), "--out", str(out)],
        capture_output=True, text=True, timeout=55, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Results (median of 1" in proc.stdout, proc.stdout[-3000:]
    table = proc.stdout.split("Results (median of", 1)[1]
    rows = {}
    for line in table.splitlines():
        cols = line.split()
        if len(cols) >= 12 and cols[0] in peers:
            rows[(cols[0], cols[1])] = cols
    # columns: server proto tool req/s min max p99 mean srv-CPU gen-CPU other errors ratio
    h1 = rows.get(("edgeproxy", "h1"))
    assert h1 is not None, f"no edgeproxy h1 row in the table:\n{table}"
    assert h1[2] in ("wrk", "pyload")
    assert float(h1[3]) > 0, h1
    assert int(h1[-2]) == 0, f"errors against edgeproxy: {h1}"
    if "nginx_cache" in peers:
        assert float(rows[("nginx_cache", "h1")][3]) > 0
        assert h1[-1].endswith("x"), h1  # the ratio to nginx proxy_cache
        assert float(h1[-1][:-1]) > 0, h1
    if shutil.which("h2load"):
        h2 = rows.get(("edgeproxy", "h2c"))
        assert h2 is not None, table
        assert float(h2[3]) > 0, h2

    results = json.loads((out / "hit_path.json").read_text())
    summary = results["summary"]["edgeproxy"]["h1"]
    assert summary["rps_median"] > 0
    assert summary["requests"] > 0
    # the proxies answered from cache: the origin saw the warm-up requests only
    assert results["origin_requests"] is not None
    assert results["origin_requests"] <= 2 * len(peers)
    assert results["edgeproxy_hits"] >= summary["requests"]
    assert results["machine"]["cpu_count"] >= 1
    # every server the bench started is gone (a live /proc entry could only be a reused pid)
    assert {p["name"] for p in results["processes"]} == {"origin", *peers}
    for process in results["processes"]:
        assert process["exit"] is not None, process
        argv = process["argv"][3:] if process["argv"][0] == "taskset" else process["argv"]
        cmdline = Path(f"/proc/{process['pid']}/cmdline")
        running = cmdline.read_bytes() if cmdline.exists() else b""
        assert running != b"\0".join(a.encode() for a in argv) + b"\0", f"{process} still runs"
