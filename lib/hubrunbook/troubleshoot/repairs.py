"""Repairs for troubleshooting findings: each acts only on what the deployment owns, then looks again.

Signature: ``repair_*(params, finding, *, dry_run=False) -> StepResult``; idempotent (a repair whose
problem is already gone returns ``unchanged``). Processes are killed only by PID after proving
they are configurable-http-proxy on our own API port; files only under the prefix; users only
those hubrunbook manages.
"""
from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

from hubrunbook.troubleshoot import facts
from hubrunbook.hub import database
from hubrunbook.host import ports
from hubrunbook.core.errors import CommandError, HubError, RunbookError
from hubrunbook.host.process import terminate
from hubrunbook.core.shell import run_command
from hubrunbook.core.steps import CHANGED, FAILED, UNCHANGED, WOULD_CHANGE, StepResult


def repair_hub_env(params, finding, *, dry_run: bool = False) -> StepResult:
    """Rebuild the hub env with the pinned versions (hubenv.ensure_hub_env)."""
    from hubrunbook.hub.hubenv import ensure_hub_env

    return ensure_hub_env(params, dry_run=dry_run)


def repair_user_env(params, finding, *, dry_run: bool = False) -> StepResult:
    """Sync the user env to the parameters again (userenv.build.ensure_user_env: builds it when missing, puts back the
    hub's jupyterhub version); a package that fails to import is reinstalled from the lock first (its files were
    changed: the installed versions alone look right)."""
    from hubrunbook.userenv.build import ensure_user_env, reinstall

    package, kernel = finding.data.get("package"), finding.data.get("kernel")
    if package:
        if dry_run:
            return StepResult("repair_user_env", WOULD_CHANGE, f"would reinstall {package} in kernel {kernel}'s env")
        done = reinstall(params, kernel, package)
        res = ensure_user_env(params)
        return StepResult("repair_user_env", CHANGED, f"{done}; {res.status}: {res.detail}")
    return ensure_user_env(params, dry_run=dry_run)


def repair_hub_packages(params, finding, *, dry_run: bool = False) -> StepResult:
    """Reinstall the pinned jupyterhub with the tornado it requires; verify imports and versions. (jupyterlab lives in
    the user env since issue 13, not in the hub env.)"""
    from hubrunbook.hub.hubenv import install_packages

    name = "repair_hub_packages"
    env = facts.probe_env(params)
    spec = finding.data.get("spec") or ">=6.5"
    if _packages_ok(params, env):
        return StepResult(name, UNCHANGED, f"jupyterhub {params.jupyterhub_version} and tornado{spec} already in place")
    specs = [f"jupyterhub=={params.jupyterhub_version}", f"tornado{spec}"]
    if dry_run:
        return StepResult(name, WOULD_CHANGE, f"would install {' '.join(specs)} into {params.layout.env_dir}")
    was = env.get("versions", {})
    install_packages(params, params.layout.env_dir, specs)
    env = facts.probe_env(params)
    if not _packages_ok(params, env):
        raise CommandError(f"reinstalled {' '.join(specs)} but the env is still not right: {env}. Rebuild it with the "
                           "install runbook after moving the env away")
    now = env["versions"]
    return StepResult(name, CHANGED, f"installed {' '.join(specs)}: jupyterhub {was.get('jupyterhub')} → "
                                     f"{now['jupyterhub']}, tornado {was.get('tornado')} → {now['tornado']}")


def _packages_ok(params, env: dict) -> bool:
    if "missing" in env or env.get("import_error"):
        return False
    v = env["versions"]
    need = facts.requirement_of(env.get("requires", {}).get("jupyterhub", []), "tornado")
    return v.get("jupyterhub") == params.jupyterhub_version and bool(v.get("tornado")) and facts.satisfies(v["tornado"], need)


def repair_node(params, finding, *, dry_run: bool = False) -> StepResult:
    """Install a Node.js the proxy supports (node.ensure_node)."""
    from hubrunbook.hub.node import ensure_node

    return ensure_node(params, dry_run=dry_run)


def repair_proxy_install(params, finding, *, dry_run: bool = False) -> StepResult:
    """Install Node.js if needed and the pinned configurable-http-proxy (node.ensure_node, proxy.ensure_proxy)."""
    from hubrunbook.hub.node import ensure_node
    from hubrunbook.hub.proxy import ensure_proxy

    node = ensure_node(params, dry_run=dry_run)
    proxy = ensure_proxy(params, dry_run=dry_run)
    status = proxy.status if node.status == UNCHANGED else node.status if proxy.status == UNCHANGED else proxy.status
    return StepResult("repair_proxy_install", status, f"{node.detail}; {proxy.detail}")


