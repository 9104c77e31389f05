"""Limits per user on Debian 12 booted with systemd (issue 13): `make deploy` with mem_limit '256M' and cpu_limit 0.5.

Each user's server is a systemd unit carrying MemoryMax and CPUQuota (`systemctl show`). Whether the kernel enforces
them depends on the machine: inside systemd-nspawn the cgroup v1 memory and cpu hierarchies are read-only, and an
allocation past MemoryMax survives. So the runaway test runs only where hubrunbook's own probe (hub/limits.py
memory_probe, the one configure and troubleshoot use) says "enforced"; elsewhere it is skipped with the probe's
reason, never passed.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from urllib.parse import quote

import pytest
import requests
import yaml

from hubrunbook.hub import probe
from pristine import Container
from scenario import URL, require_default_ports, require_tools, wait_hub

pytestmark = pytest.mark.system

LIMITS = {"mem_limit": "256M", "cpu_limit": 0.5, "users": ["demo", "ann"], "admin_users": ["demo"]}
PARAMS = "/root/limits.yaml"
REPO = "/root/hubrunbook"


@pytest.fixture(scope="module")
def box():
    require_tools()
    require_default_ports()
    with Container("bookworm", f"hrb-sys-limits-{os.getpid()}") as server:
        server.clone_checkout(REPO)
        base = yaml.safe_load(server.path(f"{REPO}/parameters/local.yaml").read_text())
        server.path(PARAMS).write_text(yaml.safe_dump({**base, **LIMITS}))
        yield server


def password(box, user: str) -> str:
    return box.path(f"/opt/hubrunbook/secrets/passwords/{user}").read_text().strip()


def unit_of(user: str) -> str:
    return f"jupyterhub-singleuser-{user}.service"


def show(box, unit: str, *props: str) -> dict[str, str]:
    out = box.run(f"systemctl show {unit} --property {','.join(props)}").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def last_audit(box, step: str) -> dict:
    entries = [json.loads(x) for x in box.path("/opt/hubrunbook/state/audit.jsonl").read_text().splitlines()]
    return next(e for e in reversed(entries) if e["step"] == step)


def probe_here(box) -> tuple[bool | None, str]:
    """hubrunbook's enforcement probe, run inside the server as configure and troubleshoot run it."""
    code = ("import json; from hubrunbook.hub.limits import memory_probe; r = memory_probe(); "
            "print(json.dumps([r.enforced, r.text(), r.evidence]))")
    out = box.run(f"cd {REPO} && .venv/bin/python -c '{code}'", timeout=120).stdout.strip().splitlines()[-1]
    enforced, text, evidence = json.loads(out)
    return enforced, f"{text} [{evidence}]" if evidence else text


def test_deploy_with_limits_runs_each_server_as_a_unit_that_carries_them(box):
    t0 = time.monotonic()
    proc = box.run(f"cd {REPO} && make deploy PARAMS={PARAMS} 2>&1", check=False, timeout=1800)
    print(f"make deploy with limits: {time.monotonic() - t0:.1f} s\n{proc.stdout[-2500:]}")
    assert proc.returncode == 0, proc.stdout[-6000:]
    config = box.path("/opt/hubrunbook/etc/jupyterhub_config.py").read_text().splitlines()
    for line in ("c.JupyterHub.spawner_class = 'hubrunbook_hub_auth.SystemdSpawner'  # hubrunbook",
                 "c.Spawner.mem_limit = '256M'  # hubrunbook", "c.Spawner.cpu_limit = 0.5  # hubrunbook"):
        assert line in config, line
    # configure's own verification says plainly whether enforcement was verified here
    verdict = last_audit(box, "check_user_limits")
    print(f"check_user_limits: [{verdict['status']}] {verdict['detail']}")
    assert "jupyterhub-singleuser-demo.service carries the limits" in verdict["detail"], verdict
    enforced, why = probe_here(box)
    assert (verdict["status"], "NOT enforced on this machine" in verdict["detail"]) == \
        (("ok", False) if enforced else ("skipped", True)), (verdict, why)

    session = probe.login(URL, "demo", password(box, "demo"))
    probe.start_server(session, URL, "demo", timeout=120)
    probe.open_user_server(session, URL, "demo")
    st = show(box, unit_of("demo"), "ActiveState", "MemoryMax", "CPUQuotaPerSecUSec", "OOMPolicy", "User",
              "WorkingDirectory")
    print(f"{unit_of('demo')}: {st}")
    assert st["ActiveState"] == "active" and st["MemoryMax"] == "268435456" and st["CPUQuotaPerSecUSec"] == "500ms", st
    assert st["OOMPolicy"] == "stop", st
    uid = box.run("id -u demo").stdout.strip()
    assert st["User"] in ("demo", uid) and st["WorkingDirectory"] == "/home/demo", st
    # the server runs as demo, in its notebook dir: the file it writes is demo's
    status = session.get(f"{URL}/user/demo/api/status", timeout=30)
    assert status.status_code == 200 and "started" in status.json(), status.text[:300]
    probe.stop_server(session, URL, "demo")
    assert show(box, unit_of("demo"), "ActiveState")["ActiveState"] in ("inactive", "failed")


