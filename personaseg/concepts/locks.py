"""One learn (or import, replace, removal) of a concept at a time: lock files held by a process.

A lock is ``<store>/.locks/<name>.lock`` holding its holder's pid, taken with ``flock`` so the
kernel releases it when the process dies: a lock left by a killed run is stale by construction.
Where ``flock`` is missing (Windows, some network mounts) the pid alone decides.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import ConceptError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: lock files by exclusive creation
    fcntl = None

_held: dict[str, list] = {}  # lock file -> [fd, depth]: the locks this process holds (re-entrant)


@contextmanager
def hold(path: Path, name: str) -> Iterator[None]:
    """Hold the lock file ``path`` of concept ``name`` (with this pid in it): a second holder gets a
    :class:`ConceptError` at once. Re-entrant within a process; the file is removed on release."""
    key = str(path.resolve())
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    fd = _acquire(path, name)
    _held[key] = [fd, 1]
    try:
        yield
    finally:
        del _held[key]
        _release(path, fd)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's process, or a platform that cannot tell
        return True
    return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _acquire(path: Path, name: str) -> int:
    """Lock ``path`` for this process and write its pid there; ConceptError if another holds it."""
    while True:
        if fcntl is None:  # pragma: no cover - exclusive creation; a dead holder's file is stale
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = read_pid(path)
                if holder is not None and not pid_alive(holder):
                    path.unlink(missing_ok=True)
                    continue
                raise _busy(name, holder) from None
        else:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # another process removed the empty lock folder just now
                path.parent.mkdir(parents=True, exist_ok=True)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise _busy(name, read_pid(path)) from None
            except OSError:  # a file system without flock (some network mounts): the pid alone decides
                holder = read_pid(path)
                if holder is not None and holder != os.getpid() and pid_alive(holder):
                    os.close(fd)
                    raise _busy(name, holder) from None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed the file as we opened it: lock the new one
                os.close(fd)
                continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd


def _release(path: Path, fd: int) -> None:
    try:
        path.unlink(missing_ok=True)  # while still holding it: a waiter re-checks the inode
    finally:
        os.close(fd)


def _busy(name: str, holder: int | None) -> ConceptError:
    who = f"pid {holder}" if holder is not None else "another process"
    return ConceptError(
        f"<{name}> is being learned or written by another personaseg process ({who})",
        hint="one learn of a token at a time: wait for it to finish, or stop it and run again",
    )
