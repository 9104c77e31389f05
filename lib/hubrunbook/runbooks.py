"""The runbooks, each declared once: its place in the deploy chain and the parameters it reads.

Everything that lists runbooks or their parameters derives from ``RUNBOOKS``: the chain ``make deploy`` runs,
each notebook's ``parameters`` cell, ``parameters/local.yaml``, the nbval references and troubleshoot's repairs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hubrunbook.core.params import ConfigureParams, InstallParams, OAuthParams, Params, TroubleshootParams


@dataclass(frozen=True)
class Runbook:
    name: str                      # runbooks/<name>.ipynb
    title: str
    in_chain: bool                 # run by `make deploy`, in RUNBOOKS order
    own: tuple[str, ...]           # parameters this runbook introduces (its Params mixin)
    shared: tuple[str, ...] = ()   # parameters of earlier runbooks it also reads
    after: tuple[str, ...] = field(default=())  # runbooks that must have run first (same parameters)

    @property
    def parameters(self) -> list[str]:
        """Every parameter the runbook reads, in the order of its parameters cell."""
        return [*self.shared, *(n for n in self.own if n not in self.shared)]


_CONFIGURE_SHARED = ("prefix", "dry_run", "bind_ip", "port", "hub_port", "proxy_api_port", "start_timeout")
_OAUTH_SHARED = ("prefix", "dry_run", "bind_ip", "port", "hub_port", "proxy_api_port", "start_timeout",
                 "config_file", "home_base", "user_shell", "notebook_dir", "service", "service_name")
_TROUBLESHOOT_SHARED = ("prefix", "config_file", "dry_run", "bind_ip", "port", "hub_port", "proxy_api_port", "users",
                        "admin_users", "allowed_users", "allow_all", "passwords", "notebook_dir", "default_url", "node",
                        "service", "service_name", "jupyterhub_version", "jupyterlab_version", "proxy_version",
                        "min_free_disk_mb", "start_timeout")

RUNBOOKS: tuple[Runbook, ...] = (
    Runbook("install", "Install JupyterHub", True, tuple(InstallParams.model_fields)),
    Runbook("configure", "Configure JupyterHub", True, tuple(ConfigureParams.model_fields), _CONFIGURE_SHARED,
            after=("install",)),
    Runbook("oauth", "Log in with GitHub or OpenID Connect", False, tuple(OAuthParams.model_fields), _OAUTH_SHARED,
            after=("install", "configure")),
    Runbook("troubleshoot", "Troubleshoot JupyterHub", False, tuple(TroubleshootParams.model_fields),
            _TROUBLESHOOT_SHARED, after=("install", "configure")),
)


def get_runbook(name: str) -> Runbook:
    for rb in RUNBOOKS:
        if rb.name == name:
            return rb
    raise KeyError(f"no runbook named {name!r}; known: {', '.join(r.name for r in RUNBOOKS)}")


def deploy_chain() -> list[str]:
    """The runbooks `make deploy` runs, in order."""
    return [rb.name for rb in RUNBOOKS if rb.in_chain]


def parameters_of(name: str) -> list[str]:
    """The parameters runbook *name* reads: its parameters cell, in order."""
    names = get_runbook(name).parameters
    unknown = [n for n in names if n not in Params.model_fields]
    if unknown:
        raise KeyError(f"runbook {name!r} declares unknown parameters {unknown}")
    return names
