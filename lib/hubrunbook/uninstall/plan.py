"""What uninstall.ipynb would remove, and what it leaves: found read-only, validated before anything changes.

Ours, and removed (each part only when ``uninstall_parts`` names it):

- service: the hub, stopped through hub/service.py (the unit with systemctl; a managed process by its recorded,
  proven PIDs), and the unit file when its first line says hubrunbook wrote it for this prefix (then disabled,
  removed, daemon-reload);
- users: accounts in ``state/users.json`` (configure.ipynb) and ``state/hub-users.json`` (made by the hub on OAuth
  logins) whose name AND uid still match the record, with their home only when it is the home recorded at creation
  (the one useradd made) and still a directory of theirs; leftover throwaway accounts of the checks;
- hub_env, user_env (userenv/, userenv-kernels/, python/), proxy, nodejs, secrets, state: those directories of the prefix, whole (hub_env and proxy with an
  upgrade's ``.new``/``.prev`` beside them); with proxy, also the package in
  npm's global prefix when ``state/proxy-global.json`` says install.ipynb put it there;
- config: the config file when it lies inside the prefix, its ``.bak-*`` copies, the 429 page; their directories
  when nothing else is left in them;
- the prefix itself, when nothing is left in it.

Never removed: anything outside the prefix but the unit file, our users (and their homes) and the recorded global
package; a config file outside the prefix; entries of the prefix hubrunbook does not make (listed as kept).
"""
from __future__ import annotations

import json
import pwd
import stat
from pathlib import Path

import psutil

from hubrunbook.core.errors import PreflightError
from hubrunbook.core.steps import OK, StepResult
from hubrunbook.host import systemd
from hubrunbook.host.users import lookup

HEADER = ("part", "what", "action")
UNIT_MARK = "# Written by hubrunbook"


def dir_parts(params) -> dict[str, str]:
    """{name: part} of the prefix's own top-level directories, from the layout (an upgrade's env.new/env.prev and
    proxy.new/proxy.prev go with hub_env and proxy; the user env, its kernels and uv's Python with user_env;
    kubernetes.ipynb's kubernetes/ with config); in removal order, state last. etc and templates: only what config names (config_files)."""
    lay = params.layout
    return {path.name: part for path, part in (
        (lay.env_dir, "hub_env"), (lay.env_new_dir, "hub_env"), (lay.env_prev_dir, "hub_env"),
        (lay.userenv_dir, "user_env"), (lay.user_kernels_dir, "user_env"), (lay.user_python_dir, "user_env"),
        (lay.proxy_dir, "proxy"), (lay.proxy_new_dir, "proxy"), (lay.proxy_prev_dir, "proxy"),
        (lay.nodejs_dir, "nodejs"), (lay.k8s_dir, "config"), (lay.secrets_dir, "secrets"), (lay.state_dir, "state"))}


def dry(params, dry_run: bool) -> bool:
    """Whether this run only lists: a dry run, or confirm_uninstall not set."""
    return dry_run or not params.confirm_uninstall


# --- service -----------------------------------------------------------------------------------------------------
def unit_is_ours(params, text: str | None) -> bool:
    """The unit file's first line is the one hubrunbook writes for this prefix (systemd.render_unit)."""
    first = (text or "").splitlines()[:1]
    return bool(first) and first[0].startswith(UNIT_MARK) and f" for the prefix {params.prefix};" in first[0]


def read_unit(params) -> str | None:
    """The unit file's text (never through a symlink), or None when absent or a symlink. Read-only."""
    path = systemd.unit_path(params)
    try:
        if stat.S_ISLNK(path.lstat().st_mode):
            return None
        return path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None


def service_facts(params) -> dict:
    """The unit (where systemd is PID 1), our running hub and proxy. Read-only."""
    from hubrunbook.host.process import read_pid
    from hubrunbook.hub.service import _our_proxy, background_hub_pid, managed_hub_pid

    facts = {"booted": systemd.booted(), "unit": systemd.unit(params), "unit_path": str(systemd.unit_path(params)),
             "unit_file": False, "unit_ours": False, "hub_pid": None, "proxy_pid": None}
    if facts["booted"]:
        text = read_unit(params)
        facts["unit_file"] = text is not None or systemd.unit_path(params).is_symlink()
        facts["unit_ours"] = unit_is_ours(params, text)
    try:
        facts["hub_pid"] = managed_hub_pid(params) if facts["unit_ours"] else background_hub_pid(params)
    except PreflightError:
        facts["hub_pid"] = background_hub_pid(params)
    facts["proxy_pid"] = _our_proxy(params, read_pid(params.layout.proxy_pid_file))
    return facts


