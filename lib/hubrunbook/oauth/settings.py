"""OAuth login for the hub (guide §2.5): GitHub, or any OpenID Connect provider through GenericOAuthenticator.

Pure parts (URL math, the config settings, the plan's rules) plus OIDC discovery. The changing
steps live in ``oauthsteps.py``, the verification in ``oauthcheck.py``.

Where the client id and secret go: oauthenticator 17 reads them from the config file *or* from
the environment (config wins). The config file is world-readable (0644) and gets copied, diffed
and pasted into tickets; so the secrets go into ``<prefix>/secrets/hub.env`` (0600, loaded by
the managed hub process only) and any client_id/client_secret line in the config is removed.
"""
from __future__ import annotations

import shlex
from urllib.parse import urlsplit

import requests

from hubrunbook.core.errors import ParameterError, RunbookError
from hubrunbook.hub.hubguard import HUB_MODULE, guard_settings
from hubrunbook.core.params import USERNAME_MAX

# the hub refuses (403, "Disallowing invalid username") any login that is not a safe system username
USERNAME_PATTERN = rf"^[a-z_][a-z0-9_-]{{0,{USERNAME_MAX - 1}}}$"

# Both classes are hubrunbook's own subclasses, written into the hub env (hubguard.py): a login maps only onto an
# account hubrunbook created or creates, never a system account. The generic one also fixes oauthenticator 17.4's
# LocalGenericOAuthenticator answering a new user with a 500 (getpwnam) when allowed_groups is set, because
# LocalAuthenticator.check_allowed tests UNIX groups of an account that is only created after the allow check.
CLASSES = {
    "github": f"{HUB_MODULE}.LocalGitHubOAuthenticator",
    "generic": f"{HUB_MODULE}.LocalGenericOAuthenticator",
}
# environment variables oauthenticator reads when the config does not set client_id/client_secret
ENV_VARS = {
    "github": ("GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET"),
    "generic": ("OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET"),
}
LOGIN_SERVICE = {"github": "GitHub", "generic": "OpenID Connect"}
GITHUB_ONLY = ("c.GitHubOAuthenticator.github_url", "c.GitHubOAuthenticator.allowed_organizations",
               "c.GitHubOAuthenticator.username_claim")
GENERIC_ONLY = (
    "c.GenericOAuthenticator.username_claim", "c.OAuthenticator.manage_groups", "c.OAuthenticator.auth_state_groups_key",
    "c.OAuthenticator.allowed_groups", "c.OAuthenticator.admin_groups",
)
ENDPOINT_KEYS = ("authorize_url", "token_url", "userdata_url")
# secrets belong in hub.env, never in the world-readable config: these lines are removed
SECRET_KEYS = tuple(
    f"c.{cls}.{trait}"
    for cls in ("OAuthenticator", "GitHubOAuthenticator", "LocalGitHubOAuthenticator", "GenericOAuthenticator",
                "LocalGenericOAuthenticator")
    for trait in ("client_id", "client_secret")
)


class ProviderError(RunbookError):
    """The OAuth provider cannot be reached or answers unexpectedly."""

    next_action = "check the provider's URL (oidc_issuer, github_url) and that this server can reach it, then run again"


# --- URLs --------------------------------------------------------------------------------------
def public_url(params) -> str:
    """The URL users open (scheme://host[:port]), without the base URL."""
    return (params.oauth_public_url or params.public_url).rstrip("/")


def hub_url(params) -> str:
    """Public URL plus base URL, ending in '/': the hub's homepage."""
    return public_url(params) + params.base_url


def callback_url(public: str, base_url: str = "/") -> str:
    """``http[s]://host[:port][/base]/hub/oauth_callback`` (what the provider must know)."""
    parts = urlsplit(public)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ParameterError(f"public URL must be http(s)://host[:port]; got {public!r}")
    base = "/" + "/".join(p for p in (parts.path + "/" + base_url).split("/") if p)
    return f"{parts.scheme}://{parts.netloc}{base.rstrip('/')}/hub/oauth_callback"


def login_url(params) -> str:
    """The page where a person starts to log in."""
    return hub_url(params) + "hub/login"


