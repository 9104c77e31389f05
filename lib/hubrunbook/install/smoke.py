"""Smoke test of an installed hub (guide §1.3): start it with a throwaway config, prove it answers, stop it."""
from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from pathlib import Path

from hubrunbook.host import ports
from hubrunbook.hub.config import bind_url
from hubrunbook.core.errors import HubError
from hubrunbook.host.preflight import our_hub_pids
from hubrunbook.host.process import hub_api_ok, start_hub, stop_hub, wait_hub_ready
from hubrunbook.hub.proxy import proxy_command
from hubrunbook.hub.service import managed_hub_pid
from hubrunbook.core.steps import OK, SKIPPED, StepResult

THROWAWAY_CONFIG = """\
# throwaway config written by hubrunbook; deleted afterwards
c.JupyterHub.bind_url = {bind_url!r}
c.JupyterHub.hub_ip = '127.0.0.1'
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = {api_url!r}
c.ConfigurableHTTPProxy.command = {proxy_cmd!r}
c.ConfigurableHTTPProxy.pid_file = {pid_file!r}
c.JupyterHub.db_url = {db_url!r}
c.JupyterHub.cookie_secret_file = {cookie!r}
"""


def throwaway_config(params, work: Path, pid_file: Path, extra: str = "") -> str:
    """A hub config on the configured ports with its state (db, cookie secret, proxy pid) under *work*. Pure."""
    tls = f"c.JupyterHub.ssl_cert = {params.ssl_cert!r}\nc.JupyterHub.ssl_key = {params.ssl_key!r}\n" if params.ssl_cert else ""
    return THROWAWAY_CONFIG.format(
        bind_url=bind_url(params), hub_port=params.hub_port,
        api_url=f"http://127.0.0.1:{params.proxy_api_port}", proxy_cmd=proxy_command(params),
        pid_file=str(pid_file), db_url=f"sqlite:///{work / 'jupyterhub.sqlite'}", cookie=str(work / "cookie_secret"),
    ) + tls + extra


def check_hub_starts(params, *, dry_run: bool = False) -> StepResult:
    """Start jupyterhub with a throwaway config on the configured ports, wait for /hub/api, stop hub and proxy by PID.

    Changes nothing lasting; when our managed hub already runs on these ports, probes it instead.
    """
    url = params.public_url
    if dry_run:
        return StepResult("check_hub_starts", SKIPPED, f"dry run: would start a throwaway hub on {url} and stop it again")
    managed = managed_hub_pid(params)
    if managed and our_hub_pids(params) & ports.listeners(params.port):
        ok, version = hub_api_ok(url)
        if not ok:
            raise HubError(f"our managed hub (pid {managed}) runs but {url}/hub/api gives {version}; see the troubleshoot runbook")
        return StepResult("check_hub_starts", OK, f"managed hub already running on {url}: /hub/api answered 200 (JupyterHub {version})")
    params.layout.state_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="smoke-", dir=params.layout.state_dir))
    pid_file = work / "proxy.pid"
    (work / "jupyterhub_config.py").write_text(throwaway_config(params, work, pid_file, "c.JupyterHub.authenticator_class = 'null'\n"))
    token = secrets.token_hex(32)  # the proxy token goes through the environment, never argv
    t0 = time.monotonic()
    hub = start_hub([str(params.layout.env_bin("jupyterhub")), "-f", str(work / "jupyterhub_config.py")],
                    cwd=work, log_file=work / "jupyterhub.log", env={"CONFIGPROXY_AUTH_TOKEN": token}, proxy_pid_file=pid_file)
    proxy_pid = None
    try:
        version = wait_hub_ready(hub, url, params.port, params.start_timeout)
        ready = time.monotonic() - t0
        proxy_pid = hub.proxy_pid()
    finally:
        proxy_pid = proxy_pid or hub.proxy_pid()
        stop_hub(hub.pid, proxy_pid)
    left = [p for p in (hub.pid, proxy_pid) if p and read_pid_alive(p)]
    if left:
        raise HubError(f"smoke test could not stop pids {left}")
    shutil.rmtree(work, ignore_errors=True)
    rows = [
        ("GET /hub/api", OK, f"200 JSON, JupyterHub {version}"),
        (f"proxy owns port {params.port}", OK, "yes"),
        ("hub and proxy stopped", OK, "no process left behind"),
    ]
    return StepResult("check_hub_starts", OK, f"throwaway hub answered on {url} after {ready:.1f} s and was stopped", rows)


def read_pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
