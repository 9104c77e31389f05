"""The one reader of jupyterhub_config.py: the file loaded as JupyterHub loads it, in the hub env.

The config is Python, so only its loader knows what it sets: traitlets' ``PyFileConfigLoader`` (JupyterHub's) runs
in the hub env's interpreter, in a subprocess, and prints the values asked for (never others: a file may hold
secrets) and the names of every value the file sets. Keys are ``c.Class.trait``. With ``resolve``,
``c.Authenticator.<trait>`` and ``c.Spawner.<trait>`` give the value that applies to the configured authenticator /
spawner class (the most specific class of its MRO that the file sets, as traitlets resolves it); otherwise, and for
other classes, the exact class's value.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubrunbook.core import secretref
from hubrunbook.core.errors import CommandError, ConfigError
from hubrunbook.core.shell import run_command

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
    "hubrunbook_hub_auth.LocalProcessSpawner": ["LocalProcessSpawner", "_GuardedSpawner", "HubrunbookGuard", "LocalProcessSpawner",
                                                "Spawner"],
    "hubrunbook_hub_auth.SystemdSpawner": ["SystemdSpawner", "_GuardedSpawner", "HubrunbookGuard", "SystemdSpawner", "Spawner"],
    "jupyterhub.spawner.LocalProcessSpawner": ["LocalProcessSpawner", "Spawner"],
    "jupyterhub.spawner.SimpleLocalProcessSpawner": ["SimpleLocalProcessSpawner", "LocalProcessSpawner", "Spawner"],
}

LOADER = r"""
import importlib, json, sys
from importlib.metadata import entry_points
from pathlib import Path
from traitlets.config.loader import PyFileConfigLoader
p = Path(sys.argv[1])
cfg = PyFileConfigLoader(p.name, path=str(p.parent)).load_config()
resolve = sys.argv[2] == "resolve"
KNOWN = json.loads(sys.argv[3])  # measured MROs of common classes: importing jupyterhub.auth alone takes ~1.2 s

def exact(cls, trait):
    return (True, cfg[cls][trait]) if cls in cfg and trait in cfg[cls] else (False, None)

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

chains = {}
if resolve:
    chains = {"Authenticator": chain("authenticator_class", "pam", "jupyterhub.authenticators", "Authenticator"),
              "Spawner": chain("spawner_class", "localprocess", "jupyterhub.spawners", "Spawner")}
values = {}
for key in sys.argv[4:]:
    _, cls, trait = key.split(".")
    for c in chains.get(cls, [cls]):
        found, value = exact(c, trait)
        if found:
            values[key] = sorted(value) if isinstance(value, (set, frozenset)) else value
            break
names = sorted(f"c.{cls}.{trait}" for cls, section in cfg.items() if isinstance(section, dict) for trait in section)
print(json.dumps({"values": values, "names": names}, default=repr))
"""


@dataclass(frozen=True)
class LoadedConfig:
    """What a config file sets: *values* of the keys asked for, *names* of every value it sets (never their values)."""

    values: dict[str, Any]
    names: frozenset[str]

    def sets_trait(self, trait: str) -> bool:
        """Whether the file sets *trait* on any class (``c.<Something>.<trait>``)."""
        return any(name.endswith(f".{trait}") for name in self.names)


def load_config(params, keys, *, path: Path | None = None, resolve: bool = False, timeout: float = 60) -> LoadedConfig:
    """Load *path* (default: the deployment's config file) with JupyterHub's loader in the hub env. Read-only.

    Raises ConfigError when the file is missing or does not load (with the loader's masked traceback tail).
    """
    path = Path(path or params.config_path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    argv = [params.layout.env_bin("python"), "-c", LOADER, path, "resolve" if resolve else "exact", json.dumps(KNOWN_MRO), *keys]
    try:
        proc = run_command(argv, timeout=timeout, check=False, what="load jupyterhub_config.py")
    except CommandError as exc:
        raise ConfigError(f"{path} could not be loaded: {exc}") from None
    if proc.returncode != 0:
        raise ConfigError(f"{path} does not load with JupyterHub's config loader:\n{secretref.mask(proc.stderr)[-1500:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return LoadedConfig(out["values"], frozenset(out["names"]))
