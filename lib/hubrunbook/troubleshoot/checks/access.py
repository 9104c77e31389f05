"""Checks of who can get in: the config as JupyterHub loads it, the allow rule, OAuth, accounts, notebook dirs,
and whether spawned users can run jupyterhub-singleuser."""
from __future__ import annotations

import pwd
import re
import stat
from pathlib import Path

from hubrunbook.troubleshoot import repairs
from hubrunbook.host import system
from hubrunbook.hub import envfile
from hubrunbook.troubleshoot.catalog import ERROR, Check, Context, Finding, register
from hubrunbook.troubleshoot.checks.common import _config, _config_or_error, _env, _hub_pid, cfg, config_sets


def check_config_file(ctx: Context) -> list[Finding]:
    if "missing" in _env(ctx):
        return []
    values, error = _config_or_error(ctx)
    if values is None:
        path = ctx.params.config_path
        lines = [l.strip() for l in (error or "").splitlines() if l.strip()]
        where = [l for l in lines if l.startswith(f'File "{path}"')][-1:]  # the line of the config that failed
        ours = _managed_line(path, where[0] if where else "")
        evidence = " … ".join(where + lines[-1:]) or "no output"
        if ours:
            return [CONFIG_FILE.finding(
                ERROR, f"{path} does not load: line {ours[0]} is a line hubrunbook manages", f"{evidence}; line {ours[0]}: "
                f"{ours[1][:200]}", cause="a line marked '# hubrunbook' was edited by hand and broken",
                fix="rewrite hubrunbook's lines from the parameters (repaired with apply_fixes), then restart the hub",
                path=str(path))]
        return [CONFIG_FILE.finding(ERROR, f"{path} is missing or does not load with JupyterHub's loader",
                                    evidence, repairable=False, path=str(path))]
    return []


def _managed_line(path, where: str) -> tuple[int, str] | None:
    """(number, text) of the config line a traceback names, when it is one of hubrunbook's marked lines."""
    from hubrunbook.hub.config import MARK

    m = re.search(r", line (\d+)", where)
    try:
        text = path.read_text().splitlines()[int(m.group(1)) - 1] if m else ""
    except (OSError, IndexError):
        return None
    return (int(m.group(1)), text) if text.endswith(MARK) else None


ALLOW_KEYS = ("Authenticator.allowed_users", "Authenticator.allowed_groups", "Authenticator.allowed_organizations")


def check_config_allow_rule(ctx: Context) -> list[Finding]:
    """JupyterHub ≥ 5 admits nobody without an allow rule (allowed_users, allow_all, groups, orgs). admin_users counts
    with OAuthenticator (its check_allowed admits admins), not with PAM: JupyterHub adds admins to allowed_users only
    when that set is not empty, so admins alone are locked out."""
    if _config(ctx) is None:
        return []
    if cfg(ctx, "Authenticator.allow_all") or cfg(ctx, "Authenticator.any_allow_config"):
        return []
    if any(cfg(ctx, k) for k in ALLOW_KEYS + (("Authenticator.admin_users",) if _is_oauth(ctx) else ())):
        return []
    shown = ", ".join(f"{k} = {cfg(ctx, k, '(unset)')!r}" for k in ("Authenticator.allowed_users", "Authenticator.allow_all",
                                                                   "Authenticator.admin_users"))
    from hubrunbook.hub.config import allowed_names

    fixable = bool(ctx.params.allow_all or allowed_names(ctx.params))
    return [ALLOW_RULE.finding(ERROR, "no allow rule: nobody can log in",
                               f"{ctx.params.config_path}: {shown}", repairable=fixable)]


def _is_oauth(ctx: Context) -> bool:
    return "oauth" in str(cfg(ctx, "JupyterHub.authenticator_class") or "").lower()