def _proxy_still_stale(params, pid: int) -> str | None:
    """Why *pid* may be stopped (None when it must not be): proves port, command line and staleness again."""
    from hubrunbook.hub.proxy import unproven_reason

    if unproven_reason(params, pid):  # root, our node and script, our API port, the recorded PID, on the port
        return None
    token = facts.proxy_token_status(params)
    if token.startswith("rejected 403"):
        return f"listens on proxy_api_port {params.proxy_api_port}, is configurable-http-proxy, rejects the hub's token"
    if facts.hub_pid(params) is None:
        return f"listens on proxy_api_port {params.proxy_api_port}, is configurable-http-proxy, and no hub runs"
    return None


def repair_stale_proxy(params, finding, *, dry_run: bool = False) -> StepResult:
    """Stop the stale proxy on our API port by PID (SIGTERM, then SIGKILL after 10 s), after proving it again."""
    name = "repair_stale_proxy"
    pid = int(finding.data["pid"])
    who = ports.describe(pid)
    why = _proxy_still_stale(params, pid)
    if why is None:
        return StepResult(name, UNCHANGED, f"{who} is no longer a stale proxy on port {params.proxy_api_port}; left alone")
    if dry_run:
        return StepResult(name, WOULD_CHANGE, f"would stop {who}: {why}")
    if not terminate(pid, timeout=10):
        raise HubError(f"could not stop {who} (SIGTERM, then SIGKILL); stop it by hand: kill -9 {pid}")
    deadline = time.monotonic() + 5
    while pid in ports.listeners(params.proxy_api_port) and time.monotonic() < deadline:
        time.sleep(0.1)
    return StepResult(name, CHANGED, f"stopped {who} ({why}); port {params.proxy_api_port} is free")


def repair_orphan_culler(params, finding, *, dry_run: bool = False) -> StepResult:
    """Stop an idle culler that outlived its hub, by PID, after proving again that it is this deployment's culler and
    not the running hub's (culler.orphan_cullers)."""
    from hubrunbook.hub import culler
    from hubrunbook.hub.service import managed_hub_pid

    name = "repair_orphan_culler"
    pid = int(finding.data["pid"])
    if pid not in {p for p, _ in culler.orphan_cullers(params, managed_hub_pid(params))}:
        return StepResult(name, UNCHANGED, f"pid {pid} is no longer an idle culler of this deployment without its hub; "
                                           "left alone")
    if dry_run:
        return StepResult(name, WOULD_CHANGE, f"would stop the orphaned idle culler pid {pid}")
    if not terminate(pid, timeout=10):
        raise HubError(f"could not stop the orphaned idle culler pid {pid} (SIGTERM, then SIGKILL); kill -9 {pid}")
    return StepResult(name, CHANGED, f"stopped the idle culler pid {pid} that had outlived its hub")


def repair_secret_modes(params, finding, *, dry_run: bool = False) -> StepResult:
    """chmod 600 a secret file of ours (only under <prefix>/secrets)."""
    name = "repair_secret_modes"
    path = Path(finding.data["path"])
    if params.layout.secrets_dir.resolve() not in path.resolve().parents:
        return StepResult(name, FAILED, f"{path} is not under {params.layout.secrets_dir}; not ours to change")
    mode = path.stat().st_mode & 0o777
    if not mode & 0o077:
        return StepResult(name, UNCHANGED, f"{path} is already mode {mode:04o}")
    if dry_run:
        return StepResult(name, WOULD_CHANGE, f"would chmod 600 {path} (now {mode:04o})")
    path.chmod(0o600)
    return StepResult(name, CHANGED, f"chmod 600 {path} (was {mode:04o})")


