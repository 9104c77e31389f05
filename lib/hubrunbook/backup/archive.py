"""backup.ipynb: a timestamped, verified archive of what a hub cannot be rebuilt without.

An archive is ``hubrunbook-backup-<UTC stamp>.tar.gz`` (0600) in ``params.backup_path`` (0700), with a sidecar
``<archive>.sha256`` (the archive's own checksum, sha256sum format). Inside, ``manifest.json`` comes first: what each
member is, its size and sha256, the hubrunbook and JupyterHub versions, the database's schema revision, the hub's
users and admins. The members:

    hub/jupyterhub.sqlite          a consistent copy taken with SQLite's online backup while the hub runs
    config/jupyterhub_config.py    the hub's config (hand edits included)
    secrets/hub.env                the hub's environment: proxy token, OAuth client secrets
    secrets/cookie_secret          the cookie secret: sessions taken before the backup stay valid after a restore
    state/users.json               the registry of the system users hubrunbook created
    state/hub-users.json           the registry of the accounts the hub created on OAuth logins (when present)

    notebooks/<user>/...           with backup_notebooks: the users' files in their notebook dirs (backup/notebooks.py:
                                   only their own files, never through a link)

Not in it: the hub env, the proxy and Node.js (install.ipynb rebuilds them from the parameters), system accounts
and their passwords (the machine's; configure.ipynb creates them). Restore holds an archive's members in memory while
it verifies them: notebook dirs of many gigabytes belong in the machine's own backup.

Only ``ensure_backup`` writes archives; a run whose content equals the newest archive's writes none (unchanged).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import stat
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from hubrunbook.core.errors import PreflightError, RunbookError
from hubrunbook.core.layout import BACKUP_STAMP_FORMAT, backup_archive_name, backup_archive_stamp
from hubrunbook.core.steps import CHANGED, FAILED, OK, SKIPPED, UNCHANGED, WOULD_CHANGE, StepResult
from hubrunbook.hub import database

FORMAT = 1
MANIFEST = "manifest.json"
DB_MEMBER = "hub/jupyterhub.sqlite"
CONFIG_MEMBER = "config/jupyterhub_config.py"
SECRET_MEMBERS = ("secrets/hub.env", "secrets/cookie_secret")
CHUNK = 1 << 20


def parts(params) -> list[tuple[str, str, Path, bool]]:
    """(member, what, path on this prefix, required) for every file an archive holds, in archive order."""
    lay = params.layout
    return [
        (DB_MEMBER, "hub database (SQLite online backup)", lay.hub_db, True),
        (CONFIG_MEMBER, "hub config", params.config_path, True),
        ("secrets/hub.env", "hub environment (proxy token, OAuth secrets)", lay.hub_env, True),
        ("secrets/cookie_secret", "cookie secret", lay.cookie_secret, True),
        ("state/users.json", "registry of the system users hubrunbook created", lay.user_registry, False),
        ("state/hub-users.json", "registry of the accounts the hub created (OAuth)", lay.hub_user_registry, False),
    ]


def sidecar(archive: Path) -> Path:
    """The archive's checksum file: <archive>.sha256."""
    return archive.with_name(archive.name + ".sha256")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def archives(directory: Path, kind: str = "backup") -> list[Path]:
    """Our archives of *kind* in *directory* (regular files named by the layout), oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        stamp = backup_archive_stamp(name, kind)
        if stamp and stat.S_ISREG(os.lstat(directory / name).st_mode):
            found.append((stamp, directory / name))
    return [p for _, p in sorted(found)]


def archive_time(path: Path, kind: str = "backup") -> datetime | None:
    stamp = backup_archive_stamp(path.name, kind)
    try:
        return datetime.strptime(stamp, BACKUP_STAMP_FORMAT).replace(tzinfo=timezone.utc) if stamp else None
    except ValueError:
        return None


# --- the backup directory --------------------------------------------------------------------------------
def _private_dir(path: Path, *, create: bool) -> None:
    """*path* is a directory (not a link) owned by root, 0700; created so (with parents 0755 when missing) or
    refused when someone else could read or swap what is in it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.mkdir(path, 0o700)
        st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise PreflightError(f"the backup directory {path} is not a directory (a symlink or a file); set backup_dir "
                             "to a directory of its own")
    if st.st_uid != os.geteuid():
        raise PreflightError(f"the backup directory {path} belongs to uid {st.st_uid}, not to us: archives hold "
                             "secrets; set backup_dir to a directory of our own")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


