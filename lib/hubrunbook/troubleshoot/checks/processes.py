"""Checks of processes and ports: the stale proxy of guide §3.2, foreign programs on our ports, the hub itself."""
from __future__ import annotations

import re

from hubrunbook.troubleshoot import facts, repairs
from hubrunbook.host import ports, systemd
from hubrunbook.troubleshoot.catalog import ERROR, WARNING, Check, Context, Finding, register
from hubrunbook.troubleshoot.logscan import hub_log_lines
from hubrunbook.host.process import hub_api_ok
from hubrunbook.hub.proxy import unproven_reason
from hubrunbook.troubleshoot.checks.common import _hub_pid, _listeners, _proxy_pid


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
                fix="stop that program yourself (it is not ours; hubrunbook leaves it alone) or choose another "
                    "proxy_api_port", repairable=False))
            continue
        unproven = unproven_reason(p, pid)
        if unproven:
            out.append(PROXY_API.finding(
                ERROR, f"port {p.proxy_api_port} (proxy_api_port) is held by a proxy that is not proven ours",
                f"{who} listens on {p.proxy_api_port}; {unproven}; the hub's token was not sent to it",
                id="proxy-api-port-unproven", title="a proxy hubrunbook cannot prove is its own holds the proxy API port",
                cause="a configurable-http-proxy started by hand or by another deployment (guide §3.2: the hub then "
                      "gets 403), or a program of another user posing as one",
                fix=f"check what pid {pid} is and stop it yourself (kill {pid}); hubrunbook sends it no token and "
                    "never signals it", repairable=False, pid=pid))
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
                evidence + f"; state/jupyterhub-proxy.pid: {facts.pid_file_text(p.layout.proxy_pid_file)}"
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
            f"hub pid {_hub_pid(ctx)}; proxy pid file: {facts.pid_file_text(p.layout.proxy_pid_file)}",
            id="public-port-unserved", title="the proxy is gone",
            cause="the proxy died (killed, OOM) while the hub kept running",
            fix="restart the hub (repaired with apply_fixes)")]
    return []


def _unit_state(ctx: Context) -> dict:
    return ctx.fact("unit_state", lambda: systemd.state(ctx.params))


def check_hub_service(ctx: Context) -> list[Finding]:
    """Will the hub come back after a crash or a reboot? A systemd unit, installed and enabled; else a warning."""
    p = ctx.params
    if systemd.mode(p) == "process":
        why = ("service: 'process' was chosen" if p.service == "process" else
               "systemd is not PID 1 on this machine (/run/systemd/system is missing)")
        return [HUB_SERVICE.finding(
            WARNING, "the hub runs as a managed background process: nothing restarts it after a crash or a reboot",
            f"{why}; state/hub.pid: {facts.pid_file_text(p.layout.hub_pid_file)}", id="hub-not-a-service",
            title="the hub is not a system service", cause=why,
            fix="start it again with configure.ipynb after a reboot (or troubleshoot with apply_fixes); on a server "
                "booted with systemd, service: 'auto' makes it a unit", repairable=False)]
    st = _unit_state(ctx)
    if not p.config_path.exists():
        return []  # not configured yet: the config check says so
    if st.get("LoadState") == "not-found" or not systemd.unit_path(p).exists():
        return [HUB_SERVICE.finding(ERROR, f"the hub's unit {systemd.unit(p)} is not installed",
                                    f"{systemd.unit_path(p)}: absent; systemctl: {systemd.describe_state(st)}")]
    if st.get("UnitFileState") != "enabled":
        return [HUB_SERVICE.finding(WARNING, f"{systemd.unit(p)} is not enabled: the hub will not start at boot",
                                    f"systemctl: {systemd.describe_state(st)}", id="hub-service-disabled",
                                    title="the hub's unit is not enabled")]
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
    """The managed hub runs (the unit, or state/hub.pid) and answers GET /hub/api with 200 JSON through the proxy."""
    p = ctx.params
    pid = _hub_pid(ctx)
    ok, seen = hub_api_ok(p.public_url, timeout=3) if pid else (False, "")
    if ok:
        return []
    lines = [t.strip() for _, t in ctx.fact("log_lines", lambda: hub_log_lines(p, ctx.log_tail_kb)) if t.strip()]
    if systemd.mode(p) == "systemd":
        st = _unit_state(ctx)
        steady = st.get("ActiveState") == "active" and st.get("SubState") == "running" and st.get("NRestarts") in ("0", None)
        if pid is None or not steady:  # not running, or exiting and restarted by systemd over and over
            return [HUB_RUNNING.finding(
                ERROR, f"the hub is not running: {systemd.unit(p)} is {st.get('ActiveState', '?')} "
                       f"({st.get('SubState', '?')}) after {st.get('NRestarts', '?')} restarts",
                f"unit {systemd.unit(p)}: {systemd.describe_state(st)}; journal: {_journal_evidence(lines)}")]
    elif pid is None:
        last = lines[-1][:300] if lines else "(no log)"
        return [HUB_RUNNING.finding(ERROR, "the managed hub is not running",
                                    f"state/hub.pid: {facts.pid_file_text(p.layout.hub_pid_file)}; last log line: {last}")]
    return [HUB_RUNNING.finding(
        ERROR, f"the hub runs (pid {pid}) but {p.public_url}/hub/api gives {seen}",
        f"GET {p.public_url}/hub/api → {seen}", id="hub-api", title="the hub does not answer through the proxy",
        cause="the proxy does not own the public port, or the hub is stuck", fix="see the other findings; "
        "restart the hub when they are fixed", repairable=False)]