def github_api(github_url: str) -> str:
    """GitHub's REST API root: api.github.com for github.com, <url>/api/v3 for Enterprise (as oauthenticator)."""
    url = github_url.rstrip("/")
    return "https://api.github.com" if url == "https://github.com" else url + "/api/v3"


def github_registration(params) -> list[tuple[str, str]]:
    """What to enter when registering the OAuth app on GitHub (rows: field, value)."""
    return [
        ("registration page", f"{params.github_url.rstrip('/')}/settings/applications/new"),
        ("Application name", "JupyterHub (any name users will recognise)"),
        ("Homepage URL", hub_url(params)),
        ("Authorization callback URL", callback_url(public_url(params), params.base_url)),
        ("Enable Device Flow", "leave unchecked"),
        ("then", "Generate a new client secret; store id and secret where oauth_client_id/oauth_client_secret point"),
    ]


def generic_registration(params) -> list[tuple[str, str]]:
    """What to enter when registering the client at an OpenID Connect provider."""
    return [
        ("issuer", params.oidc_issuer or "(oidc_issuer not set)"),
        ("client type", "confidential (client authentication: client secret sent in the POST body, client_secret_post)"),
        ("grant type", "authorization code (PKCE S256 is sent)"),
        ("redirect / callback URI", callback_url(public_url(params), params.base_url)),
        ("home / root URL", hub_url(params)),
        ("scopes", " ".join(scopes(params))),
        ("user-info claims", f"{username_claim(params)}" + (f", {params.oauth_groups_claim}" if uses_groups(params) else "")),
    ]


# --- what the config says ------------------------------------------------------------------------
def scopes(params) -> list[str]:
    """Scopes to request: the parameter, provider defaults, plus read:org when organizations decide."""
    out = list(params.oauth_scopes) or ([] if params.oauth_provider == "github" else ["openid", "profile"])
    if params.oauth_provider == "github" and params.oauth_allowed_organizations and "read:org" not in out:
        out.append("read:org")
    return out


def username_claim(params) -> str:
    return params.oauth_username_claim or ("login" if params.oauth_provider == "github" else "preferred_username")


def uses_groups(params) -> bool:
    return params.oauth_provider == "generic" and bool(params.oauth_allowed_groups or params.oauth_admin_groups)


def allow_rules(params) -> list[str]:
    """The rules that let somebody in (empty: JupyterHub ≥ 5 would admit nobody)."""
    rules = []
    if params.oauth_allowed_users:
        rules.append(f"allowed_users: {', '.join(params.oauth_allowed_users)}")
    if params.oauth_admin_users:
        rules.append(f"admin_users: {', '.join(params.oauth_admin_users)}")
    if params.oauth_provider == "github" and params.oauth_allowed_organizations:
        rules.append(f"allowed_organizations: {', '.join(params.oauth_allowed_organizations)}")
    if params.oauth_provider == "generic" and params.oauth_allowed_groups:
        rules.append(f"allowed_groups: {', '.join(params.oauth_allowed_groups)}")
    if params.oauth_provider == "generic" and params.oauth_admin_groups:
        rules.append(f"admin_groups: {', '.join(params.oauth_admin_groups)}")
    return rules


def check_oauth_params(params) -> None:
    """Raise ParameterError for a configuration the runbook refuses (lock-out, missing issuer). Read-only."""
    problems = []
    if not allow_rules(params):
        who = "oauth_allowed_organizations" if params.oauth_provider == "github" else "oauth_allowed_groups"
        problems.append(
            "nobody could log in: JupyterHub ≥ 5 admits no one without an allow rule. Set oauth_allowed_users, "
            f"oauth_admin_users or {who}"
        )
    if params.oauth_provider == "generic" and not params.oidc_issuer and not all(
        (params.oauth_authorize_url, params.oauth_token_url, params.oauth_userdata_url)
    ):
        problems.append("oauth_provider 'generic' needs oidc_issuer (or all of oauth_authorize_url, oauth_token_url, oauth_userdata_url)")
    if params.oauth_provider == "generic" and "openid" not in scopes(params) and params.oidc_issuer:
        problems.append("oauth_scopes must include 'openid' for an OpenID Connect provider")
    if params.base_url != "/":
        problems.append(
            f"base_url {params.base_url!r}: the hub managed by configure.ipynb serves at '/' (its bind_url has no path, and "
            "setting c.JupyterHub.base_url alone makes JupyterHub 6.1 fall back to port 8000); use base_url: '/'"
        )
    if problems:
        raise ParameterError("OAuth parameters refused, nothing was changed:\n" + "\n".join(f"  - {p}" for p in problems))


