"""Read-only facts about a deployment that several checks share: the hub env, PIDs, the hub's env file, the proxy.

Every subprocess and network probe here is bounded by a timeout. Secret values read from the
hub's env file are registered for masking and never returned in a displayable form.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import requests

from hubrunbook.host import ports
from hubrunbook.host.process import read_pid
from hubrunbook.core.shell import run_command

ENV_PROBE = r"""
import json, sys, importlib.metadata as m
out = {"python": sys.version.split()[0], "versions": {}, "requires": {}, "import_error": None, "pkg_dir": None}
for n in ("jupyterhub", "tornado", "jupyterlab", "jupyter_server", "notebook", "oauthenticator"):
    try:
        out["versions"][n] = m.version(n)
    except m.PackageNotFoundError:
        out["versions"][n] = None
try:
    out["requires"]["jupyterhub"] = m.requires("jupyterhub") or []
    out["pkg_dir"] = str(m.distribution("jupyterhub").locate_file("jupyterhub"))
except m.PackageNotFoundError:
    pass
try:
    import tornado.web, tornado.httputil, jupyterhub  # what every jupyterhub entry point imports first
except Exception as e:
    out["import_error"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


def probe_env(params, timeout: float = 15) -> dict:
    """Versions, jupyterhub's requirements and whether tornado/jupyterhub import, from the hub env's Python.

    {"missing": why} when the env's interpreter is absent or does not run.
    """
    py = params.layout.env_bin("python")
    if not py.exists():
        return {"missing": f"{py} does not exist"}
    proc = run_command([py, "-c", ENV_PROBE], timeout=timeout, check=False, what="hub env probe")
    if proc.returncode != 0:
        return {"missing": f"{py} does not run: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def requirement_of(requires: list[str], name: str) -> str | None:
    """The version specifier of *name* in a Requires-Dist list (markers ignored), e.g. '>=6.5'."""
    for req in requires:
        if ";" in req and "extra ==" in req:
            continue
        m = re.match(rf"^{re.escape(name)}\s*(\[[^\]]*\])?\s*\(?([^;)]*)\)?", req.strip(), re.I)
        if m:
            return m.group(2).strip() or None
    return None


def satisfies(version: str, spec: str | None) -> bool:
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    if not spec:
        return True
    try:
        return Version(version) in SpecifierSet(spec)
    except InvalidVersion:
        return False


# --- processes we own ------------------------------------------------------------------------
def hub_pid(params) -> int | None:
    """Our running hub: the PID in state/hub.pid (service.managed_hub_pid), else a listener on hub_port whose
    command line is `jupyterhub -f <our config>` (started by hand)."""
    from hubrunbook.hub.service import is_our_hub, managed_hub_pid

    pid = managed_hub_pid(params)
    if pid:
        return pid
    return next((cand for cand in ports.listeners(params.hub_port) if is_our_hub(params, cand)), None)


def recorded_proxy_pid(params) -> int | None:
    """The PID in state/jupyterhub-proxy.pid when alive and configurable-http-proxy."""
    pid = read_pid(params.layout.proxy_pid_file)
    return pid if pid and ports.is_proxy(pid) else None


def pid_file_text(path: Path) -> str:
    try:
        return path.read_text().strip() or "(empty)"
    except OSError:
        return "(absent)"


def proxy_token_status(params, timeout: float = 2) -> str:
    """Ask the proxy API on proxy_api_port with the hub's token: 'accepted', 'rejected 403', 'no token', 'no answer',
    or 'not sent: …' when what listens there is not proven to be our proxy (the token goes to nobody else)."""
    from hubrunbook.hub.envfile import read_hub_env
    from hubrunbook.hub.proxy import unproven_reason

    token = read_hub_env(params).get("CONFIGPROXY_AUTH_TOKEN")
    if not token:
        return "no token"
    holders = sorted(ports.listeners(params.proxy_api_port))
    if not holders:
        return "no answer (nothing listens)"
    for pid in holders:
        why = unproven_reason(params, pid)
        if why:
            return f"not sent: {why}"
    try:
        resp = requests.get(f"http://127.0.0.1:{params.proxy_api_port}/api/routes",
                            headers={"Authorization": f"token {token}"}, timeout=timeout)
    except requests.RequestException as exc:
        return f"no answer ({type(exc).__name__})"
    if resp.status_code == 200:
        return "accepted"
    return f"rejected {resp.status_code}"


# --- the config file, as JupyterHub's loader sees it (hub/configload.py) ---------------------------------
# "Authenticator.<trait>" / "Spawner.<trait>": the value that applies to the configured authenticator / spawner
# class (the most specific class in its MRO that the file sets, as traitlets resolves it); others: exact class.
CONFIG_KEYS = (
    "JupyterHub.bind_url", "JupyterHub.hub_port", "JupyterHub.base_url", "ConfigurableHTTPProxy.api_url",
    "ConfigurableHTTPProxy.command", "ConfigurableHTTPProxy.pid_file", "JupyterHub.db_url",
    "JupyterHub.cookie_secret_file", "JupyterHub.authenticator_class", "Authenticator.admin_users",
    "Authenticator.allowed_users", "Authenticator.allow_all", "Authenticator.any_allow_config",
    "Authenticator.allowed_groups", "Authenticator.allowed_organizations", "Authenticator.allow_existing_users",
    "Authenticator.create_system_users", "Authenticator.oauth_callback_url", "Spawner.notebook_dir", "Spawner.cmd",
)  # never client_id / client_secret: the loader prints values



def load_config(params, timeout: float = 30):
    """The effective values of CONFIG_KEYS (keys the file does not set are absent) and the names of all it sets.

    Raises ConfigError when the file is missing or does not load.
    """
    from hubrunbook.hub.configload import load_config as load

    return load(params, [f"c.{k}" for k in CONFIG_KEYS], resolve=True, timeout=timeout)
