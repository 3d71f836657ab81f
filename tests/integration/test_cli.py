"""The flowcms command line, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.sites import git_commit, make_site, write_files

from pipeline.cli import main
from pipeline.store import Store

AS_OF = ["--as-of", "2026-06-01T00:00:00Z"]


def run(site: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--site", str(site), *args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_site(tmp_path / "site")


def test_cli_publish_builds_diff_rollback_gc(site: Path) -> None:
    code, out = run(site, "publish", *AS_OF)
    assert code == 0, out
    first = Store(site / ".flowcms").live()
    assert first
    assert f"live: {first}" in out

    code, out = run(site, "publish", *AS_OF)
    assert code == 0
    assert "nothing changed" in out

    write_files(site, {"blog/third.md": None})
    git_commit(site)
    code, out = run(site, "publish", *AS_OF)
    assert code == 0, out
    second = Store(site / ".flowcms").live()
    assert second != first
    assert re.search(r"\d+ added, \d+ changed, \d+ removed", out)

    code, out = run(site, "builds")
    assert code == 0
    assert first[:12] in out
    assert second
    assert second[:12] in out

    code, out = run(site, "diff", first[:8], second, "--json")
    assert code == 0
    diff = json.loads(out)
    assert {"/blog/third-post/", "/blog/third-post/index.json"} <= set(diff["removed"])
    assert "/blog/" in diff["changed"]
    assert set(diff["purge"]["paths"]) == set(diff["added"] + diff["changed"] + diff["removed"])
    assert "listing:type:blog" in diff["keys"]

    code, out = run(site, "rollback")
    assert code == 0
    assert Store(site / ".flowcms").live() == first
    code, out = run(site, "rollback", second[:10])
    assert code == 0
    assert Store(site / ".flowcms").live() == second

    code, out = run(site, "gc", "--keep", "1")
    assert code == 0
    assert "removed 1 builds" in out
    assert [b.id for b in Store(site / ".flowcms").list_builds()] == [second]

    code, out = run(site, "rollback", "nonexistent")
    assert code == 1


def test_cli_check_reports_every_problem_and_exits_1(site: Path) -> None:
    _code, _out = run(site, "publish", *AS_OF)
    live = Store(site / ".flowcms").live()
    write_files(site, {
        "blog/a.md": "---\ntitle: A\nauthor: nobody\n---\n",
        "blog/b.md": "---\ntitle: B\nauthor: ada\npublishedAt: yesterday\n---\n",
    })
    git_commit(site)
    for command in ("check", "publish"):
        result = CliRunner().invoke(main, ["--site", str(site), command])
        assert result.exit_code == 1
        lines = result.output.splitlines()  # CliRunner mixes stderr in
        assert "blog/a.md:3:1: unknown author 'nobody' (not in authors.yaml)" in lines
        assert any(line.startswith("blog/b.md:4:1: publishedAt: 'yesterday' is not an ISO 8601 date") for line in lines)
        assert "the live site was not touched" in result.output
    assert Store(site / ".flowcms").live() == live


def test_cli_init_creates_a_buildable_git_site(tmp_path: Path) -> None:
    target = tmp_path / "new"
    result = CliRunner().invoke(main, ["init", str(target)])
    assert result.exit_code == 0, result.output
    assert (target / ".git").is_dir()
    assert (target / "flowcms.toml").exists()
    code, out = run(target, "check")
    assert code == 0
    assert "no problems" in out
    again = CliRunner().invoke(main, ["init", str(target)])
    assert again.exit_code == 1
    assert "not empty" in again.output


def test_cli_bad_ref_and_bad_option(site: Path) -> None:
    code, out = run(site, "build", "--ref", "no-such-branch")
    assert code == 1
    assert "ref 'no-such-branch' not found" in out
    result = CliRunner().invoke(main, ["--site", str(site), "build", "--as-of", "soon"])
    assert result.exit_code == 2
    assert "ISO 8601" in result.output


def test_cli_up_builds_and_serves(tmp_path: Path) -> None:
    """`flowcms up` publishes the site and serves it; the URL it prints answers."""
    site = make_site(tmp_path / "site")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "--site", str(site), "up", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})
    try:
        deadline = time.monotonic() + 60
        body = b""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    body = r.read()
                    break
            except OSError:
                time.sleep(0.2)
        assert b"Third Post" in body
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/".encode() in out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
