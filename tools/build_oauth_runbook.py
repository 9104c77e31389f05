"""Build runbooks/oauth.ipynb (cells without outputs). Usage: .venv/bin/python tools/build_oauth_runbook.py

Kept apart from build_runbooks.py so it can be edited independently; build_runbooks.py may import `oauth`
into its BUILDERS. Record reference outputs afterwards with tools/record_oauth_reference.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from nbtools import CHECK, VALIDATE, code, md, parameters_cell, write_notebook  # noqa: E402

from hubrunbook.runbooks import parameters_of  # noqa: E402

RUNBOOKS = Path(__file__).resolve().parents[1] / "runbooks"
def oauth():
    return [
        md("""
# Log in with GitHub or an OpenID Connect provider (guide §2.5)

Switches the hub configured by `configure.ipynb` from local (PAM) logins to OAuth: **GitHub** (or GitHub
Enterprise) through oauthenticator's `GitHubOAuthenticator`, or **any OpenID Connect provider** (Keycloak,
Auth0, Azure AD, Google, …) through `GenericOAuthenticator`, whose endpoints are read from the provider's
`/.well-known/openid-configuration`. A person who logs in through the provider gets a system account of the
same name on first login (home and notebook dir included) and a server that runs as that account.

| changes | where |
|---|---|
| `oauthenticator`, pinned, and hubrunbook's small `hubrunbook_hub_auth` module | the hub env `<prefix>/env/` |
| client id and secret (never in the config file) | `<prefix>/secrets/hub.env` (0600), loaded by the managed hub |
| authenticator, callback URL, who may log in, user creation: live lines marked `# hubrunbook` | `jupyterhub_config.py` (backup per change) |
| the running hub: restarted on the new configuration | pid files and log in `<prefix>/state/` |
| system accounts of people who log in (created by the hub on first login; `oauth_allowed_users` and `oauth_admin_users` when the hub starts) | `/etc/passwd`, `<home_base>/<user>` |

The local-login settings of `configure.ipynb` stay in the file (`c.Authenticator.*`); OAuth's own are set on
`c.OAuthenticator`, which wins for the OAuth classes. Running `configure.ipynb` again keeps the OAuth authenticator.

**Safe to re-run**: unchanged parameters change nothing and leave the hub running. **Takes** ~10 s (oauthenticator
install and one hub restart). **Next**: log in at the URL shown at the end; `troubleshoot.ipynb` if that fails.
"""),
        md("""
## Prerequisites

| what | why |
|---|---|
| `install.ipynb` and `configure.ipynb` have run with the same `prefix` | the hub env, the config file and the managed hub are used as they are |
| root | the hub creates system accounts (`useradd`) and spawns servers as them |
| an OAuth app at GitHub, or a client at your OpenID Connect provider (Step 2 shows what to enter) | the provider only sends people back to a registered callback URL |
| the client id and secret stored in an environment variable or a 0600 file | secrets are never parameter values: papermill writes parameters into the executed notebook |
| the provider reachable from this server (HTTPS) | the hub exchanges the login code for a token server-to-server |

## Parameters
Defaults are the embedded local deployment (`parameters/local.yaml`); they do not name a provider's client or
anyone who may log in, so a run with them stops at Step 1 and says what to set. For GitHub set at least
`oauth_client_id`, `oauth_client_secret` and one of `oauth_allowed_users`, `oauth_admin_users`,
`oauth_allowed_organizations`. For another provider set `oauth_provider = 'generic'`, `oidc_issuer` (e.g.
`https://keycloak.example.org/realms/<realm>`), the client references and `oauth_allowed_groups` or users.
`oauth_public_url` is the address people open (`https://hub.example.org`); empty means `http://<bind_ip>:<port>`.
"""),
        parameters_cell(parameters_of("oauth")),
        md("""
## Validate the parameters
Names, types and values are checked first: secret references must be `env:VAR` or `file:/path` (a literal
secret is refused), URLs must be https (plain http only on loopback), logins must be valid system usernames.
"""),
        code(VALIDATE.format(name="oauth"), CHECK),
        md("""
## Step 1 — Check the plan: who may log in, and where the provider is
JupyterHub ≥ 5 lets nobody in without an allow rule, so a configuration without allowed users, admins,
organizations or groups is refused here. For OpenID Connect the provider's discovery document is read (with
`oauth_http_timeout`) to find the authorize, token and user-info endpoints, which GenericOAuthenticator cannot
discover itself. Secret references are resolved (not shown) so that a missing one stops the run now, before the
hub is touched — oauthenticator itself would start without complaint and send an empty client id.
Usernames come from the provider lower-cased; one that is not a valid system username (`Bad.Name`,
`ann@example.org`) is refused at login, so it never reaches `useradd` or a shell.
"""),
        code("from hubrunbook.oauth.steps import check_oauth_plan\nrun(check_oauth_plan)", CHECK),
        md("""
