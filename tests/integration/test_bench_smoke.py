"""Smoke test of the build benchmark: a tiny corpus, no Hugo, one run of every scenario."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "build.py"
SCENARIOS = ("cold", "noop", "edit_body", "edit_tags", "edit_template")


def test_bench_quick_run_prints_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--no-hugo", "--sizes", "30", "--out", str(out)],
        capture_output=True, text=True, timeout=55, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = proc.stdout.split("Results (wall time", 1)[1]
    rows = {}
    for line in table.splitlines():
        cols = line.split()
        if len(cols) >= 9 and cols[0] == "30" and cols[1] == "flowcms":
            rows[cols[2]] = cols
    for scenario in (*SCENARIOS, "startup", "inproc_edit"):
        assert scenario in rows, f"{scenario} missing from the table:\n{table}"
    # columns: size tool scenario median min entries/s rss rendered reused ...
    assert rows["noop"][7] == "0", rows["noop"]
    assert int(rows["cold"][7]) > 0
    assert rows["cold"][8] == "0"
    assert "Targets (issue)" in table

    results = json.loads((out / "results.json").read_text())
    flowcms = results["sizes"]["30"]["flowcms"]
    assert set(SCENARIOS) <= set(flowcms)
    assert flowcms["noop"]["rendered"] == 0
    assert flowcms["noop"]["reused"] == flowcms["cold"]["rendered"]
    assert 0 < flowcms["edit_body"]["rendered"] < flowcms["cold"]["rendered"]
    assert "hugo" not in results["sizes"]["30"]
    assert results["machine"]["cpu_count"] >= 1
