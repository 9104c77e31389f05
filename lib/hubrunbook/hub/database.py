"""The hub database (sqlite): its schema revision, the installed JupyterHub's newest revision, consistent copies.

``copy_database`` uses SQLite's online backup API (``sqlite3.Connection.backup``): the copy is a consistent snapshot
even while the hub runs and writes, which a file copy is not (a copy taken mid-transaction can be torn). The copy is
written to a new 0600 file beside the destination and renamed over it, so the destination's name is never followed
when it is a symlink, and a reader never sees half a copy.
"""
from __future__ import annotations

import os
import re
import sqlite3
import stat
import tempfile
from pathlib import Path

from hubrunbook.core.errors import RunbookError


def alembic_head(pkg_dir: str | None) -> str | None:
    """The newest schema revision of the installed jupyterhub (the revision nobody names as down_revision)."""
    if not pkg_dir:
        return None
    revs, downs = set(), set()
    for f in (Path(pkg_dir) / "alembic" / "versions").glob("*.py"):
        text = f.read_text(errors="replace")
        if m := re.search(r"^revision\s*=\s*['\"]([0-9a-f]+)['\"]", text, re.M):
            revs.add(m.group(1))
        if m := re.search(r"^down_revision\s*=\s*['\"]([0-9a-f]+)['\"]", text, re.M):
            downs.add(m.group(1))
    heads = revs - downs
    return heads.pop() if len(heads) == 1 else None


def db_revision(path: Path) -> str | None:
    """alembic_version of the sqlite database at *path*, opened read-only; None when absent or unversioned."""
    if not path.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _check_private_dir(path: Path) -> None:
    """*path* is a real directory (not a symlink) owned by us and writable by nobody else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise RunbookError(f"{path} does not exist; create it (mode 0700) before copying a database into it") from None
    if not stat.S_ISDIR(st.st_mode):
        raise RunbookError(f"{path} is not a directory (a symlink or a file); a database copy is not written through it")
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise RunbookError(f"{path} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):o}: others could "
                           "swap the copy for a link; a database copy goes only into a directory only we can write")


def copy_database(src: Path, dst: Path, *, pages: int = -1) -> Path:
    """A consistent copy of the sqlite database *src* at *dst* (mode 0600), taken with SQLite's online backup API.

    Safe while the hub runs. By default the copy is one backup step (``pages=-1``): it holds a read lock for as long
    as copying the file takes (milliseconds for a hub's database; the hub's writes wait, within sqlite's busy
    timeout), and cannot be starved. In smaller steps the backup restarts whenever another connection writes between
    two steps, which a busy hub could make endless. *src* is opened read-only; *dst*'s directory must exist, be ours and writable only by us. The copy
    is made in a new 0600 file in that directory (created exclusively, never through a link), checked with
    ``PRAGMA integrity_check``, then renamed over *dst* (replacing a symlink named *dst*, never following it).
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise RunbookError(f"the hub database {src} does not exist; nothing to copy")
    _check_private_dir(dst.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)  # O_EXCL, 0600
    os.close(fd)
    try:
        source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=10)
        try:
            target = sqlite3.connect(tmp)
            try:
                source.backup(target, pages=pages)
                ok = target.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                target.close()
        finally:
            source.close()
        if ok != "ok":
            raise RunbookError(f"the copy of {src} fails SQLite's integrity check: {ok}")
        os.chmod(tmp, 0o600)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except sqlite3.Error as exc:
        raise RunbookError(f"copying {src} with SQLite's online backup failed: {exc}") from exc
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return dst



def service_records(path: Path) -> dict[str, dict]:
    """The services the hub's database holds (those of the config at the hub's last start), opened read-only:
    {name: {"command", "admin", "roles" ({role: scopes}), "token"}}, where ``token`` describes the newest of the
    service's API tokens (a managed service gets a new one at each hub start): ``created``, ``last_activity`` (set
    when the hub first accepted it) and ``scopes``. Never a token (stored hashed) nor a service's environment.
    {} when the database is absent, has no services, or stays locked for more than 2 s."""
    import json

    if not path.exists():
        return {}
    out = {}
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            for sid, name, admin, command in con.execute("SELECT id, name, admin, command FROM services").fetchall():
                roles = con.execute("SELECT r.name, r.scopes FROM roles r JOIN service_role_map m ON m.role_id = r.id "
                                    "WHERE m.service_id = ? ORDER BY r.name", (sid,)).fetchall()
                token = con.execute("SELECT created, last_activity, scopes FROM api_tokens WHERE service_id = ? "
                                    "ORDER BY id DESC LIMIT 1", (sid,)).fetchone()
                out[name] = {"command": json.loads(command or "null") or [], "admin": bool(admin),
                             "roles": {n: json.loads(sc or "[]") for n, sc in roles},
                             "token": None if token is None else {"created": token[0], "last_activity": token[1],
                                                                  "scopes": json.loads(token[2] or "[]")}}
        finally:
            con.close()
    except sqlite3.Error:
        return {}
    return out