# --- a runaway notebook, where the kernel enforces the limit ------------------------------------------------------
def _cookie_header(session: requests.Session, path: str) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies if path.startswith(c.path))


def run_in_kernel(session: requests.Session, user: str, code: str, timeout: float = 120) -> str:
    """Start a kernel on *user*'s server, execute *code* over the kernel's websocket as JupyterLab does; returns
    'ok', 'error: …' or 'closed' (the connection went away: the server was killed)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    base = f"/user/{quote(user)}/"
    xsrf = probe.open_user_server(session, URL, user)
    kernel = session.post(f"{URL}{base}api/kernels", json={"name": "python3"}, headers={"X-XSRFToken": xsrf},
                          timeout=60)
    assert kernel.status_code == 201, kernel.text[:300]
    ws_url = (f"{URL.replace('http', 'ws', 1)}{base}api/kernels/{kernel.json()['id']}/channels"
              f"?session_id={uuid.uuid4().hex}&_xsrf={xsrf}")
    msg_id = uuid.uuid4().hex
    message = {"header": {"msg_id": msg_id, "username": user, "session": uuid.uuid4().hex, "msg_type": "execute_request",
                          "version": "5.3", "date": ""}, "parent_header": {}, "metadata": {}, "channel": "shell",
               "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                           "allow_stdin": False, "stop_on_error": True}}

    async def go() -> str:
        request = HTTPRequest(ws_url, headers={"Cookie": _cookie_header(session, base), "X-XSRFToken": xsrf})
        conn = await websocket_connect(request)
        await conn.write_message(json.dumps(message))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(conn.read_message(), timeout=max(deadline - time.monotonic(), 1))
            except asyncio.TimeoutError:
                break
            if raw is None:
                return "closed"
            reply = json.loads(raw)
            if reply.get("parent_header", {}).get("msg_id") == msg_id and reply.get("msg_type") == "execute_reply":
                content = reply["content"]
                return "ok" if content["status"] == "ok" else f"error: {content.get('ename')}"
        return "timeout"

    return asyncio.run(go())


def test_a_runaway_notebook_is_killed_and_only_its_own_server_stops(box):
    enforced, why = probe_here(box)
    if enforced is not True:
        pytest.skip(f"limits are not enforced on this machine, so a runaway would not be killed: {why}")
    demo = probe.login(URL, "demo", password(box, "demo"))
    ann = probe.login(URL, "ann", password(box, "ann"))
    for session, user in ((demo, "demo"), (ann, "ann")):
        probe.start_server(session, URL, user, timeout=120)
    assert run_in_kernel(demo, "demo", "x = 1 + 1", timeout=60) == "ok"
    since = box.run("date -u '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    outcome = run_in_kernel(demo, "demo", "hog = [b'x' * 2**20 for _ in range(600)]", timeout=120)
    assert outcome != "ok", "600 MiB were allocated under mem_limit 256M"
    # the hub reports demo's server stopped (its poll, or the route's failure), ann's keeps running, the hub answers
    deadline = time.monotonic() + 120
    while probe.user_model(demo, URL, "demo").get("servers") and time.monotonic() < deadline:
        time.sleep(2)
    assert not probe.user_model(demo, URL, "demo").get("servers"), "the hub still lists demo's server"
    assert show(box, unit_of("demo"), "ActiveState")["ActiveState"] in ("inactive", "failed")
    journal = box.run(f"journalctl --no-pager -o cat -u {unit_of('demo')} --since '{since}'").stdout
    assert "killed by the OOM killer" in journal or "oom-kill" in journal, journal[-2000:]
    wait_hub(10)
    assert probe.server_ready(ann, URL, "ann") and show(box, unit_of("ann"), "ActiveState")["ActiveState"] == "active"
    assert ann.get(f"{URL}/user/ann/api/status", timeout=30).status_code == 200
    # troubleshoot finds it with the journal line as evidence
    papermill = f"cd {REPO} && .venv/bin/papermill -f {PARAMS} --cwd runbooks"
    box.run(f"{papermill} runbooks/troubleshoot.ipynb /tmp/scan.ipynb 2>&1", check=False, timeout=600)
    report = json.loads(box.path("/opt/hubrunbook/state/troubleshoot.json").read_text())
    oom = [f for f in report["findings"] if f["id"] == "server-oom-killed"]
    assert oom and "demo" in oom[0]["seen"] and unit_of("demo") in oom[0]["evidence"], report["findings"]
    # and demo starts again
    probe.start_server(demo, URL, "demo", timeout=120)
    assert run_in_kernel(demo, "demo", "x = 1 + 1", timeout=60) == "ok"
    for session, user in ((demo, "demo"), (ann, "ann")):
        probe.stop_server(session, URL, user)
