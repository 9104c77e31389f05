"""Rotating the hub's own secrets: the cookie secret and the proxy auth token (`make rotate-secrets`).

The cookie secret signs every login cookie: a new one logs everybody out (a leaked cookie or secret stops working).
The proxy auth token is shared by the hub and its configurable-http-proxy: both must change together, so the hub
and its proxy are stopped first (the unit, or the managed process and the proxy by their proven PIDs: never another
process), then both secrets are written (atomically, 0600), then the hub is started and must answer. A proxy that
kept the old token would make the new hub fail with the guide's `HTTP 403: Forbidden` (§3.2).
"""
from __future__ import annotations

import secrets

from . import secretref
from .errors import HubError
from .service import (check_hub_health, cookie_secret_path, ensure_hub_running, hub_env_path, read_hub_env, set_hub_env,
                      stop_managed_hub)
from .steps import CHANGED, OK, WOULD_CHANGE, StepResult

TOKEN_VAR = "CONFIGPROXY_AUTH_TOKEN"


def rotate_hub_secrets(params, *, dry_run: bool = False) -> StepResult:
    """New cookie secret and proxy token (0600), hub and proxy restarted, then the hub must answer. Always changes."""
    cookie, env_file = cookie_secret_path(params), hub_env_path(params)
    if not cookie.exists() or TOKEN_VAR not in read_hub_env(params):
        raise HubError(f"no cookie secret ({cookie}) or proxy token ({env_file}) to rotate: run configure.ipynb first")
    if dry_run:
        return StepResult("rotate_hub_secrets", WOULD_CHANGE, f"would stop the hub, write a new {cookie.name} and "
                                                             f"{TOKEN_VAR} in {env_file}, and start it again")
    stopped = stop_managed_hub(params)
    secretref.write_private(cookie, secretref.register(secrets.token_hex(32)))
    set_hub_env(params, {TOKEN_VAR: secrets.token_hex(32)})
    for path in (cookie, env_file):
        if path.stat().st_mode & 0o077:
            raise HubError(f"{path} is not private (mode {path.stat().st_mode & 0o777:04o}) after writing it")
    started = ensure_hub_running(params)
    health = check_hub_health(params)
    if health.status != OK:
        raise HubError(f"the hub does not answer after rotating its secrets: {health.detail}")
    return StepResult("rotate_hub_secrets", CHANGED,
                      f"new cookie secret ({cookie}) and proxy token ({env_file}), both 0600; {stopped.detail}; "
                      f"{started.detail}; every login cookie issued before is invalid: users log in again")
