"""Idle culling (issue 13) on a real hub: jupyterhub-idle-culler, run by the hub as a service, stops the server of a
user who does nothing and leaves alone the server of a user who keeps using it; its lines change with the timeout;
troubleshoot explains a culler that cannot reach the hub.

Two users (hrb-cul<pid>a, the active admin, and hrb-cul<pid>i, idle) log in and spawn over real HTTP; the active one
keeps asking its server's API for its status, as JupyterLab does. cull_idle_timeout 60 s, cull_every 10 s (the hub
then reads the proxy's activity every 15 s). Everything waits with a deadline; no wall-clock time is asserted.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import signal
import threading
import time

import psutil
import pytest
import requests

from hubrunbook.core.steps import CHANGED, FAILED, OK, UNCHANGED
from hubrunbook.host import users
from hubrunbook.hub import config, culler, database, probe, service
from hubrunbook.troubleshoot import logscan
from support.deployment import Deployment

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates system users and spawns servers as them: needs root"),
]

ACTIVE, IDLE = f"hrb-cul{os.getpid()}a", f"hrb-cul{os.getpid()}i"
CULL = {"cull_idle_timeout": 60, "cull_every": 10}


@pytest.fixture(scope="module")
def hub(shared_install):
    d = Deployment(shared_install, "culling", users=[ACTIVE, IDLE], admin_users=[ACTIVE], **CULL)
    try:
        yield d.build()
    finally:
        d.teardown()


def _login(d, name) -> requests.Session:
    return probe.login(d.params.public_url, name, users.user_password(d.params, name))


def _wait(cond, what: str, timeout: float, every: float = 2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def _culler_pids(params) -> list[int]:
    """Every process on the machine running jupyterhub-idle-culler from this deployment's env (not only the hub's
    children: an orphan would show here)."""
    env = str(params.layout.env_dir)
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []
        if argv and argv[0].startswith(env) and any(culler.MODULE in a for a in argv):
            out.append(proc.pid)
    return out


def _server_env(name: str) -> dict:
    """The environment of *name*'s running jupyterhub-singleuser (found by the user's uid and its command)."""
    uid = pwd.getpwnam(name).pw_uid
    for proc in psutil.process_iter(["uids", "cmdline"]):
        argv = proc.info["cmdline"] or []
        if proc.info["uids"] and proc.info["uids"].real == uid and any("jupyterhub-singleuser" in a for a in argv):
            return proc.environ()
    raise AssertionError(f"no jupyterhub-singleuser running as {name}")


def test_the_hub_runs_the_culler_with_only_its_scopes(hub):
    r = culler.check_idle_culler(hub.params)
    assert r.status == OK, r.rows
    assert {row[0]: row[1] for row in r.rows} == {"culler process": OK, "role and scopes": OK, "reached the hub": OK}
    rec = database.service_records(hub.params.layout.hub_db)["idle-culler"]
    assert rec["admin"] is False and rec["roles"] == {"idle-culler": list(culler.SCOPES)}
    assert rec["token"]["last_activity"], "the hub accepted the culler's token"
    (pid,) = _culler_pids(hub.params)
    proc = psutil.Process(pid)
    assert proc.ppid() == service.managed_hub_pid(hub.params) and proc.uids().real == 0
    assert proc.cwd() == str(hub.params.layout.state_dir)
    assert not any(re.fullmatch(r"[0-9a-f]{32,}", a) for a in proc.cmdline()), "no token in its argv"
    assert "JUPYTERHUB_API_TOKEN" in proc.environ() and "CONFIGPROXY_AUTH_TOKEN" not in proc.environ()


def test_an_idle_server_is_stopped_and_an_active_one_is_not(hub):
    url = hub.params.public_url
    active = _login(hub, ACTIVE)
    probe.start_server(active, url, ACTIVE)  # started first: without its activity it would be culled first
    probe.open_user_server(active, url, ACTIVE)
    # a kernel busy with no tab open counts through the server's own reports: as often as the hub reads the proxy's
    assert _server_env(ACTIVE).get("JUPYTERHUB_ACTIVITY_INTERVAL") == "15"
    status_url = f"{url}/user/{ACTIVE}/api/status"
    seen, stop = [], threading.Event()

    def keep_busy():  # as an open JupyterLab does: requests to its server's API, through the proxy
        while not stop.is_set():
            try:
                seen.append(active.get(status_url, timeout=10).status_code)
            except requests.RequestException as exc:
                seen.append(type(exc).__name__)
            stop.wait(3)

    busy = threading.Thread(target=keep_busy, daemon=True)
    busy.start()
    try:
        idle = _login(hub, IDLE)
        probe.start_server(idle, url, IDLE)
        probe.open_user_server(idle, url, IDLE)  # used once, then left alone
        admin = _login(hub, ACTIVE)

        def servers(name):
            return probe.user_model(admin, url, name).get("servers") or {}

        assert servers(IDLE) and servers(ACTIVE)
        # timeout 60 s + a cull every 10 s + the hub's activity reading every 15 s, with room for a busy machine
        _wait(lambda: not servers(IDLE), f"{IDLE}'s idle server stopped by the culler", timeout=300)
        # the active server outlived the idle one (it is older); keep it busy for two more culls and an activity read
        time.sleep(2 * 10 + 15 + 5)
        assert servers(ACTIVE).get("", {}).get("ready"), f"{ACTIVE}'s active server was stopped"
    finally:
        stop.set()
        busy.join(15)
    assert seen and set(seen) == {200}, f"the active user's requests: {sorted(set(map(str, seen)))}"
    log = hub.params.layout.hub_log.read_text()
    assert re.search(rf"Culling server {IDLE} \(inactive for", log), "the culler's own line names the idle server"
    assert f"Culling server {ACTIVE} " not in log
    probe.stop_server(active, url, ACTIVE)


def test_a_new_timeout_changes_the_culler_lines_and_restarts_the_hub(hub):
    p = hub.params
    old_pid, old_culler = service.managed_hub_pid(p), _culler_pids(p)
    slower = p.model_copy(update={"cull_idle_timeout": 120, "cull_every": "auto"})
    r = config.ensure_config(slower)
    assert r.status == CHANGED
    assert sorted(row[0] for row in r.rows) == ["c.JupyterHub.last_activity_interval", "c.JupyterHub.services",
                                                "c.Spawner.environment"]
    assert service.ensure_hub_running(slower).status == CHANGED  # restarted: the hub reads its config at start
    assert service.managed_hub_pid(p) != old_pid
    check = culler.check_idle_culler(slower)
    assert check.status == OK, check.rows
    assert _culler_pids(p) != old_culler and len(_culler_pids(p)) == 1, "the old culler went with the old hub"
    assert "--timeout=120" in psutil.Process(_culler_pids(p)[0]).cmdline()
    assert config.ensure_config(slower).status == UNCHANGED
    assert service.ensure_hub_running(slower).status == UNCHANGED


def test_timeout_zero_turns_culling_off(hub):
    off = hub.params.model_copy(update={"cull_idle_timeout": 0, "cull_every": "auto"})
    r = config.ensure_config(off)
    assert sorted(row[:2] for row in r.rows) == [("c.JupyterHub.last_activity_interval", "removed"),
                                                  ("c.JupyterHub.load_roles", "updated"),
                                                  ("c.JupyterHub.services", "removed"),
                                                  ("c.Spawner.environment", "removed")]
    assert service.ensure_hub_running(off).status == CHANGED
    check = culler.check_idle_culler(off)
    assert check.status == OK and "off" in check.detail, check.rows
    assert _culler_pids(off) == [] and "idle-culler" not in database.service_records(off.layout.hub_db)
    # and back on, as the module's other tests expect it
    assert config.ensure_config(hub.params).status == CHANGED
    assert service.ensure_hub_running(hub.params).status == CHANGED
    assert culler.check_idle_culler(hub.params).status == OK


def test_troubleshoot_explains_a_culler_that_cannot_reach_the_hub(hub, tmp_path):
    """The culler given a URL where nothing listens, written as the JupyterHub docs write it (python -m, so the token
    tornado prints for a failed cull reaches the hub log unfiltered): troubleshoot names it, with the culler's own
    line as evidence, and its report and notebook never show the token."""
    p = hub.params
    text = p.config_path.read_text()
    ours = next(line for line in text.splitlines() if line.startswith("c.JupyterHub.services ="))
    wrong = [{"name": "idle-culler", "command": [str(p.layout.env_bin("python")), "-m", culler.MODULE, "--timeout=60",
                                                "--cull-every=10", "--url=http://127.0.0.1:1/hub/api"]}]
    p.config_path.write_text(text.replace(ours, f"c.JupyterHub.services = {wrong!r}{config.MARK}"))
    try:
        assert service.ensure_hub_running(p).status == CHANGED
        log = p.layout.hub_log
        token = _wait(lambda: (m := re.search(r"<function cull_idle at \w+>, url='[^']*', api_token='(\w+)'",
                                              log.read_text())) and m.group(1),
                      "the culler's failed cull in the hub log", timeout=60)
        r = culler.check_idle_culler(p)
        assert r.status == FAILED and token not in str(r.rows)
        run, report = hub.troubleshoot(tmp_path)
        (finding,) = [f for f in report["findings"] if f["id"] == "idle-culler"]
        assert finding["severity"] == "error" and "cannot reach the hub's API" in finding["seen"]
        assert "ConnectionRefusedError" in finding["evidence"] and "Exception in callback" in finding["evidence"]
        assert token not in json.dumps(report) and token not in run.out.read_text()
    finally:
        p.config_path.write_text(text)
        service.ensure_hub_running(p)


def test_troubleshoot_explains_a_culler_the_hub_refuses(hub, tmp_path):
    """The culler's role taken away by a hand-edited load_roles line: the hub answers it 403 (its own launcher, so the
    token is hidden already in the hub log); troubleshoot says it is a scope problem."""
    p = hub.params
    text = p.config_path.read_text()
    ours = next(line for line in text.splitlines() if line.startswith("c.JupyterHub.load_roles ="))
    p.config_path.write_text(text.replace(ours, f"c.JupyterHub.load_roles = [{{'name': 'admin', 'users': []}}]{config.MARK}"))
    try:
        assert service.ensure_hub_running(p).status == CHANGED
        _wait(lambda: culler.culler_errors(culler.since_start(logscan.hub_log_lines(p))), "a refused cull", timeout=60)
        assert "api_token='[hidden]'" in p.layout.hub_log.read_text() or "exception=HTTP 403" in p.layout.hub_log.read_text()
        r = culler.check_idle_culler(p)
        assert r.status == FAILED and dict((row[0], row[1]) for row in r.rows)["role and scopes"] == FAILED
        run, report = hub.troubleshoot(tmp_path)
        (finding,) = [f for f in report["findings"] if f["id"] == "idle-culler"]
        assert finding["severity"] == "error" and "403" in finding["seen"] and finding["data"]["kind"] == "refused"
        assert "HTTP 403" in finding["evidence"]
    finally:
        p.config_path.write_text(text)
        service.ensure_hub_running(p)


def test_a_culler_left_by_a_killed_hub_is_found_and_stopped(hub):
    """kill -9 of a managed hub (as the OOM killer does): its culler, in a session of its own, lives on. Troubleshoot
    names it and its repair stops it by PID; the restarted hub runs one culler again."""
    from hubrunbook.troubleshoot import repairs
    from hubrunbook.troubleshoot.catalog import Context
    from hubrunbook.troubleshoot.checks import processes

    p = hub.params
    (left,) = _culler_pids(p)
    os.kill(service.managed_hub_pid(p), signal.SIGKILL)
    _wait(lambda: service.managed_hub_pid(p) is None, "the hub gone", timeout=30, every=0.5)
    assert psutil.pid_exists(left), "the culler outlived its hub"
    (f,) = [f for f in processes.check_idle_culler(Context(p)) if f.id == "idle-culler-orphan"]
    assert f.data["pid"] == left and f.repairable
    assert repairs.repair_orphan_culler(p, f).status == CHANGED
    assert not psutil.pid_exists(left) or psutil.Process(left).status() == psutil.STATUS_ZOMBIE
    assert service.ensure_hub_running(p).status == CHANGED
    assert culler.check_idle_culler(p).status == OK and len(_culler_pids(p)) == 1


def test_stopping_the_hub_stops_its_culler(hub):
    assert _culler_pids(hub.params)
    service.stop_managed_hub(hub.params)
    _wait(lambda: not _culler_pids(hub.params), "no culler left once the hub is stopped", timeout=30, every=0.5)
