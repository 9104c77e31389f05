"""Working sandbox deployments for the troubleshoot fault-injection tests, built cheaply from the shared install.

A deployment is a prefix of its own (config, secrets, state, users, ports, a running hub) whose ``env/``,
``userenv/`` and ``proxy/`` are symlinks to the session's shared, installed hub env and proxy: the hub, the proxy and
spawned servers run exactly as in a real install (the paths users execute go through the symlink), but
nothing is installed per test. A test that breaks the env itself gets a real env of its own
(``own_env=True``). Everything a test starts is stopped by PID; users it creates (hrb-ts-*) are deleted
(support.sandbox.teardown_sandbox). Tests get deployments from the ``deploy`` fixture.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from hubrunbook.hub import config, envfile, probe, service
from hubrunbook.host import ports, users
from hubrunbook.hub.hubenv import ensure_hub_env
from hubrunbook.core.params import build_params
from hubrunbook.host.process import start_hub, terminate
from support.runbook import RunbookRun, run_runbook
from support.sandbox import TEST_ROOT, free_port, port_params, reset_sandbox, teardown_sandbox

TEMPLATE = TEST_ROOT / "ts-config-template.py"


def config_template(shared) -> Path:
    """A generated jupyterhub_config.py (jupyterhub --generate-config, ~3 s), made once and copied per test."""
    if not TEMPLATE.exists():
        work = TEST_ROOT / f"ts-template-prefix-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "env").symlink_to(shared.layout.env_dir)
        p = build_params({**port_params(), "prefix": str(work)})
        config.ensure_config_file(p)
        shutil.copy(p.config_path, work / "template.py")
        os.replace(work / "template.py", TEMPLATE)  # atomic: a concurrent run sees all of it or nothing
        shutil.rmtree(work)
    return TEMPLATE


class Deployment:
    """One working deployment: build(), break it in a test, run the runbook, teardown()."""

    def __init__(self, shared, name: str, *, own_env: bool = False, **values):
        self.shared, self.name, self.own_env = shared, name, own_env
        self.prefix = TEST_ROOT / f"ts-{name}-{os.getpid()}"  # concurrent runs (a CI clone) do not collide
        self.user = f"hrb-ts-{secrets.token_hex(3)}"
        self.values = {**port_params(), "prefix": str(self.prefix), "users": [self.user], "admin_users": [self.user],
                       "start_timeout": 30, **values}
        self.params = build_params(self.values)
        self.started: list[subprocess.Popen] = []  # processes the test started (foreign listeners, hand-run hubs)

    # --- build -------------------------------------------------------------------------------------
    def build(self, *, start: bool = True, before=None) -> "Deployment":
        """Make the deployment (config, secrets, users, running hub); *before(params)* runs on the empty prefix."""
        reset_sandbox(self.prefix.name)
        self.prefix.mkdir(parents=True)
        os.chmod(self.prefix, 0o755)
        p = self.params
        if before:
            before(p)
        if self.own_env:
            ensure_hub_env(p)  # a real env of its own (uv, from cache: a few seconds)
        else:
            (self.prefix / "env").symlink_to(self.shared.layout.env_dir)
        (self.prefix / "userenv").symlink_to(self.shared.layout.userenv_dir)  # c.Spawner.cmd: the user env's singleuser
        (self.prefix / "proxy").symlink_to(self.shared.layout.root / "proxy")
        (self.prefix / "nodejs").symlink_to(self.shared.layout.root / "nodejs")  # the proxy command names this prefix's node
        p.config_path.parent.mkdir(parents=True)
        shutil.copy(config_template(self.shared), p.config_path)
        config.ensure_config(p)
        service.ensure_hub_secrets(p)
        users.ensure_users(p)
        if start:
            service.ensure_hub_running(p)
        return self

    # --- faults ----------------------------------------------------------------------------------------
    def hub_env(self) -> dict[str, str]:
        return envfile.read_hub_env(self.params)

    def start_hub_by_hand(self, wait_exit: float = 0) -> subprocess.Popen:
        """`jupyterhub -f <config>` as the guide starts it (hub.env in its environment, no pid file written)."""
        p = self.params
        hub = start_hub([str(p.layout.env_bin("jupyterhub")), "-f", str(p.config_path)], cwd=p.layout.state_dir,
                        log_file=p.layout.state_dir / "jupyterhub.log", env={**self.hub_env(), "PATH": f"{p.layout.env_dir}/bin:/usr/bin:/bin"},
                        proxy_pid_file=p.layout.state_dir / "jupyterhub-proxy.pid")
        proc = psutil.Process(hub.pid)
        self.started.append(proc)
        if wait_exit:
            try:
                proc.wait(wait_exit)
            except psutil.TimeoutExpired:
                pass
        return proc

    def start_listener(self, port: int) -> psutil.Process:
        """A foreign program (python's http.server) listening on *port*."""
        proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.started.append(psutil.Process(proc.pid))
        _wait(lambda: proc.pid in ports.listeners(port), f"http.server on {port}")
        return psutil.Process(proc.pid)

    def start_proxy_by_hand(self, token: str) -> psutil.Process:
        """configurable-http-proxy started by hand on our API port with another token (guide §3.2)."""
        from hubrunbook.hub.proxy import proxy_command

        p = self.params
        proc = subprocess.Popen(
            proxy_command(p) + ["--ip", "127.0.0.1", "--port", str(free_port()), "--api-ip", "127.0.0.1",
                                "--api-port", str(p.proxy_api_port)],
            env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": token}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self.started.append(psutil.Process(proc.pid))
        _wait(lambda: proc.pid in ports.listeners(p.proxy_api_port), "hand-started proxy")
        return psutil.Process(proc.pid)

    # --- the runbook ---------------------------------------------------------------------------------
    def troubleshoot(self, tmp_path: Path, *, apply_fixes: bool = False, tag: str = "") -> tuple[RunbookRun, dict]:
        """Run runbooks/troubleshoot.ipynb headless; returns (the run, the JSON report)."""
        tag = tag or ("fix" if apply_fixes else "scan")
        report = tmp_path / f"report-{tag}.json"
        work = tmp_path / tag
        work.mkdir(exist_ok=True)
        run = run_runbook("troubleshoot", {**self.values, "apply_fixes": apply_fixes, "report_file": str(report)}, work)
        data = json.loads(report.read_text()) if report.exists() else {}
        return run, data

    def user_logs_in_and_spawns(self) -> float:
        """What a user would do: log in with the password and get a server (stopped again). Returns seconds."""
        url = self.params.public_url
        session = probe.login(url, self.user, users.user_password(self.params, self.user))
        seconds = probe.start_server(session, url, self.user, timeout=60)
        probe.stop_server(session, url, self.user)
        return seconds

    # --- cleanup -------------------------------------------------------------------------------------
    def teardown(self) -> None:
        for proc in self.started:  # first: a hand-started hub stops its own proxy
            if proc.is_running():
                terminate(proc.pid, timeout=5)
        # our user also by name (a test may break the registry), and accounts the hub itself created
        # (create_system_users of an OAuth authenticator)
        hub_made = [name for name in self.params.oauth_allowed_users if name.startswith("hrb-ts-")]
        teardown_sandbox(self.params, hub_users=[self.user, *hub_made])


def _wait(cond, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise TimeoutError(f"waited {timeout} s for {what}")


@pytest.fixture
def deploy(shared_install, request):
    """Build working deployments on the shared install (Deployment); torn down afterwards."""
    made = []

    def make(name: str | None = None, **kw):
        d = Deployment(shared_install, name or request.node.name[5:40], **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.teardown()


def ids(findings: list[dict], severity: str | None = None) -> set[str]:
    return {f["id"] for f in findings if severity is None or f["severity"] == severity}
