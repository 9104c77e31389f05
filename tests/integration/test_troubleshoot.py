"""Fault injection: build a working deployment, break it in exactly one way, run troubleshoot.ipynb.

Each test asserts the finding (and no unrelated error), then — where a repair exists — runs the runbook
with apply_fixes and asserts that a user can log in and spawn again. Deployments share the session's
installed hub env and proxy (tests/ts_support.py); only the broken part is built per test.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess

import psutil
import pytest

from hubrunbook import facts, ports, service
from ts_support import Deployment, ids

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates system users and spawns as them: needs root"),
]


@pytest.fixture
def deploy(shared_install, request):
    made = []

    def make(name: str | None = None, **kw) -> Deployment:
        d = Deployment(shared_install, name or request.node.name[5:40], **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.teardown()


def scan(d: Deployment, tmp_path, tag="scan"):
    proc, report = d.troubleshoot(tmp_path, tag=tag)
    assert report, f"no JSON report written:\n{proc.stderr[-3000:]}"
    return proc, report


def assert_errors(report: dict, expected: set[str], allowed: set[str] = frozenset()) -> None:
    """The expected error findings are there, and no error outside expected|allowed."""
    errors = ids(report["findings"], "error")
    assert expected <= errors, f"missing {expected - errors}; got {errors}"
    assert errors <= expected | allowed, f"unrelated errors {errors - expected - allowed}"


def repair_and_prove(d: Deployment, tmp_path) -> dict:
    proc, report = d.troubleshoot(tmp_path, apply_fixes=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert report["ok"] and not ids(report["findings"], "error"), report["findings"]
    assert d.user_logs_in_and_spawns() < 60
    return report


def finding(report: dict, fid: str) -> dict:
    return next(f for f in report["findings"] if f["id"] == fid)


# --- healthy ------------------------------------------------------------------------------------------
def test_healthy_deployment_has_no_errors(deploy, tmp_path):
    d = deploy().build()
    proc, report = scan(d, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report["ok"] and not ids(report["findings"], "error"), report["findings"]
    assert report["seconds"] < 5
    assert all(c["status"] in ("ok", "found") for c in report["checks"])
    assert d.user_logs_in_and_spawns() < 60


# --- guide §3.2: the 403 of a proxy still running with another token ----------------------------------
def test_proxy_with_another_token_gives_403_and_is_stopped(deploy, tmp_path):
    d = deploy().build()
    service.stop_managed_hub(d.params)
    chp = d.start_proxy_by_hand("another-token-" + "x" * 20)
    hub = d.start_hub_by_hand(wait_exit=20)
    assert not alive(hub), "the hub should have exited on the 403"

    proc, report = scan(d, tmp_path)
    assert proc.returncode != 0  # headless run fails while an error remains
    assert_errors(report, {"proxy-foreign-token", "hub-running"})
    f = finding(report, "proxy-foreign-token")
    assert f"pid {chp.pid}" in f["evidence"] and "configurable-http-proxy" in f["evidence"] and "403" in f["evidence"]
    assert f["repairable"]
    log = finding(report, "log:proxy-api-403")
    assert "api_request to proxy failed: 403" in log["evidence"]
    assert "another-token" not in str(report)

    fixed = repair_and_prove(d, tmp_path)
    assert not alive(chp)
    assert any(r[0] == "repair_stale_proxy" and r[1] == "changed" for r in fixed["repairs"]["rows"])


def test_stale_proxy_after_the_hub_was_killed(deploy, tmp_path):
    d = deploy().build()
    hub_pid = service.managed_hub_pid(d.params)
    proxy_pid = read_proxy_pid(d)
    os.kill(hub_pid, 9)
    _wait_gone(hub_pid)
    assert alive(proxy_pid)

    proc, report = scan(d, tmp_path)
    assert_errors(report, {"hub-running"})
    stale = finding(report, "proxy-stale")
    assert stale["severity"] == "warning" and f"pid {proxy_pid}" in stale["evidence"]

    repair_and_prove(d, tmp_path)
    assert not alive(proxy_pid)


def alive(proc) -> bool:
    try:
        proc = proc if isinstance(proc, psutil.Process) else psutil.Process(proc)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def read_proxy_pid(d: Deployment) -> int:
    return int((d.params.state_dir / "jupyterhub-proxy.pid").read_text())


def _wait_gone(pid: int, timeout: float = 10) -> None:
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        pass