## Step 2 — Register the OAuth app at the provider (guide §2.5.3)
Enter exactly these values. The callback URL is `<public URL><base_url>hub/oauth_callback`; the provider sends
people back only to a registered one. On GitHub the page is `<github_url>/settings/applications/new`; then
store the client id and a newly generated secret where `oauth_client_id` / `oauth_client_secret` point.
"""),
        code("from hubrunbook.oauth.steps import show_registration\nrun(show_registration)", CHECK),
        md("""
## Step 3 — Give the hub its client id and secret
The guide says the id and secret work only as environment variables; with oauthenticator 17 the config file
works too, and wins over the environment. The config file is readable by every user of the machine (0644) and
tends to be copied and pasted, so the secrets go into `<prefix>/secrets/hub.env` instead: mode 0600, read only
by the managed hub process (and by a systemd unit later, as an `EnvironmentFile`). Any `client_id` /
`client_secret` line in the config is removed in Step 5. Spawned servers do not inherit these variables.
"""),
        code("from hubrunbook.oauth.steps import ensure_oauth_secrets\nrun(ensure_oauth_secrets)", CHECK),
        md("""
## Step 4 — Install oauthenticator into the hub env (guide §2.5.1)
`pip install oauthenticator`, pinned to `oauthenticator_version`, into the hub's own env (uv when available).
With it goes hubrunbook's module `hubrunbook_hub_auth` (configure.ipynb writes it too), whose subclasses of the
OAuth authenticators refuse a login that would become root, a system account (uid outside `UID_MIN..UID_MAX`) or an
existing account hubrunbook did not create — a GitHub user named `root` or like a local account gets a 403, and the
hub log says why. Also, oauthenticator 17.4's `LocalGenericOAuthenticator` answers every new user with a 500
(`getpwnam(): name not found`) when `allowed_groups` is set, because it first looks for the user's UNIX groups,
before the account exists; hubrunbook's subclass decides groups from the provider's claim only.
"""),
        code("from hubrunbook.oauth.steps import ensure_oauthenticator\nrun(ensure_oauthenticator)", CHECK),
        md("""
## Step 5 — Switch the config to OAuth login (guide §2.5.2)
The guide sets `authenticator_class = GitHubOAuthenticator` — and warns that a GitHub user without a system
account of the same name gets a 500 at spawn. Here the `Local` variant creates the account on first login
(`create_system_users`) with an `add_user_cmd` that refuses unsafe names, makes the home directory and the
notebook dir (owned by the user). Also set: the callback URL, scopes (`read:org` when organizations decide),
allowed users / organizations / groups, admins, the username pattern, and the provider's endpoints. Admins are
exactly `oauth_admin_users` from the next start on: local admins of `configure.ipynb` lose admin rights under OAuth
(JupyterHub alone would keep them in its database). The edited file is loaded with JupyterHub's own loader before
it replaces the old one.
"""),
        code("from hubrunbook.oauth.steps import ensure_oauth_config\nrun(ensure_oauth_config)", CHECK),
        md("""
## Verify — static check
Before the restart: an allow rule exists, the callback URL in the config matches the public URL, no secret is in
the config, hub.env is private, the id and secret resolve, the provider's endpoints answer (bounded by
`oauth_http_timeout`), and the provider accepts the client: a dummy code is sent to the token endpoint with the
client credentials, and the provider's error tells a wrong secret (`incorrect_client_credentials`,
`invalid_client`) from a merely invalid code.
"""),
        code("from hubrunbook.oauth.checks import check_oauth_static\nrun(check_oauth_static)", CHECK),
        md("""
## Step 6 — Restart the hub with the new authenticator
The hub is restarted because its config and environment changed (stopped by its recorded PIDs, never by
name); ready means `/hub/api` answers 200 JSON and the proxy owns the public port. Unchanged: left alone.
"""),
        code("from hubrunbook.hub.service import ensure_hub_running\nrun(ensure_hub_running)", CHECK),
        md("""
## Verify — the login page and the way to the provider
The running hub shows "Sign in with …", and `/hub/oauth_login` sends a browser to the provider's authorize
endpoint with our client id, our callback URL and PKCE. The last step — a person entering their password at the
provider — needs a browser: open the URL below.
"""),
        code("from hubrunbook.oauth.checks import check_oauth_login\nrun(check_oauth_login)", CHECK),
        md("""
## Summary
Every step with its status. A failed check fails the run (papermill exits non-zero naming it).
"""),
        code("run.summary()", CHECK),
    ]


if __name__ == "__main__":
    write_notebook(RUNBOOKS / "oauth.ipynb", oauth())
    print("wrote runbooks/oauth.ipynb")
