"""Preflight: what must hold before install changes anything. Read-only."""
from __future__ import annotations

import os
from pathlib import Path

from hubrunbook.host import ports, system
from hubrunbook.core.errors import PreflightError
from hubrunbook.hub.node import choose_node
from hubrunbook.core.steps import FAILED, OK, StepResult
from hubrunbook.hub.tls import tls_rows


def our_hub_pids(params) -> set[int]:
    """PIDs of the managed hub (the unit's main PID or the background process of hub.pid) and its proxy (alive only)."""
    from hubrunbook.host.process import read_pid
    from hubrunbook.hub.service import background_hub_pid, managed_hub_pid

    pids = {managed_hub_pid(params), background_hub_pid(params), read_pid(params.layout.proxy_pid_file)}
    return {p for p in pids if p}


def check_trusted_paths(params) -> None:
    """Refuse to run when root would load code or config from a path another user can change (issue 8, M4).

    The prefix (hub env, proxy, state), the config file and an explicit `python` are checked component by component
    (system.untrusted_reason), and everything below the prefix must be root's (system.untrusted_tree_entry), before
    anything is executed, dry runs included. Raises PreflightError naming the
    parameter, the component and the fix.
    """
    paths = {"prefix": params.layout.root, "config_file": params.config_path}
    if getattr(params, "python", "auto") != "auto":
        paths["python"] = Path(params.python)
    for name, path in paths.items():
        why = system.untrusted_reason(path)
        if why:
            raise PreflightError(f"{name} {path} is not safe for root to use: {why}. Nothing was run or changed")
    why = system.untrusted_tree_entry(params.layout.root) if params.layout.root.is_dir() else None
    if why:
        raise PreflightError(f"prefix {params.layout.root} holds code root runs, but {why}: another user could have planted or "
                             f"changed it. Inspect it; reinstall or chown -R root: {params.layout.root}. Nothing was run or changed")


def port_rows(params) -> list[tuple[str, str, str]]:
    """One row per port: free, ours, or held by a foreign process."""
    ours = our_hub_pids(params)
    rows = []
    for name in ("port", "hub_port", "proxy_api_port"):
        port = getattr(params, name)
        holders = ports.listeners(port)
        if not holders:
            rows.append((f"{name} {port}", OK, "free"))
        elif holders <= ours:
            rows.append((f"{name} {port}", OK, "held by our managed hub"))
        else:
            who = ", ".join(ports.describe(p) for p in sorted(holders - ours))
            rows.append((f"{name} {port}", FAILED, f"in use by {who}: stop it or choose another {name}"))
    return rows


def preflight_result(step: str, rows: list[tuple[str, str, str]]) -> StepResult:
    """The result of a preflight table; raises PreflightError listing every failed row."""
    failed = [r for r in rows if r[1] == FAILED]
    if failed:
        raise PreflightError("preflight failed, nothing was changed:\n" + "\n".join(f"  - {r[0]}: {r[2]}" for r in failed))
    return StepResult(step, OK, f"all {len(rows)} checks passed", rows)


def check_preflight(params) -> StepResult:
    """Check OS, Python, privileges, disk, directory modes and ports; raise PreflightError listing every failure."""
    rows: list[tuple[str, str, str]] = []
    info = system.os_release()
    osname = info.get("PRETTY_NAME", "unknown OS")
    rows.append(("OS", OK if system.is_debian_like() else FAILED,
                 osname if system.is_debian_like() else f"{osname}: these runbooks support Debian and Ubuntu"))
    py, why = system.find_hub_python(params.python)
    rows.append(("Python for the hub env", OK if py else FAILED, why if py else f"none usable: {why}"))
    root = system.is_root()
    if root:
        rows.append(("privileges", OK, "root"))
    else:
        parent = params.layout.root
        while not parent.exists():
            parent = parent.parent
        writable = os.access(parent, os.W_OK) and params.proxy_install == "private"
        rows.append(("privileges", OK if writable else FAILED,
                     f"not root; {parent} is writable" if writable else
                     f"not root and {parent} is not writable (or proxy_install is 'global'): run as root"))
    block = system.blocking_dir(params.layout.root)
    rows.append(("prefix reachable by users", FAILED if block else OK,
                 f"{params.layout.root} lies under {block}, which other users cannot enter; spawned servers could not run the hub env. Choose a prefix such as /opt/hubrunbook"
                 if block else f"{params.layout.root}"))
    where, free = system.free_mb(params.layout.root)
    rows.append(("free disk", OK if free >= params.min_free_disk_mb else FAILED,
                 f"{free} MiB free at {where} (need {params.min_free_disk_mb})"))
    try:
        kind, node, nwhy = choose_node(params)
        rows.append(("Node.js", OK, nwhy))
    except PreflightError as exc:
        rows.append(("Node.js", FAILED, str(exc)))
    rows += port_rows(params)
    rows += tls_rows(params)
    return preflight_result("check_preflight", rows)


