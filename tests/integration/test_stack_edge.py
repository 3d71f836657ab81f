"""The edge child of ``flowcms up`` outlives the worker thread that was running when it started."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from pipeline.stack import _start_edge, _stop

TRIO_THREAD_IDLE_S = 10  # trio retires a worker thread after this long without a job


async def test_the_edge_survives_idle_worker_threads(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG follows the thread that forked: forked from a trio worker thread (as
    ``trio.lowlevel.open_process`` does), the edge got SIGTERM when that thread retired."""
    config = tmp_path / "edge.toml"
    config.write_text("")
    with trio.fail_after(30):
        process, url = await _start_edge("127.0.0.1", 0, "http://127.0.0.1:9", "token", config)
    try:
        assert url.startswith("http://127.0.0.1:")
        await trio.to_thread.run_sync(sum, [1, 2])  # a worker thread exists, then idles out
        await trio.sleep(TRIO_THREAD_IDLE_S + 2)
        assert process.returncode is None
    finally:
        with trio.fail_after(30):
            await _stop(process)
    assert process.returncode is not None
    assert sys.platform != "linux" or process.returncode == 0  # stopped by our SIGTERM, gracefully
