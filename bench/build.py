#!/usr/bin/env python3
"""Build benchmark: FlowCMS against Hugo on the same generated corpus, in one run.

For every size N (``--sizes 1000,10000``) it generates a corpus (``bench/corpus.py``),
commits it to a fresh git repository and measures, ``--repeat`` times (median):

  cold           ``flowcms publish --full`` with a fresh state directory
  noop           ``flowcms publish`` again, nothing changed
  edit_body      one entry's body edited (committed), then ``flowcms publish``
  edit_tags      one entry's tags changed (committed), then ``flowcms publish``
  edit_template  one line of the site's override of entry.html changed, then publish

each as the wall time of the whole ``flowcms`` process, its peak RSS (``wait4``), the
entries/s (N / wall) and the rendered/reused counts printed by the CLI. Two more rows
separate interpreter start-up from build work: ``startup`` (``flowcms --version``) and
``inproc_edit`` (a one-entry edit built in-process: import time, ``build_site`` and
``publish`` timed apart). Hugo builds the same corpus (``bench/hugo_theme``) for the
same scenarios, cold into a fresh destination. Results: a table on stdout and
``results.json`` in ``--out``. Local only; every subprocess has a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import corpus as corpus_mod  # noqa: E402

SCENARIOS = ("cold", "noop", "edit_body", "edit_tags", "edit_template")
EXTRA_ROWS = ("startup", "inproc_edit")
TARGETS = {
    "cold_ratio": 1.0,  # 10k cold: FlowCMS wall ≤ 1.0× Hugo's
    "edit_body_s": 1.0,  # 10k one-entry edit ≤ 1.0 s
    "edit_body_goal_s": 0.2,  # ... the real goal
    "noop_s": 0.3,  # no-op rebuild ≤ 0.3 s
}
GIT_ENV = {
    "GIT_AUTHOR_NAME": "FlowCMS Bench", "GIT_AUTHOR_EMAIL": "bench@example.org",
    "GIT_COMMITTER_NAME": "FlowCMS Bench", "GIT_COMMITTER_EMAIL": "bench@example.org",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
}
BODY_EDIT = "\n\nEdited for the benchmark: one more paragraph with a [link](https://example.org/edit).\n"

# In-process measurement: import cost, build_site and publish timed apart; optional cProfile.
INPROC = r"""
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from pipeline.build import BuildOptions, build_site
from pipeline.publish import publish
from pipeline.source import open_source
from pipeline.store import Store
t1 = time.perf_counter()
site, state, as_of, full, workers, prof = sys.argv[1:7]
store = Store(Path(state))
opts = BuildOptions(full=full == "1", as_of=as_of, workers=int(workers) or None, ref="main")
profiler = None
if prof:
    import cProfile
    profiler = cProfile.Profile()
with store.lock():
    t2 = time.perf_counter()
    if profiler: profiler.enable()
    source = open_source(Path(site), None, "main")
    result = build_site(source, store, previous=None if full == "1" else store.live(), options=opts)
    t3 = time.perf_counter()
    publish(store, result.build_id, diff=result.diff)  # as the CLI does
    t4 = time.perf_counter()
    if profiler:
        profiler.disable()
        profiler.dump_stats(prof)
