"""OAuth login end to end: a configured hub switched to GitHub (fake server) or OpenID Connect (oidc-provider 9).

Real flows over HTTP: the hub redirects to the provider, the test client follows like a browser and
picks the account at the provider; the hub creates the system account and spawns a server as that user.
Users made here start with hrb- and are deleted afterwards; hub and proxy are stopped by PID.
"""
from __future__ import annotations

import os
import pwd
import secrets
from pathlib import Path

import psutil
import pytest
import requests

from fakegithub import FakeGitHub, GitHubUser
from oauth_fixtures import Hub, OIDCProvider, exists, follow_login, hub, oauth_install  # noqa: F401 (fixtures)

from hubrunbook import oauth, probe
from hubrunbook.errors import ParameterError, SecretError, VerificationError
from hubrunbook.oauthcheck import config_values
from hubrunbook.params import build_params
from hubrunbook.service import managed_hub_pid
from hubrunbook.steps import CHANGED, FAILED, OK, UNCHANGED, Run

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates system users and spawns as them: needs root"),
]

def tag() -> str:
    return secrets.token_hex(3)


def login(hub: Hub, provider_url: str, who: str) -> tuple[requests.Session, requests.Response]:
    session = requests.Session()
    resp = follow_login(session, f"{hub.url}/hub/oauth_login?next=%2Fhub%2Fhome", provider_url, who)
    return session, resp


def assert_no_secret_anywhere(hub: Hub, secret: str) -> None:
    """Not in the config, the hub log, the audit log, any command line; hub.env is 0600; not in spawned servers' env."""
    p = hub.params
    assert secret not in p.config_path.read_text()
    assert p.config_path.stat().st_mode & 0o777 == 0o644
    assert secret not in hub.log()
    audit = p.state_dir / "audit.jsonl"
    assert not audit.exists() or secret not in audit.read_text()
    env_file = p.secrets_dir / "hub.env"
    assert env_file.stat().st_mode & 0o777 == 0o600 and secret in env_file.read_text()
    for proc in psutil.process_iter(["cmdline", "username"]):
        assert secret not in " ".join(proc.info["cmdline"] or []), f"secret in the command line of pid {proc.pid}"
        if proc.info["username"] in hub.users:
            try:
                assert secret not in (proc.environ().get("GITHUB_CLIENT_SECRET", "") + proc.environ().get("OAUTH_CLIENT_SECRET", ""))
            except psutil.Error:
                pass


def assert_spawns_as(hub: Hub, session: requests.Session, name: str) -> None:
    """The user's system account exists with home and notebook dir, and a spawned server runs as them."""
    pw = pwd.getpwnam(name)
    nbdir = Path(f"/home/{name}/notebooks")
    assert pw.pw_dir == f"/home/{name}" and nbdir.is_dir() and nbdir.stat().st_uid == pw.pw_uid
    probe.start_server(session, hub.url, name, timeout=90)
    path = probe.write_file_as_user(session, hub.url, name, "oauth-probe.txt", "hello", nbdir)
    assert path.stat().st_uid == pw.pw_uid
    servers = [p for p in psutil.process_iter(["username", "cmdline"])
               if p.info["username"] == name and any("jupyterhub-singleuser" in c for c in p.info["cmdline"] or [])]
    assert servers, f"no jupyterhub-singleuser process runs as {name}"


