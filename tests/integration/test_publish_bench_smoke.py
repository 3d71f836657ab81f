"""Smoke test of the publish benchmark (bench/publish.py --quick): a 50-entry site, 3 edits per strategy.

``flowcms up`` runs for real (origin + edgeproxy + watcher) on 127.0.0.1; every commit must
be published and fresh at the edge, unchanged pages must stay HITs with the exact purge and
go cold with purge-everything, which must cost more origin requests; the stack must be gone
afterwards. No external tools are needed (the crawler is the bench's own Python client).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "publish.py"


def test_publish_bench_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=55, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Results: commit → first fresh 200 at the edge" in proc.stdout, proc.stdout[-3000:]
    table = proc.stdout.split("Results: commit", 1)[1]
    rows = {cols[1]: cols for line in table.splitlines() if len(cols := line.split()) > 10 and cols[0] == "50"}
    assert set(rows) == {"exact", "purge_all"}, table
    # size strategy edits fresh-p50 fresh-p99 trigger build (switch) purge 1st-byte rec-fresh HIT% origin ratio other
    for row in rows.values():
        assert row[2] == "3", row
        assert float(row[3]) > 0, row
        assert "failed" not in " ".join(row), row
    assert rows["exact"][11] == "100.0%", rows["exact"]
    assert rows["purge_all"][13].endswith("x"), rows["purge_all"]
    assert "Targets (issue)" in table

    results = json.loads((out / "publish.json").read_text())
    per = results["sizes"]["50"]
    edits = per["edits"]
    assert [e["strategy"] for e in edits] == ["exact"] * 3 + ["purge_all"] * 3
    for e in edits:
        assert e["status"] == "live everywhere", e
        assert e["fresh_client_s"] is not None, e
        assert e["fresh_client_s"] > 0, e
        for key in ("trigger_s", "build_s", "purge_s", "fresh_s", "to_switch_s", "first_byte_s"):
            assert e[key] is not None, (key, e)
        assert 0 < e["to_switch_s"] <= e["build_s"], e  # the pointer moves inside the build child
        assert e["fresh_s"] >= e["build_s"] + e["purge_s"], e
        assert e["changed"] >= 1, e
    exact, purge_all = per["summary"]["exact"], per["summary"]["purge_all"]
    assert exact["failed"] == purge_all["failed"] == 0
    # unchanged pages stay cached across exact publishes; purge-everything makes them all miss
    assert exact["sample"]["unchanged"] > 0
    assert exact["sample"]["hit_ratio"] == 1.0, exact["sample"]
    assert purge_all["sample"]["hit_ratio"] == 0.0, purge_all["sample"]
    assert exact["crawl"]["errors"] == purge_all["crawl"]["errors"] == 0
    # the same reader traffic costs the whole site per publish when everything is purged
    assert exact["origin_per_publish"] <= 5, exact
    assert purge_all["origin_per_publish"] >= per["site"]["html_pages"] * 0.9, purge_all
    assert per["purge_all_ratio"] > 10
    assert per["warm"]["requests"] == per["site"]["html_pages"]
    # the stack (and its edge) is gone: a live /proc entry with the same command line could only be a reused pid
    assert per["stack"]["exit"] is not None
    assert per["stack"]["edge_pids"], per["stack"]
    assert per["stack"]["edge_left"] == [], per["stack"]
    for process in results["processes"]:
        assert process["exit"] is not None, process
        cmdline = Path(f"/proc/{process['pid']}/cmdline")
        running = cmdline.read_bytes() if cmdline.exists() else b""
        assert running != b"\0".join(a.encode() for a in process["argv"]) + b"\0", f"{process} still runs"
    # the session's admin token stays out of the results
    token = re.search(r"admin token for this session: (\S+)", (out / "n50" / "flowcms-up.log").read_text())
    assert token is not None
    assert token.group(1) not in (out / "publish.json").read_text()