def _hub_environ_names(pid: int) -> set[str] | None:
    """Names (never values) of the running hub's environment variables; None when unreadable."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    return {item.split(b"=", 1)[0].decode(errors="replace") for item in raw.split(b"\0") if b"=" in item}


def check_oauth(ctx: Context) -> list[Finding]:
    """OAuth login: callback URL matches the public URL; client id/secret reach the hub (names only)."""
    if not _is_oauth(ctx):
        return []
    from hubrunbook.oauth import settings as oauth

    p = ctx.params
    out = []
    got = cfg(ctx, "Authenticator.oauth_callback_url")
    base = cfg(ctx, "JupyterHub.base_url") or p.base_url
    want = oauth.callback_url(oauth.public_url(p), base)
    if got and got.rstrip("/") != want:
        out.append(OAUTH.finding(
            ERROR, "the OAuth callback URL does not match the hub's public URL",
            f"oauth_callback_url = {got!r} (effective, from {ctx.params.config_path.name}); public URL {oauth.public_url(p)} + base_url {base!r} gives "
            f"{want!r}", id="oauth-callback", title="OAuth callback URL mismatch",
            cause="the provider sends users back to the registered callback; a different host, port, scheme or base "
                  "URL ends in the provider's 'redirect_uri mismatch' page or a 404/403 at /hub/oauth_callback",
            fix=f"set the callback to {want} both in the provider's app registration and in the config (oauth runbook)"))
    cls = str(cfg(ctx, "JupyterHub.authenticator_class"))
    names = oauth.ENV_VARS["github" if "github" in cls.lower() else "generic"]
    env = envfile.read_hub_env(p)
    pid = _hub_pid(ctx)
    running = _hub_environ_names(pid) if pid else None
    for name, trait in zip(names, ("client_id", "client_secret")):
        in_file = bool(env.get(name)) or config_sets(ctx, trait)
        if not in_file:
            out.append(OAUTH.finding(
                ERROR, f"the OAuth {trait.replace('_', ' ')} is not configured",
                f"{p.layout.hub_env}: no {name}; config: no c.*.{trait} line", id="oauth-client",
                title="OAuth client id/secret missing",
                cause="the hub starts without it (a missing client id is not reported at start) and every login fails "
                      "at the provider", fix="run the oauth runbook with oauth_client_id/oauth_client_secret references",
                name=name))
        elif running is not None and name not in running and not config_sets(ctx, trait):
            out.append(OAUTH.finding(
                ERROR, f"the running hub (pid {pid}) does not have {name} in its environment",
                f"/proc/{pid}/environ: no {name} (the value is in {p.layout.hub_env.name})", id="oauth-client-stale",
                title="hub started before the OAuth secrets were written",
                cause="hub.env was written after the hub started, or the hub was started by hand without it",
                fix="restart the managed hub so it loads hub.env", name=name))
    return out


def _user_names(ctx: Context) -> list[str]:
    p = ctx.params
    names = [*p.users, *p.admin_users, *p.allowed_users]
    for key in ("Authenticator.allowed_users", "Authenticator.admin_users"):
        names += list(cfg(ctx, key) or [])
    return list(dict.fromkeys(names))


def _registry(ctx: Context) -> dict:
    from hubrunbook.host.users import read_registry

    def read():
        try:
            return read_registry(ctx.params)
        except Exception:
            return {}
    return ctx.fact("registry", read)


def _notebook_dir_template(ctx: Context) -> str:
    return cfg(ctx, "Spawner.notebook_dir") or ctx.params.notebook_dir


def check_user_accounts(ctx: Context) -> list[Finding]:
    """Every user who may log in needs a system account with a home (LocalProcessSpawner runs as them)."""
    p = ctx.params
    managed = set(p.users) | set(p.admin_users)
    creates = bool(cfg(ctx, "Authenticator.create_system_users"))
    out = []
    for name in _user_names(ctx):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            if creates:
                continue  # LocalAuthenticator creates it at the first login
            out.append(USER_ACCOUNTS.finding(
                ERROR, f"user {name} may log in but has no system account",
                f"getent passwd {name}: no entry", user=name, repairable=name in managed))
            continue
        if not Path(pw.pw_dir).is_dir():
            out.append(USER_ACCOUNTS.finding(
                ERROR, f"the home {pw.pw_dir} of {name} does not exist", f"getent passwd {name}: home {pw.pw_dir} "
                "(absent)", id="user-home", title="a user's home directory is missing",
                cause="the account was created without --create-home, or its home was removed",
                fix=f"create it: install -d -o {name} -g {pw.pw_gid} -m 0700 {pw.pw_dir} (repaired with apply_fixes, with "
                    "the notebook dir, for users hubrunbook created)",
                user=name, repairable=name in managed and name in _registry(ctx)))
    return out


def check_notebook_dirs(ctx: Context) -> list[Finding]:
    """Each user's notebook_dir must exist and belong to them (else the spawn hangs 30 s, then 500)."""
    template = _notebook_dir_template(ctx)
    registry = _registry(ctx)
    out = []
    for name in _user_names(ctx):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        path = Path(template.replace("{username}", name).replace("~", pw.pw_dir, 1) if template.startswith("~")
                    else template.replace("{username}", name))
        try:
            st = path.stat()
        except OSError:
            out.append(NOTEBOOK_DIRS.finding(ERROR, f"the notebook dir {path} of {name} does not exist",
                                             f"{path}: absent (Spawner.notebook_dir = {template!r})",
                                             user=name, path=str(path), repairable=name in registry))
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != pw.pw_uid:
            out.append(NOTEBOOK_DIRS.finding(
                ERROR, f"the notebook dir {path} of {name} is not a directory owned by {name}",
                f"{path}: {'directory' if stat.S_ISDIR(st.st_mode) else 'not a directory'}, uid {st.st_uid}, "
                f"mode {stat.S_IMODE(st.st_mode):04o}", user=name, path=str(path),
                repairable=False))  # an existing dir is never handed over (homes.py): whose it is, the operator decides
    return out


def _blocked(path: Path) -> str | None:
    """Why other users cannot execute *path* (the path as given, its real path, and its #! interpreter)."""
    chain = [path]
    try:
        first = path.read_bytes()[:256].split(b"\n", 1)[0]
        if first.startswith(b"#!"):
            chain.append(Path(first[2:].decode(errors="replace").split()[0]))
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    for exe in chain:
        for d in [*reversed(exe.parents)]:
            try:
                mode = d.stat().st_mode
            except OSError:
                return f"{d} does not exist"
            if not mode & stat.S_IXOTH:
                return f"{exe} lies under {d} (mode {stat.S_IMODE(mode):04o}), which other users cannot enter"
        ok, why = system.world_runnable(exe)
        if not ok:
            return why
    return None