# --- writing -------------------------------------------------------------------------------------
def _read_private(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise RunbookError(f"{path} is not a regular file; not archived")
        return f.read()


def hub_users(db: Path) -> list[dict]:
    """[{name, admin}] of the hub database at *db* (read-only), by name."""
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT name, admin FROM users ORDER BY name").fetchall()
    finally:
        con.close()
    return [{"name": n, "admin": bool(a)} for n, a in rows]


def _versions(params) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from hubrunbook.troubleshoot.facts import probe_env

    try:
        own = version("hubrunbook")
    except PackageNotFoundError:
        own = None
    env = probe_env(params)
    return {"hubrunbook": own, "jupyterhub": (env.get("versions") or {}).get("jupyterhub")}


def collect(params, work: Path) -> tuple[dict, dict[str, bytes | Path]]:
    """(manifest, {member: content}) of this prefix now; the database copied into *work* (0700)."""
    contents: dict[str, bytes | Path] = {}
    files, absent = [], []
    for member, what, path, required in parts(params):
        if not path.exists():
            if required:
                raise PreflightError(f"{path} ({what}) does not exist: there is no deployment to back up at "
                                     f"{params.prefix}; run configure.ipynb first")
            absent.append(member)
            continue
        if member == DB_MEMBER:
            data: bytes | Path = database.copy_database(path, work / "jupyterhub.sqlite")
            size, digest = data.stat().st_size, sha256_file(data)
        else:
            data = _read_private(path)
            size, digest = len(data), hashlib.sha256(data).hexdigest()
        contents[member] = data
        files.append({"name": member, "what": what, "size": size, "sha256": digest})
    skipped: list[str] = []
    if params.backup_notebooks:
        from hubrunbook.backup import notebooks

        found, skipped = notebooks.collect(params)
        for member, (data, mode) in found.items():
            contents[member] = data
            files.append({"name": member, "what": "notebook file", "size": len(data),
                          "sha256": hashlib.sha256(data).hexdigest(), "mode": mode})
    copy = contents[DB_MEMBER]
    manifest = {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **_versions(params),
        "schema_revision": database.db_revision(copy),
        "source": {"host": socket.gethostname(), "prefix": params.prefix, "config_file": str(params.config_path)},
        "users": hub_users(copy),
        "files": files,
        "absent": absent,
        "notebooks": params.backup_notebooks,
        "skipped": skipped,
    }
    return manifest, contents


def same_content(manifest: dict, other: dict | None) -> bool:
    """Both manifests list the same members with the same checksums."""
    key = lambda m: sorted((f["name"], f["sha256"]) for f in m.get("files", []))
    return other is not None and key(manifest) == key(other)


def _tarinfo(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = size, 0o600, int(mtime), 0, 0, "root", "root"
    return info


def write_archive(dest: Path, manifest: dict, contents: dict[str, bytes | Path]) -> str:
    """Write the archive to *dest* (0600, via a new file in its directory, renamed into place) and its sidecar;
    returns the archive's sha256."""
    now = time.time()
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)  # 0600, O_EXCL
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
                blob = json.dumps(manifest, indent=2, sort_keys=True).encode()
                tar.addfile(_tarinfo(MANIFEST, len(blob), now), io.BytesIO(blob))
                for entry in manifest["files"]:
                    data = contents[entry["name"]]
                    if isinstance(data, Path):
                        with open(data, "rb") as f:
                            tar.addfile(_tarinfo(entry["name"], entry["size"], now), f)
                    else:
                        tar.addfile(_tarinfo(entry["name"], len(data), now), io.BytesIO(data))
            raw.flush()
            os.fsync(raw.fileno())
        digest = sha256_file(Path(tmp))
        side = sidecar(dest)
        sfd, stmp = tempfile.mkstemp(prefix=f".{side.name}.", suffix=".tmp", dir=dest.parent)
        with os.fdopen(sfd, "w") as f:
            f.write(f"{digest}  {dest.name}\n")
        os.replace(tmp, dest)
        os.replace(stmp, side)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return digest


def read_manifest(archive: Path) -> dict | None:
    """The manifest of one of our archives, unverified (to compare contents); None when unreadable."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.next()
            if member is None or member.name != MANIFEST or not member.isfile():
                return None
            return json.loads(tar.extractfile(member).read())
    except (OSError, tarfile.TarError, ValueError):
        return None


def ensure_backup(params, *, dry_run: bool = False, kind: str = "backup") -> StepResult:
    """Archive the hub database (online backup, the hub may run), config, hub.env, cookie secret and the users
    registries into a new timestamped archive in backup_path, unless the newest archive already holds exactly this.

    ``data["archive"]`` is the archive that holds the current state (the new one, or the newest when unchanged;
    None in a dry run). Other runbooks (upgrade, uninstall) call this as their first step.
    """
    name = "ensure_backup"
    directory = params.backup_path
    required = [path for _, _, path, req in parts(params) if req and not path.exists()]
    if dry_run:
        if required:
            return StepResult(name, WOULD_CHANGE, f"nothing to back up yet: {', '.join(map(str, required))} absent",
                              data={"archive": None})
        return StepResult(name, WOULD_CHANGE, f"would write an archive of the hub database, config, hub.env, cookie "
                                              f"secret and users registries to {directory}", data={"archive": None})
    _private_dir(directory, create=True)
    work = Path(tempfile.mkdtemp(prefix=".backup-", dir=directory))  # 0700, beside the archives: same filesystem
    try:
        manifest, contents = collect(params, work)
        newest = archives(directory, kind)[-1:] or [None]
        if newest[0] is not None and same_content(manifest, read_manifest(newest[0])):
            return StepResult(name, UNCHANGED, f"the newest archive {newest[0]} holds exactly this state",
                              _rows(manifest), ("member", "size", "sha256"), data={"archive": str(newest[0])})
        stamp = datetime.now(timezone.utc).strftime(BACKUP_STAMP_FORMAT)
        dest = directory / backup_archive_name(stamp, kind)
        digest = write_archive(dest, manifest, contents)
    finally:
        for p in work.iterdir():
            p.unlink()
        work.rmdir()
    users = ", ".join(f"{u['name']}{' (admin)' if u['admin'] else ''}" for u in manifest["users"]) or "no users"
    return StepResult(name, CHANGED, f"wrote {dest} ({dest.stat().st_size} bytes, sha256 {digest[:12]}…; schema "
                                     f"{manifest['schema_revision']}; {users})",
                      _rows(manifest), ("member", "size", "sha256"), data={"archive": str(dest), "sha256": digest})


def _rows(manifest: dict) -> list[tuple]:
    rows = [(f["name"], f["size"], f["sha256"][:12] + "…") for f in manifest["files"] if f["what"] != "notebook file"]
    nb = [f for f in manifest["files"] if f["what"] == "notebook file"]
    if manifest.get("notebooks"):
        rows.append(("notebooks/", sum(f["size"] for f in nb), f"{len(nb)} files"))
    rows += [(s, "skipped", "") for s in manifest.get("skipped", [])]
    return rows


def ensure_retention(params, *, dry_run: bool = False) -> StepResult:
    """Keep the newest backup_keep archives in backup_path; delete older ones (and their .sha256). Only files named
    as our archives are considered; nothing else in the directory is touched."""
    name = "ensure_retention"
    directory = params.backup_path
    found = archives(directory)
    old = found[:-params.backup_keep] if len(found) > params.backup_keep else []
    before = archives(directory, "pre-restore")
    old += before[:-params.backup_keep] if len(before) > params.backup_keep else []
    if not old:
        return StepResult(name, UNCHANGED, f"{len(found)} archive(s) in {directory}, keeping up to {params.backup_keep}")
    if dry_run:
        return StepResult(name, WOULD_CHANGE, f"would delete {len(old)} archive(s) older than the newest "
                                              f"{params.backup_keep}: {', '.join(p.name for p in old)}")
    _private_dir(directory, create=False)
    for path in old:
        path.unlink()
        sidecar(path).unlink(missing_ok=True)
    return StepResult(name, CHANGED, f"deleted {len(old)} archive(s) older than the newest {params.backup_keep}: "
                                     f"{', '.join(p.name for p in old)}")


def backup_age_problem(params, now: datetime | None = None) -> tuple[str, str] | None:
    """(what is wrong, evidence) when backup_max_age_hours is set and the newest backup archive in backup_path is
    older, or there is none; None otherwise (and always when backup_max_age_hours is 0). Read-only."""
    limit = params.backup_max_age_hours
    if not limit:
        return None
    found = archives(params.backup_path)
    if not found:
        return (f"no backup archive in {params.backup_path}", f"{params.backup_path}: no hubrunbook-backup-*.tar.gz "
                                                               f"(backup_max_age_hours {limit})")
    taken = archive_time(found[-1])
    age = ((now or datetime.now(timezone.utc)) - taken).total_seconds() / 3600 if taken else None
    if age is None or age > limit:
        shown = f"{age:.1f} h" if age is not None else "of unknown age"
        return (f"the newest backup is {shown} old (more than backup_max_age_hours {limit})",
                f"{found[-1]}: taken {taken.isoformat(timespec='seconds') if taken else '?'}")
    return None


def check_backup(params) -> StepResult:
    """Verify the newest archive in backup_path as restore.ipynb would (checksums, manifest, member names). Read-only."""
    from hubrunbook.backup.verify import ArchiveError, verify_archive

    name = "check_backup"
    found = archives(params.backup_path)
    if not found:
        if params.dry_run:
            return StepResult(name, SKIPPED, f"dry run: no archive in {params.backup_path} to verify")
        return StepResult(name, FAILED, f"no archive in {params.backup_path}")
    try:
        manifest = verify_archive(found[-1])
    except ArchiveError as exc:
        return StepResult(name, FAILED, str(exc))
    if problem := backup_age_problem(params):
        return StepResult(name, FAILED, problem[0])
    return StepResult(name, OK, f"{found[-1].name}: checksums, manifest and member names verified; "
                                f"{len(manifest['files'])} members, {len(manifest['users'])} hub users",
                      [(u["name"], "admin" if u["admin"] else "user") for u in manifest["users"]], ("hub user", "role"))
