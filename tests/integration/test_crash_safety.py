"""SIGKILL of a publishing process at random instants never leaves a half-published site."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.sites import copy_sample, git_commit, write_files

from pipeline.index import open_index
from pipeline.store import Store, blob_hash

KILLS = 14


def assert_live_build_complete(store: Store) -> str | None:
    live = store.live()
    if live is None:
        return None
    manifest = store.manifest(live)  # parses: the manifest file is whole
    assert manifest
    for item in manifest.values():
        data = store.read(item.blob)
        assert len(data) == item.size
        assert blob_hash(data) == item.blob
    conn = open_index(store.build_dir(live) / "index.sqlite")
    conn.close()
    return live


def test_sigkill_at_random_points_leaves_the_live_build_complete(tmp_path: Path) -> None:
    site = copy_sample(tmp_path / "site")
    store = Store(site / ".flowcms")
    rng = random.Random(1234)
    cmd = [sys.executable, "-m", "pipeline.cli", "--site", str(site), "publish", "--full",
           "--as-of", "2026-11-20T00:00:00Z"]
    lives: set[str] = set()
    completed = 0
    for i in range(KILLS):
        path = site / "blog" / "lisbon-meetup.md"
        write_files(site, {"blog/lisbon-meetup.md": path.read_text() + f"\nEdit {i}.\n"})
        git_commit(site, f"edit {i}")
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.05, 1.2))
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
        if proc.returncode == 0:
            completed += 1
        else:
            assert proc.returncode == -signal.SIGKILL, err.decode()
        live = assert_live_build_complete(store)
        if live:
            lives.add(live)
    # the kills landed at different points: some publishes finished, most did not
    assert completed < KILLS
    # and after all that, a normal publish works and goes live
    done = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert assert_live_build_complete(store) is not None