# --- GitHub -----------------------------------------------------------------------------------------
def test_github_login_creates_the_account_spawns_and_refuses_outsiders(hub):
    t = tag()
    alice, bob, carol = f"HRB-gh{t}-Alice", f"hrb-gh{t}-bob", f"hrb-gh{t}-carol"
    gh = FakeGitHub("Iv1.hrb" + t, "gh-secret-" + secrets.token_hex(12), {
        "alice": GitHubUser(alice, 1, orgs=["hrb-org"]),      # member of the allowed organization
        "bob": GitHubUser(bob, 2),                             # neither allowed nor member
        "carol": GitHubUser(carol, 3),                         # allowed by name
        "bad": GitHubUser(f"Bad.Name{t}", 4, orgs=["hrb-org"]),  # member, but not a valid system username
    }).start()
    hub.users += [alice.lower(), bob, carol]
    try:
        hub.set_secret(gh.client_secret)
        os.environ["HRB_T_GH_ID"] = gh.client_id
        params = hub.configure(github_url=gh.url, oauth_client_id="env:HRB_T_GH_ID", oauth_client_secret=f"file:{hub.secret_file}",
                               oauth_allowed_organizations=["hrb-org"], oauth_allowed_users=[carol])
        pam_pid = managed_hub_pid(params)
        results = hub.run_oauth()
        assert {k: r.status for k, r in results.items()} == {
            "check_oauth_plan": OK, "show_registration": OK, "ensure_oauth_secrets": CHANGED, "ensure_oauthenticator": UNCHANGED,
            "ensure_oauth_config": CHANGED, "check_oauth_static": OK, "ensure_hub_running": CHANGED, "check_oauth_login": OK}
        assert managed_hub_pid(params) != pam_pid  # restarted with the new authenticator
        reg = dict(results["show_registration"].rows)
        assert reg["Authorization callback URL"] == f"{params.public_url}/hub/oauth_callback"
        assert reg["registration page"] == f"{gh.url}/settings/applications/new"
        assert results["check_oauth_login"].detail == f"log in at {params.public_url}/hub/login"
        static = {r[0]: r for r in results["check_oauth_static"].rows}
        assert static["client credentials"][1] == OK and "bad_verification_code" in static["client credentials"][2]
        # config: GitHub Enterprise URL, organizations with read:org, no secret
        conf = config_values(params.config_path)
        assert conf["c.JupyterHub.authenticator_class"] == "oauthenticator.github.LocalGitHubOAuthenticator"
        assert conf["c.OAuthenticator.scope"] == ["read:org"]
        assert not any(k in conf for k in oauth.SECRET_KEYS)

        # a new member of the organization: logged in, account created, server spawned as that user
        assert not exists(alice.lower())
        session, resp = login(hub, gh.url, alice)
        assert resp.status_code == 200 and resp.url.endswith("/hub/home"), (resp.status_code, resp.url)
        assert_spawns_as(hub, session, alice.lower())
        # GitHub was asked about organization membership for the lower-cased name, through the Enterprise API path
        assert f"GET /api/v3/orgs/hrb-org/members/{alice.lower()} 204" in gh.log
        # allowed by name
        session_c, resp = login(hub, gh.url, carol)
        assert resp.status_code == 200 and exists(carol)
        # outside the allow list and the organization: 403, no account
        _, resp = login(hub, gh.url, bob)
        assert resp.status_code == 403 and not exists(bob)
        assert f"User '{bob}' not allowed" in hub.log() or f"User {bob} is not part of allowed_organizations" in hub.log()
        # a login that is not a valid system username: refused before any account or shell is involved
        _, resp = login(hub, gh.url, f"Bad.Name{t}")
        assert resp.status_code == 403 and not exists(f"bad.name{t}")
        assert f"Disallowing invalid username 'bad.name{t}'" in hub.log()
        assert_no_secret_anywhere(hub, gh.client_secret)

        # re-running changes nothing
        again = hub.run_oauth()
        assert {k: r.status for k, r in again.items() if r.status not in (OK, UNCHANGED)} == {}
    finally:
        os.environ.pop("HRB_T_GH_ID", None)
        gh.stop()


def test_github_wrong_secret_fails_login_and_verification_says_why(hub):
    t = tag()
    alice = f"hrb-gw{t}-alice"
    gh = FakeGitHub("Iv1.hrbw" + t, "gh-secret-" + secrets.token_hex(12), {"a": GitHubUser(alice, 1)}).start()
    hub.users.append(alice)
    try:
        hub.set_secret("wrong-" + secrets.token_hex(8))
        os.environ["HRB_T_GH_ID"] = gh.client_id
        params = hub.configure(github_url=gh.url, oauth_client_id="env:HRB_T_GH_ID", oauth_client_secret=f"file:{hub.secret_file}",
                               oauth_admin_users=[alice])
        results = hub.run_oauth()
        static = results["check_oauth_static"]
        assert static.status == FAILED and "client credentials" in static.detail
        row = {r[0]: r for r in static.rows}["client credentials"]
        assert row[1] == FAILED and "rejects the client id/secret (incorrect_client_credentials)" in row[2]
        session, resp = login(hub, gh.url, alice)
        assert resp.status_code == 403
        assert "The client_id and/or client_secret passed are incorrect" in resp.text
        assert session.get(f"{hub.url}/hub/api/user", timeout=10).status_code == 403  # not logged in
        # admin_users (and allowed_users) get their system account when the hub starts, before any login
        assert exists(alice) and Path(f"/home/{alice}/notebooks").is_dir()
        run = Run("oauth", params)
        run.results = list(results.values())
        with pytest.raises(VerificationError, match="oauth failed: check_oauth_static"):
            run.summary()
    finally:
        os.environ.pop("HRB_T_GH_ID", None)
        gh.stop()


