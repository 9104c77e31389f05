"""restore.ipynb: put a verified backup archive back onto a prefix (the same one, or a fresh one on other ports).

Order: verify the whole archive (checksums, manifest, member names; verify.py) and its fit with the installed
JupyterHub (the database's schema must be the env's) before anything changes; keep a ``pre-restore`` archive of what
would be replaced; stop the hub (hub/service.py: the unit or the managed process); write the members with their
modes (secrets and state 0600 in 0700 directories, the config 0644), each through a new file renamed into place;
rewrite the config's managed lines that name the archive's prefix or ports for this prefix and ports (hand edits,
users, admins and the allow rule come from the archive); record the archive in ``state/restored.json``. The hub is
then started by the runbook's ``ensure_hub_running`` step and ``check_restored`` compares the running hub's users and
admins with the manifest.

The cookie secret and the database come back together, so login cookies issued before the backup stay valid.
System accounts are the machine's, not the archive's: on another machine configure.ipynb creates them
(``check_restored`` names the missing ones).
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from hubrunbook.backup.archive import (CONFIG_MEMBER, DB_MEMBER, archives, ensure_backup, hub_users, parts,
                                       sha256_file, sidecar)
from hubrunbook.backup.verify import ArchiveError, verify_archive
from hubrunbook.core.errors import PreflightError, RunbookError
from hubrunbook.core.steps import CHANGED, FAILED, OK, UNCHANGED, WOULD_CHANGE, StepResult
from hubrunbook.hub import database

# managed config lines that carry a port (the rest that must move name the prefix; found by value)
PORT_KEYS = ("c.JupyterHub.bind_url", "c.JupyterHub.hub_port", "c.ConfigurableHTTPProxy.api_url",
             "c.ConfigurableHTTPProxy.command")


def resolve_archive(params) -> Path:
    """restore_archive as a path: 'latest' is the newest backup archive in backup_path."""
    if not params.restore_archive:
        raise PreflightError("restore_archive is empty: name the archive to restore (a path to hubrunbook-backup-"
                             "<stamp>.tar.gz, or 'latest' for the newest in backup_dir)")
    if params.restore_archive == "latest":
        found = archives(params.backup_path)
        if not found:
            raise PreflightError(f"restore_archive is 'latest' but {params.backup_path} holds no backup archive; "
                                 "set backup_dir to where the archives are, or name the archive")
        return found[-1]
    return Path(params.restore_archive)


def _env_head(params) -> tuple[str | None, str | None]:
    """(jupyterhub version, newest schema revision) of the hub env on this prefix."""
    from hubrunbook.troubleshoot.facts import probe_env

    env = probe_env(params)
    if "missing" in env:
        raise PreflightError(f"no hub env on {params.prefix} ({env['missing']}): run install.ipynb first (with the "
                             "jupyterhub_version of the archive)")
    return env["versions"].get("jupyterhub"), database.alembic_head(env.get("pkg_dir"))


def _fit(params, manifest: dict) -> list[tuple[str, str, str]]:
    """Rows (what, result, detail); raise PreflightError when the archive's database does not fit the env."""
    version, head = _env_head(params)
    rev = manifest.get("schema_revision")
    if rev != head:
        raise PreflightError(
            f"the archive's database has schema {rev} (JupyterHub {manifest.get('jupyterhub')}), the hub env here "
            f"expects {head} (JupyterHub {version}): install JupyterHub {manifest.get('jupyterhub')} "
            "(jupyterhub_version), restore, then upgrade. Nothing was changed")
    return [("schema", "ok", f"{rev}, as JupyterHub {version} here expects"),
            ("versions", "ok", f"archived from hubrunbook {manifest.get('hubrunbook')}, JupyterHub {manifest.get('jupyterhub')}")]


def check_restore_archive(params) -> StepResult:
    """Verify the archive and that it fits this prefix's hub env; raise (nothing changed) when it does not. Read-only."""
    archive = resolve_archive(params)
    manifest = verify_archive(archive)
    rows = [("archive", "ok", f"{archive}: checksum, manifest, {len(manifest['files'])} members verified"),
            *_fit(params, manifest),
            ("source", "ok", f"{manifest['source'].get('prefix')}, taken {manifest['created']}")]
    users = ", ".join(f"{u['name']}{' (admin)' if u['admin'] else ''}" for u in manifest["users"]) or "none"
    return StepResult("check_restore_archive", OK, f"{archive.name} is intact and fits this hub env; hub users: {users}",
                      rows, ("check", "result", "detail"), data={"archive": str(archive)})