print("INPROC " + json.dumps({
    "import_s": t1 - t0, "build_s": t3 - t2, "publish_s": t4 - t3, "rendered": result.rendered,
    "reused": result.reused, "outputs": result.outputs, "reparsed": result.reparsed,
    "stages": result.stages,
}))
"""


# -- processes ---------------------------------------------------------------------------

from procs import Timeout, cpu_and_memory, run  # noqa: E402  (bench/ is on sys.path)


def git(repo: Path, *args: str, timeout: float = 600) -> str:
    return run(["git", *args], cwd=repo, timeout=timeout, env=GIT_ENV)["stdout"]


def commit_all(repo: Path, message: str, timeout: float) -> str:
    git(repo, "add", "-A", timeout=timeout)
    git(repo, "commit", "-q", "--no-verify", "-m", message, timeout=timeout)
    return git(repo, "rev-parse", "HEAD").strip()


def parse_flowcms(stdout: str) -> dict[str, Any]:
    """The result table of ``flowcms publish``: header line with 'rendered', then one row."""
    lines = [ln.split() for ln in stdout.splitlines() if ln.strip()]
    for i, cols in enumerate(lines):
        if "rendered" in cols and "reused" in cols and i + 1 < len(lines):
            row = lines[i + 1]
            if len(row) != len(cols):
                break
            data = dict(zip(cols, row, strict=True))
            out: dict[str, Any] = {"build": data.get("build")}
            for k in ("outputs", "rendered", "reused", "removed", "entries", "live"):
                out[k] = int(data[k]) if k in data else None
            out["build_s"] = float(data["seconds"]) if "seconds" in data else None
            out["nothing_changed"] = "nothing changed" in stdout
            return out
    raise ValueError(f"could not find the result table in flowcms output:\n{stdout[-2000:]}")


# -- tools ---------------------------------------------------------------------------------

def find_flowcms(explicit: str | None) -> str:
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "flowcms"
    if beside.exists():
        return str(beside)
    venv = REPO_ROOT / ".venv" / "bin" / "flowcms"
    if venv.exists():
        return str(venv)
    found = shutil.which("flowcms")
    if not found:
        sys.exit("flowcms not found: run `make install` (or pass --flowcms PATH)")
    return found


def python_for(flowcms: str) -> str:
    beside = Path(flowcms).parent / "python"
    return str(beside) if beside.exists() else sys.executable


def ensure_hugo() -> str | None:
    """Hugo on PATH, or installed with apt-get (the bench's setup step); None when impossible."""
    found = shutil.which("hugo")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        print("hugo: not on PATH and cannot apt-get install it here (needs root and apt-get); "
              "continuing without Hugo (as with --no-hugo).", file=sys.stderr)
        return None
    print("hugo: not on PATH; installing with `apt-get install -y hugo` …", file=sys.stderr, flush=True)
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        run([apt, "update", "-qq"], timeout=300, env=env)
        run([apt, "install", "-y", "-qq", "hugo"], timeout=900, env=env)
    except (RuntimeError, Timeout, OSError) as exc:
        print(f"hugo: apt-get install failed ({str(exc).splitlines()[0]}); "
              "continuing without Hugo (as with --no-hugo).", file=sys.stderr)
        return None
    found = shutil.which("hugo")
    if not found:
        print("hugo: apt-get reported success but hugo is still not on PATH; continuing without Hugo.",
              file=sys.stderr)
    return found


def machine_info(hugo: str | None, flowcms: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "platform": platform.platform(), "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
    }
    info.update(cpu_and_memory())
    try:
        info["flowcms_commit"] = git(REPO_ROOT, "rev-parse", "HEAD").strip()
        # uncommitted changes to the measured code (the bench's own files do not count)
        diff = git(REPO_ROOT, "diff", "HEAD", "--", "pipeline", "site_templates").encode()
        info["flowcms_dirty"] = bool(diff)
        if diff:
            import hashlib

            info["flowcms_diff_sha1"] = hashlib.sha1(diff, usedforsecurity=False).hexdigest()[:12]
    except (RuntimeError, Timeout, OSError):
        pass
    info["flowcms"] = flowcms
    with contextlib.suppress(RuntimeError, Timeout, OSError):  # the package actually measured
        info["pipeline_src"] = run([python_for(flowcms), "-c", "import pipeline; print(pipeline.__file__)"],
                                   timeout=60, cwd=Path(tempfile.gettempdir()))["stdout"].strip()
    info["git"] = run(["git", "--version"], timeout=30)["stdout"].strip()
    if hugo:
        info["hugo"] = run([hugo, "version"], timeout=60)["stdout"].strip()
    return info


def fs_type(path: Path) -> str:
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


# -- scenarios -------------------------------------------------------------------------

_TRASH: list[Path] = []


def settle() -> None:
    """Flush what earlier steps wrote before a timed run starts, so the kernel's
    writeback of the corpus or of the previous build is not billed to the next tool."""
    os.sync()


def discard(path: Path, out: Path) -> None:
    """Move an old output aside instead of deleting it: ext4 skips recently freed inodes
    when it allocates new ones (``recently_deleted``), so deleting 36k files right before
    a cold build makes that build pay for the deletion. The trash goes at the very end."""
    if not path.exists():
        return
    trash = out / "trash"
    trash.mkdir(exist_ok=True)
    target = trash / f"{len(_TRASH)}-{path.name}"
    path.rename(target)
    _TRASH.append(target)


def empty_trash() -> None:
    while _TRASH:
        shutil.rmtree(_TRASH.pop(), ignore_errors=True)


def pick_targets(c: corpus_mod.Corpus) -> dict[str, int]:
    """Indices of the entries the edits touch: live blog posts from the middle of the corpus."""
    live_blog = [i for i, e in enumerate(c.entries)
                 if e.live and e.ctype == "blog" and len(e.body) > 600]
    if len(live_blog) < 3:
        live_blog = [i for i, e in enumerate(c.entries) if e.live] * 3
    mid = len(live_blog) // 2
    return {"body": live_blog[mid], "tags": live_blog[mid // 2], "inproc": live_blog[(mid * 3) // 2]}


def tags_edit(c: corpus_mod.Corpus, e: corpus_mod.Entry) -> corpus_mod.Entry:
    """Swap the entry's first tag for another existing tag it does not carry."""
    other = next(t for t in c.tags[len(c.tags) // 3:] + c.tags if t not in e.tags)
    return replace(e, tags=(other, *e.tags[1:]))


def body_edit(e: corpus_mod.Entry) -> corpus_mod.Entry:
    return replace(e, body=e.body.rstrip("\n") + BODY_EDIT)


def measure_flowcms(c: corpus_mod.Corpus, site: Path, base: str, args: argparse.Namespace,
                    flowcms: str, timeout: float) -> dict[str, list[dict[str, Any]]]:
    targets = pick_targets(c)
    python = python_for(flowcms)
    env = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    common = ["--as-of", corpus_mod.AS_OF] + (["--workers", str(args.workers)] if args.workers else [])
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in (*SCENARIOS, *EXTRA_ROWS)}
    state = site / ".flowcms"

    def publish(name: str, *extra: str) -> None:
        settle()
        r = run([flowcms, "--site", str(site), "publish", *extra, *common], timeout=timeout, env=env)
        rec = {"wall": r["wall"], "rss_mb": r["rss_mb"], "cpu": r["user"] + r["sys"], **parse_flowcms(r["stdout"])}
        results[name].append(rec)
        print(f"  flowcms {name:<14} {rec['wall']:8.3f} s  rendered {rec['rendered']:>6}  "
              f"reused {rec['reused']:>6}  rss {rec['rss_mb']:7.1f} MB", flush=True)

    for rep in range(args.repeat):
        print(f" N={c.n} flowcms repeat {rep + 1}/{args.repeat}", flush=True)
        git(site, "reset", "-q", "--hard", base)
        discard(state, site.parent)
        settle()
        publish("cold", "--full")
        publish("noop")
        e = c.entries[targets["body"]]
        (site / e.path).write_text(corpus_mod.flowcms_text(body_edit(e)))
        commit_all(site, f"edit body of {e.path}", timeout)
        publish("edit_body")
        e = c.entries[targets["tags"]]
        (site / e.path).write_text(corpus_mod.flowcms_text(tags_edit(c, e)))
        commit_all(site, f"change tags of {e.path}", timeout)
        publish("edit_tags")
        tpl = site / "templates" / "entry.html"
        tpl.write_text(corpus_mod.edited_template(tpl.read_text(), "bench: template edit"))
        commit_all(site, "edit templates/entry.html", timeout)
        publish("edit_template")
        # the same kind of one-entry edit, built in-process: start-up vs build work
        e = c.entries[targets["inproc"]]
        (site / e.path).write_text(corpus_mod.flowcms_text(body_edit(e)))
        commit_all(site, f"edit body of {e.path}", timeout)
        r = run([python, "-c", INPROC, str(site), str(state), corpus_mod.AS_OF, "0",
                 str(args.workers or 0), ""], timeout=timeout, cwd=site)
        data = json.loads(next(ln for ln in r["stdout"].splitlines() if ln.startswith("INPROC "))[7:])
        rec = {"wall": r["wall"], "rss_mb": r["rss_mb"], "cpu": r["user"] + r["sys"], **data}
        results["inproc_edit"].append(rec)
        print(f"  flowcms inproc_edit    {rec['wall']:8.3f} s  (import {data['import_s']:.3f} s, "
              f"build_site {data['build_s']:.3f} s, publish {data['publish_s']:.3f} s, "
              f"rendered {data['rendered']})", flush=True)
        r = run([flowcms, "--version"], timeout=120, env=env)
        results["startup"].append({"wall": r["wall"], "rss_mb": r["rss_mb"], "cpu": r["user"] + r["sys"]})
    git(site, "reset", "-q", "--hard", base)
    return results


def measure_hugo(c: corpus_mod.Corpus, root: Path, hugo: str, args: argparse.Namespace,
                 timeout: float) -> dict[str, list[dict[str, Any]]]:
    targets = pick_targets(c)
    dest, cache = root.parent / "hugo-public", root.parent / "hugo-cache"
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in SCENARIOS}
    argv = [hugo, "--quiet", "--source", str(root), "--destination", str(dest), "--cacheDir", str(cache)]
    single = root / corpus_mod.HUGO_SINGLE
    original_single = (corpus_mod.HUGO_THEME_DIR / corpus_mod.HUGO_SINGLE).read_text()

    def build(name: str) -> None:
        settle()
        r = run(argv, timeout=timeout)
        rec = {"wall": r["wall"], "rss_mb": r["rss_mb"], "cpu": r["user"] + r["sys"]}
        results[name].append(rec)
        print(f"  hugo    {name:<14} {rec['wall']:8.3f} s  rss {rec['rss_mb']:7.1f} MB", flush=True)

    for rep in range(args.repeat):
        print(f" N={c.n} hugo repeat {rep + 1}/{args.repeat}", flush=True)
        for key in ("body", "tags"):  # back to the generated corpus
            e = c.entries[targets[key]]
            corpus_mod.hugo_entry_path(root, e).write_text(corpus_mod.hugo_text(e))
        single.write_text(original_single)
        for d in (dest, cache, root / "resources"):
            discard(d, root.parent)
        build("cold")
        if rep == 0:
            results["files"] = [{"count": sum(len(f) for _, _, f in os.walk(dest))}]  # type: ignore[dict-item]
        build("noop")
        e = c.entries[targets["body"]]
        corpus_mod.hugo_entry_path(root, e).write_text(corpus_mod.hugo_text(body_edit(e)))
        build("edit_body")
        e = c.entries[targets["tags"]]
        corpus_mod.hugo_entry_path(root, e).write_text(corpus_mod.hugo_text(tags_edit(c, e)))
        build("edit_tags")
        single.write_text(corpus_mod.edited_template(original_single, "bench: template edit"))
        build("edit_template")
    return results


def profile_flowcms(c: corpus_mod.Corpus, site: Path, base: str, args: argparse.Namespace,
                    flowcms: str, timeout: float, out: Path) -> dict[str, Any]:
    """cProfile of a cold build (one process: --workers 1) and of a one-entry edit."""
    import io
    import pstats

    python = python_for(flowcms)
    state = out / f"n{c.n}" / "profile-state"
    shutil.rmtree(state, ignore_errors=True)
    git(site, "reset", "-q", "--hard", base)
    report: dict[str, Any] = {}
    runs = [("cold", "1", "1"), ("edit_body", "0", str(args.workers or 0))]
    for name, full, workers in runs:
        if name == "edit_body":
            e = c.entries[pick_targets(c)["body"]]
            (site / e.path).write_text(corpus_mod.flowcms_text(body_edit(e)))
            commit_all(site, f"edit body of {e.path}", timeout)
        prof = out / f"profile-n{c.n}-{name}.prof"
        r = run([python, "-c", INPROC, str(site), str(state), corpus_mod.AS_OF, full, workers, str(prof)],
                timeout=timeout * 3, cwd=site)
        data = json.loads(next(ln for ln in r["stdout"].splitlines() if ln.startswith("INPROC "))[7:])
        texts = []
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(str(prof), stream=buf).sort_stats(key).print_stats(args.profile_top)
            texts.append(buf.getvalue())
        (out / f"profile-n{c.n}-{name}.txt").write_text("\n".join(texts))
        report[name] = {"build_s": data["build_s"], "publish_s": data["publish_s"],
                        "stages": data["stages"], "prof": str(prof)}
        print(f"\n== cProfile: N={c.n} {name} (workers={workers or 'default'}; profiled, so slower): "
              f"build_site {data['build_s']:.2f} s, publish {data['publish_s']:.2f} s, stages {data['stages']}")
        print(texts[0][:12000])
    git(site, "reset", "-q", "--hard", base)
    return report


# -- report ----------------------------------------------------------------------------

def summarise(runs: list[dict[str, Any]], n: int) -> dict[str, Any]:
    walls = [r["wall"] for r in runs]
    med = statistics.median(walls)
    s: dict[str, Any] = {
        "median_s": med, "min_s": min(walls), "max_s": max(walls), "runs_s": walls,
        "entries_per_s": n / med if med > 0 else None,
        "peak_rss_mb": max(r["rss_mb"] for r in runs),
        "cpu_s": statistics.median(r["cpu"] for r in runs),
    }
    last = runs[-1]
    for k in ("rendered", "reused", "outputs", "build_s", "nothing_changed", "import_s", "publish_s",
              "stages", "reparsed"):
        if k in last:
            s[k] = last[k]
    if "build_s" in runs[0] and runs[0]["build_s"] is not None:
        s["build_s_median"] = statistics.median(r["build_s"] for r in runs)
    return s


def fmt(v: Any, spec: str = ".3f") -> str:
    if v is None:
        return "-"
    return format(v, spec) if isinstance(v, float) else str(v)


def print_report(results: dict[str, Any]) -> str:
    lines: list[str] = []
    header = (f"{'size':>6}  {'tool':<8} {'scenario':<14} {'median s':>9} {'min s':>8} {'entries/s':>10} "
              f"{'peak RSS MB':>11} {'rendered':>8} {'reused':>7} {'in-build s':>10}  {'FlowCMS/Hugo':>12}")
    lines += ["", "Results (wall time of the whole process; median of --repeat runs)", header, "-" * len(header)]
    for size, per in results["sizes"].items():
        hugo = per.get("hugo") or {}
        for tool in ("flowcms", "hugo"):
            rows = per.get(tool) or {}
            for scenario in (*SCENARIOS, *EXTRA_ROWS):
                s = rows.get(scenario)
                if not s:
                    continue
                ratio = ""
                if tool == "flowcms" and scenario in hugo:
                    ratio = f"{s['median_s'] / hugo[scenario]['median_s']:.2f}x"
                in_build = s.get("build_s_median") if "build_s_median" in s else s.get("build_s")
                lines.append(
                    f"{size:>6}  {tool:<8} {scenario:<14} {s['median_s']:>9.3f} {s['min_s']:>8.3f} "
                    f"{fmt(s['entries_per_s'], '.0f'):>10} {s['peak_rss_mb']:>11.1f} {fmt(s.get('rendered')):>8} "
                    f"{fmt(s.get('reused')):>7} {fmt(in_build):>10}  {ratio:>12}")
        lines.append("")
    lines.append("in-build s: build_site's own time as printed by the CLI (inproc_edit: build_site + publish "
                 "timed in-process);\nthe rest of the wall time is interpreter start-up, imports, publish and output.")
    for size, per in results["sizes"].items():
        ip = (per.get("flowcms") or {}).get("inproc_edit")
        st = (per.get("flowcms") or {}).get("startup")
        if ip and st:
            lines.append(f"  N={size}: `flowcms --version` {st['median_s']:.3f} s; in-process one-entry edit: "
                         f"import {ip['import_s']:.3f} s + build_site {ip['build_s']:.3f} s + publish "
                         f"{ip['publish_s']:.3f} s; stages {ip.get('stages')}")
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
    per = results["sizes"][str(big)]
    fc, hg = per.get("flowcms") or {}, per.get("hugo") or {}
    out = []

    def status(ok: bool | None) -> str:
        return "n/a " if ok is None else ("ok  " if ok else "MISS")

    if "cold" in fc and "cold" in hg:
        ratio = fc["cold"]["median_s"] / hg["cold"]["median_s"]
        out.append(f"  {status(ratio <= TARGETS['cold_ratio'])} 10k cold ≤ 1.0x Hugo's wall time: "
                   f"{ratio:.2f}x ({fc['cold']['median_s']:.2f} s vs {hg['cold']['median_s']:.2f} s){note}")
    else:
        out.append(f"  {status(None)} 10k cold ≤ 1.0x Hugo's wall time: no Hugo run{note}")
    if "edit_body" in fc:
        v = fc["edit_body"]["median_s"]
        out.append(f"  {status(v <= TARGETS['edit_body_s'])} 10k one-entry edit ≤ 1.0 s (real goal 0.2 s: "
                   f"{'met' if v <= TARGETS['edit_body_goal_s'] else 'not met'}): {v:.3f} s{note}")
        if "edit_body" in hg:
            out.append(f"       one-entry edit vs Hugo: {v / hg['edit_body']['median_s']:.2f}x "
                       f"(Hugo {hg['edit_body']['median_s']:.3f} s)")
    for size in sizes:
        f = results["sizes"][str(size)].get("flowcms") or {}
        if "noop" in f:
            v = f["noop"]["median_s"]
            out.append(f"  {status(v <= TARGETS['noop_s'])} no-op rebuild ≤ 0.3 s at N={size}: {v:.3f} s "
                       f"(rendered {f['noop'].get('rendered')})")
    return out


# -- main ------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", help="comma-separated corpus sizes (default 1000,10000; --quick: 30)")
    p.add_argument("--repeat", type=int, help="runs per scenario, the median is reported (default 3; --quick: 1)")
    p.add_argument("--out", type=Path, help="output folder (default: a new temporary folder)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("--no-hugo", action="store_true", help="skip Hugo (no install, no ratios)")
    p.add_argument("--workers", type=int, help="pass --workers N to flowcms (default: its own, all cores)")
    p.add_argument("--seed", type=int, default=42, help="corpus generator seed")
    p.add_argument("--timeout", type=float, help="seconds per subprocess (default 120 + 0.12 s per entry)")
    p.add_argument("--profile", action="store_true",
                   help="also cProfile a cold build (--workers 1) and a one-entry edit at the largest size")
    p.add_argument("--profile-top", type=int, default=30, help="functions to print per profile")
    p.add_argument("--flowcms", help="path of the flowcms executable (default: the venv's)")
    p.add_argument("--keep", action="store_true", help="keep the generated sites (default: removed unless --out)")
    args = p.parse_args(argv)
    sizes = args.sizes or ("30" if args.quick else "1000,10000")
    args.sizes = [int(s) for s in sizes.split(",") if s.strip()]
    if any(n < 10 for n in args.sizes):
        p.error("sizes must be at least 10")
    args.repeat = args.repeat or (1 if args.quick else 3)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    flowcms = find_flowcms(args.flowcms)
    hugo = None if args.no_hugo else ensure_hugo()
    out = (args.out or Path(tempfile.mkdtemp(prefix="flowcms-bench-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    info = machine_info(hugo, flowcms)
    info["out_fs"] = fs_type(out)
    print("FlowCMS build benchmark")
    for k, v in info.items():
        print(f"  {k}: {v}")
    print(f"  sizes: {args.sizes}  repeat: {args.repeat}  hugo: {'yes' if hugo else 'no'}  out: {out}", flush=True)
    results: dict[str, Any] = {"machine": info, "args": {"sizes": args.sizes, "repeat": args.repeat,
                                                         "workers": args.workers, "seed": args.seed,
                                                         "quick": args.quick, "hugo": bool(hugo)},
                               "targets": TARGETS, "sizes": {}, "corpus": {}, "profile": {}}
    hugo_version = info.get("hugo")
    for n in args.sizes:
        timeout = args.timeout or (120 + 0.12 * n)
        base_dir = out / f"n{n}"
        discard(base_dir, out)
        site, hugo_site = base_dir / "flowcms-site", base_dir / "hugo-site"
        t = time.perf_counter()
        c = corpus_mod.generate(n, args.seed)
        corpus_mod.write_flowcms(c, site)
        git(site, "init", "-q", "-b", "main")
        base = commit_all(site, f"corpus: {n} entries", timeout)
        stats = c.stats()
        stats["generate_s"] = round(time.perf_counter() - t, 2)
        settle()
        results["corpus"][str(n)] = stats
        print(f"\nN={n}: corpus {stats} in {site}", flush=True)
        per: dict[str, Any] = {}
        fc = measure_flowcms(c, site, base, args, flowcms, timeout)
        per["flowcms"] = {k: summarise(v, n) for k, v in fc.items() if v}
        if hugo:
            corpus_mod.write_hugo(c, hugo_site, hugo_version)
            try:
                hg = measure_hugo(c, hugo_site, hugo, args, timeout)
                files = hg.pop("files", [{}])[0].get("count")
                per["hugo"] = {k: summarise(v, n) for k, v in hg.items() if v}
                per["hugo_files"] = files
            except (RuntimeError, Timeout) as exc:
                print(f"hugo failed at N={n}: {exc}", file=sys.stderr)
                per["hugo_error"] = str(exc)[:4000]
        results["sizes"][str(n)] = per
        (out / "results.json").write_text(json.dumps(results, indent=2))
        empty_trash()
        settle()
    if args.profile:
        n = max(args.sizes)
        base_dir = out / f"n{n}"
        site = base_dir / "flowcms-site"
        c = corpus_mod.generate(n, args.seed)
        base = git(site, "rev-list", "--max-parents=0", "HEAD").split()[0]
        results["profile"][str(n)] = profile_flowcms(c, site, base, args, flowcms,
                                                     args.timeout or (120 + 0.12 * n), out)
    results["report"] = print_report(results)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"results: {out / 'results.json'}")
    if not args.keep and args.out is None:
        for n in args.sizes:
            shutil.rmtree(out / f"n{n}", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