def check_singleuser_runnable(ctx: Context) -> list[Finding]:
    cmd = cfg(ctx, "Spawner.cmd") or []
    path = Path(cmd[0]) if cmd and str(cmd[0]).startswith("/") else ctx.params.layout.userenv_bin("jupyterhub-singleuser")
    in_user_env = path.parent.parent == ctx.params.layout.userenv_dir
    env_gone = (not (ctx.params.layout.userenv_dir / "pyvenv.cfg").exists()) if in_user_env else "missing" in _env(ctx)
    if not path.exists() and env_gone:
        return []  # the user-env or hub-env check reports the whole env, with its cause
    if not path.exists():  # a missing file is not a permissions problem: say so
        return [SINGLEUSER.finding(ERROR, f"spawned users cannot run {path}: it does not exist",
                                   f"{path}: No such file or directory", id="singleuser-missing",
                                   title="jupyterhub-singleuser is missing",
                                   cause=f"the {'user' if in_user_env else 'hub'} env is incomplete (a broken or "
                                         "interrupted build, or the file was removed); every spawn fails",
                                   fix="re-run userenv.ipynb (it rebuilds the user env users' servers run from)"
                                   if in_user_env else "re-run install.ipynb (it rebuilds the hub env)", path=str(path))]
    why = _blocked(path)
    if why:
        return [SINGLEUSER.finding(ERROR, f"spawned users cannot run {path}", why, path=str(path))]
    return []


CONFIG_FILE = register(Check(
    "config-file", "jupyterhub_config.py is missing or does not load",
    "File \"/opt/hubrunbook/etc/jupyterhub_config.py\", line 1152 … SyntaxError: invalid syntax",
    "a hand edit broke the Python of the config file, or the file was moved",
    "fix the line the error names (backups: jupyterhub_config.py.bak-*), or rerun the configure runbook; a broken "
    "line of hubrunbook's own ('# hubrunbook') is rewritten with apply_fixes",
    check_config_file, repairs.repair_config_file, guide="§2.1", stage="access"))


ALLOW_RULE = register(Check(
    "allow-rule", "no allow rule: nobody can log in",
    "No allow config found, it's possible that nobody can login to your Hub!",
    "JupyterHub ≥ 5 admits nobody without allowed_users, allow_all or allowed groups/organizations (admin_users counts "
    "with OAuth only: PAM admins alone are locked out); "
    "every login shows the same 403 page as a wrong password",
    "list the users in allowed_users (configure runbook; repaired with apply_fixes from the parameters, then the hub "
    "restarts)", check_config_allow_rule, repairs.repair_allow_rule, guide="§2.2, §2.4", stage="access"))


OAUTH = register(Check(
    "oauth", "OAuth login is misconfigured",
    "redirect_uri mismatch at the provider; or 500 at spawn: getpwnam(): name not found",
    "the callback URL, client id/secret or system accounts of OAuth users do not fit the deployment",
    "see the finding; the oauth runbook writes all of them consistently", check_oauth, guide="§2.5", stage="access"))


USER_ACCOUNTS = register(Check(
    "user-accounts", "a user who may log in has no system account",
    "Unhandled error starting alice's server: \"getpwnam(): name not found: 'alice'\"  → 500 at spawn",
    "the spawner runs each server as the system user of the same name; allowed (or OAuth) users without an account "
    "log in and then get a 500",
    "create the account (configure runbook; repaired with apply_fixes for users listed in `users`/`admin_users`), "
    "or for OAuth set c.LocalAuthenticator.create_system_users = True", check_user_accounts,
    repairs.repair_user_accounts, guide="§2.4, §2.5", stage="access"))


NOTEBOOK_DIRS = register(Check(
    "notebook-dirs", "a user's notebook dir is missing",
    "TraitError: No such directory: ''/home/alice/notebooks''  → 500 POST /hub/api/users/alice/server "
    "(InvalidStateError), or a spawn that hangs until Spawner.start_timeout",
    "c.Spawner.notebook_dir points to a directory that does not exist (or is not the user's); the server exits and "
    "the hub waits the whole start timeout",
    "create it owned by the user (repaired with apply_fixes for users hubrunbook created)", check_notebook_dirs,
    repairs.repair_notebook_dirs, guide="§2.3", stage="access"))


SINGLEUSER = register(Check(
    "singleuser-runnable", "spawned users cannot run jupyterhub-singleuser",
    "Permission denied trying to run '/root/venv/bin/jupyterhub-singleuser'. Does alice have access to this file?",
    "the env users' servers run from (the user env, or a hub env by hand) or the Python it was built from lies under a "
    "directory other users cannot enter (a 0700 home such as /root or a pyenv there)",
    "rebuild the user env from /usr/bin/python3 under a 0755 prefix such as /opt/hubrunbook (userenv runbook)",
    check_singleuser_runnable, stage="access"))
