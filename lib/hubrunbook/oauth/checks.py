"""Verification of OAuth login: a static check of what the hub will use, and a probe of the running hub."""
from __future__ import annotations

import stat
import time
from urllib.parse import parse_qs, urlsplit

import requests

from hubrunbook.oauth import settings as oauth
from hubrunbook.core import secretref
from hubrunbook.core.errors import ConfigError, ParameterError, RunbookError, SecretError
from hubrunbook.hub.configload import load_config
from hubrunbook.hub.hubenv import installed_versions
from hubrunbook.hub.envfile import read_hub_env
from hubrunbook.core.steps import FAILED, OK, WOULD_CHANGE, StepResult
from hubrunbook.hub.tls import http_session

PROBE_CODE = "hubrunbook-probe-not-a-real-code"
BAD_CLIENT = {"incorrect_client_credentials", "invalid_client", "unauthorized_client"}
CLIENT_OK = {"bad_verification_code", "invalid_grant", "invalid_request"}


def _reach(method: str, url: str, timeout: float, **kw) -> tuple[bool, str, requests.Response | None]:
    t0 = time.monotonic()
    try:
        resp = http_session(url).request(method, url, timeout=timeout, allow_redirects=False, **kw)
    except requests.Timeout:
        return False, f"no answer within {timeout:g} s", None
    except requests.RequestException as exc:
        return False, f"unreachable ({type(exc).__name__})", None
    return True, f"HTTP {resp.status_code} in {time.monotonic() - t0:.2f} s", resp


def probe_client_credentials(token_url: str, client_id: str, client_secret: str, callback: str, timeout: float) -> tuple[bool, str]:
    """POST an invalid code with the client credentials: the provider's error tells whether it accepts the client.

    GitHub: incorrect_client_credentials vs bad_verification_code; OIDC: invalid_client vs invalid_grant.
    The secret travels in the POST body only (as oauthenticator sends it), never in a URL or log.
    """
    data = {"grant_type": "authorization_code", "code": PROBE_CODE, "redirect_uri": callback,
            "client_id": client_id, "client_secret": client_secret}
    ok, seen, resp = _reach("POST", token_url, timeout, data=data, headers={"Accept": "application/json"})
    if not ok or resp is None:
        return False, f"token endpoint {seen}"
    try:
        body = resp.json()
    except ValueError:
        body = {}
    error = body.get("error", "") if isinstance(body, dict) else ""
    if error in BAD_CLIENT or resp.status_code == 401:
        return False, (f"the provider rejects the client id/secret ({error or resp.status_code}): logins fail with it. "
                       "Check the values behind oauth_client_id/oauth_client_secret (a regenerated secret?) and re-run")
    if error in CLIENT_OK:
        return True, f"client accepted (a dummy code got {error!r}, as expected)"
    return False, f"unexpected answer {resp.status_code} {error or (resp.text or '')[:80]!r}; cannot tell if the client is accepted"


def _client(params) -> tuple[str, str, str]:
    """(client id, client secret, where from): hub.env (what the hub uses) else the references."""
    id_var, secret_var = oauth.ENV_VARS[params.oauth_provider]
    env = read_hub_env(params)
    if env.get(id_var) and env.get(secret_var):
        return env[id_var], env[secret_var], f"{params.layout.hub_env} ({id_var}, {secret_var})"
    cid = secretref.resolve(params.oauth_client_id, "oauth_client_id", prompt=False)
    sec = secretref.resolve(params.oauth_client_secret, "oauth_client_secret", prompt=False)
    return cid, sec, f"{params.oauth_client_id}, {params.oauth_client_secret} (not yet in hub.env)"


def check_oauth_static(params, *, dry_run: bool = False) -> StepResult:
    """Allow rule, callback URL, secrets, provider endpoints and client credentials, as a table. Read-only.

    In a dry run the config file and hub.env have not been changed, so their rows are left for the real run.
    """
    rows: list[tuple[str, str, str]] = []

    def row(check: str, good: bool, detail: str) -> bool:
        rows.append((check, OK if good else FAILED, detail))
        return good

    def later(check: str) -> None:
        rows.append((check, "not checked", "dry run: checked after the change"))

    try:
        oauth.check_oauth_params(params)
        row("allow rule", True, "; ".join(oauth.allow_rules(params)))
    except ParameterError as exc:
        row("allow rule / parameters", False, str(exc).splitlines()[-1].strip(" -"))
    callback = oauth.callback_url(oauth.public_url(params), params.base_url)
    if dry_run:
        for check in ("callback URL", "no secret in config", "hub.env private"):
            later(check)
    else:
        _config_rows(params, callback, row)
    client = None
    try:
        client = _client(params)
        row("client id and secret", True, f"resolved from {client[2]}")
    except (SecretError, RunbookError) as exc:
        row("client id and secret", False, str(exc))
    try:
        endpoints = oauth.provider_endpoints(params)
    except RunbookError as exc:
        endpoints = {}
        row("provider discovery", False, str(exc))
    timeout = params.oauth_http_timeout
    for key, method in (("authorize_url", "GET"), ("userdata_url", "GET")):
        if endpoints.get(key):
            ok, seen, _ = _reach(method, endpoints[key], timeout)
            row(f"{key} reachable", ok, f"{endpoints[key]}: {seen}")
    if endpoints.get("token_url") and client:
        ok, seen = probe_client_credentials(endpoints["token_url"], client[0], client[1], callback, timeout)
        row("client credentials", ok, f"{endpoints['token_url']}: {seen}")
    have = installed_versions(params.layout.env_dir, ["oauthenticator"]).get("oauthenticator")
    if dry_run and have != params.oauthenticator_version:
        later("oauthenticator in hub env")
    else:
        row("oauthenticator in hub env", have == params.oauthenticator_version,
            f"{have or 'absent'}" + ("" if have == params.oauthenticator_version else f", wanted {params.oauthenticator_version}"))
    bad = [r for r in rows if r[1] == FAILED]
    detail = f"{len(rows) - len(bad)}/{len(rows)} checks passed" + (f"; failed: {', '.join(r[0] for r in bad)}" if bad else "")
    return StepResult("check_oauth_static", FAILED if bad else OK, detail, rows)