def service_rows(facts: dict) -> list[tuple[str, str, str]]:
    rows = []
    if facts["hub_pid"] or facts["proxy_pid"]:
        what = ", ".join(f"{k} pid {facts[f'{k}_pid']}" for k in ("hub", "proxy") if facts[f"{k}_pid"])
        rows.append(("service", what, "stop (by its recorded, proven PIDs; the unit with systemctl)"))
    else:
        rows.append(("service", "no hub of this prefix running", "nothing to stop"))
    # no unit file (or no systemd): no row, so the plan reads the same with or without systemd as PID 1
    if facts["booted"] and facts["unit_ours"]:
        rows.append(("service", facts["unit_path"], "stop, disable, remove, daemon-reload"))
    elif facts["booted"] and facts["unit_file"]:
        rows.append(("kept", facts["unit_path"], "not written by hubrunbook for this prefix"))
    return rows


# --- users ---------------------------------------------------------------------------------------------------------
def _read_users_file(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise PreflightError(f"{path} cannot be read ({exc}): it names accounts hubrunbook created, so nothing is "
                             "removed until it is fixed") from None
    users = data.get("users") if isinstance(data, dict) else None
    if not isinstance(users, dict):
        raise PreflightError(f"{path} is not a hubrunbook users registry; nothing is removed until it is fixed")
    return users


def home_is_ours(entry: dict, pw: pwd.struct_passwd) -> bool:
    """The account's home is the one recorded when it was created, a real directory (not a symlink) of its uid."""
    home = entry.get("home")
    if not home or home != pw.pw_dir or Path(home) in (Path("/"), Path("/home")):
        return False
    try:
        st = Path(home).lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == pw.pw_uid


def user_plan(params) -> list[dict]:
    """Every account our registries name: {name, uid, source, action: delete|gone|keep, home, remove_home, why}."""
    from hubrunbook.core.params import login_defs_uid_range

    lo, hi = login_defs_uid_range()
    out = []
    for source, path in (("users.json", params.layout.user_registry), ("hub-users.json", params.layout.hub_user_registry)):
        for name, entry in sorted(_read_users_file(path).items()):
            if not isinstance(entry, dict) or any(u["name"] == name for u in out):
                continue
            pw, uid = lookup(name), entry.get("uid")
            item = {"name": name, "uid": uid, "source": source, "home": entry.get("home"), "remove_home": False}
            if pw is None:
                item |= {"action": "gone", "why": "already gone"}
            elif not lo <= pw.pw_uid <= hi:
                item |= {"action": "keep", "why": f"uid {pw.pw_uid} is a system account (outside UID_MIN..UID_MAX "
                                                  f"{lo}..{hi}): never deleted"}
            elif pw.pw_uid != uid:
                item |= {"action": "keep", "why": f"uid {pw.pw_uid} is not the recorded uid {uid}: not ours"}
            else:
                item["remove_home"] = home_is_ours(entry, pw)
                busy = len(processes_of(pw.pw_uid))
                item |= {"action": "delete", "why": (f"home {pw.pw_dir} with it" if item["remove_home"] else
                                                     f"home {pw.pw_dir} kept (not the one recorded at creation)")
                         + (f"; {busy} process(es) now, the hub's servers stop with it" if busy else "")}
            out.append(item)
    return out


def processes_of(uid: int) -> list[int]:
    """PIDs running with real uid *uid*. Read-only."""
    found = []
    for proc in psutil.process_iter(["uids"]):
        uids = proc.info["uids"]
        if uids and uids.real == uid:
            found.append(proc.pid)
    return found


def user_rows(users: list[dict], throwaway: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    rows = []
    for u in users:
        label = f"{u['name']} (uid {u['uid']}, {u['source']})"
        if u["action"] == "delete":
            rows.append(("users", label, f"userdel{' -r' if u['remove_home'] else ''}: {u['why']}"))
        elif u["action"] == "gone":
            rows.append(("users", label, "already gone"))
        else:
            rows.append(("kept", label, u["why"]))
    rows += [("users", name, detail) for name, _, detail in throwaway]
    if not users and not throwaway:
        rows.append(("users", "no account recorded", "nothing to delete"))
    return rows


# --- files -----------------------------------------------------------------------------------------------------------
def config_files(params) -> list[Path]:
    """The files of part config inside the prefix: the config file (when inside), the 429 page, each with its
    ``.bak-*`` copies. Read-only."""
    root = params.layout.root
    out = []
    for path in (params.config_path, params.layout.retry_page):
        if root not in path.parents:
            continue
        out.append(path)
        try:
            out += sorted(p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.bak-"))
        except OSError:
            pass
    return out


def global_proxy(params) -> dict | None:
    """The recorded global proxy install (hub/proxy.py record_global_install), when its package dir still exists."""
    from hubrunbook.hub.proxy import read_global_record

    rec = read_global_record(params)
    return rec if rec and Path(rec["package_dir"]).is_dir() else None


def file_plan(params) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(rows of what goes, rows of what stays) under the prefix and the global proxy. Read-only."""
    parts, root = set(params.uninstall_parts), params.layout.root
    go, keep = [], []
    if not root.is_dir() or root.is_symlink():
        go.append(("files", str(root), "absent" if not root.is_symlink() else "a symlink: refused"))
        return go, keep
    if "proxy" in parts:
        rec = global_proxy(params)
        if rec:
            go.append(("proxy", rec["package_dir"], f"npm uninstall -g (installed by hubrunbook {rec.get('installed', '?')})"))
        elif params.proxy_install == "global":
            keep.append(("kept", "configurable-http-proxy in npm's global prefix", "no record that hubrunbook installed it"))
    config = config_files(params)
    if root not in params.config_path.parents:
        keep.append(("kept", str(params.config_path), "config_file lies outside the prefix: not removed"))
    top_of_config = {p.relative_to(root).parts[0] for p in config}
    ours = dir_parts(params)
    for name in sorted(p.name for p in root.iterdir()):
        path = root / name
        part = ours.get(name)
        if part:
            action = "remove (symlink: the link only)" if path.is_symlink() else "remove"
            (go if part in parts else keep).append((part if part in parts else "kept", str(path),
                                                    action if part in parts else f"part {part} not chosen"))
        elif name in top_of_config:
            continue
        else:
            keep.append(("kept", str(path), "not created by hubrunbook"))
    for path in config:
        if path.exists() or path.is_symlink():
            (go if "config" in parts else keep).append(("config" if "config" in parts else "kept", str(path),
                                                        "remove" if "config" in parts else "part config not chosen"))
    for d in sorted({p.parent for p in config}):
        if d.is_dir() and not d.is_symlink():
            others = sorted(c.name for c in d.iterdir() if c not in config and not _temp_of(c, config))
            keep += [("kept", str(d / n), "not created by hubrunbook") for n in others]
    return go, keep


def _temp_of(path: Path, config: list[Path]) -> bool:
    """A leftover temp file of config.write_atomic / verify_candidate next to our files."""
    return path.name.startswith(".candidate-") or any(path.name.startswith(f".{c.name}.") for c in config)


def problems(params) -> list[str]:
    from hubrunbook.uninstall.fsremove import mounts_below

    files = [p for p in params.uninstall_parts if p not in ("service", "users")]
    found = []
    if files:
        found += [f"{m} is a mount point inside the prefix: unmount it first (its files are not the prefix's)"
                  for m in mounts_below(params.layout.root)]
        if params.layout.root.is_symlink():
            found.append(f"the prefix {params.layout.root} is a symlink: not followed; give the real directory")
    return found


def inventory(params) -> dict:
    """Everything check_uninstall_plan shows, as data for the steps after it. Read-only."""
    from hubrunbook.host.throwaway import sweep_throwaway_accounts

    parts = set(params.uninstall_parts)
    facts = service_facts(params)
    users = user_plan(params) if "users" in parts else []
    throwaway = sweep_throwaway_accounts(params, dry_run=True) if "users" in parts else []
    go, keep = file_plan(params)
    return {"parts": sorted(parts), "service": facts, "users": users, "throwaway": throwaway, "go": go, "keep": keep}


def check_uninstall_plan(params, *, dry_run: bool = False) -> StepResult:
    """List what uninstall.ipynb removes and what it leaves; refuse (nothing changed) what it cannot remove safely.
    Read-only: in a dry run (the default: confirm_uninstall false) this list is the result."""
    bad = problems(params)
    if bad:
        raise PreflightError("uninstall: nothing was changed because:\n  - " + "\n  - ".join(bad))
    inv = inventory(params)
    parts = set(inv["parts"])
    rows = service_rows(inv["service"]) if "service" in parts else []
    rows += user_rows(inv["users"], inv["throwaway"]) if "users" in parts else []
    rows += inv["go"] + inv["keep"]
    if "state" in parts and params.uninstall_backup:
        from hubrunbook.uninstall.steps import earlier_archives

        n = len(earlier_archives(params))
        if n:
            rows.append(("state", f"{n} archive(s) of backup.ipynb in {params.layout.backups_dir}",
                         f"copied to {params.final_backup_dir} first"))
    n_go = sum(r[0] != "kept" and r[2] not in ("absent", "already gone", "nothing to stop", "nothing to delete")
               and not r[2].startswith("none") for r in rows)
    n_keep = sum(r[0] == "kept" for r in rows)
    backup = (f"a final backup first, to {params.final_backup_dir}" if params.uninstall_backup
              else "no final backup (uninstall_backup: false)")
    if dry(params, dry_run):
        why = "confirm_uninstall is false" if not params.confirm_uninstall else "dry_run is true"
        detail = (f"dry run ({why}): {n_go} item(s) would go, {n_keep} kept; {backup}. Nothing was changed; "
                  "set confirm_uninstall: true to remove them")
    else:
        detail = f"{n_go} item(s) go, {n_keep} kept; {backup}"
    return StepResult("check_uninstall_plan", OK, detail, rows, HEADER, data=inv)
