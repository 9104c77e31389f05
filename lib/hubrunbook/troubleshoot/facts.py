"""Read-only facts about a deployment that several checks share: the hub env, PIDs, the hub's env file, the proxy.

Every subprocess and network probe here is bounded by a timeout. Secret values read from the
hub's env file are registered for masking and never returned in a displayable form.
"""
from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import requests

from hubrunbook.host import ports
from hubrunbook.core import secretref
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


# --- the database --------------------------------------------------------------------------------
def alembic_head(pkg_dir: str | None) -> str | None:
    """The newest schema revision of the installed jupyterhub (the revision nobody names as down_revision)."""
    if not pkg_dir:
        return None
    revs, downs = set(), set()
    for f in (Path(pkg_dir) / "alembic" / "versions").glob("*.py"):
        text = f.read_text(errors="replace")
        if m := re.search(r"^revision\s*=\s*['\"]([0-9a-f]+)['\"]", text, re.M):
            revs.add(m.group(1))
        if m := re.search(r"^down_revision\s*=\s*['\"]([0-9a-f]+)['\"]", text, re.M):
            downs.add(m.group(1))
    heads = revs - downs
    return heads.pop() if len(heads) == 1 else None


def db_revision(path: Path) -> str | None:
    """alembic_version of the sqlite database at *path*, opened read-only; None when absent or unversioned."""
    if not path.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


# --- the config file, as JupyterHub's loader sees it ------------------------------------------------
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

_LOCAL_GENERIC = ["LocalGenericOAuthenticator", "LocalAuthenticator", "GenericOAuthenticator", "OAuthenticator", "Authenticator"]
KNOWN_MRO = {  # configurable classes of each MRO, measured with jupyterhub 6.1.1 / oauthenticator 17.4.0 (unit-tested)
    "jupyterhub.auth.PAMAuthenticator": ["PAMAuthenticator", "LocalAuthenticator", "Authenticator"],
    "jupyterhub.auth.DummyAuthenticator": ["DummyAuthenticator", "Authenticator"],
    "jupyterhub.auth.NullAuthenticator": ["NullAuthenticator", "Authenticator"],
    "jupyterhub.authenticators.shared.SharedPasswordAuthenticator": ["SharedPasswordAuthenticator", "Authenticator"],
    "oauthenticator.github.LocalGitHubOAuthenticator":
        ["LocalGitHubOAuthenticator", "LocalAuthenticator", "GitHubOAuthenticator", "OAuthenticator", "Authenticator"],
    "oauthenticator.github.GitHubOAuthenticator": ["GitHubOAuthenticator", "OAuthenticator", "Authenticator"],
    "oauthenticator.generic.LocalGenericOAuthenticator": _LOCAL_GENERIC,
    "oauthenticator.generic.GenericOAuthenticator": ["GenericOAuthenticator", "OAuthenticator", "Authenticator"],
    "hubrunbook_hub_auth.LocalGenericOAuthenticator": ["LocalGenericOAuthenticator", "_GuardedAuthenticator", "HubrunbookGuard",
                                                       *_LOCAL_GENERIC],
    "hubrunbook_hub_auth.LocalGitHubOAuthenticator": ["LocalGitHubOAuthenticator", "_GuardedAuthenticator", "HubrunbookGuard",
                                                      "LocalGitHubOAuthenticator", "LocalAuthenticator", "GitHubOAuthenticator",
                                                      "OAuthenticator", "Authenticator"],
    "hubrunbook_hub_auth.PAMAuthenticator": ["PAMAuthenticator", "_GuardedAuthenticator", "HubrunbookGuard", "PAMAuthenticator",
                                             "LocalAuthenticator", "Authenticator"],
    "hubrunbook_hub_auth.LocalProcessSpawner": ["LocalProcessSpawner", "HubrunbookGuard", "LocalProcessSpawner", "Spawner"],
    "jupyterhub.spawner.LocalProcessSpawner": ["LocalProcessSpawner", "Spawner"],
    "jupyterhub.spawner.SimpleLocalProcessSpawner": ["SimpleLocalProcessSpawner", "LocalProcessSpawner", "Spawner"],
}

EFFECTIVE_LOADER = r"""
import importlib, json, sys
from importlib.metadata import entry_points
from pathlib import Path
from traitlets.config.loader import PyFileConfigLoader
p = Path(sys.argv[1])
cfg = PyFileConfigLoader(p.name, path=str(p.parent)).load_config()

def exact(cls, trait):
    return (True, cfg[cls][trait]) if cls in cfg and trait in cfg[cls] else (False, None)

KNOWN = json.loads(sys.argv[2])  # measured MROs of common classes: importing jupyterhub.auth alone takes ~1.2 s

def chain(kind, default, group, base):
    name = exact("JupyterHub", kind)[1] or default
    if not isinstance(name, str):
        return [c.__name__ for c in name.__mro__]
    try:
        if "." not in name:  # an entry point name ('pam', 'local-github'): its target, without importing it
            name = entry_points(group=group)[name].value.replace(":", ".")
        if name in KNOWN:
            return KNOWN[name]
        mod, _, attr = name.rpartition(".")
        klass = getattr(importlib.import_module(mod), attr)
        return [c.__name__ for c in klass.__mro__]
    except Exception:  # the env cannot import it (broken env): a best guess from the name
        short = name.rpartition(".")[2]
        guess = [short] + (["OAuthenticator"] if "OAuth" in short else []) + (["LocalAuthenticator"] if base == "Authenticator" else [])
        return guess + [base]

chains = {"Authenticator": chain("authenticator_class", "pam", "jupyterhub.authenticators", "Authenticator"),
          "Spawner": chain("spawner_class", "localprocess", "jupyterhub.spawners", "Spawner")}
out = {}
for key in sys.argv[3:]:
    cls, trait = key.split(".")
    for c in chains.get(cls, [cls]):
        found, value = exact(c, trait)
        if found:
            out["c." + key] = sorted(value) if isinstance(value, (set, frozenset)) else value
            break
print(json.dumps(out, default=repr))
"""


def load_config(params) -> dict:
    """Effective values of CONFIG_KEYS ('c.Class.trait' → value), loaded with traitlets in the hub env.

    Keys the file does not set are absent. Raises ConfigError when the file is missing or does not load.
    """
    from hubrunbook.core.errors import ConfigError

    path = params.layout.config_path
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    proc = run_command([params.layout.env_bin("python"), "-c", EFFECTIVE_LOADER, path, json.dumps(KNOWN_MRO), *CONFIG_KEYS], timeout=30, check=False,
                       what="load jupyterhub_config.py")
    if proc.returncode != 0:
        raise ConfigError(f"{path} does not load with JupyterHub's config loader:\n{secretref.mask(proc.stderr)[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
