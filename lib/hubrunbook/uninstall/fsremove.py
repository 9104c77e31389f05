"""Removing files under the prefix without ever following a symlink.

Everything is reached through directory descriptors: the prefix is opened with ``O_NOFOLLOW`` below a parent that only
root controls (``system.untrusted_reason``), each directory below it is opened relative to its parent's descriptor
with ``O_DIRECTORY|O_NOFOLLOW`` and checked to be the entry that was looked at (``samestat``), and files and symlinks
are unlinked by name relative to that descriptor. A symlink is removed as a link; what it points to is never touched.
A directory on another filesystem (a mount point inside the prefix) is refused, never emptied.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from hubrunbook.core.errors import PreflightError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Prefix:
    """The prefix opened for removal: ``fd`` (the prefix) and ``parent_fd`` (its parent). A context manager."""

    def __init__(self, path: Path):
        from hubrunbook.host.system import untrusted_reason

        self.path = Path(path)
        why = untrusted_reason(self.path.parent)
        if why:
            raise PreflightError(f"{self.path.parent} (the prefix's parent) is not root's alone: {why}. Nothing is "
                                 "removed below a directory another user could change")
        self.parent_fd = os.open(self.path.parent, _DIR_FLAGS & ~os.O_NOFOLLOW)
        self.fd = None
        try:
            st = os.stat(self.path.name, dir_fd=self.parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        except BaseException:
            self.close()
            raise
        if not stat.S_ISDIR(st.st_mode):
            self.close()
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise PreflightError(f"the prefix {self.path} is {kind}: not followed, nothing removed. Give the real "
                                 "directory as prefix")
        self.fd = open_dir(self.parent_fd, self.path.name, self.path, st)
        self.dev = st.st_dev

    @property
    def exists(self) -> bool:
        return self.fd is not None

    def close(self) -> None:
        for fd in (self.fd, self.parent_fd):
            if fd is not None:
                os.close(fd)
        self.fd = self.parent_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_dir(dir_fd: int, name: str, where: Path, st: os.stat_result | None = None) -> int:
    """Open the directory *name* below *dir_fd* without following a symlink; PreflightError when it was swapped."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise PreflightError(f"{where} is not a directory (a symlink?): not followed") from None
        raise
    if st is not None and not os.path.samestat(st, os.fstat(fd)):
        os.close(fd)
        raise PreflightError(f"{where} was replaced while it was opened: not followed; run again")
    return fd


def entry(dir_fd: int, name: str) -> os.stat_result | None:
    """lstat of *name* below *dir_fd*, or None when absent."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def kind(st: os.stat_result | None) -> str:
    if st is None:
        return "absent"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return "dir" if stat.S_ISDIR(st.st_mode) else "file"


def remove_entry(dir_fd: int, name: str, where: Path, dev: int) -> int:
    """Remove *name* below *dir_fd*: a file or symlink is unlinked (a link's target is never touched), a directory
    emptied the same way and removed. Returns the number of entries removed; 0 when it was absent."""
    st = entry(dir_fd, name)
    if st is None:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return 1
    if st.st_dev != dev:
        raise PreflightError(f"{where} is a mount point (another filesystem): not emptied. Unmount it and run again")
    fd = open_dir(dir_fd, name, where, st)
    count = 0
    try:
        for child in os.listdir(fd):
            count += remove_entry(fd, child, where / child, dev)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
    return count + 1


def walk_to(prefix: Prefix, path: Path) -> tuple[int, str] | None:
    """(descriptor of the directory holding *path*, its name) for a path inside the prefix, opened component by
    component without following symlinks; None when a directory on the way is absent. The caller closes the fd."""
    parts = path.relative_to(prefix.path).parts
    fd = os.dup(prefix.fd)
    where = prefix.path
    try:
        for name in parts[:-1]:
            where = where / name
            st = entry(fd, name)
            if st is None:
                os.close(fd)
                return None
            if not stat.S_ISDIR(st.st_mode):
                raise PreflightError(f"{where} is {kind(st)}, not a directory: not followed")
            child = open_dir(fd, name, where, st)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


def mounts_below(path: Path) -> list[str]:
    """Mount points strictly inside *path* (from /proc/self/mountinfo). Read-only."""
    base = str(path).rstrip("/") + "/"
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].encode().decode("unicode_escape")
            if point.startswith(base):
                found.append(point)
    return found