def _py(value) -> str:
    """Python source of a config value (sets sorted so the file is stable)."""
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(repr(v) for v in sorted(value)) + "}" if value else "set()"
    return repr(value)


def add_user_cmd(params) -> list[str]:
    """``add_user_cmd`` for LocalAuthenticator: refuse unsafe names, useradd with home, create the notebook dir.

    JupyterHub appends the username as the last argument; the script reads it from "$@" (never pasted
    into the script), so no name reaches a shell as code. The script contains no 'USERNAME' token
    (JupyterHub would substitute it).
    """
    nbdir = '"$name"'.join(shlex.quote(part) if part else "" for part in params.notebook_dir.split("{username}"))
    home = shlex.quote(params.home_base.rstrip("/") or "/") + '/"$name"'
    script = (
        'set -eu; for name; do :; done; '
        'case "$name" in ""|[!a-z_]*|*[!a-z0-9_-]*) echo "hubrunbook: refusing to create unsafe user name" >&2; exit 2;; esac; '
        f'[ "${{#name}}" -le {USERNAME_MAX} ] || {{ echo "hubrunbook: user name too long" >&2; exit 2; }}; '
        f'useradd --create-home --home-dir {home} --shell {shlex.quote(params.user_shell)} -- "$name"; '
        f'install -d -m 0755 -o "$name" -g "$(id -g -- "$name")" {nbdir}'
    )
    return ["/bin/sh", "-c", script, "hubrunbook-add-user"]


def oauth_settings(params, endpoints: dict[str, str] | None = None) -> dict[str, str | None]:
    """The jupyterhub_config.py settings (key → Python source; None removes) for OAuth login. No secrets in it.

    Who may log in is set on ``c.OAuthenticator`` and user creation on the authenticator's own class, so the
    local-login settings of configure.ipynb (``c.Authenticator.*``, PAM) stay as they are and apply again
    if the hub is switched back. *endpoints*: authorize/token/userdata URLs (from :func:`provider_endpoints`);
    GitHub without overrides needs none (oauthenticator derives them from github_url).
    """
    gh = params.oauth_provider == "github"
    endpoints = endpoints or {}
    cls = CLASSES[params.oauth_provider].rsplit(".", 1)[1]
    other = CLASSES["generic" if gh else "github"].rsplit(".", 1)[1]
    s: dict[str, str | None] = {k: None for k in SECRET_KEYS}
    s.update({k: None for k in (GENERIC_ONLY if gh else GITHUB_ONLY)})
    s.update({f"c.{other}.{t}": None for t in ("create_system_users", "add_user_cmd")})
    s["c.JupyterHub.authenticator_class"] = _py(CLASSES[params.oauth_provider])
    s.update(guard_settings(params))  # the same lines as configure.ipynb's: spawner guard, admin role, registries
    s["c.OAuthenticator.oauth_callback_url"] = _py(callback_url(public_url(params), params.base_url))
    s["c.OAuthenticator.login_service"] = _py(LOGIN_SERVICE[params.oauth_provider])
    s["c.OAuthenticator.scope"] = _py(scopes(params))
    s["c.OAuthenticator.enable_pkce"] = "True"
    s["c.OAuthenticator.allow_all"] = "False"
    s["c.OAuthenticator.allow_existing_users"] = "False"
    s["c.OAuthenticator.allowed_users"] = _py(set(params.oauth_allowed_users))
    s["c.OAuthenticator.admin_users"] = _py(set(params.oauth_admin_users))
    s["c.OAuthenticator.username_pattern"] = _py(USERNAME_PATTERN)
    s[f"c.{cls}.create_system_users"] = "True"
    s[f"c.{cls}.add_user_cmd"] = _py(add_user_cmd(params))
    for key in ENDPOINT_KEYS:
        url = getattr(params, f"oauth_{key}") or ("" if gh else endpoints.get(key, ""))
        s[f"c.OAuthenticator.{key}"] = _py(url) if url else None
    if gh:
        s["c.GitHubOAuthenticator.github_url"] = _py(params.github_url)
        s["c.GitHubOAuthenticator.allowed_organizations"] = _py(set(params.oauth_allowed_organizations))
        s["c.GitHubOAuthenticator.username_claim"] = _py(username_claim(params))
    else:
        s["c.GenericOAuthenticator.username_claim"] = _py(username_claim(params))
        groups = uses_groups(params)
        s["c.OAuthenticator.manage_groups"] = "True" if groups else None
        s["c.OAuthenticator.auth_state_groups_key"] = _py(f"oauth_user.{params.oauth_groups_claim}") if groups else None
        s["c.OAuthenticator.allowed_groups"] = _py(set(params.oauth_allowed_groups)) if params.oauth_allowed_groups else None
        s["c.OAuthenticator.admin_groups"] = _py(set(params.oauth_admin_groups)) if params.oauth_admin_groups else None
    return s


