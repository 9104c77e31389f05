"""Checks of the hub's state: secret file modes, the database schema, free disk, and what the hub's log says."""
from __future__ import annotations

import os
import re
import stat

from hubrunbook.troubleshoot import facts, repairs
from hubrunbook.host import system
from hubrunbook.hub import database, envfile
from hubrunbook.troubleshoot.catalog import ERROR, WARNING, Check, Context, Finding, register
from hubrunbook.troubleshoot.logscan import hub_log_lines, match_log
from hubrunbook.troubleshoot.checks.common import _env


def check_secret_files(ctx: Context) -> list[Finding]:
    p = ctx.params
    out = []
    for path, fatal in ((p.layout.cookie_secret, True), (p.layout.hub_env, False)):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if fatal and mode & 0o007:
            out.append(SECRET_FILES.finding(ERROR, f"{path} can be read or written by anybody: the hub refuses to start",
                                            f"{path}: mode {mode:04o}", path=str(path)))
        elif mode & 0o077:
            out.append(SECRET_FILES.finding(WARNING, f"{path} (secrets) is readable by other users",
                                            f"{path}: mode {mode:04o}", path=str(path)))
    return out


def check_db_schema(ctx: Context) -> list[Finding]:
    env = _env(ctx)
    db = ctx.params.layout.hub_db
    have = database.db_revision(db)
    head = database.alembic_head(env.get("pkg_dir")) if "missing" not in env else None
    if have and head and have != head:
        return [DB_SCHEMA.finding(
            ERROR, f"the database schema {have} is not the schema {head} of jupyterhub {env['versions'].get('jupyterhub')}",
            f"{db}: alembic_version {have}; installed jupyterhub head revision {head}", db=str(db))]
    return []


def check_backup_age(ctx: Context) -> list[Finding]:
    """A warning when backup_max_age_hours is set and the newest backup archive is older, or missing."""
    from hubrunbook.backup.archive import backup_age_problem

    problem = backup_age_problem(ctx.params)
    return [BACKUP_AGE.finding(WARNING, *problem)] if problem else []


MIN_FREE_MB_HARD = 64


MIN_FREE_INODES = 1000


def check_disk_space(ctx: Context) -> list[Finding]:
    p = ctx.params
    where, free = system.free_mb(p.layout.state_dir)
    st = os.statvfs(where)
    inodes = st.f_favail if st.f_files else None
    evidence = f"{where}: {free} MiB free" + (f", {inodes} inodes free" if inodes is not None else "")
    if free < MIN_FREE_MB_HARD or (inodes is not None and inodes < MIN_FREE_INODES):
        return [DISK.finding(ERROR, f"almost no free space where the hub keeps its state ({free} MiB)", evidence)]
    if free < p.min_free_disk_mb:
        return [DISK.finding(WARNING, f"low free space where the hub keeps its state ({free} MiB < "
                                      f"{p.min_free_disk_mb} MiB)", evidence)]
    return []


def check_hub_log(ctx: Context) -> list[Finding]:
    """Known log messages in the hub's last run map to findings (warnings: the live checks say what still holds)."""
    p = ctx.params
    envfile.read_hub_env(p)  # registers the hub's secrets so that no log line shows them
    lines = ctx.fact("log_lines", lambda: hub_log_lines(p, ctx.log_tail_kb))
    out = []
    for msg, hits in match_log(lines):
        more = f" (seen {len(hits)} times in the last run; last shown)" if len(hits) > 1 else ""
        seen = f"the hub log says: {msg.title}" + _which_port(p, hits[-1])
        out.append(Finding(f"log:{msg.id}", WARNING, f"log: {msg.title}", seen,
                           hits[-1][:400] + more, msg.cause, msg.action, check=HUB_LOG.id))
    return out


def _which_port(params, line: str) -> str:
    """' (port N: the public port)' for an 'address already in use HOST:N' line, else ''."""
    m = re.search(r"address already in use \S*?:(\d+)", line)
    if not m:
        return ""
    port = int(m.group(1))
    names = {params.port: "the public port", params.proxy_api_port: "the proxy API port", params.hub_port: "hub_port"}
    return f" (port {port}: {names.get(port, 'not one of ours')})"


SECRET_FILES = register(Check(
    "secret-files", "a secret file is readable by others",
    "Refusing to run JupyterHub with invalid cookie_secret_file. … cookie_secret_file can be read or written by anybody",
    "the file was copied or created with a loose umask",
    "chmod 600 it (repaired with apply_fixes: our own files under <prefix>/secrets only)",
    check_secret_files, repairs.repair_secret_modes, stage="files"))


DB_SCHEMA = register(Check(
    "db-schema", "the hub database schema is older than the installed JupyterHub",
    "Found database schema version ff1860e38070 != f460b0348206. Backup your database and run `jupyterhub "
    "upgrade-db` to upgrade to the latest schema.",
    "JupyterHub was upgraded in the env, the database was not",
    "copy the database file aside, then `jupyterhub upgrade-db -f <config>` (repaired with apply_fixes: backup in "
    "<prefix>/state/backups/)", check_db_schema, repairs.repair_db_schema, stage="files"))


DISK = register(Check(
    "disk-space", "little free disk where the hub keeps its state",
    "sqlite3.OperationalError: database or disk is full",
    "logs, backups or users' files filled the filesystem holding <prefix>/state",
    "free space there (old logs, backups) or move the prefix; nothing is deleted automatically", check_disk_space, stage="files"))


BACKUP_AGE = register(Check(
    "backup-age", "the newest backup is too old, or there is none",
    "the newest backup is 30.2 h old (more than backup_max_age_hours 24)",
    "backup.ipynb has not run since (no timer runs it, or it failed), or backup_dir names another directory",
    "run backup.ipynb (`papermill runbooks/backup.ipynb` from a systemd timer or cron for regular backups); "
    "backup_max_age_hours: 0 turns this check off", check_backup_age, stage="files"))


HUB_LOG = register(Check(
    "hub-log", "known messages in the hub's log",
    "see logscan.LOG_MESSAGES", "each message has its own cause", "each message has its own action", check_hub_log, stage="log"))