def _marker(params) -> dict:
    try:
        return json.loads(params.layout.restore_marker.read_text())
    except (OSError, ValueError):
        return {}


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """*data* at *path* with *mode*, through a new file in the same directory renamed over *path* (never following
    a link named *path*)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _mkdir(path: Path, mode: int) -> None:
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        raise RunbookError(f"{path} is not a directory; nothing restored into it")
    os.chmod(path, mode)


def _write_db(params, data: bytes) -> None:
    db = params.layout.hub_db
    for suffix in ("-journal", "-wal", "-shm"):  # the replaced database's: never applied to the restored one
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{db.name}.", suffix=".tmp", dir=db.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        con = sqlite3.connect(f"file:{tmp}?mode=ro", uri=True)
        try:
            ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            con.close()
        if ok != "ok":
            raise RunbookError(f"the archived database fails SQLite's integrity check: {ok}")
        os.replace(tmp, db)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _archived_values(text: str) -> dict[str, str]:
    """{key: source} of the managed (``# hubrunbook``) lines of a config text."""
    from hubrunbook.hub.config import MARK

    out = {}
    for line in text.splitlines():
        m = re.match(r"^(c\.\w+\.\w+) = (.*)$", line)
        if m and line.endswith(MARK):
            out[m.group(1)] = m.group(2).removesuffix(MARK)
    return out


def relocation(params, archived_config: str, source_prefix: str) -> dict[str, str]:
    """The managed settings to rewrite so the archive's config serves this prefix and these ports: those whose
    archived value names the archive's prefix, and those that carry a port. Users, admins, the allow rule, the
    notebook dir and hand edits stay as archived."""
    from hubrunbook.hub.config import configure_settings

    old = _archived_values(archived_config)
    want = configure_settings(params)
    return {k: v for k, v in want.items()
            if v is not None and k in old and old[k] != v and (k in PORT_KEYS or source_prefix in old[k])}


def ensure_restored(params, *, dry_run: bool = False) -> StepResult:
    """Restore the archive onto this prefix (see the module's docstring); unchanged when restored.json already names
    it. The archive is verified again, in the same reading that yields the bytes written."""
    from hubrunbook.hub.service import stop_managed_hub

    name = "ensure_restored"
    archive = resolve_archive(params)
    contents: dict[str, bytes] = {}
    manifest = verify_archive(archive, contents)
    digest = sidecar(archive).read_text().split()[0]
    if _marker(params).get("sha256") == digest and params.layout.hub_db.exists():
        return StepResult(name, UNCHANGED, f"{archive.name} was restored here on {_marker(params).get('restored')}")
    _fit(params, manifest)
    targets = {member: path for member, _, path, _ in parts(params)}
    rows = [(f["name"], str(targets[f["name"]]), f"{f['size']} bytes") for f in manifest["files"] if f["name"] in targets]
    notes = {f["name"]: (contents[f["name"]], f.get("mode", 0o600)) for f in manifest["files"] if f["name"] not in targets}
    header = ("member", "restored to", "what")
    if dry_run:
        more = f" and {len(notes)} notebook files" if notes else ""
        return StepResult(name, WOULD_CHANGE, f"would stop the hub and restore {len(rows)} files{more} from {archive.name}",
                          rows, header)
    done, kept = [], None
    if all(path.exists() for _, _, path, required in parts(params) if required):
        kept = ensure_backup(params, kind="pre-restore")
        done.append(f"kept what it replaces in {kept.data['archive']}")
    stopped = stop_managed_hub(params)
    if stopped.status == CHANGED:
        done.append(stopped.detail)
    count = len(rows)
    try:
        moved = _write_all(params, archive, manifest, contents, targets, notes, rows, name)
    except (RunbookError, OSError) as exc:
        back = (f"; what was there before is in {kept.data['archive']} (restore_archive)" if kept else "")
        raise RunbookError(f"restoring {archive.name} stopped part-way: {exc}{back}; the hub is stopped") from exc
    if moved:
        done.append(f"config moved to this prefix and ports ({len(moved)} settings)")
    from hubrunbook.core.secretref import write_private

    write_private(params.layout.restore_marker, json.dumps({
        "archive": str(archive), "sha256": digest, "restored": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": manifest["source"]}))
    return StepResult(name, CHANGED, f"restored {count} files from {archive.name}; " + "; ".join(done),
                      rows + [(k, str(params.config_path), f"moved here: {v}") for k, v in moved.items()], header)


def _write_all(params, archive, manifest, contents, targets, notes, rows, step) -> dict[str, str]:
    """Write the verified members (the hub is stopped); returns the config settings moved to this prefix."""
    from hubrunbook.hub import config, hubguard
    from hubrunbook.hub.capacity import ensure_retry_page

    params.layout.restore_marker.unlink(missing_ok=True)  # names the archive only once all of it is in place
    _mkdir(params.layout.state_dir, 0o700)
    _mkdir(params.layout.secrets_dir, 0o700)
    _mkdir(params.config_path.parent, 0o755)
    for member, data in contents.items():
        if member not in targets:
            continue
        if member == DB_MEMBER:
            _write_db(params, data)
        else:
            _write_file(targets[member], data, 0o644 if member == CONFIG_MEMBER else 0o600)
    moved = relocation(params, contents[CONFIG_MEMBER].decode(), manifest["source"]["prefix"])
    if moved:
        config.apply_settings(params, moved, step=step)
    ensure_retry_page(params)
    hubguard.ensure_hub_module(params)
    if notes:
        from hubrunbook.backup import notebooks

        for user, where, detail in notebooks.restore(params, notes):
            rows.append((f"notebooks/{user}/", where, detail))
    return moved


def check_restored(params) -> StepResult:
    """The running hub's database has the archive's users and admins, and the users hubrunbook created exist here
    with their recorded uid. Read-only."""
    from hubrunbook.host import users as sysusers
    from hubrunbook.hub.service import check_hub_health

    name = "check_restored"
    marker = _marker(params)
    if not marker:
        if params.dry_run:
            from hubrunbook.core.steps import SKIPPED

            return StepResult(name, SKIPPED, "dry run: nothing restored to check")
        return StepResult(name, FAILED, f"{params.layout.restore_marker} is missing: nothing was restored here")
    archive = Path(marker["archive"])
    manifest = verify_archive(archive) if archive.exists() else None
    rows, bad = [], []
    health = check_hub_health(params)
    rows.append(("hub", health.status, health.detail))
    bad += [health.detail] if health.failed else []
    now = {u["name"]: u["admin"] for u in hub_users(params.layout.hub_db)}
    if manifest is not None:
        want = {u["name"]: u["admin"] for u in manifest["users"]}
        missing = sorted(set(want) - set(now))
        demoted = sorted(n for n, a in want.items() if a and not now.get(n))
        rows.append(("hub users", "ok" if not missing else "failed",
                     f"{len(want) - len(missing)} of {len(want)} archived users present" + (f"; missing {missing}" if missing else "")))
        rows.append(("admins", "ok" if not demoted else "failed",
                     f"{sum(want.values())} archived admins" + (f"; no longer admin: {demoted}" if demoted else "")))
        bad += [f"missing hub users {missing}"] * bool(missing) + [f"admins lost {demoted}"] * bool(demoted)
    registry = sysusers.read_registry(params) if params.layout.user_registry.exists() else {}
    absent = sorted(n for n, entry in registry.items() if not sysusers.is_ours(entry, sysusers.lookup(n)))
    rows.append(("system accounts", "ok" if not absent else "failed",
                 f"{len(registry) - len(absent)} of {len(registry)} recorded accounts here"
                 + (f"; missing or another uid: {absent} (create them with configure.ipynb, users)" if absent else "")))
    bad += [f"system accounts {absent}"] * bool(absent)
    if bad:
        return StepResult(name, FAILED, "restored hub differs from the archive: " + "; ".join(bad), rows)
    return StepResult(name, OK, f"hub runs with the archive's {len(now)} users and their admin flags "
                                f"({archive.name})", rows)