def test_missing_secret_or_lockout_stops_before_the_hub_is_touched(hub):
    params = hub.configure(oauth_client_id="env:HRB_T_UNSET_ID", oauth_client_secret=f"file:{hub.secret_file}",
                           oauth_allowed_users=["hrb-nobody"])
    before_conf, before_pid = params.config_path.read_text(), managed_hub_pid(params)
    with pytest.raises(SecretError, match="HRB_T_UNSET_ID is not set"):
        hub.run_oauth()
    locked = build_params({**params.model_dump(), "oauth_allowed_users": []})
    with pytest.raises(ParameterError, match="nobody could log in"):
        hub.run_oauth(locked)
    os.environ["HRB_T_UNSET_ID"] = "some-id"
    try:  # the secret file does not exist
        with pytest.raises(SecretError, match="does not exist"):
            hub.run_oauth()
    finally:
        os.environ.pop("HRB_T_UNSET_ID")
    assert params.config_path.read_text() == before_conf and managed_hub_pid(params) == before_pid
    assert not (params.secrets_dir / "hub.env").read_text().count("CLIENT")


# --- OpenID Connect ------------------------------------------------------------------------------------
def test_oidc_login_groups_admins_and_wrong_secret(hub):
    t = tag()
    ann, dan, root = f"hrb-oi{t}-ann", f"hrb-oi{t}-dan", f"hrb-oi{t}-root"
    hub.users += [ann, dan, root]
    secret = "oidc-secret-" + secrets.token_hex(12)
    hub.set_secret(secret)
    ports = hub.ports
    provider = OIDCProvider("hub-" + t, secret, f"http://127.0.0.1:{ports['port']}/hub/oauth_callback", {
        ann: {"groups": ["staff"]}, dan: {"groups": ["visitors"]}, root: {"groups": ["hub-admins"]},
    }).start()
    try:
        os.environ["HRB_T_OIDC_ID"] = provider.client_id
        hub.configure(oauth_provider="generic", oidc_issuer=provider.issuer, oauth_client_id="env:HRB_T_OIDC_ID",
                      oauth_client_secret=f"file:{hub.secret_file}", oauth_scopes=["openid", "profile", "groups"],
                      oauth_allowed_groups=["staff"], oauth_admin_groups=["hub-admins"])
        results = hub.run_oauth()
        assert all(r.status in (OK, CHANGED, UNCHANGED) for r in results.values()), {k: (r.status, r.detail) for k, r in results.items()}
        plan = {r[0]: r[1] for r in results["check_oauth_plan"].rows}
        assert plan["authorize_url"] == f"{provider.issuer}/auth" and plan["userdata_url"] == f"{provider.issuer}/me"
        assert plan["token_url"] == f"{provider.issuer}/token"

        session, resp = login(hub, provider.issuer, ann)
        assert resp.status_code == 200 and resp.url.endswith("/hub/home"), (resp.status_code, resp.url, resp.text[:300])
        assert_spawns_as(hub, session, ann)
        assert probe.user_model(session, hub.url, ann)["admin"] is False
        # not in an allowed group: 403, no account
        _, resp = login(hub, provider.issuer, dan)
        assert resp.status_code == 403 and not exists(dan)
        # admin group: allowed and admin
        session_r, resp = login(hub, provider.issuer, root)
        assert resp.status_code == 200
        assert probe.user_model(session_r, hub.url, root)["admin"] is True
        assert_no_secret_anywhere(hub, secret)

        again = hub.run_oauth()
        assert {k: r.status for k, r in again.items() if r.status not in (OK, UNCHANGED)} == {}

        # the secret was regenerated at the provider but not here: login fails, verification says why
        hub.set_secret("stale-" + secrets.token_hex(8))
        broken = hub.run_oauth()
        assert broken["ensure_oauth_secrets"].status == CHANGED and broken["ensure_hub_running"].status == CHANGED
        row = {r[0]: r for r in broken["check_oauth_static"].rows}["client credentials"]
        assert row[1] == FAILED and "rejects the client id/secret (invalid_client)" in row[2]
        _, resp = login(hub, provider.issuer, ann)
        assert resp.status_code >= 400 and "/hub/home" not in resp.url
    finally:
        os.environ.pop("HRB_T_OIDC_ID", None)
        provider.stop()