def check_configure_preflight(params) -> StepResult:
    """What configure.ipynb needs before it changes anything: root, install done, allow rule, ports. Read-only."""
    from hubrunbook.hub.config import check_allow_rule
    from hubrunbook.core.errors import ConfigError
    from hubrunbook.hub.hubenv import check_env_state
    from hubrunbook.hub.proxy import installed_version

    rows: list[tuple[str, str, str]] = []
    rows.append(("privileges", OK if system.is_root() else FAILED,
                 "root" if system.is_root() else
                 "not root: PAM can only check the hub's own user and spawning servers as other users needs root. "
                 "Fix: run as root (sudo make deploy)"))
    ok, why = check_env_state(params)
    rows.append(("hub env (install.ipynb)", OK if ok else FAILED, why if ok else f"{params.layout.env_dir}: {why}; run install.ipynb first"))
    from hubrunbook.userenv.build import check_user_env

    ok, why = check_user_env(params)  # users' servers run its jupyterhub-singleuser (c.Spawner.cmd)
    rows.append(("user env (userenv.ipynb)", OK if ok else FAILED,
                 why if ok else f"{params.layout.userenv_dir}: {why}; run userenv.ipynb first"))
    have = installed_version(params)
    rows.append(("configurable-http-proxy (install.ipynb)", OK if have == params.proxy_version else FAILED,
                 have or "not installed; run install.ipynb first"))
    try:
        check_allow_rule(params)
        rows.append(("allow rule", OK, "allow_all" if params.allow_all else
                     f"{len(set(params.users) | set(params.allowed_users) | set(params.admin_users))} users may log in"))
    except ConfigError as exc:
        rows.append(("allow rule", FAILED, str(exc)))
    rows.append(service_row(params))
    rows.append(limits_row(params))
    rows += foreign_user_rows(params)
    rows += port_rows(params)
    rows += tls_rows(params)
    return preflight_result("check_configure_preflight", rows)


def service_row(params) -> tuple[str, str, str]:
    """How the hub will run: a systemd unit (systemd is PID 1) or a managed process, or why neither fits."""
    from hubrunbook.host import systemd

    try:
        mode = systemd.mode(params)
    except PreflightError as exc:
        return ("hub service", FAILED, str(exc))
    if mode == "systemd":
        return ("hub service", OK, f"systemd is PID 1: the hub runs as {systemd.unit(params)}, enabled at boot")
    why = "service: 'process' was asked for" if params.service == "process" else "systemd is not PID 1 here"
    return ("hub service", OK, f"a managed background process ({why}); it will not start at boot")


def limits_row(params) -> tuple[str, str, str]:
    """Limits per user (hub/limits.py): what each server gets here, or why an explicit mem_limit/cpu_limit is refused."""
    from hubrunbook.hub.limits import resolve_limits

    try:
        return ("limits per user", OK, resolve_limits(params).summary())
    except PreflightError as exc:
        return ("limits per user", FAILED, str(exc))


def foreign_user_rows(params) -> list[tuple[str, str, str]]:
    """A row per listed user that exists but was not created by hubrunbook and has no passwords entry."""
    from hubrunbook.host.users import lookup, managed_names, read_registry

    ours = read_registry(params)
    rows = []
    for name in managed_names(params):
        if lookup(name) and name not in ours and name not in params.passwords:
            rows.append((f"user {name}", FAILED,
                         f"{name} already exists and was not created by hubrunbook, so its password is not ours to set or "
                         f"know (verification logs in as it). Fix: add passwords: {{{name}: 'env:VAR'}} with its password, "
                         "or choose another name"))
    return rows
