"""The users' notebook dirs in an archive (``backup_notebooks: true``): read and written by root inside directories
the users control, so without ever following what a user can plant.

Reading (backup): only the users hubrunbook created (users.json, same uid), only below their notebook dir, reached
from the home with ``O_DIRECTORY|O_NOFOLLOW`` relative to the parent's descriptor (host/homes.py); inside, every
entry is opened relative to its directory's descriptor with ``O_NOFOLLOW``, and only directories and regular files
*owned by the user* are taken. Symlinks, devices, FIFOs and sockets are skipped, and so is a file another account
owns (a hard link the user made to a file it may not read has its owner's uid, so root never copies it into an
archive). Everything skipped is named in the manifest (``skipped``).

Writing (restore): into the user's notebook dir (created 0700 when missing, homes.make_notebook_dir), directories
made with ``mkdir(dir_fd=…)`` and handed over with ``fchown``; files created with ``O_CREAT|O_EXCL|O_NOFOLLOW`` and
``fchown``ed to the user. A file that exists is never overwritten (the user's newer work wins; it is reported).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from hubrunbook.core.errors import PreflightError
from hubrunbook.core.params import check_username
from hubrunbook.host import homes
from hubrunbook.host.users import is_ours, lookup, notebook_dir_for, read_registry

PREFIX = "notebooks"
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def is_notebook_member(name: str) -> bool:
    """notebooks/<valid username>/<at least one part>"""
    parts = name.split("/")
    if len(parts) < 3 or parts[0] != PREFIX:
        return False
    try:
        check_username(parts[1])
    except ValueError:
        return False
    return True


def _open_dir(params, pw, user: str) -> int:
    """A descriptor of *user*'s notebook dir, reached from the home without following links."""
    home, nbdir = Path(pw.pw_dir), notebook_dir_for(params, user)
    fd = homes.open_root_dir(home.parent)
    where = home.parent
    try:
        for name in [home.name, *homes.parts_below(nbdir, home)]:
            where = where / name
            child = homes._open_child(fd, name, where)
            os.close(fd)
            fd = child
            if os.fstat(fd).st_uid not in (0, pw.pw_uid):
                raise PreflightError(f"{where} belongs to uid {os.fstat(fd).st_uid}, neither root nor {user}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _ours(params):
    registry = read_registry(params) if params.layout.user_registry.exists() else {}
    for user, entry in sorted(registry.items()):
        pw = lookup(user)
        yield user, (pw if pw is not None and is_ours(entry, pw) else None)


def collect(params) -> tuple[dict[str, tuple[bytes, int]], list[str]]:
    """({member: (bytes, mode)}, skipped) of the notebook dirs of the users hubrunbook created."""
    out: dict[str, tuple[bytes, int]] = {}
    skipped: list[str] = []
    for user, pw in _ours(params):
        if pw is None:
            skipped.append(f"{user}: no account with the recorded uid")
            continue
        try:
            fd = _open_dir(params, pw, user)
        except homes.MissingDir:
            continue  # never logged in: nothing to keep
        except PreflightError as exc:
            skipped.append(f"{user}: {exc}")
            continue
        try:
            _walk(fd, f"{PREFIX}/{user}", pw.pw_uid, out, skipped)
        finally:
            os.close(fd)
    return out, skipped


def _walk(fd: int, where: str, uid: int, out: dict, skipped: list[str]) -> None:
    for name in sorted(os.listdir(fd)):
        member = f"{where}/{name}"
        if not name.isprintable() or "\\" in name:
            skipped.append(f"{member!r}: unprintable name")
            continue
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            try:
                child = os.open(name, homes._DIR_FLAGS, dir_fd=fd)
            except OSError:
                skipped.append(f"{member}: changed while read (not followed)")
                continue
            try:
                if os.fstat(child).st_uid != uid:
                    skipped.append(f"{member}/: owned by uid {os.fstat(child).st_uid}, not the user")
                else:
                    _walk(child, member, uid, out, skipped)
            finally:
                os.close(child)
        elif stat.S_ISREG(st.st_mode):
            try:
                f = os.open(name, _FILE_FLAGS, dir_fd=fd)
            except OSError:
                skipped.append(f"{member}: changed while read (not followed)")
                continue
            with os.fdopen(f, "rb") as fh:
                fst = os.fstat(fh.fileno())
                if not stat.S_ISREG(fst.st_mode) or fst.st_uid != uid:
                    skipped.append(f"{member}: owned by uid {fst.st_uid}, not the user")
                    continue
                out[member] = (fh.read(), stat.S_IMODE(fst.st_mode) & 0o777)
        else:
            kind = "symlink" if stat.S_ISLNK(st.st_mode) else "special file"
            skipped.append(f"{member}: {kind}, not followed")


def restore(params, files: dict[str, tuple[bytes, int]]) -> list[tuple[str, str, str]]:
    """Write *files* ({member: (bytes, mode)}) into the users' notebook dirs; rows (user, notebook dir, what)."""
    by_user: dict[str, dict[str, tuple[bytes, int]]] = {}
    for member, item in files.items():
        _, user, rel = member.split("/", 2)
        by_user.setdefault(user, {})[rel] = item
    accounts = dict(_ours(params))
    rows = []
    for user, items in sorted(by_user.items()):
        pw = accounts.get(user)
        if pw is None:
            rows.append((user, "-", f"{len(items)} files not restored: no account hubrunbook created here "
                                    "(create it with configure.ipynb, then restore again)"))
            continue
        nbdir = notebook_dir_for(params, user)
        homes.make_notebook_dir(nbdir, Path(pw.pw_dir), pw.pw_uid, pw.pw_gid)
        fd = _open_dir(params, pw, user)
        written, kept = 0, []
        try:
            for rel, (data, mode) in sorted(items.items()):
                if _write(fd, rel, data, mode, pw, nbdir):
                    written += 1
                else:
                    kept.append(rel)
        finally:
            os.close(fd)
        rows.append((user, str(nbdir), f"{written} files" + (f"; {len(kept)} existing kept: {', '.join(kept[:5])}"
                                                             if kept else "")))
    return rows


def _write(top: int, rel: str, data: bytes, mode: int, pw, nbdir: Path) -> bool:
    """Create *rel* below the descriptor *top*; False when it exists (kept)."""
    *dirs, name = rel.split("/")
    fd = os.dup(top)
    where = nbdir
    try:
        for d in dirs:
            where = where / d
            try:
                child = homes._open_child(fd, d, where)
            except homes.MissingDir:
                child = homes._make_child(fd, d, where, pw.pw_uid, pw.pw_gid)
            os.close(fd)
            fd = child
            if os.fstat(fd).st_uid != pw.pw_uid:
                raise PreflightError(f"{where} is not {pw.pw_name}'s; nothing written into it")
        try:
            f = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
        except FileExistsError:
            return False
        with os.fdopen(f, "wb") as fh:
            os.fchown(fh.fileno(), pw.pw_uid, pw.pw_gid)
            fh.write(data)
            os.fchmod(fh.fileno(), mode & 0o777)
        return True
    finally:
        os.close(fd)
