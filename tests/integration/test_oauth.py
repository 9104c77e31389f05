"""OAuth login end to end: a configured hub switched to GitHub (fake server) or OpenID Connect (oidc-provider 9).

Real flows over HTTP: the hub redirects to the provider, the test client follows like a browser and
picks the account at the provider; the hub creates the system account and spawns a server as that user.
Users made here start with hrb- and are deleted afterwards; hub and proxy are stopped by PID.
"""
from __future__ import annotations

import json
import os
import pwd
import secrets
import subprocess
from pathlib import Path

import psutil
import pytest
import requests

from support.fakegithub import FakeGitHub, GitHubUser
from support.oauth import Hub, OIDCProvider, exists, follow_login

from hubrunbook.oauth import settings as oauth
from hubrunbook.hub import probe
from hubrunbook.core.errors import ParameterError, SecretError, VerificationError
from hubrunbook.hub.configload import load_config
from hubrunbook.core.params import build_params
from hubrunbook.hub.service import managed_hub_pid
from hubrunbook.core.steps import CHANGED, FAILED, OK, UNCHANGED, Run

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
    audit = p.layout.state_dir / "audit.jsonl"
    assert not audit.exists() or secret not in audit.read_text()
    env_file = p.layout.secrets_dir / "hub.env"
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
        conf = load_config(params, ["c.JupyterHub.authenticator_class", "c.OAuthenticator.scope"])
        assert conf.values["c.JupyterHub.authenticator_class"] == "hubrunbook_hub_auth.LocalGitHubOAuthenticator"
        assert conf.values["c.OAuthenticator.scope"] == ["read:org"]
        assert not any(k in conf.names for k in oauth.SECRET_KEYS)

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
    assert not (params.layout.secrets_dir / "hub.env").read_text().count("CLIENT")


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


# --- who a login may become (issue 8, H3) ---------------------------------------------------------------
def useradd_foreign(name: str, *extra: str) -> None:
    """An account hubrunbook did not create, made as an operator would (with a password for PAM)."""
    subprocess.run(["useradd", *extra, "--", name], check=True, capture_output=True)
    subprocess.run(["chpasswd"], input=f"{name}:pw-{name}\n", text=True, check=True)


def api(session: requests.Session, hub: Hub, method: str, path: str) -> requests.Response:
    return session.request(method, f"{hub.url}/hub/api/{path}", headers=probe._hub_xsrf(session), timeout=30)


def runs_as(name: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["username"]) if p.info["username"] == name]


