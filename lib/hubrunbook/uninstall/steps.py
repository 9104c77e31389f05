"""uninstall.ipynb's steps: a final backup, the hub stopped and its unit removed, our users deleted, our files removed,
and a check that nothing of ours is left. What goes and what stays: plan.py. Every step is a dry run unless
confirm_uninstall is true (the notebook's Run passes that as dry_run), and idempotent: a second run finds nothing."""
from __future__ import annotations

import json
import os
from pathlib import Path

import psutil

from hubrunbook.core import secretref
from hubrunbook.core.layout import BACKUP_KINDS
from hubrunbook.core.errors import CommandError, PreflightError
from hubrunbook.core.shell import run_command
from hubrunbook.core.steps import CHANGED, FAILED, OK, SKIPPED, UNCHANGED, WOULD_CHANGE, StepResult
from hubrunbook.host import systemd
from hubrunbook.host.users import lookup
from hubrunbook.uninstall import fsremove
from hubrunbook.uninstall.plan import (HEADER, config_files, dir_parts, file_plan, global_proxy, processes_of,
                                       service_facts, service_rows, user_plan)


# --- final backup ----------------------------------------------------------------------------------------------------
def prepare_backup_dir(path: Path) -> None:
    """Create *path* 0700 (root's); refuse one another user could change or that is a symlink."""
    from hubrunbook.host.system import untrusted_reason

    why = untrusted_reason(path)
    if why:
        raise PreflightError(f"the final backup dir {path} is not root's alone: {why}; set uninstall_backup_dir (or backup_dir)")
    if path.is_symlink():
        raise PreflightError(f"the final backup dir {path} is a symlink: not followed; give the real directory")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)


def ensure_final_backup(params, *, dry_run: bool = False) -> StepResult:
    """Before anything goes: backup.ipynb's archive of the hub (database by SQLite's online backup while the hub
    runs, config, hub.env, cookie secret, users registries) into uninstall_backup_dir, outside the prefix; a
    ``hubrunbook-backup-*`` archive there, so restore.ipynb (backup_dir: that directory, restore_archive: latest)
    brings the hub back after a new install. With part users, the notebook dirs of the accounts hubrunbook created
    are in it too (backup_notebooks), since their homes go next. Skipped with uninstall_backup: false, or when the prefix holds no
    deployment at all; a deployment with only some of its files fails here, and nothing is removed."""
    from hubrunbook.backup.archive import ensure_backup, parts

    where = params.final_backup_dir
    if not params.uninstall_backup:
        return StepResult("ensure_final_backup", UNCHANGED, "no final backup: uninstall_backup is false")
    required = [path for _, _, path, req in parts(params) if req]
    if not any(path.exists() for path in required):
        return StepResult("ensure_final_backup", UNCHANGED, f"nothing to back up: no hub database, config or secrets "
                          f"under {params.layout.root} (never configured, or already removed)")
    if dry_run:
        return StepResult("ensure_final_backup", WOULD_CHANGE, f"would write a final backup (backup.ipynb's archive) "
                          f"into {where} (0700) before anything is removed")
    prepare_backup_dir(where)
    kept = keep_earlier_archives(params, where)
    # the homes of the accounts deleted next go for good: their notebook dirs go into the final backup with them
    notebooks = params.backup_notebooks or "users" in params.uninstall_parts
    result = ensure_backup(params.model_copy(update={"backup_dir": str(where), "backup_notebooks": notebooks}))
    if result.failed or not result.data.get("archive"):
        raise CommandError(f"the final backup failed ({result.detail}); nothing was removed. Fix it, or set "
                           "uninstall_backup: false to uninstall without one")
    archive = result.data["archive"]
    said = "written" if result.status == CHANGED else "already holds this state"
    also = f"; {len(kept)} earlier archive(s) of <prefix>/state/backups copied beside it" if kept else ""
    return StepResult("ensure_final_backup", CHANGED if result.status == CHANGED or kept else UNCHANGED,
                      f"final backup {archive} {said} (outside the prefix; restore.ipynb with backup_dir {where}){also}",
                      result.rows, result.header, data={"archive": archive})


def earlier_archives(params) -> list[Path]:
    """backup.ipynb's archives (and pre-restore ones) in <prefix>/state/backups: they go with the state dir. Read-only."""
    from hubrunbook.backup.archive import archives

    return [a for kind in BACKUP_KINDS for a in archives(params.layout.backups_dir, kind)]


