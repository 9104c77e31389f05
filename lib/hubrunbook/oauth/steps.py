"""The changing steps of oauth.ipynb: plan, registration, client secrets, oauthenticator, config."""
from __future__ import annotations

import json

from hubrunbook.hub import hubguard
from hubrunbook.oauth import settings as oauth
from hubrunbook.core import secretref
from hubrunbook.hub.config import apply_settings
from hubrunbook.core.errors import CommandError, SecretError
from hubrunbook.hub.hubenv import install_packages, installed_versions
from hubrunbook.hub.envfile import set_hub_env
from hubrunbook.core.shell import run_command
from hubrunbook.core.steps import CHANGED, OK, UNCHANGED, WOULD_CHANGE, StepResult

def check_oauth_plan(params) -> StepResult:
    """Refuse a lock-out or an incomplete provider; find the provider's endpoints (OIDC discovery). Read-only."""
    oauth.check_oauth_params(params)
    endpoints = oauth.provider_endpoints(params)
    for ref, name in ((params.oauth_client_id, "oauth_client_id"), (params.oauth_client_secret, "oauth_client_secret")):
        if ref:  # an empty reference is asked for (interactive) in the secrets step
            secretref.resolve(ref, name, prompt=False)
    how = "discovered from " + params.oidc_issuer if params.oauth_provider == "generic" and params.oidc_issuer else "configured"
    rows = [("provider", params.oauth_provider, oauth.CLASSES[params.oauth_provider]),
            ("who may log in", "; ".join(oauth.allow_rules(params)), "everyone else gets 403"),
            ("scopes", " ".join(oauth.scopes(params)) or "(none)", ""),
            ("username from", oauth.username_claim(params), f"must match {oauth.USERNAME_PATTERN}, else refused")]
    rows += [(k, v, how) for k, v in endpoints.items()]
    return StepResult("check_oauth_plan", OK, f"{params.oauth_provider} login for {oauth.hub_url(params)}", rows,
                      ("item", "value", "note"))


def show_registration(params) -> StepResult:
    """What to enter at the provider when registering the OAuth app / client. Read-only."""
    if params.oauth_provider == "github":
        rows = oauth.github_registration(params)
        where = "register a GitHub OAuth app"
    else:
        rows = oauth.generic_registration(params)
        where = "register a client at the OpenID Connect provider"
    return StepResult("show_registration", OK, where, rows, ("field", "value"))


def _client_values(params) -> tuple[str, str]:
    cid = secretref.resolve(params.oauth_client_id, "oauth_client_id")
    sec = secretref.resolve(params.oauth_client_secret, "oauth_client_secret")
    for value, name in ((cid, "oauth_client_id"), (sec, "oauth_client_secret")):
        if not value.strip() or any(c.isspace() for c in value):
            raise SecretError(f"{name}: the value is empty or contains whitespace; store exactly the value the provider shows")
    return cid, sec


def ensure_oauth_secrets(params, *, dry_run: bool = False) -> StepResult:
    """Put the client id and secret into hub.env (0600, loaded by the managed hub), not the config. Idempotent.

    Fails (before the hub is touched) when a reference cannot be resolved: oauthenticator itself would
    start without complaint and send an empty client id.
    """
    cid, sec = _client_values(params)
    id_var, secret_var = oauth.ENV_VARS[params.oauth_provider]
    stale = [v for pair in oauth.ENV_VARS.values() for v in pair if v not in (id_var, secret_var)]
    changed = set_hub_env(params, {id_var: cid, secret_var: sec, **{v: None for v in stale}}, dry_run=dry_run)
    where = f"{params.layout.hub_env} ({id_var}, {secret_var}; mode 0600)"
    if not changed:
        return StepResult("ensure_oauth_secrets", UNCHANGED, f"client id and secret already in {where}")
    if dry_run:
        return StepResult("ensure_oauth_secrets", WOULD_CHANGE, f"would write the client id and secret to {where}")
    mode = params.layout.hub_env.stat().st_mode & 0o777
    if mode & 0o077:
        raise SecretError(f"{params.layout.hub_env} has mode {mode:04o} after writing; expected 0600")
    return StepResult("ensure_oauth_secrets", CHANGED, f"client id and secret written to {where}")


def ensure_oauthenticator(params, *, dry_run: bool = False) -> StepResult:
    """Install the pinned oauthenticator into the hub env (guide §2.5.1), plus hubrunbook's hub module. Idempotent.

    The module (hubguard.py) holds the OAuth classes the config names: logins map only onto accounts hubrunbook
    created or creates, never onto a system account.
    """
    want = params.oauthenticator_version
    have = installed_versions(params.layout.env_dir, ["oauthenticator"]).get("oauthenticator")
    module, module_detail = hubguard.ensure_hub_module(params, dry_run=True)
    module_ok = module == UNCHANGED
    if have == want and module_ok:
        return StepResult("ensure_oauthenticator", UNCHANGED, f"oauthenticator {have} and {hubguard.HUB_MODULE}.py in {params.layout.env_dir}")
    todo = ([f"install oauthenticator=={want} (now {have or 'absent'})"] if have != want else []) + \
           ([module_detail.removeprefix("would ")] if not module_ok else [])
    if dry_run:
        return StepResult("ensure_oauthenticator", WOULD_CHANGE, "would " + "; ".join(todo))
    if have != want:
        install_packages(params, params.layout.env_dir, [f"oauthenticator=={want}"], progress=_progress)
    hubguard.ensure_hub_module(params)
    check = run_command([params.layout.env_bin("python"), "-c",
                         f"import json, oauthenticator, {hubguard.HUB_MODULE} as m; "
                         "print(json.dumps([oauthenticator.__version__, m.LocalGitHubOAuthenticator.__name__]))"],
                        timeout=60, what="import oauthenticator")
    version, _ = json.loads(check.stdout)
    if version != want:
        raise CommandError(f"oauthenticator {version} imports in the hub env after installing {want}; check {params.layout.env_dir}")
    return StepResult("ensure_oauthenticator", CHANGED, "; ".join(todo) + f" — imports fine (oauthenticator {version})")


def _progress(line: str) -> None:
    if line.strip() and not line.lstrip().startswith(("+ ", "- ", "Requirement already")):
        print("  " + line.strip())


def ensure_oauth_config(params, *, dry_run: bool = False) -> StepResult:
    """Switch jupyterhub_config.py to OAuth login (authenticator, callback, allow rules, user creation). Idempotent."""
    oauth.check_oauth_params(params)
    settings = oauth.oauth_settings(params, oauth.provider_endpoints(params))
    return apply_settings(params, settings, step="ensure_oauth_config", dry_run=dry_run)