def test_github_logins_never_become_root_a_foreign_account_or_a_stale_local_admin(hub):
    """The review's attack: GitHub logins named root, daemon, an existing non-hubrunbook account and the local
    admin configure made, all members of the allowed organization. Before the fix root and the admin got a session,
    the admin with admin rights (JupyterHub keeps the flag in its database)."""
    t = tag()
    foreign, newbie, oadmin = f"hrb-fx{t}", f"hrb-nw{t}", f"hrb-ad{t}"
    admin = hub.local_admin
    org = ["hrb-org"]
    gh = FakeGitHub("Iv1.hrbs" + t, "gh-secret-" + secrets.token_hex(12), {
        "root": GitHubUser("root", 1, orgs=org), "daemon": GitHubUser("daemon", 2, orgs=org),
        "foreign": GitHubUser(foreign, 3, orgs=org), "admin": GitHubUser(admin, 4, orgs=org),
        "newbie": GitHubUser(newbie, 5, orgs=org), "oadmin": GitHubUser(oadmin, 6),
    }).start()
    hub.users += [foreign, newbie, oadmin]
    try:
        useradd_foreign(foreign, "--create-home")
        hub.set_secret(gh.client_secret)
        os.environ["HRB_T_GH_ID"] = gh.client_id
        # (users: JupyterHub 6.1 does not let admin_users in without an allow rule naming them)
        params = hub.configure(local_users=True, pam={"users": [admin]}, github_url=gh.url, oauth_client_id="env:HRB_T_GH_ID",
                               oauth_client_secret=f"file:{hub.secret_file}", oauth_allowed_organizations=org,
                               oauth_admin_users=[oadmin])
        # under PAM, configure's admin is an admin (its account is in users.json)
        pam_session = probe.login(hub.url, admin, (params.layout.secrets_dir / "passwords" / admin).read_text().strip())
        assert probe.user_model(pam_session, hub.url, admin)["admin"] is True
        assert admin in json.loads((params.layout.state_dir / "users.json").read_text())["users"]

        results = hub.run_oauth()
        assert all(r.status in (OK, CHANGED, UNCHANGED) for r in results.values()), {k: (r.status, r.detail) for k, r in results.items()}

        # root, a system account and an account hubrunbook did not create: 403, no session, the log says why
        for who, why in (("root", "root never logs in to the hub"), ("daemon", "'daemon' is a system account"),
                         (foreign, f"the account '{foreign}' (uid {pwd.getpwnam(foreign).pw_uid}) exists but was not created by hubrunbook")):
            session, resp = login(hub, gh.url, who)
            assert resp.status_code == 403, (who, resp.status_code, resp.url)
            assert session.get(f"{hub.url}/hub/api/user", timeout=10).status_code == 403
            assert f"hubrunbook: login of '{who}' refused: {why}" in hub.log()
        # configure's admin, now a GitHub login: its own account (hubrunbook made it), but no longer admin
        session, resp = login(hub, gh.url, admin)
        assert resp.status_code == 200 and resp.url.endswith("/hub/home")
        assert probe.user_model(session, hub.url, admin)["admin"] is False
        assert probe.user_model(pam_session, hub.url, admin)["admin"] is False  # the PAM session of before, too
        assert f"Removing admin=True from <User({admin}" in hub.log()
        # a new login gets an account the hub records (name and uid), and can log in again and spawn
        session, resp = login(hub, gh.url, newbie)
        assert resp.status_code == 200 and exists(newbie)
        hub_users = params.layout.state_dir / "hub-users.json"
        assert hub_users.stat().st_mode & 0o777 == 0o600
        assert json.loads(hub_users.read_text())["users"][newbie]["uid"] == pwd.getpwnam(newbie).pw_uid
        session, resp = login(hub, gh.url, newbie)
        assert resp.status_code == 200 and resp.url.endswith("/hub/home")
        assert_spawns_as(hub, session, newbie)

        # the OAuth admin is admin, and even an admin cannot start a server as daemon or the foreign account
        session, resp = login(hub, gh.url, oadmin)
        assert resp.status_code == 200 and probe.user_model(session, hub.url, oadmin)["admin"] is True
        for who in ("daemon", foreign):
            before = set(runs_as(who))
            assert api(session, hub, "POST", f"users/{who}").status_code in (201, 409)
            resp = api(session, hub, "POST", f"users/{who}/server")
            assert resp.status_code >= 400, (who, resp.status_code, resp.text[:300])
            assert f"hubrunbook: spawn for '{who}' refused" in hub.log()
            assert set(runs_as(who)) <= before
    finally:
        os.environ.pop("HRB_T_GH_ID", None)
        gh.stop()


def test_pam_allow_all_never_admits_a_system_account(hub):
    """allow_all with PAM admits every account with a password: a system account with one is still refused."""
    t = tag()
    system_user = f"hrb-sy{t}"
    hub.users.append(system_user)
    useradd_foreign(system_user, "--system")
    assert pwd.getpwnam(system_user).pw_uid < 1000
    params = hub.configure(local_users=True, pam={"allow_all": True})
    _, status = probe.try_login(hub.url, system_user, f"pw-{system_user}")
    assert status == 403
    assert f"hubrunbook: login of '{system_user}' refused: '{system_user}' is a system account" in hub.log()
    # an ordinary account still logs in with allow_all
    admin_pw = (params.layout.secrets_dir / "passwords" / hub.local_admin).read_text().strip()
    assert probe.try_login(hub.url, hub.local_admin, admin_pw)[1] == 302