def repair_db_schema(params, finding, *, dry_run: bool = False) -> StepResult:
    """Copy the sqlite database to <state>/backups/, then `jupyterhub upgrade-db`; verify the schema is current."""
    name = "repair_db_schema"
    db = Path(finding.data.get("db") or params.layout.hub_db)
    env = facts.probe_env(params)
    head = database.alembic_head(env.get("pkg_dir"))
    have = database.db_revision(db)
    if have == head:
        return StepResult(name, UNCHANGED, f"{db} is at schema {head}")
    if facts.hub_pid(params):
        raise HubError("the hub is running; stop it before upgrading its database (it should not run on an old schema)")
    backups = params.layout.backups_dir
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    backup = params.layout.db_copy(have, stamp)
    if dry_run:
        return StepResult(name, WOULD_CHANGE, f"would copy {db} to {backup} and run jupyterhub upgrade-db ({have} → {head})")
    backups.mkdir(mode=0o700, parents=True, exist_ok=True)
    database.copy_database(db, backup)
    jh = params.layout.env_bin("jupyterhub")
    run_command([jh, "upgrade-db", f"--db=sqlite:///{db}"], cwd=params.layout.state_dir, timeout=180,
                env={"PATH": f"{params.layout.env_dir / 'bin'}:{os.environ.get('PATH', '')}"}, what="jupyterhub upgrade-db")
    now = database.db_revision(db)
    if now != head:
        raise CommandError(f"jupyterhub upgrade-db ran but {db} is at {now}, not {head}; the backup is {backup}")
    return StepResult(name, CHANGED, f"backed up {db} to {backup}; upgrade-db {have} → {head}")


def repair_user_accounts(params, finding, *, dry_run: bool = False) -> StepResult:
    """Create the managed users (users.ensure_users); only names listed in users/admin_users."""
    from hubrunbook.host.users import ensure_users

    return ensure_users(params, dry_run=dry_run)


def repair_notebook_dirs(params, finding, *, dry_run: bool = False) -> StepResult:
    """Create the notebook dir (and home) of a user hubrunbook created, without following symlinks (homes.py)."""
    import pwd

    from hubrunbook.host.homes import make_notebook_dir, notebook_dir_problem
    from hubrunbook.host.users import read_registry

    name = "repair_notebook_dirs"
    user, path = finding.data["user"], Path(finding.data["path"])
    if user not in read_registry(params):
        return StepResult(name, FAILED, f"{user} was not created by hubrunbook; create {path} yourself")
    pw = pwd.getpwnam(user)
    problem = notebook_dir_problem(path, Path(pw.pw_dir), pw.pw_uid, pw.pw_gid)
    if problem is None:
        return StepResult(name, UNCHANGED, f"{path} exists and belongs to {user}")
    if not problem.startswith("missing"):
        return StepResult(name, FAILED, f"{path} is not repaired: {problem}")
    if dry_run:
        return StepResult(name, WOULD_CHANGE, f"would create {path} owned by {user} ({problem})")
    done = make_notebook_dir(path, Path(pw.pw_dir), pw.pw_uid, pw.pw_gid)
    problem = notebook_dir_problem(path, Path(pw.pw_dir), pw.pw_uid, pw.pw_gid)
    if problem:
        raise CommandError(f"created {path} but it is still not right: {problem}")
    return StepResult(name, CHANGED, f"{'; '.join(done)}: {path} owned by {user}")


def repair_allow_rule(params, finding, *, dry_run: bool = False) -> StepResult:
    """Rewrite the managed config lines from the parameters (config.ensure_config); restart the hub if it runs."""
    from hubrunbook.hub.config import ensure_config

    result = ensure_config(params, dry_run=dry_run)
    if result.status == CHANGED and facts.hub_pid(params):
        restart = _restart_hub(params)
        return StepResult("repair_allow_rule", CHANGED, f"{result.detail}; {restart}", result.rows, result.header)
    return StepResult("repair_allow_rule", result.status, result.detail, result.rows, result.header)


def repair_config_file(params, finding, *, dry_run: bool = False) -> StepResult:
    """Rewrite hubrunbook's own (marked) config lines from the parameters; the hub restarts in the hub-running repair."""
    from hubrunbook.hub.config import ensure_config

    result = ensure_config(params, dry_run=dry_run)
    return StepResult("repair_config_file", result.status, result.detail, result.rows, result.header)


def _restart_hub(params) -> str:
    from hubrunbook.hub.service import ensure_hub_running, stop_managed_hub

    stop_managed_hub(params)
    started = ensure_hub_running(params)
    return f"hub restarted ({started.detail})"


def repair_hub_running(params, finding, *, dry_run: bool = False) -> StepResult:
    """Start the managed hub and wait until it answers (service.ensure_hub_running)."""
    try:
        from hubrunbook.hub.service import ensure_hub_running
    except ImportError:
        return StepResult("repair_hub_running", FAILED, "hubrunbook.hub.service is not available; start the hub with the "
                                                        "configure runbook")
    try:
        return ensure_hub_running(params, dry_run=dry_run)
    except RunbookError as exc:
        raise HubError(f"the hub still does not start: {str(exc).splitlines()[0]}") from None
