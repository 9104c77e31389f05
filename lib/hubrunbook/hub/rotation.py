"""Rotate the hub's cookie secret and proxy auth token (issue 8): new values, a restart, proof that they took.

A new cookie secret logs every browser out of the hub; a new proxy token makes the old one worthless to anyone
who saw it. Old values are not kept: a backup of a leaked secret would defeat the rotation.
"""
from __future__ import annotations

import secrets

import psutil
import requests

from hubrunbook.core import secretref
from hubrunbook.hub import envfile, service
from hubrunbook.core.errors import HubError, PreflightError
from hubrunbook.host.process import read_pid
from hubrunbook.core.steps import CHANGED, OK, WOULD_CHANGE, StepResult

SECRETS = ("cookie_secret", "proxy_token")
TOKEN_VAR = "CONFIGPROXY_AUTH_TOKEN"


def rotate_hub_secrets(params, which: tuple[str, ...] = SECRETS, *, dry_run: bool = False) -> StepResult:
    """Replace the secrets named in *which* (cookie_secret, proxy_token), restart a running hub and its proxy, and
    prove the rotation: the hub is healthy, started after the new values were written, and its proxy accepts the
    new token and refuses the old one. Every run rotates (not idempotent by design)."""
    unknown = sorted(set(which) - set(SECRETS))
    if unknown or not which:
        raise PreflightError(f"rotate: unknown secret(s) {unknown or 'none given'}; allowed: {', '.join(SECRETS)}")
    cookie, old_token = params.layout.cookie_secret, envfile.read_hub_env(params).get(TOKEN_VAR)
    if not cookie.exists() or not old_token:
        raise PreflightError(f"no hub secrets in {params.layout.secrets_dir} to rotate; run configure.ipynb first")
    running = bool(service.managed_hub_pid(params))
    if dry_run:
        return StepResult("rotate_hub_secrets", WOULD_CHANGE, f"would replace {', '.join(which)}"
                          + (" and restart the hub" if running else ""))
    if "cookie_secret" in which:
        secretref.write_private(cookie, secretref.register(secrets.token_hex(32)))
    if "proxy_token" in which:
        envfile.set_hub_env(params, {TOKEN_VAR: secrets.token_hex(32)})
    rows = [(name, CHANGED, "new value written (0600); the old one is gone") for name in which]
    if not running:
        return StepResult("rotate_hub_secrets", CHANGED, f"replaced {', '.join(which)}; the hub is not running, "
                          "it will use them when it starts", rows)
    service.stop_managed_hub(params)
    service.ensure_hub_running(params)
    rows += _prove(params, old_token if "proxy_token" in which else None)
    after = "; browsers must log in again" if "cookie_secret" in which else ""
    return StepResult("rotate_hub_secrets", CHANGED, f"replaced {', '.join(which)} and restarted the hub{after}", rows)


def _prove(params, old_token: str | None) -> list[tuple[str, str, str]]:
    """Rows proving the restarted hub took the new secrets; raises HubError when it did not."""
    from hubrunbook.hub.proxy import unproven_reason

    health = service.check_hub_health(params)
    if health.failed:
        raise HubError(f"the hub did not come back after the rotation: {health.detail}")
    pid = service.managed_hub_pid(params)
    newest = max(p.stat().st_mtime for p in (params.layout.cookie_secret, params.layout.hub_env))
    if psutil.Process(pid).create_time() + 1 < newest:
        raise HubError(f"hub pid {pid} started before the new secrets were written; restart it (make restart)")
    rows = [("hub restarted", OK, f"pid {pid}, {health.detail}")]
    proxy = read_pid(params.layout.proxy_pid_file)
    why = unproven_reason(params, proxy) if proxy else "no proxy pid recorded"
    if why:
        raise HubError(f"cannot prove the proxy took the new token without sending it to an unproven process: {why}")
    url = f"http://127.0.0.1:{params.proxy_api_port}/api/routes"
    new = requests.get(url, headers={"Authorization": f"token {envfile.read_hub_env(params)[TOKEN_VAR]}"}, timeout=5)
    if new.status_code != 200:
        raise HubError(f"the proxy (pid {proxy}) answers {new.status_code} to the new token")
    if old_token is not None:
        old = requests.get(url, headers={"Authorization": f"token {old_token}"}, timeout=5)
        if old.status_code != 403:
            raise HubError(f"the proxy (pid {proxy}) still accepts the old token (HTTP {old.status_code})")
        rows.append(("proxy token", OK, f"proxy pid {proxy} accepts the new token, refuses the old one (403)"))
    return rows