def _journal_evidence(lines: list[str]) -> str:
    """The last error the hub printed (the reason it exits) and the journal's last line."""
    errors = [line for line in lines if re.search(r"(Error|Exception|error:|Traceback)", line)]
    picked = ([errors[-1]] if errors else []) + (lines[-1:] if lines and (not errors or lines[-1] != errors[-1]) else [])
    return " … ".join(x[:300] for x in picked) or "(empty)"


PROXY_API = register(Check(
    "proxy-api-port", "a stale configurable-http-proxy holds the proxy API port",
    "api_request to proxy failed: 403, message='Forbidden'  (tornado.httpclient.HTTPError: HTTP 403: Forbidden in "
    "older hubs)",
    "a proxy started earlier (by a hub that was killed, or by hand) still listens on proxy_api_port with another "
    "CONFIGPROXY_AUTH_TOKEN; the new hub's requests are refused and it exits",
    "stop that proxy by PID, never `ps aux | grep` and kill by name; repaired with apply_fixes only when it is proven "
    "ours (root, our node and proxy script, our API port, the PID the hub recorded), else named for you to stop; "
    "then start the hub",
    check_proxy_api_port, repairs.repair_stale_proxy, guide="§3.2", stage="ports"))


PUBLIC_PORT = register(Check(
    "public-port", "another program holds the public port",
    "[ConfigProxy] error: Uncaught Exception: listen EADDRINUSE: address already in use 127.0.0.1:8000",
    "the proxy logs EADDRINUSE but keeps running and the hub reports success; users reach the other program",
    "stop that program yourself (it is not ours; never killed by hubrunbook) or choose another port, then restart "
    "the hub", check_public_port, stage="ports"))


HUB_PORT = register(Check(
    "hub-port", "another program holds the hub's own port",
    "Failed to bind hub to http://127.0.0.1:8081/hub/ … OSError: [Errno 98] Address already in use",
    "something else (often a second JupyterHub) listens on hub_port; the hub exits at start",
    "stop that program yourself or choose another hub_port", check_hub_port, stage="ports"))


HUB_SERVICE = register(Check(
    "hub-service", "the hub is not installed as an enabled systemd unit",
    "systemctl status jupyterhub → Unit jupyterhub.service could not be found (or: disabled)",
    "the unit file was removed or disabled, or configure never ran under systemd; the hub then does not come back "
    "after a reboot or a crash",
    "re-run configure.ipynb, or troubleshoot with apply_fixes: writes and enables the unit, starts it and waits for "
    "/hub/api", check_hub_service, repairs.repair_hub_running, stage="hub"))


HUB_RUNNING = register(Check(
    "hub-running", "the managed hub is not running",
    "state/hub.pid names a process that is gone; the log ends with the reason it stopped",
    "the hub exited (see the log findings) or was never started",
    "fix the other findings, then start it (repaired with apply_fixes: starts the managed hub and waits for "
    "/hub/api)", check_hub_running, repairs.repair_hub_running, stage="hub"))


# --- idle culling (issue 13; hub/culler.py) -----------------------------------------------------------------------
CULLER_CAUSES = {
    "unreachable": (
        "the culler cannot connect to the hub's API: the URL it was given (JUPYTERHUB_API_URL from the hub, or a "
        "--url written by hand into its command) does not lead to the hub — c.JupyterHub.hub_connect_ip / "
        "hub_connect_url / hub_bind_url point elsewhere — or the hub does not answer there",
        "give the culler no --url (the hub hands it its own API URL) and remove hand-written hub_connect_* / "
        "hub_bind_url lines, then re-run configure.ipynb (it writes the culler's service line and restarts the "
        "hub); `ss -ltnp 'sport = :HUB_PORT'` shows who listens on hub_port"),
    "refused": (
        "the hub answers the culler with 403: its token lacks a scope it needs (list:users, read:users:activity, "
        "read:servers, delete:servers) — the role idle-culler is missing, names another service, or a hand-written "
        "c.JupyterHub.load_roles or services line replaced ours",
        "re-run configure.ipynb: it writes the role idle-culler with those four scopes for the service idle-culler "
        "and restarts the hub; remove hand-written load_roles / services lines written after ours"),
    "exited": (
        "the culler process exits and the hub starts it again: jupyterhub-idle-culler is missing from the hub env, "
        "or its command has an argument it refuses",
        "re-run install.ipynb (it installs idle_culler_version into the hub env) and configure.ipynb; the lines above "
        "'Service … exited' in the hub log say why it exited"),
}


