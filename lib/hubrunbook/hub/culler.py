"""Idle culling (issue 13): jupyterhub-idle-culler as a service the hub starts, watches and restarts itself.

The culler asks the hub's REST API every ``cull_every`` seconds which servers are ready and stops those idle for
``cull_idle_timeout`` seconds (and, with ``cull_max_age``, those older than that). It is a *managed* service
(``c.JupyterHub.services`` with a ``command``): the hub starts it with the hub, restarts it when it exits, stops it
with the hub, and hands it its API token and API URL in its environment (``JUPYTERHUB_API_TOKEN``,
``JUPYTERHUB_API_URL``); the token is made at each hub start and never written to the config, argv or a file. The
role ``idle-culler`` (``c.JupyterHub.load_roles``) gives that token the four scopes the culler uses: list the users,
read their servers and activity, stop servers. Users are never culled (no ``admin:users``).

How the command is hardened (measured with jupyterhub-idle-culler 2.0.0):

- it loads ``idle_culler_config.py`` from its working directory, as Python, unless told otherwise: ``--config=``
  (empty) turns that off and ``cwd`` is the hub's 0700 state directory;
- ``python -I``: neither the working directory nor PYTHON* variables reach its imports;
- when a cull fails (the hub unreachable, a 403), tornado logs ``Exception in callback functools.partial(<function
  cull_idle …>, url=…, api_token='<the token>', …)``: the token in the hub's log. So the command is a launcher
  that adds a filter to the ``tornado.application`` logger replacing that value, then runs the culler's ``main``.

What the hub knows of activity lags behind: it reads the proxy's per-route activity every
``c.JupyterHub.last_activity_interval`` (300 s by default), so with a short timeout an active user would look idle.
That interval is set to a quarter of the timeout (10–300 s). A server that only computes, with no browser connected,
reports its activity itself, every ``JUPYTERHUB_ACTIVITY_INTERVAL`` seconds of its environment (300 when unset): the
spawner's environment sets it to the same quarter, so a busy kernel is never older news than a quarter of the timeout.
"""
from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone

import psutil

from hubrunbook.core.steps import FAILED, OK, SKIPPED, StepResult

SERVICE = "idle-culler"
ROLE = "idle-culler"
SCOPES = ("list:users", "read:users:activity", "read:servers", "delete:servers")
MODULE = "jupyterhub_idle_culler"
HIDDEN = "api_token='[hidden]'"
# tornado prints the failed periodic callback with its arguments, the culler's API token among them: filter it out
LAUNCHER = ("import logging, re, jupyterhub_idle_culler as c; logging.getLogger('tornado.application').addFilter("
            "lambda r: [setattr(r, 'msg', re.sub(r\"api_token='[^']*'\", \"" + HIDDEN + "\", r.getMessage())), "
            "setattr(r, 'args', ())] and True); c.main()")
TOKEN_IN_LOG_RE = re.compile(r"api_token=(['\"])[A-Za-z0-9_.~+/=-]+\1")  # a value, not the launcher's own pattern
REACH_TIMEOUT = 30  # seconds after the hub's start within which the culler's first request comes (measured: < 2 s)


def enabled(params) -> bool:
    return params.cull_idle_timeout > 0