# --- the provider --------------------------------------------------------------------------------
def discover_oidc(issuer: str, timeout: float = 10) -> dict[str, str]:
    """Read ``<issuer>/.well-known/openid-configuration``; return issuer and authorize/token/userdata URLs.

    GenericOAuthenticator has no discovery of its own. Raises ProviderError saying what went wrong.
    """
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        resp = requests.get(url, timeout=timeout, headers={"Accept": "application/json"})
    except requests.Timeout:
        raise ProviderError(f"OIDC discovery: {url} did not answer within {timeout:g} s; check oidc_issuer and the network") from None
    except requests.RequestException as exc:
        raise ProviderError(f"OIDC discovery: cannot reach {url} ({type(exc).__name__}); check oidc_issuer, DNS and firewall") from None
    if resp.status_code != 200:
        raise ProviderError(f"OIDC discovery: {url} answered HTTP {resp.status_code}, not the discovery document; check oidc_issuer")
    try:
        doc = resp.json()
    except ValueError:
        raise ProviderError(
            f"OIDC discovery: {url} answered 200 but not JSON ({resp.headers.get('Content-Type', 'no content type')}); "
            "is oidc_issuer the issuer URL (e.g. https://keycloak.example.org/realms/<realm>)?"
        ) from None
    if not isinstance(doc, dict):
        raise ProviderError(f"OIDC discovery: {url} is JSON but not an object")
    if str(doc.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise ProviderError(
            f"OIDC discovery: the document at {url} names issuer {doc.get('issuer')!r}, not {issuer!r}. "
            "Set oidc_issuer to exactly the issuer the provider announces"
        )
    missing = [k for k in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint") if not doc.get(k)]
    if missing:
        raise ProviderError(f"OIDC discovery: {url} lacks {', '.join(missing)}; set the oauth_*_url overrides")
    methods = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    return {
        "issuer": doc["issuer"],
        "authorize_url": doc["authorization_endpoint"],
        "token_url": doc["token_endpoint"],
        "userdata_url": doc["userinfo_endpoint"],
        "client_secret_post": "client_secret_post" in methods,
    }


def provider_endpoints(params) -> dict[str, str]:
    """authorize/token/userdata URLs in effect: overrides, else GitHub defaults or OIDC discovery."""
    if params.oauth_provider == "github":
        base = params.github_url.rstrip("/")
        found = {"authorize_url": f"{base}/login/oauth/authorize", "token_url": f"{base}/login/oauth/access_token",
                 "userdata_url": f"{github_api(base)}/user"}
    elif params.oidc_issuer and not all(getattr(params, f"oauth_{k}") for k in ENDPOINT_KEYS):
        found = discover_oidc(params.oidc_issuer, params.oauth_http_timeout)
    else:
        found = {}
    return {k: getattr(params, f"oauth_{k}") or found.get(k, "") for k in ENDPOINT_KEYS}