def keep_earlier_archives(params, where: Path) -> list[Path]:
    """Copy the archives of <prefix>/state/backups (with their .sha256) into *where* (0600, never through a link)
    when the state dir is to go; those already there are left as they are. Returns the copies made."""
    from hubrunbook.backup.archive import sidecar

    if "state" not in params.uninstall_parts or where == params.layout.backups_dir:
        return []
    made = []
    for archive in earlier_archives(params):
        for src in (archive, sidecar(archive)):
            dest = where / src.name
            if dest.exists() or not src.exists():
                continue
            fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as fh:
                _copy_private(fh, dest)
            made.append(dest)
    return [m for m in made if m.name.endswith(".tar.gz")]


def _copy_private(fh, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        while chunk := fh.read(1 << 20):
            os.write(out, chunk)
        os.fsync(out)
    finally:
        os.close(out)
    os.replace(tmp, dest)


# --- service -------------------------------------------------------------------------------------------------------
def ensure_hub_removed(params, *, dry_run: bool = False) -> StepResult:
    """Stop our hub (the unit with systemctl, a managed process by its recorded, proven PIDs) and, where systemd is
    PID 1, stop, disable and remove the unit hubrunbook wrote for this prefix, then daemon-reload. Idempotent."""
    from hubrunbook.hub.service import stop_managed_hub

    if "service" not in params.uninstall_parts:
        return StepResult("ensure_hub_removed", UNCHANGED, "part service not chosen: the hub is left as it is")
    facts = service_facts(params)
    rows = [r for r in service_rows(facts) if r[2] != "nothing to stop"]
    todo = [r for r in rows if r[0] == "service"]
    if not todo:
        return StepResult("ensure_hub_removed", UNCHANGED, "no hub of this prefix running, no unit of ours", rows, HEADER)
    if dry_run:
        return StepResult("ensure_hub_removed", WOULD_CHANGE, "would " + "; ".join(f"{r[2]}: {r[1]}" for r in todo),
                          rows, HEADER)
    done = []
    name = facts["unit"]
    if facts["unit_ours"]:
        if systemd.state(params).get("ActiveState") not in ("inactive", "failed", None):
            systemd.systemctl("stop", name)
            done.append(f"stopped {name}")
        systemd.systemctl("disable", "--quiet", name)
        systemd.unit_path(params).unlink(missing_ok=True)
        systemd.systemctl("daemon-reload")
        run_command(["systemctl", "reset-failed", name], timeout=30, check=False, what="systemctl reset-failed")
        done.append(f"disabled and removed {systemd.unit_path(params)}, daemon-reload")
    stopped = stop_managed_hub(params.model_copy(update={"service": "process"}))  # the background hub, by proven PIDs
    if stopped.status == CHANGED:
        done.append(stopped.detail)
    alive = [f"{k} pid {facts[f'{k}_pid']}" for k in ("hub", "proxy") if _still_ours(params, k, facts[f"{k}_pid"])]
    if alive:
        raise CommandError(f"still running after stopping: {', '.join(alive)}; see the hub's log "
                           f"({params.layout.hub_log}) or journalctl -u {name}, stop it and run again")
    return StepResult("ensure_hub_removed", CHANGED, "; ".join(done) or "stopped", rows, HEADER)


def _still_ours(params, kind: str, pid: int | None) -> bool:
    """*pid* (our hub or proxy when the plan looked) is still our hub (`jupyterhub -f <our config>` as root) or our
    proxy (our node, our proxy script, our ports): a recycled PID of another process is not."""
    from hubrunbook.hub.proxy import unproven_reason
    from hubrunbook.hub.service import is_our_hub

    if not pid or not psutil.pid_exists(pid):
        return False
    if kind == "hub":
        return is_our_hub(params, pid)
    try:
        return unproven_reason(params, pid, on_api_port=False) is None
    except PreflightError:  # our node cannot even be named any more: what runs is not our proxy
        return False


# --- users ---------------------------------------------------------------------------------------------------------
def _forget(params, names: set[str]) -> None:
    """Drop *names* from users.json and hub-users.json (0600, atomic) and their generated password files."""
    from hubrunbook.host.users import password_file
    from hubrunbook.uninstall.plan import _read_users_file

    for path in (params.layout.user_registry, params.layout.hub_user_registry):
        users = _read_users_file(path)
        if names & set(users):
            kept = {n: e for n, e in users.items() if n not in names}
            secretref.write_private(path, json.dumps({"version": 1, "users": kept}, indent=2, sort_keys=True) + "\n")
    for name in names:
        password_file(params, name).unlink(missing_ok=True)


def ensure_users_removed(params, *, dry_run: bool = False) -> StepResult:
    """Delete the accounts hubrunbook created (users.json, hub-users.json: name and uid still as recorded), with their
    home only when it is the one made for them; leftover throwaway accounts too. Accounts that are not ours, or whose
    uid changed, are left alone. Refuses (nothing deleted) while an account to delete still runs processes."""
    from hubrunbook.host.throwaway import sweep_throwaway_accounts
    from hubrunbook.host.users import _tool

    if "users" not in params.uninstall_parts:
        return StepResult("ensure_users_removed", UNCHANGED, "part users not chosen: accounts are left as they are")
    plan = user_plan(params)
    todo = [u for u in plan if u["action"] == "delete"]
    rows = [(u["name"], UNCHANGED, u["why"]) for u in plan if u["action"] != "delete"]
    if dry_run:
        swept = sweep_throwaway_accounts(params, dry_run=True)
        rows = [(u["name"], WOULD_CHANGE, f"would userdel{' -r' if u['remove_home'] else ''}: {u['why']}") for u in todo] + rows
        n = len(todo) + sum(r[1] == WOULD_CHANGE for r in swept)
        return StepResult("ensure_users_removed", WOULD_CHANGE if n else UNCHANGED,
                          f"would delete {n} account(s) hubrunbook created" if n else "no account of ours to delete",
                          rows + swept, ("user", "result", "detail"))
    busy = {u["name"]: processes_of(u["uid"]) for u in todo}
    busy = {n: p for n, p in busy.items() if p}
    if busy:
        listed = "; ".join(f"{n}: pids {', '.join(map(str, p[:10]))}" for n, p in busy.items())
        raise CommandError(f"accounts to delete still run processes ({listed}); nothing was deleted. Those are the "
                           "users' own processes, not proven to be ours: stop them (or log the users out) and run again")
    for u in todo:
        args = [_tool("userdel"), *(["-r"] if u["remove_home"] else []), "--", u["name"]]
        proc = run_command(args, timeout=120, check=False, what=f"userdel {u['name']}")
        if lookup(u["name"]) is not None:
            raise CommandError(f"userdel {u['name']} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        home_left = u["remove_home"] and u["home"] and os.path.lexists(u["home"])
        if home_left:
            raise CommandError(f"userdel -r {u['name']} left its home {u['home']} ({proc.stderr.strip()})")
        rows.insert(0, (u["name"], CHANGED, "deleted" + (f" with its home {u['home']}" if u["remove_home"] else
                                                         f"; its home {u['home']} kept")))
    _forget(params, {u["name"] for u in plan if u["action"] in ("delete", "gone")})
    swept = sweep_throwaway_accounts(params)
    n = len(todo) + sum(r[1] == CHANGED for r in swept)
    if not n:
        return StepResult("ensure_users_removed", UNCHANGED, "no account of ours left to delete", rows + swept,
                          ("user", "result", "detail"))
    return StepResult("ensure_users_removed", CHANGED, f"deleted {n} account(s) hubrunbook created", rows + swept,
                      ("user", "result", "detail"))


# --- files ---------------------------------------------------------------------------------------------------------
def _remove_global_proxy(params, rec: dict) -> str:
    from hubrunbook.hub.node import node_env, npm_command
    from hubrunbook.hub.proxy import PKG

    run_command([*npm_command(params), "uninstall", "-g", "--no-fund", "--no-audit", "--loglevel=error", PKG],
                timeout=300, env=node_env(params), what=f"npm uninstall -g {PKG}")
    if Path(rec["package_dir"]).exists():
        raise CommandError(f"npm uninstall -g {PKG} left {rec['package_dir']}")
    params.layout.proxy_global_record.unlink(missing_ok=True)
    return f"npm uninstall -g {PKG} ({rec['package_dir']})"


def _remove_config(prefix: fsremove.Prefix, params) -> int:
    """Remove the config files (config.py, the 429 page, their .bak-* copies and temp leftovers) and their
    directories when nothing else is left in them."""
    count = 0
    files = config_files(params)
    for d in sorted({p.parent for p in files}, key=lambda p: len(p.parts), reverse=True):
        mine = [p for p in files if p.parent == d]
        opened = fsremove.walk_to(prefix, d / "x")
        if opened is None:
            continue
        fd, _ = opened
        try:
            for name in os.listdir(fd):
                if any(name == p.name or name.startswith(f".{p.name}.") for p in mine) or name.startswith(".candidate-") \
                        or any(name.startswith(f"{p.name}.bak-") for p in mine):
                    count += fsremove.remove_entry(fd, name, d / name, prefix.dev)
        finally:
            os.close(fd)
        count += _rmdir_if_empty(prefix, d)
    return count


def _rmdir_if_empty(prefix: fsremove.Prefix, d: Path) -> int:
    if d == prefix.path:
        return 0
    opened = fsremove.walk_to(prefix, d)
    if opened is None:
        return 0
    fd, name = opened
    try:
        os.rmdir(name, dir_fd=fd)
        return 1
    except OSError:
        return 0  # not empty: what is left is not ours
    finally:
        os.close(fd)


def ensure_files_removed(params, *, dry_run: bool = False) -> StepResult:
    """Remove the chosen parts under the prefix (never following a symlink: fsremove.py), the recorded global proxy,
    and the prefix itself when nothing is left in it. Entries hubrunbook does not make stay, listed. Idempotent."""
    go, keep = file_plan(params)
    todo = [r for r in go if r[2] not in ("absent",)]
    if not todo:
        return StepResult("ensure_files_removed", UNCHANGED, f"nothing of ours left under {params.layout.root}",
                          go + keep, HEADER)
    if dry_run:
        return StepResult("ensure_files_removed", WOULD_CHANGE, f"would remove {len(todo)} item(s); {len(keep)} kept",
                          go + keep, HEADER)
    parts, done = set(params.uninstall_parts), []
    rec = global_proxy(params) if "proxy" in parts else None
    if rec:
        done.append(_remove_global_proxy(params, rec))
    count = 0
    with fsremove.Prefix(params.layout.root) as prefix:
        if prefix.exists:
            if "config" in parts:
                count += _remove_config(prefix, params)
            for name, part in dir_parts(params).items():  # state last: it holds the users registry
                if part in parts:
                    count += fsremove.remove_entry(prefix.fd, name, prefix.path / name, prefix.dev)
            left = os.listdir(prefix.fd)
            if not left:
                os.rmdir(prefix.path.name, dir_fd=prefix.parent_fd)
                done.append(f"removed {prefix.path}")
    done.insert(0, f"removed {count} entries")
    _, keep = file_plan(params)
    return StepResult("ensure_files_removed", CHANGED, "; ".join(done) + (f"; {len(keep)} kept" if keep else ""),
                      todo + keep, HEADER)


# --- verification ----------------------------------------------------------------------------------------------------
def check_uninstalled(params, plan: StepResult, *, dry_run: bool = False) -> StepResult:
    """Nothing of what the plan listed is left: no file, process, unit or account of ours (for the chosen parts);
    what was kept is still there. Read-only; skipped in a dry run."""
    if dry_run:
        return StepResult("check_uninstalled", SKIPPED, "dry run: nothing was removed, so nothing to verify")
    inv, rows = plan.data, []
    facts = inv["service"]
    if "service" in inv["parts"]:
        for k in ("hub", "proxy"):
            pid = facts[f"{k}_pid"]
            if pid:
                rows.append((f"{k} pid {pid}", FAILED if _still_ours(params, k, pid) else OK, "stopped"))
        if facts["unit_ours"]:
            gone = not os.path.lexists(facts["unit_path"])
            rows.append((facts["unit_path"], OK if gone else FAILED, "removed" if gone else "still there"))
    for u in inv["users"]:
        if u["action"] != "delete":
            continue
        pw = lookup(u["name"])
        rows.append((f"user {u['name']}", FAILED if pw and pw.pw_uid == u["uid"] else OK,
                     "still exists" if pw and pw.pw_uid == u["uid"] else "deleted"))
        if u["remove_home"]:
            rows.append((u["home"], FAILED if os.path.lexists(u["home"]) else OK, "home removed"))
    for part, what, action in inv["go"]:
        if part != "kept" and action != "absent":
            rows.append((what, FAILED if os.path.lexists(what) else OK, "removed"))
    for _, what, why in inv["keep"]:
        if Path(what).parent == params.layout.root or params.layout.root in Path(what).parents:  # listed from the prefix
            rows.append((what, OK if os.path.lexists(what) else FAILED, f"kept ({why})"))
    bad = [r for r in rows if r[1] == FAILED]
    if bad:
        return StepResult("check_uninstalled", FAILED, f"{len(bad)} of {len(rows)} checks failed: "
                          + "; ".join(f"{r[0]} {r[2]}" for r in bad), rows, ("what", "result", "detail"))
    return StepResult("check_uninstalled", OK, f"nothing of ours left for parts {', '.join(inv['parts'])}; "
                      f"{len(inv['keep'])} kept", rows, ("what", "result", "detail"))
