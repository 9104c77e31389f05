"""Local system users (guide §2.4): create them, set their passwords, make their notebook dirs.

hubrunbook only ever changes users it created itself; they are recorded in
``<state_dir>/users.json`` (0600) with their uid. A user that existed before is
left exactly as it is (account, password, home).

Password idempotence compares the wanted password with the hash in /etc/shadow
(through libcrypt, the library PAM itself uses, so every hash PAM writes —
yescrypt on Debian 12 — verifies). That checks the real state: a password
changed behind our back is noticed and set again, and no extra password-derived
file (an unsalted digest would be crackable) lies on disk. The ``crypt`` module
is not used: it is deprecated and gone in Python 3.13.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import grp
import hmac
import os
import pwd
import secrets
import shutil
import stat
from datetime import datetime, timezone
from pathlib import Path

from hubrunbook.host import homes, system, throwaway
from hubrunbook.core import records, secretref
from hubrunbook.core.errors import CommandError, PreflightError, SecretError
from hubrunbook.core.shell import run_command
from hubrunbook.core.steps import CHANGED, UNCHANGED, WOULD_CHANGE, StepResult

HEADER = ("user", "result", "detail")
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"


# --- names, paths, passwords -------------------------------------------------------------------
def managed_names(params) -> list[str]:
    """Users and admin users, each once, in parameter order."""
    return list(dict.fromkeys([*params.users, *params.admin_users]))


def notebook_dir_for(params, user: str) -> Path:
    """The notebook dir of *user*: params.notebook_dir with {username} substituted."""
    return Path(params.notebook_dir.replace("{username}", user))


def password_file(params, user: str) -> Path:
    """Where the generated password of *user* lives: <secrets_dir>/passwords/<user> (0600)."""
    return params.layout.password_file(user)


def _check_password(value: str, user: str) -> str:
    if not value or "\n" in value or "\r" in value or "\0" in value:
        raise SecretError(f"password of {user!r} is empty or contains a line break or NUL; chpasswd cannot set it")
    return value


def user_password(params, user: str) -> str:
    """The password of *user*: from its secret reference, else generated once into password_file (0600) and reused.

    Side effects: may create the password file (dirs 0700); registers the value for masking.
    """
    if user in params.passwords:
        return _check_password(secretref.resolve(params.passwords[user], f"passwords[{user!r}]", prompt=False), user)
    path = password_file(params, user)
    if not path.exists():
        _make_private_dirs(params.layout.secrets_dir, path.parent)
        secretref.write_private(path, secrets.token_urlsafe(12))
    return _check_password(_read_generated(path, user), user)


def _read_generated(path: Path, user: str) -> str:
    secretref.check_file_private(path, f"generated password of {user!r}")
    value = path.read_text().strip()
    if not value:
        raise SecretError(f"generated password file {path} of {user!r} is empty; delete it to generate a new one")
    return secretref.register(value)


def _make_private_dirs(top: Path, leaf: Path) -> None:
    """Create *top* and *leaf* (below it) with mode 0700; tighten *leaf* if it is looser."""
    top.mkdir(mode=0o700, parents=True, exist_ok=True)
    leaf.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(leaf.stat().st_mode) != 0o700:
        leaf.chmod(0o700)


# --- registry of users we created --------------------------------------------------------------
def read_registry(params) -> dict[str, dict]:
    """Users hubrunbook created: {name: {"uid": int, "home": str, "created": iso}}; {} when none. Read-only."""
    return records.read_record(params.layout.user_registry, "users", what="a hubrunbook users registry",
                               purpose="it lists the users hubrunbook created")


def write_registry(params, users: dict[str, dict]) -> None:
    """Write the registry atomically, mode 0600 (state dir 0700 when created)."""
    records.write_record(params.layout.user_registry, "users", users)


def record_user(params, name: str, uid: int, home: str) -> None:
    users = read_registry(params)
    users[name] = {"uid": uid, "home": home, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_registry(params, users)


def is_ours(entry: dict | None, pw: pwd.struct_passwd | None) -> bool:
    """Whether a system user is the one we recorded (same uid); an absent user with an entry is ours to recreate."""
    return entry is not None and (pw is None or pw.pw_uid == entry.get("uid"))


# --- system state ------------------------------------------------------------------------------
def lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def shadow_hash(name: str) -> str | None:
    """The password hash of *name* in /etc/shadow (None when absent). Needs root."""
    with open("/etc/shadow") as fh:
        for line in fh:
            fields = line.rstrip("\n").split(":")
            if fields[0] == name and len(fields) > 1:
                return fields[1]
    return None


_libcrypt = None


def _crypt(password: str, setting: str) -> str | None:
    global _libcrypt
    if _libcrypt is None:
        lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
        lib.crypt.restype, lib.crypt.argtypes = ctypes.c_char_p, [ctypes.c_char_p, ctypes.c_char_p]
        _libcrypt = lib
    out = _libcrypt.crypt(password.encode(), setting.encode())
    return out.decode() if out else None


def password_matches(name: str, password: str) -> bool:
    """Whether *password* is the current password of *name* (PAM-free: libcrypt against /etc/shadow). Read-only."""
    stored = shadow_hash(name)
    if not stored or not stored.startswith("$"):  # '!' / '*' / '' : locked or no password
        return False
    got = _crypt(password, stored)
    return bool(got) and hmac.compare_digest(got, stored)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _tool(name: str) -> str:
    found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:{SBIN_PATH}")
    if not found:
        raise PreflightError(f"{name} not found; install the 'passwd' package (apt-get install passwd)")
    return found


# --- the step ----------------------------------------------------------------------------------
def _plan(params) -> list[dict]:
    """Look at every user and validate everything; raise before anything changes. Read-only."""
    if not system.is_root():
        raise PreflightError(
            "creating system users needs root (useradd, chpasswd). Run the runbook as root (sudo make deploy)"
        )
    for tool in ("useradd", "chpasswd"):
        _tool(tool)
    registry = read_registry(params)
    home_base = Path(params.home_base)
    plan, problems = [], []
    for name in managed_names(params):
        pw = lookup(name)
        entry = registry.get(name)
        kind = "absent" if pw is None else ("ours" if is_ours(entry, pw) else "foreign")
        item = {"name": name, "kind": kind, "pw": pw, "nbdir": notebook_dir_for(params, name)}
        try:
            _validate(params, item, home_base)
        except (PreflightError, SecretError) as exc:
            problems.append(f"  - {name}: {exc}")
        plan.append(item)
    if problems:
        raise PreflightError("local users: nothing was changed because:\n" + "\n".join(problems))
    return plan


def _validate(params, item: dict, home_base: Path) -> None:
    name, kind, pw, nbdir = item["name"], item["kind"], item["pw"], item["nbdir"]
    if kind == "foreign":
        problem = homes.dir_problem_as_user(nbdir, pw)
        if problem:
            raise PreflightError(
                f"existed before hubrunbook, which never changes users it did not create, and {problem}. "
                f"Fix: install -d -m 0700 -o {name} -g {pw.pw_gid} {nbdir} (or remove {name} from users/admin_users)"
            )
        if name in params.passwords and not password_matches(name, user_password(params, name)):
            raise PreflightError(
                f"existed before hubrunbook, which never changes the password of a user it did not create, and its "
                f"password differs from passwords[{name!r}]. Fix: set it yourself (passwd {name}) or drop passwords[{name!r}]"
            )
        return
    if kind == "absent":
        home = home_base / name
        if not home_base.is_dir():
            raise PreflightError(f"home_base {home_base} does not exist; create it or set home_base to an existing directory")
        os.close(homes.open_root_dir(home_base))  # only root may change what lies above the homes
        if os.path.lexists(home):
            raise PreflightError(
                f"its home {home} already exists but the user does not (left over from another user?); "
                "move or remove it, hubrunbook will not hand it to a new user"
            )
        if _group_exists(name):
            raise PreflightError(
                f"a group named {name} exists without such a user, so useradd (one group per user) would fail; "
                f"remove the group (groupdel {name}) if it is a leftover, or choose another name"
            )
        shell = Path(params.user_shell)
        if not (shell.is_file() and os.access(shell, os.X_OK)):
            raise PreflightError(f"user_shell {shell} is not an executable file; set user_shell to e.g. /bin/bash")
        item["home"] = home
        homes.parts_below(nbdir, home)
    else:
        item["home"] = Path(pw.pw_dir)
        problem = homes.notebook_dir_problem(nbdir, item["home"], pw.pw_uid, pw.pw_gid)
        if problem and not problem.startswith("missing"):
            raise PreflightError(f"its notebook dir {nbdir} cannot be made safely: {problem}")
    block = system.blocking_dir(item["home"].parent)
    if block is not None:
        raise PreflightError(f"{block} cannot be entered by other users (mode {stat.S_IMODE(block.stat().st_mode):04o}), "
                             f"so {name} could never reach {nbdir}; chmod o+x {block} or choose another home_base")
    if name in params.passwords:
        user_password(params, name)  # resolves (read-only) to fail early on a missing variable or file
    elif password_file(params, name).exists():
        _read_generated(password_file(params, name), name)


def _apply(params, item: dict, dry_run: bool) -> tuple[str, str, bool]:
    """Bring one user to the wanted state; return (result, detail, changed)."""
    name, kind, nbdir = item["name"], item["kind"], item["nbdir"]
    if kind == "foreign":
        return UNCHANGED, (f"existing system user (not created by hubrunbook): left as it is; notebook dir {nbdir} ok"
                           + homes.home_mode_note(item["pw"])), False
    done: list[str] = []
    if kind == "absent":
        if dry_run:
            return WOULD_CHANGE, f"would create user (home {item['home']}, shell {params.user_shell}), set its password, create {nbdir}", True
        run_command([_tool("useradd"), "--create-home", "--home-dir", item["home"], "--shell", params.user_shell, "--", name],
                    timeout=60, what=f"useradd {name}")
        item["pw"] = pwd.getpwnam(name)
        record_user(params, name, item["pw"].pw_uid, str(item["home"]))
        done.append("created")
    pw = item["pw"]
    password = None if dry_run and not (name in params.passwords or password_file(params, name).exists()) else user_password(params, name)
    if password is None or not password_matches(name, password):
        if dry_run:
            done.append("would set password")
        else:
            run_command([_tool("chpasswd")], input=f"{name}:{password}\n", timeout=60, what=f"chpasswd ({name})")
            done.append("password set")
    if dry_run:
        done += _nbdir_todo(nbdir, item["home"], pw)
    else:
        made = homes.make_notebook_dir(nbdir, item["home"], pw.pw_uid, pw.pw_gid)
        done += ["notebook dir created"] if kind == "absent" else made
    if not done:
        return UNCHANGED, f"uid {pw.pw_uid}, password matches, notebook dir {nbdir}", False
    if dry_run:
        return WOULD_CHANGE, "; ".join(done), True
    _recheck(name, password, nbdir, item["home"])
    return CHANGED, "; ".join(done) + f" (uid {pw.pw_uid}, notebook dir {nbdir})", True


def _recheck(name: str, password: str, nbdir: Path, home: Path) -> None:
    pw = lookup(name)
    if pw is None:
        raise CommandError(f"useradd reported success but user {name} does not exist; check /etc/passwd and the system log")
    if not password_matches(name, password):
        raise CommandError(f"chpasswd reported success but the password of {name} does not verify against /etc/shadow")
    problem = homes.notebook_dir_problem(nbdir, home, pw.pw_uid, pw.pw_gid)
    if problem:
        raise CommandError(f"notebook dir {nbdir} of {name} is not right after creating it: {problem}")


def _nbdir_todo(nbdir: Path, home: Path, pw) -> list[str]:
    """What make_notebook_dir would change (dry run). Read-only."""
    problem = homes.notebook_dir_problem(nbdir, home, pw.pw_uid, pw.pw_gid)
    todo = [f"would create notebook dir {nbdir} ({problem})"] if problem else []
    try:
        mode = stat.S_IMODE(os.stat(home, follow_symlinks=False).st_mode)
    except OSError:
        return todo
    return todo + ([f"would make home {home} private (now {mode:04o})"] if mode & 0o077 else [])


def ensure_users(params, *, dry_run: bool = False) -> StepResult:
    """Create the local users and admins (guide §2.4), set their passwords, create their notebook dirs. Idempotent.

    Only users hubrunbook created (users.json) are ever changed; existing users are checked, never modified.
    Validates every user before changing anything. Homes of users hubrunbook created are kept private (0700), notebook
    dirs are made without following symlinks (homes.py). Throwaway accounts an interrupted run left are deleted first
    (throwaway.py), each as a row of the result.
    """
    plan = _plan(params)
    swept = throwaway.sweep_throwaway_accounts(params, dry_run=dry_run)
    rows, changed = list(swept), 0
    for item in plan:
        result, detail, did = _apply(params, item, dry_run)
        rows.append((item["name"], result, detail))
        changed += did
    names = ", ".join(i["name"] for i in plan) or "none"
    removed = sum(r[1] != UNCHANGED for r in swept)
    also = f"; {'would delete' if dry_run else 'deleted'} {removed} throwaway account(s) of an interrupted run" if removed else ""
    if not changed and not removed:
        return StepResult("ensure_users", UNCHANGED, f"local users in place: {names}", rows, HEADER)
    status = WOULD_CHANGE if dry_run else CHANGED
    verb = "would change" if dry_run else "changed"
    return StepResult("ensure_users", status, f"{verb} {changed} of {len(plan)} local users: {names}{also}", rows, HEADER)


def remove_users(params, names: list[str]) -> StepResult:
    """Delete (userdel -r) those of *names* that hubrunbook created, and their generated password files. For cleanup.

    Users not in the registry, or whose uid changed since, are left alone. Idempotent.
    """
    if not system.is_root():
        raise PreflightError("removing system users needs root (userdel)")
    registry = read_registry(params)
    rows, removed = [], 0
    for name in names:
        entry, pw = registry.get(name), lookup(name)
        if entry is None:
            rows.append((name, UNCHANGED, "not created by hubrunbook: left alone"))
            continue
        if not is_ours(entry, pw):
            rows.append((name, UNCHANGED, f"uid {pw.pw_uid} is not the recorded uid {entry.get('uid')}: left alone"))
        elif pw is not None:
            proc = run_command([_tool("userdel"), "-r", "--", name], timeout=60, check=False, what=f"userdel -r {name}")
            if lookup(name) is not None:
                raise CommandError(f"userdel -r {name} failed (exit {proc.returncode}): {proc.stderr.strip()}. "
                                   f"Stop the user's processes (pkill -u {name}) and retry")
            rows.append((name, CHANGED, "deleted with its home"))
            removed += 1
        else:
            rows.append((name, UNCHANGED, "already gone"))
        gen = password_file(params, name)
        if name not in params.passwords and gen.exists():
            gen.unlink()
        del registry[name]
        write_registry(params, registry)
    return StepResult("remove_users", CHANGED if removed else UNCHANGED, f"removed {removed} user(s)", rows, HEADER)