def cull_every(params) -> int:
    """Seconds between two culls: the parameter, or ('auto') a tenth of the timeout, 10–300 s."""
    if params.cull_every != "auto":
        return params.cull_every
    return min(max(params.cull_idle_timeout // 10, 10), 300)


def activity_interval(params) -> int:
    """c.JupyterHub.last_activity_interval: a quarter of the timeout, 10–300 s (300 is JupyterHub's default)."""
    return min(max(params.cull_idle_timeout // 4, 10), 300)


def culler_command(params) -> list[str]:
    """The service's command: the hub env's Python, isolated, running the culler through the token-hiding launcher."""
    cmd = [str(params.layout.env_bin("python")), "-I", "-c", LAUNCHER, f"--timeout={params.cull_idle_timeout}",
           f"--cull-every={cull_every(params)}"]
    if params.cull_max_age:
        cmd.append(f"--max-age={params.cull_max_age}")
    return [*cmd, "--config="]


def culler_roles(params) -> list[dict]:
    """The culler's role for c.JupyterHub.load_roles (empty when culling is off)."""
    if not enabled(params):
        return []
    return [{"name": ROLE, "description": "jupyterhub-idle-culler: stop idle servers (hubrunbook)",
             "scopes": list(SCOPES), "services": [SERVICE]}]


def culler_settings(params) -> dict[str, str | None]:
    """The culler's config lines besides its role ({'c.Class.trait': source}; None removes our line: culling off)."""
    on = enabled(params)
    service = {"name": SERVICE, "command": culler_command(params), "cwd": str(params.layout.state_dir)}
    # what users' servers report of their own activity (a kernel busy with no tab open), and how often
    server_env = {"JUPYTERHUB_ACTIVITY_INTERVAL": str(activity_interval(params))}
    return {
        "c.JupyterHub.services": repr([service]) if on else None,
        "c.JupyterHub.last_activity_interval": repr(activity_interval(params)) if on else None,
        "c.Spawner.environment": repr(server_env) if on else None,
    }


# --- what runs ----------------------------------------------------------------------------------------------------
def hide_tokens(line: str) -> str:
    """*line* with an ``api_token='…'`` argument (tornado's print of a failed cull) replaced."""
    return TOKEN_IN_LOG_RE.sub(HIDDEN, line)


def culler_processes(params, hub_pid: int | None = None) -> list[tuple[int, list[str]]]:
    """(pid, argv) of the hub's children that run jupyterhub-idle-culler. Read-only."""
    from hubrunbook.hub.service import managed_hub_pid

    pid = hub_pid or managed_hub_pid(params)
    if not pid:
        return []
    out = []
    try:
        children = psutil.Process(pid).children()
    except psutil.Error:
        return []
    for child in children:
        try:
            argv = child.cmdline()
        except psutil.Error:
            continue
        if any(MODULE in part for part in argv):
            out.append((child.pid, argv))
    return out


def orphan_cullers(params, hub_pid: int | None) -> list[tuple[int, int]]:
    """(pid, parent pid) of cullers of this deployment that are not the running hub's children — left by a hub that
    was killed (kill -9, the OOM killer): a managed service is started in a session of its own, so it outlives its
    hub and keeps culling with a token the hub never revoked. Proven ours: root's, run by this prefix's hub-env Python
    with the culler's module, in this prefix's state directory. Read-only."""
    python, state = str(params.layout.env_bin("python")), os.path.realpath(params.layout.state_dir)
    out = []
    for proc in psutil.process_iter(["ppid", "uids", "cmdline"]):
        try:
            argv, ppid = proc.info["cmdline"] or [], proc.info["ppid"]
            if not argv or argv[0] != python or not any(MODULE in a for a in argv) or (hub_pid and ppid == hub_pid):
                continue
            if proc.info["uids"].real != 0 or proc.cwd() != state:
                continue
        except (psutil.Error, TypeError):
            continue
        out.append((proc.pid, ppid))
    return out


def culler_services(params) -> dict[str, dict]:
    """The hub database's services whose command runs jupyterhub-idle-culler (database.service_records)."""
    from hubrunbook.hub.database import service_records

    return {name: rec for name, rec in service_records(params.layout.hub_db).items()
            if any(MODULE in str(part) for part in rec["command"])}


STARTED_RE = re.compile(r"Starting service '([^']+)'")
CULL_FAILED_RE = re.compile(r"Exception in callback .*cull_idle")
EXITED_RE = re.compile(r"Service (\S+) exited with status (-?\d+)")
REASON_RE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception|Exit)\w*)(?::\s*(.*))?$")
INLINE_REASON_RE = re.compile(r"exception=([A-Za-z_]\w*)\((.*)\)>\)\s*$|exception=(HTTP \d+: [^>]*)>\)\s*$")


def culler_errors(lines: list[tuple[int, str]], names=(SERVICE,)) -> list[tuple[str, str]]:
    """(evidence line, reason) of each failed cull and each exit of a culler service *names* in hub log *lines*.

    A failed cull is tornado's ``Exception in callback … cull_idle …`` line; its reason is the exception the
    traceback below it ends with (``ConnectionRefusedError: [Errno 111] Connection refused``, ``tornado.httpclient.
    HTTPClientError: HTTP 403: Forbidden``) or, for the first cull, the ``exception=…`` at the end of the line itself.
    """
    texts = [t.rstrip() for _, t in lines]
    out = []
    for i, text in enumerate(texts):
        if CULL_FAILED_RE.search(text):
            reason = ""
            if m := INLINE_REASON_RE.search(text):
                reason = m.group(3) or f"{m.group(1)}: {m.group(2)}"
            else:
                for below in texts[i + 1:i + 40]:
                    if below and not below[0].isspace() and (m := REASON_RE.match(below)):
                        reason = below
                        break
            out.append((hide_tokens(text)[:300], hide_tokens(reason)[:300]))
        elif (m := EXITED_RE.search(text)) and m.group(1) in names:
            out.append((hide_tokens(text)[:300], f"the culler exited with status {m.group(2)}"))
    return out


def since_start(lines: list[tuple[int, str]], name: str = SERVICE) -> list[tuple[int, str]]:
    """The hub log *lines* from the hub's last start of the service *name* on (all of them when it is not there)."""
    starts = [i for i, (_, text) in enumerate(lines) if (m := STARTED_RE.search(text)) and m.group(1) == name]
    return lines[starts[-1]:] if starts else lines


def reason_kind(reason: str) -> str:
    """'refused' (the hub answered 403/401: scopes or token), 'unreachable' (no connection), or 'exited'."""
    if re.search(r"HTTP 40[13]", reason):
        return "refused"
    if "exited with status" in reason:
        return "exited"
    return "unreachable"


def _age(stamp: str | None) -> str:
    """'2026-12-04T20:19:37 UTC (3 s ago)' for a naive UTC time from the hub's database."""
    if not stamp:
        return "never"
    try:
        ago = (datetime.now(timezone.utc).replace(tzinfo=None) - datetime.fromisoformat(stamp)).total_seconds()
    except ValueError:
        return stamp
    return f"{stamp[:19].replace(' ', 'T')} UTC ({ago:.0f} s ago)"


def _options(argv: list[str]) -> str:
    """The culler's options in *argv* (not the launcher's code)."""
    return " ".join(a for a in argv if a.startswith("--")) or " ".join(argv[-3:])


def culler_state(params) -> dict:
    """What is known about the running culler: processes, the hub's record of it, its errors in the hub log."""
    from hubrunbook.troubleshoot.logscan import hub_log_lines

    rec = culler_services(params).get(SERVICE)
    return {"processes": culler_processes(params), "record": rec,
            "reached": bool(rec and rec["token"] and rec["token"]["last_activity"]),
            "errors": culler_errors(since_start(hub_log_lines(params, 256)))}


# --- the step --------------------------------------------------------------------------------------------------
def check_idle_culler(params, *, dry_run: bool = False) -> StepResult:
    """The culler runs as the hub's child with our command, the hub gave it exactly its role's scopes, and it reached
    the hub (the hub recorded its token's first use; no failed cull in the hub log since the hub started). With
    culling off: no culler runs. Read-only; waits up to REACH_TIMEOUT s for the culler's first request."""
    name = "check_idle_culler"
    if dry_run:
        return StepResult(name, SKIPPED, "dry run: the hub was not changed, so nothing to verify")
    if not enabled(params):
        procs, recs = culler_processes(params), culler_services(params)
        if procs or recs:
            return StepResult(name, FAILED, "cull_idle_timeout is 0 but the hub still runs a culler: restart the hub "
                              "(ensure_hub_running) so that it reads the config", [
                                  ("culler process", FAILED, ", ".join(f"pid {p}" for p, _ in procs) or "none"),
                                  ("services in the hub's database", FAILED, ", ".join(recs) or "none")])
        return StepResult(name, OK, "culling is off (cull_idle_timeout: 0): no culler service, no culler process")
    deadline = time.monotonic() + REACH_TIMEOUT
    while True:
        state = culler_state(params)
        if (state["reached"] and state["processes"]) or time.monotonic() > deadline:
            break
        time.sleep(1)
    rows = [_process_row(params, state), _scopes_row(state), _reach_row(state)]
    failed = [r[0] for r in rows if r[1] == FAILED]
    if failed:
        return StepResult(name, FAILED, f"{len(failed)} check(s) failed: {', '.join(failed)}; troubleshoot.ipynb "
                          "explains the culler's errors", rows)
    return StepResult(name, OK, f"idle servers are stopped after {params.cull_idle_timeout} s without activity"
                      + (f" or {params.cull_max_age} s after their start" if params.cull_max_age else "")
                      + f", looked for every {cull_every(params)} s", rows)


def _process_row(params, state) -> tuple[str, str, str]:
    want = culler_command(params)
    procs = state["processes"]
    if not procs:
        return ("culler process", FAILED, "no child of the hub runs jupyterhub-idle-culler (the hub restarts an "
                                          "exited culler: see the hub log)")
    ours = [pid for pid, argv in procs if argv == want]
    if not ours:
        return ("culler process", FAILED, f"pid {procs[0][0]} runs another command than the config's (hub not "
                                          f"restarted?): {_options(procs[0][1])}")
    return ("culler process", OK, f"pid {ours[0]}, child of the hub: {_options(want)}")


def _scopes_row(state) -> tuple[str, str, str]:
    rec = state["record"]
    if rec is None:
        return ("role and scopes", FAILED, f"the hub's database has no service {SERVICE!r}: the hub was not "
                                           "restarted with this config")
    roles = rec["roles"]
    token = (rec["token"] or {}).get("scopes")
    exact = list(roles) == [ROLE] and sorted(roles[ROLE]) == sorted(SCOPES)
    if rec["admin"] or not exact or token not in (["inherit"], sorted(SCOPES)):
        return ("role and scopes", FAILED, f"admin {rec['admin']}, roles {roles}, token scopes {token}; wanted only "
                                           f"the role {ROLE} with {', '.join(SCOPES)}")
    return ("role and scopes", OK, f"role {ROLE} only, not admin: {', '.join(SCOPES)}; its token inherits them")


def _reach_row(state) -> tuple[str, str, str]:
    rec, errors = state["record"], state["errors"]
    failed = (f"; {len(errors)} failed cull(s) in the hub log since it started, last: {errors[-1][1] or errors[-1][0]}"
              if errors else "")
    if not state["reached"]:
        made = _age(rec["token"]["created"]) if rec and rec["token"] else "no token"
        return ("reached the hub", FAILED, f"the hub never accepted the culler's token (made {made}) within "
                                           f"{REACH_TIMEOUT} s{failed}")
    return ("reached the hub", OK, f"the hub accepted its token first at {_age(rec['token']['last_activity'])}"
            + (failed + " (troubleshoot.ipynb explains it)" if failed else "; no failed cull in the hub log"))
