"""Noticing that the published branch moved (or, for a plain folder, that a file changed).

Linux inotify where available (through libc, no dependency): git moves a branch by
renaming ``refs/heads/<branch>.lock`` onto the ref, or rewrites ``packed-refs``, so a watch
on those directories wakes us the moment a commit lands — no polling. Elsewhere, a cheap
check (the ref's resolved commit, or the folder's newest mtime) every ``POLL_S``.

``changes()`` yields each new state once; bursts (a rebase writing many refs) are
coalesced by ``DEBOUNCE_S``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio

POLL_S = 0.5
DEBOUNCE_S = 0.05
_IN_MODIFY, _IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x2, 0x8, 0x80, 0x100, 0x200
_IN_NONBLOCK, _IN_CLOEXEC = 0o4000, 0o2000000
_EVENT = struct.Struct("iIII")


class _Inotify:
    def __init__(self, dirs: list[Path]) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd = fd
        mask = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
        for d in dirs:
            if libc.inotify_add_watch(fd, os.fsencode(d), mask) < 0:
                os.close(fd)
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {d} failed")

    async def wait(self) -> None:
        """Until something happened in a watched directory (events are drained, not parsed)."""
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.fd)
                continue
            if len(data) >= _EVENT.size:
                return

    def close(self) -> None:
        os.close(self.fd)


def git_dir(site: Path) -> Path | None:
    dot_git = site / ".git"
    if dot_git.is_dir():
        return dot_git
    if (site / "HEAD").is_file() and (site / "refs").is_dir():
        return site  # a bare repository
    return None


def branch_state(repo: Path, branch: str) -> str | None:
    """The branch's commit id (loose ref first, then packed-refs), or None."""
    loose = repo / "refs" / "heads" / branch
    try:
        return loose.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        pass
    try:
        for line in (repo / "packed-refs").read_text().splitlines():
            if line.endswith(f" refs/heads/{branch}"):
                return line.split(" ", 1)[0]
    except FileNotFoundError:
        pass
    return None


def folder_state(site: Path) -> str:
    """A cheap fingerprint of a plain content folder: file count and newest mtime."""
    newest, count = 0, 0
    for root, dirs, files in os.walk(site):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime_ns)
            except FileNotFoundError:
                continue
            count += 1
    return f"{count}:{newest}"


def current_state(site: Path, branch: str) -> str | None:
    """What ``changes`` compares: the branch's commit id, or the folder's stamp."""
    repo = git_dir(site)
    return branch_state(repo, branch) if repo is not None else folder_state(site)


async def changes(site: Path, branch: str, *, since: str | None = None) -> AsyncIterator[str]:
    """Each new state of what ``flowcms publish`` would build (a commit id, or a folder stamp).

    ``since``: the state already published. Without it the first reading is the baseline, and
    a commit that lands between the caller's start and that reading is never reported (the
    stack said it was ready, a test committed at once, nothing was published); with it, the
    first reading is compared too.
    """
    repo = git_dir(site)
    state: Callable[[], str | None]
    watch_dirs: list[Path] = []
    if repo is not None:
        state = lambda: branch_state(repo, branch)  # noqa: E731
        heads = repo / "refs" / "heads"
        watch_dirs = [repo, heads, *(p for p in heads.glob("**/") if p != heads)]
    else:
        state = lambda: folder_state(site)  # noqa: E731
    notifier = None
    if watch_dirs:
        try:
            notifier = _Inotify(watch_dirs)
        except (OSError, AttributeError):
            notifier = None  # not Linux, or out of watches: poll
    last = since if since is not None else await trio.to_thread.run_sync(state)
    look_now = since is not None  # a change before the watches were set: no event will tell
    try:
        while True:
            if look_now:
                look_now = False
            elif notifier is not None:
                await notifier.wait()
                await trio.sleep(DEBOUNCE_S)
            else:
                await trio.sleep(POLL_S)
            now = await trio.to_thread.run_sync(state)
            if now != last and now is not None:
                last = now
                yield now
    finally:
        if notifier is not None:
            notifier.close()
