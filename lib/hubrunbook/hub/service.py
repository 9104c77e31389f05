"""The running hub (guide §2.1.1): `jupyterhub -f <config>` as a systemd unit where systemd is PID 1, else as a
managed background process with a pid file and a log.

The hub's environment comes from ``<prefix>/secrets/hub.env`` (0600): the proxy auth token
(so a restarted hub and a surviving proxy agree) and any OAuth client secrets; the unit reads it as its
EnvironmentFile. The managed process is started, stopped and restarted by recorded, proven PIDs only; the unit
by systemctl (the proxy is the hub's child in the unit's cgroup, so stopping the unit stops both).
"""
from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path

from hubrunbook.host import ports, systemd
from hubrunbook.core import secretref
from hubrunbook.core.errors import HubError
from hubrunbook.hub.envfile import read_hub_env, set_hub_env
from hubrunbook.host.process import hub_api_ok, read_pid, start_hub, started_before_record, stop_hub, wait_hub_ready
from hubrunbook.core.steps import CHANGED, FAILED, OK, UNCHANGED, WOULD_CHANGE, StepResult


# --- files ---------------------------------------------------------------------------------------
def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def ensure_hub_secrets(params, *, dry_run: bool = False) -> StepResult:
    """Create the cookie secret (0600) and a persistent proxy auth token once; keep them across re-runs."""
    made = []
    cookie = params.layout.cookie_secret
    if not cookie.exists():
        made.append(f"cookie secret {cookie}")
        if not dry_run:
            _private_dir(params.layout.secrets_dir)
            secretref.write_private(cookie, secrets.token_hex(32))
    if "CONFIGPROXY_AUTH_TOKEN" not in read_hub_env(params):
        made.append(f"proxy auth token in {params.layout.hub_env}")
        set_hub_env(params, {"CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(32)}, dry_run=dry_run)
    if not dry_run:
        for p in (cookie, params.layout.hub_env):
            if p.exists() and p.stat().st_mode & 0o077:
                os.chmod(p, 0o600)
                made.append(f"mode 0600 on {p}")
    if not made:
        return StepResult("ensure_hub_secrets", UNCHANGED, f"cookie secret and proxy token present, 0600, in {params.layout.secrets_dir}")
    if dry_run:
        return StepResult("ensure_hub_secrets", WOULD_CHANGE, "would create " + ", ".join(made))
    return StepResult("ensure_hub_secrets", CHANGED, "created " + ", ".join(made))


# --- process -------------------------------------------------------------------------------------
def fingerprint(params) -> str:
    """What the running hub was started from: config file, hub.env and the hub env's marker."""
    h = hashlib.sha256()
    for p in (params.config_path, params.layout.hub_env, params.layout.env_marker):
        h.update(p.read_bytes() if p.exists() else b"-")
    return h.hexdigest()


def is_our_hub(params, pid: int | None) -> bool:
    """*pid* runs `jupyterhub -f <our config>` as root (a user can start a process with any command line)."""
    cmd = ports.cmdline(pid) if pid else []
    return (any(part.endswith("jupyterhub") for part in cmd[:2]) and str(params.config_path) in cmd
            and ports.owner_uid(pid) == 0)


def background_hub_pid(params) -> int | None:
    """PID of a managed background hub: from hub.pid, alive, started before hub.pid was written (not a recycled
    PID), and really `jupyterhub -f <our config>`."""
    pid = read_pid(params.layout.hub_pid_file)
    return pid if is_our_hub(params, pid) and started_before_record(pid, params.layout.hub_pid_file) else None


def managed_hub_pid(params) -> int | None:
    """PID of our running hub: the unit's main PID under systemd, else the background process of hub.pid."""
    if systemd.mode(params) == "systemd":
        pid = systemd.main_pid(params)
        if is_our_hub(params, pid):
            return pid
    return background_hub_pid(params)


def _healthy(params) -> tuple[bool, str]:
    ok, seen = hub_api_ok(params.public_url)
    if not ok:
        return False, f"/hub/api: {seen}"
    proxy = read_pid(params.layout.proxy_pid_file)
    owners = ports.listeners(params.port)
    if not proxy or proxy not in owners:
        return False, f"the proxy does not own port {params.port} (held by {sorted(owners) or 'nobody'})"
    return True, f"JupyterHub {seen}"


def _foreign_port_holders(params) -> list[str]:
    ours = {p for p in (managed_hub_pid(params), background_hub_pid(params), _our_proxy(params, read_pid(params.layout.proxy_pid_file))) if p}
    bad = []
    for name in ("port", "hub_port", "proxy_api_port"):
        port = getattr(params, name)
        holders = ports.listeners(port) - ours
        if holders and not all(_our_proxy(params, p) for p in holders):
            bad.append(f"{name} {port}: {', '.join(ports.describe(p) for p in sorted(holders))}")
    return bad


def _our_proxy(params, pid: int | None) -> int | None:
    """*pid* when it is proven to be our proxy (proxy.unproven_reason), else None: only then is it signalled."""
    from hubrunbook.hub.proxy import unproven_reason

    return pid if pid and not unproven_reason(params, pid, on_api_port=False) else None


def start_managed_hub(params) -> str:
    """Start `jupyterhub -f <config>` with hub.env, record hub.pid and the fingerprint, wait until ready."""
    busy = _foreign_port_holders(params)
    if busy:
        raise HubError("cannot start the hub, ports in use by other processes:\n  " + "\n  ".join(busy) +
                       "\nStop them or choose other ports (troubleshoot.ipynb names them).")
    params.layout.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(params.layout.state_dir, 0o700)
    env = {**read_hub_env(params), "PATH": f"{params.layout.env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"}
    hub = start_hub([str(params.layout.env_bin("jupyterhub")), "-f", str(params.config_path)], cwd=params.layout.state_dir,
                    log_file=params.layout.hub_log, env=env, proxy_pid_file=params.layout.proxy_pid_file)
    secretref.write_private(params.layout.hub_pid_file, f"{hub.pid}\n")
    try:
        version = wait_hub_ready(hub, params.public_url, params.port, params.start_timeout)
    except HubError:
        stop_hub(hub.pid, hub.proxy_pid())
        params.layout.hub_pid_file.unlink(missing_ok=True)
        raise
    params.layout.hub_fingerprint.write_text(fingerprint(params))
    return f"pid {hub.pid}, JupyterHub {version}"


def stop_managed_hub(params, *, dry_run: bool = False) -> StepResult:
    """Stop our hub and its proxy: the unit with systemctl, a background hub by its recorded PIDs. Idempotent."""
    todo = []
    unit_up = systemd.mode(params) == "systemd" and systemd.state(params).get("ActiveState") in ACTIVE_STATES
    if unit_up:
        todo.append(f"unit {systemd.unit(params)}")
    pid, proxy = background_hub_pid(params), _our_proxy(params, read_pid(params.layout.proxy_pid_file))
    if unit_up:
        proxy = None  # a proxy of the unit stops with it
    if pid or proxy:
        todo.append(f"hub pid {pid} and proxy pid {proxy}")
    if not todo:
        return StepResult("stop_managed_hub", UNCHANGED, "no managed hub running")
    if dry_run:
        return StepResult("stop_managed_hub", WOULD_CHANGE, "would stop " + ", ".join(todo))
    done = []
    if unit_up:
        systemd.systemctl("stop", systemd.unit(params))
        done.append(f"stopped {systemd.unit(params)}")
    if pid or proxy:
        done += stop_hub(pid, proxy)
        params.layout.hub_pid_file.unlink(missing_ok=True)
    return StepResult("stop_managed_hub", CHANGED, "; ".join(done) or "stopped")


def ensure_hub_running(params, *, dry_run: bool = False) -> StepResult:
    """Keep our hub running on the current config: leave a healthy, unchanged hub alone; (re)start otherwise.

    Where systemd is PID 1 the hub is a unit (enabled: it starts at boot and restarts after a crash); elsewhere a
    managed background process, which the result says will not start at boot.
    """
    if systemd.mode(params) == "systemd":
        return ensure_hub_unit(params, dry_run=dry_run)
    result = _ensure_background_hub(params, dry_run=dry_run)
    why = ("service: 'process' was asked for" if params.service == "process" else "systemd is not PID 1 here")
    result.detail += f" — a managed process ({why}): it will not start at boot or after a crash"
    return result


def _ensure_background_hub(params, *, dry_run: bool = False) -> StepResult:
    pid = background_hub_pid(params)
    fp_file = params.layout.hub_fingerprint
    same = fp_file.exists() and fp_file.read_text() == fingerprint(params)
    healthy, why = _healthy(params) if pid else (False, "not running")
    if pid and same and healthy:
        return StepResult("ensure_hub_running", UNCHANGED, f"hub pid {pid} running on {params.public_url} ({why})")
    reason = "not running" if not pid else ("config changed" if not same else f"unhealthy: {why}")
    if dry_run:
        return StepResult("ensure_hub_running", WOULD_CHANGE, f"would {'re' if pid else ''}start the hub ({reason})")
    if pid:
        stop_hub(pid, _our_proxy(params, read_pid(params.layout.proxy_pid_file)))
    started = start_managed_hub(params)
    return StepResult("ensure_hub_running", CHANGED, f"{'restarted' if pid else 'started'} the hub ({reason}): {started}, "
                      f"{params.public_url}; log {params.layout.hub_log}")


# --- systemd unit ----------------------------------------------------------------------------------
ACTIVE_STATES = ("active", "activating", "reloading", "deactivating")


def render_hub_unit(params) -> str:
    return systemd.render_unit(params, jupyterhub=params.layout.env_bin("jupyterhub"), hub_env=params.layout.hub_env)


def _unit_plan(params) -> list[tuple[str, str]]:
    """(action, why) that ensure_hub_unit would take, in order; empty when the unit is in place, enabled, runs our
    hub on the current config and answers healthy. Actions: handover, write, enable, restart."""
    want, path = render_hub_unit(params), systemd.unit_path(params)
    have = path.read_text() if path.exists() else None
    st = systemd.state(params)
    plan = []
    bg = background_hub_pid(params)
    if bg:
        plan.append(("handover", f"stop the background hub (pid {bg}) and hand over to the unit"))
    if have != want:
        plan.append(("write", f"{'write' if have is None else 'update'} {path} and reload systemd"))
    if st.get("UnitFileState") != "enabled":
        plan.append(("enable", f"enable {systemd.unit(params)} (start at boot)"))
    fp_file = params.layout.hub_fingerprint
    same = fp_file.exists() and fp_file.read_text() == fingerprint(params) + _unit_digest(want)
    running = st.get("ActiveState") == "active" and is_our_hub(params, systemd.main_pid(params))
    healthy, why = _healthy(params) if running else (False, "")
    if not running:
        plan.append(("restart", f"start {systemd.unit(params)} (now {systemd.describe_state(st)})"))
    elif have != want or not same:
        plan.append(("restart", f"restart {systemd.unit(params)} (config, hub.env or unit changed)"))
    elif not healthy:
        plan.append(("restart", f"restart {systemd.unit(params)} (unhealthy: {why})"))
    return plan


def _unit_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def ensure_hub_unit(params, *, dry_run: bool = False) -> StepResult:
    """The hub as an enabled systemd unit on the current config, verified healthy. Idempotent: an unchanged, healthy
    unit is left alone; a changed unit, config or hub.env gets a daemon-reload and a restart."""
    name = systemd.unit(params)
    plan = _unit_plan(params)
    if not plan:
        _, why = _healthy(params)
        return StepResult("ensure_hub_running", UNCHANGED, f"{name} active and enabled, main pid "
                          f"{systemd.main_pid(params)}, on {params.public_url} ({why}); starts at boot, restarts on failure")
    said = "; ".join(why for _, why in plan)
    if dry_run:
        return StepResult("ensure_hub_running", WOULD_CHANGE, f"would {said}")
    actions = {action for action, _ in plan}
    if "handover" in actions:
        stop_hub(background_hub_pid(params), _our_proxy(params, read_pid(params.layout.proxy_pid_file)))
        params.layout.hub_pid_file.unlink(missing_ok=True)
    want = render_hub_unit(params)
    if "write" in actions:
        params.layout.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(params.layout.state_dir, 0o700)
        systemd.write_unit(params, want)
    if "enable" in actions:
        systemd.systemctl("enable", "--quiet", name)
    if "restart" in actions:
        busy = [] if systemd.state(params).get("ActiveState") in ACTIVE_STATES else _foreign_port_holders(params)
        if busy:
            raise HubError(f"cannot start {name}, ports in use by other processes:\n  " + "\n  ".join(busy) +
                           "\nStop them or choose other ports (troubleshoot.ipynb names them).")
        if systemd.state(params).get("ActiveState") == "failed":
            systemd.systemctl("reset-failed", name)  # a unit that hit its start limit refuses a plain restart
        systemd.systemctl("restart", name)
    pid = wait_unit_ready(params, params.start_timeout)
    params.layout.hub_fingerprint.write_text(fingerprint(params) + _unit_digest(want))
    return StepResult("ensure_hub_running", CHANGED, f"{said} → {name} active, main pid {pid}, {params.public_url}; "
                      f"logs: journalctl -u {name}")


def wait_unit_ready(params, timeout: float) -> int:
    """Wait until the unit runs our hub, /hub/api answers 200 JSON and the proxy owns the public port; its main PID.

    Raises HubError with the unit's state and last journal lines when the unit fails or *timeout* passes."""
    deadline = time.monotonic() + timeout
    seen = "nothing yet"
    while time.monotonic() < deadline:
        st = systemd.state(params)
        if st.get("ActiveState") == "failed":
            break
        pid = systemd.main_pid(params)
        if st.get("ActiveState") == "active" and is_our_hub(params, pid):
            ok, seen = _healthy(params)
            if ok:
                return pid
        else:
            seen = systemd.describe_state(st)
        time.sleep(0.2)
    raise HubError(f"{systemd.unit(params)} did not become ready within {timeout:g} s (waiting for {params.public_url}"
                   f"/hub/api → 200 JSON and the proxy on port {params.port}; last seen: {seen}).\n"
                   + systemd.failure_report(params))


def check_hub_health(params) -> StepResult:
    """Is our hub running, answering /hub/api with 200 JSON, and does its proxy own the public port? Read-only."""
    pid = managed_hub_pid(params)
    if not pid and systemd.mode(params) == "systemd":
        return StepResult("check_hub_health", FAILED, f"{systemd.unit(params)} runs no hub: "
                          f"{systemd.describe_state(systemd.state(params))}")
    if not pid:
        return StepResult("check_hub_health", FAILED, f"no managed hub running (pid file {params.layout.hub_pid_file})")
    ok, why = _healthy(params)
    return StepResult("check_hub_health", OK if ok else FAILED, f"hub pid {pid} on {params.public_url}: {why}")