def check_idle_culler(ctx: Context) -> list[Finding]:
    """A culler the running hub was started with (its database's services) that does not reach the hub: its failed
    culls in the hub log (the culler's own error lines, which the hub captures as the service's output), no culler
    process, or a token the hub never accepted."""
    from hubrunbook.hub import culler

    p = ctx.params
    hub = _hub_pid(ctx)
    out = [IDLE_CULLER.finding(
        WARNING, f"an idle culler of this hub runs without it (pid {pid}): left by a hub that was killed",
        f"pid {pid} runs {p.layout.env_bin('python')} with jupyterhub_idle_culler in {p.layout.state_dir}, as root; its "
        f"parent is pid {ppid}, not the hub ({hub or 'not running'})", id="idle-culler-orphan",
        title="an idle culler outlived its hub",
        cause="the hub was killed (kill -9, the OOM killer) while it ran as a managed process: its services run in a "
              "session of their own and survive it; the orphan keeps culling beside the new hub's culler, with a token "
              "the hub does not revoke",
        fix="stop it by its PID (repaired with apply_fixes, after proving again that it is this deployment's culler)",
        pid=pid) for pid, ppid in culler.orphan_cullers(p, hub)]
    if hub is None:
        return out  # hub-running says why the hub is down
    lines = ctx.fact("log_lines", lambda: hub_log_lines(p, ctx.log_tail_kb))
    for name, rec in culler.culler_services(p).items():
        errors = culler.culler_errors(culler.since_start(lines, name), names=(name,))
        procs = culler.culler_processes(p, hub)
        token = rec["token"] or {}
        reached = bool(token.get("last_activity"))
        if errors:
            line, reason = errors[-1]
            kind = culler.reason_kind(reason)
            cause, fix = CULLER_CAUSES[kind]
            severity = WARNING if reached and kind == "unreachable" else ERROR
            out.append(IDLE_CULLER.finding(
                severity, f"the idle culler {name!r} " + {"unreachable": "cannot reach the hub's API",
                                                           "refused": "is refused by the hub (403)",
                                                           "exited": "keeps exiting"}[kind]
                + f": {len(errors)} failed attempt(s) since the hub started it"
                + ("; it did reach the hub before" if reached and kind == "unreachable" else ""),
                f"hub log: {line}" + (f" … {reason}" if reason and reason not in line else ""),
                cause=cause, fix=fix, repairable=False, kind=kind))
        elif not procs:
            out.append(IDLE_CULLER.finding(
                ERROR, f"the hub runs (pid {hub}) but no idle culler process: idle servers are never stopped",
                f"no child of pid {hub} runs jupyterhub-idle-culler; the hub's database lists the service {name!r} "
                f"with the command {' '.join(rec['command'][-4:])}", cause=CULLER_CAUSES["exited"][0],
                fix=CULLER_CAUSES["exited"][1], repairable=False, kind="exited"))
        elif not reached and _older_than(token.get("created"), culler.REACH_TIMEOUT):
            out.append(IDLE_CULLER.finding(
                ERROR, f"the idle culler {name!r} runs (pid {procs[0][0]}) but never reached the hub",
                f"the hub made its token at {token.get('created', '?')[:19]} UTC and never saw it used; no culler "
                "error in the hub log (its output may go elsewhere)", cause=CULLER_CAUSES["unreachable"][0],
                fix=CULLER_CAUSES["unreachable"][1], repairable=False, kind="unreachable"))
    return out


def _older_than(stamp: str | None, seconds: float) -> bool:
    from datetime import datetime, timezone

    try:
        made = datetime.fromisoformat(stamp or "")
    except ValueError:
        return False
    return (datetime.now(timezone.utc).replace(tzinfo=None) - made).total_seconds() > seconds


IDLE_CULLER = register(Check(
    "idle-culler", "the idle culler cannot reach the hub",
    "Exception in callback functools.partial(<function cull_idle at 0x7f…>, url='http://127.0.0.1:8081/hub/api', "
    "api_token='[hidden]', inactive_limit=3600, …) … ConnectionRefusedError: [Errno 111] Connection refused",
    "the culler (a service the hub runs, cull_idle_timeout) cannot use the hub's API: a wrong URL, a token without "
    "its scopes (403), or it exits at start; idle servers then run and hold memory forever",
    "by the reason in the log: no --url of your own, the role idle-culler with its four scopes, jupyterhub-idle-culler "
    "in the hub env; re-run install.ipynb / configure.ipynb (the culler's lines and the hub restart). A culler that "
    "outlived a killed hub (idle-culler-orphan) is stopped by PID with apply_fixes, once proven this deployment's",
    check_idle_culler, repairs.repair_orphan_culler, stage="hub"))