def _config_rows(params, callback: str, row) -> None:
    try:
        conf = load_config(params, ["c.OAuthenticator.oauth_callback_url"])
    except ConfigError as exc:
        row("config loads", False, str(exc).splitlines()[0])
        return
    in_conf = conf.values.get("c.OAuthenticator.oauth_callback_url")
    row("callback URL", in_conf == callback,
        f"{callback} (register exactly this at the provider)" if in_conf == callback
        else f"config has {in_conf!r}, the public URL and base_url give {callback}; run the config step")
    leaked = [k for k in oauth.SECRET_KEYS if k in conf.names]
    row("no secret in config", not leaked, f"{params.config_path}: " + (f"remove {', '.join(leaked)}" if leaked else "no client_id/client_secret"))
    env_file = params.layout.hub_env
    try:
        mode = stat.S_IMODE(env_file.stat().st_mode)
        row("hub.env private", mode & 0o077 == 0, f"{env_file} mode {mode:04o}")
    except OSError:
        row("hub.env private", False, f"{env_file} missing; run the secrets step")


def check_oauth_login(params, *, dry_run: bool = False) -> StepResult:
    """Probe the running hub: login page, and /hub/oauth_login redirecting to the provider with our client and callback."""
    if dry_run:
        return StepResult("check_oauth_login", WOULD_CHANGE, f"would probe {oauth.login_url(params)} after the restart")
    local = params.public_url + params.base_url  # the proxy on this machine, whatever the public name
    callback = oauth.callback_url(oauth.public_url(params), params.base_url)
    rows: list[tuple[str, str, str]] = []
    timeout = params.oauth_http_timeout
    ok, seen, resp = _reach("GET", local + "hub/login", timeout)
    service = oauth.LOGIN_SERVICE[params.oauth_provider]
    good = ok and resp is not None and resp.status_code == 200 and f"Sign in with {service}" in resp.text
    rows.append(("login page", OK if good else FAILED, f"{seen}" + (f", shows 'Sign in with {service}'" if good else
                                                                     f", no 'Sign in with {service}' button: is the hub running with the new config?")))
    ok, seen, resp = _reach("GET", local + "hub/oauth_login", timeout)
    where = resp.headers.get("Location", "") if resp is not None else ""
    query = parse_qs(urlsplit(where).query)
    try:
        want_id = _client(params)[0]
    except RunbookError:
        want_id = None
    endpoints = _safe_endpoints(params)
    checks = [
        ("redirects to the provider", ok and resp is not None and resp.status_code == 302
         and where.startswith(endpoints.get("authorize_url") or "\0"), f"{seen} → {where.split('?')[0] or 'no redirect'}"),
        ("with our callback URL", query.get("redirect_uri") == [callback], f"redirect_uri={(query.get('redirect_uri') or ['-'])[0]}"),
        ("with our client id", want_id is not None and query.get("client_id") == [want_id], "client_id matches hub.env"
         if want_id is not None and query.get("client_id") == [want_id] else "client_id differs from hub.env: restart the hub"),
        ("with PKCE", query.get("code_challenge_method") == ["S256"], "code_challenge_method=S256"),
    ]
    rows += [(name, OK if good else FAILED, detail) for name, good, detail in checks]
    bad = [r[0] for r in rows if r[1] == FAILED]
    url = oauth.login_url(params)
    detail = f"log in at {url}" if not bad else f"failed: {', '.join(bad)}"
    return StepResult("check_oauth_login", FAILED if bad else OK, detail, rows, data={"login_url": url})


def _safe_endpoints(params) -> dict[str, str]:
    try:
        return oauth.provider_endpoints(params)
    except RunbookError:
        return {}
