"""One run at a time per prefix: an exclusive lock held for the whole run of a runbook.

The lock lives outside the prefix (``/run/lock/hubrunbook-<hash of the prefix>.lock``), so a dry run creates
nothing under the prefix; it is a kernel lock (flock) on an open file, released when the run's process ends,
even by kill -9. A second run fails at once and names the process that holds it.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from hubrunbook.core.errors import RunbookError

LOCK_DIR = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
_held: dict[str, int] = {}  # prefix -> fd held by this process (several Run objects in one kernel share it)


class LockedError(RunbookError):
    """Another run holds the prefix."""

    next_action = "wait for the other run to finish (or end it, if it is yours) and run again; nothing was changed"


def lock_path(prefix: str) -> Path:
    return LOCK_DIR / f"hubrunbook-{hashlib.sha256(prefix.encode()).hexdigest()[:16]}.lock"


def acquire(prefix: str, runbook: str) -> Path:
    """Hold the lock of *prefix* for the rest of this process; raise LockedError naming the holder's PID."""
    if prefix in _held:
        return lock_path(prefix)
    path = lock_path(prefix)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LockedError(f"another hubrunbook run holds {prefix} ({holder}; lock {path}). One run at a time per "
                          "prefix: wait for it to finish, nothing was changed") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}, runbook {runbook}".encode())
    _held[prefix] = fd
    return path


def release(prefix: str) -> None:
    """Give the lock of *prefix* back (the end of a run); a no-op when this process does not hold it."""
    fd = _held.pop(prefix, None)
    if fd is not None:
        os.close(fd)
