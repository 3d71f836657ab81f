"""Running a measured subprocess to its end within a time bound (shared by the benches)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


class Timeout(Exception):
    pass


def run(argv: list[str], *, timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None,
        check: bool = True) -> dict[str, Any]:
    """Run a process (in its own session) to its end within ``timeout``.

    Returns wall time, rusage from wait4 (peak RSS of the largest process of the tree,
    user/system CPU), the exit code and the output. The whole process group is killed
    on timeout or when the caller is interrupted.
    """
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=fo, stderr=fe,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            kill()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        stdout = fo.read().decode(errors="replace")
        stderr = fe.read().decode(errors="replace")
    if timed_out.is_set():
        raise Timeout(f"timed out after {timeout:.0f} s: {' '.join(argv)}")
    if check and proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(argv)}\n{stdout[-2000:]}\n{stderr[-4000:]}")
    return {"wall": wall, "rss_mb": usage.ru_maxrss / 1024, "rc": proc.returncode, "stdout": stdout,
            "stderr": stderr, "user": usage.ru_utime, "sys": usage.ru_stime,
            "cpu": usage.ru_utime + usage.ru_stime}


def cpu_and_memory() -> dict[str, Any]:
    """CPU model and total memory from /proc (empty where unreadable): machine fields for results."""
    info: dict[str, Any] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    return info
