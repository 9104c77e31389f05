"""OAuth pure logic: parameters, callback URL math, registration rows, config settings, lock-out refusal, discovery."""
from __future__ import annotations

import ast
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hubrunbook.oauth import settings as oauth
from hubrunbook.core.errors import ParameterError
from hubrunbook.core.params import build_params


def params(**kw):
    return build_params(kw)


# --- parameters ----------------------------------------------------------------------------------
@pytest.mark.parametrize("values, message", [
    ({"oauth_client_secret": "hunter2hunter2"}, "oauth_client_secret must name where the secret lives"),
    ({"oauth_client_id": "Iv1.abcdef"}, "oauth_client_id must name where the secret lives"),
    ({"oauth_provider": "gitlab"}, "oauth_provider"),
    ({"oauthenticator_version": 17.4}, "oauthenticator_version must be a quoted string"),
    ({"oauthenticator_version": "latest"}, "oauthenticator_version must be an exact version"),
    ({"oauth_public_url": "hub.example.org"}, "oauth_public_url must be an http(s):// URL"),
    ({"oauth_public_url": "https://hub.example.org/jupyter"}, "put a path prefix in base_url"),
    ({"oauth_public_url": "http://hub.example.org"}, "must use https://"),
    ({"oauth_public_url": "https://hub.example.org:99999"}, "invalid port"),
    ({"oauth_public_url": "https://u:p@hub.example.org"}, "must not carry a query, fragment or credentials"),
    ({"github_url": "http://github.example.org"}, "github_url must use https://"),
    ({"oidc_issuer": "ftp://idp.example.org"}, "oidc_issuer must be an http(s):// URL"),
    ({"oauth_token_url": "https://idp.example.org/token?x=1"}, "oauth_token_url must not carry a query"),
    ({"base_url": "jupyter/../x"}, "base_url must be a URL path"),
    ({"base_url": "/a b/"}, "base_url must be a URL path"),
    ({"oauth_allowed_users": ["Bad.Name"]}, "is not a valid system username"),
    ({"oauth_allowed_users": ["9lives"]}, "is not a valid system username"),
    ({"oauth_allowed_users": ["Alice", "alice"]}, "lists a name twice"),
    ({"oauth_admin_users": ["x" * 40]}, "longer than 32"),
    ({"oauth_allowed_organizations": ["my org"]}, "must be 'org' or 'org:team'"),
    ({"oauth_allowed_groups": [" staff"]}, "non-empty printable group names"),
    ({"oauth_scopes": ["openid profile"]}, "single scope tokens"),
    ({"oauth_username_claim": "pre ferred"}, "must be a claim name"),
    ({"oauth_http_timeout": 0}, "between 1 and 120"),
    ({"oauth_provider": "generic", "oauth_allowed_organizations": ["org"]}, "use oauth_allowed_groups with 'generic'"),
    ({"oauth_allowed_groups": ["staff"]}, "use oauth_allowed_organizations with 'github'"),
    ({"oauth_client_sekret": "env:X"}, "did you mean 'oauth_client_secret'"),
])
def test_parameter_rejections_name_the_parameter(values, message):
    with pytest.raises(ParameterError) as err:
        build_params(values)
    assert message in str(err.value)


def test_parameters_normalise_logins_and_urls():
    p = params(oauth_allowed_users=["Alice", "bob_2"], oauth_admin_users=["ADMIN-1"], base_url="/jupyter",
               oauth_public_url="https://hub.example.org/", github_url="https://ghe.example.org/")
    assert p.oauth_allowed_users == ["alice", "bob_2"] and p.oauth_admin_users == ["admin-1"]
    assert p.base_url == "/jupyter/"
    assert p.oauth_public_url == "https://hub.example.org" and p.github_url == "https://ghe.example.org"


def test_secret_references_are_accepted():
    p = params(oauth_client_id="env:GH_ID", oauth_client_secret="file:/root/gh.secret")
    assert p.oauth_client_secret == "file:/root/gh.secret"


def test_http_is_accepted_on_loopback_only():
    assert params(oidc_issuer="http://127.0.0.1:9000").oidc_issuer == "http://127.0.0.1:9000"
    assert params(github_url="http://localhost:9000").github_url == "http://localhost:9000"


# --- URLs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("public, base, expected", [
    ("http://jupyterhub.example.com:8000", "/", "http://jupyterhub.example.com:8000/hub/oauth_callback"),  # the guide's example
    ("https://hub.example.org", "/", "https://hub.example.org/hub/oauth_callback"),
    ("https://hub.example.org/", "/jupyter/", "https://hub.example.org/jupyter/hub/oauth_callback"),
    ("https://hub.example.org", "jupyter", "https://hub.example.org/jupyter/hub/oauth_callback"),
    ("http://[::1]:8000", "/a/b/", "http://[::1]:8000/a/b/hub/oauth_callback"),
])
def test_callback_url(public, base, expected):
    assert oauth.callback_url(public, base) == expected


def test_callback_url_refuses_a_non_url():
    with pytest.raises(ParameterError, match="public URL must be"):
        oauth.callback_url("hub.example.org", "/")


def test_public_url_defaults_to_the_proxy_address():
    p = params(bind_ip="0.0.0.0", port=8443, tls_terminated_by_proxy=True)
    assert oauth.public_url(p) == "http://127.0.0.1:8443"
    # with HTTPS served by the proxy, the default public URL and so the callback are https
    p = params(bind_ip="0.0.0.0", port=8443, ssl_cert="/etc/ssl/hub/fullchain.pem", ssl_key="/etc/ssl/hub/key.pem")
    assert oauth.public_url(p) == "https://127.0.0.1:8443"
    assert oauth.callback_url(oauth.public_url(p), p.base_url) == "https://127.0.0.1:8443/hub/oauth_callback"
    assert oauth.login_url(params(oauth_public_url="https://hub.example.org", base_url="/jh/")) == "https://hub.example.org/jh/hub/login"


def test_github_registration_rows():
    rows = dict(oauth.github_registration(params(oauth_public_url="https://hub.example.org", github_url="https://ghe.example.org")))
    assert rows["registration page"] == "https://ghe.example.org/settings/applications/new"
    assert rows["Homepage URL"] == "https://hub.example.org/"
    assert rows["Authorization callback URL"] == "https://hub.example.org/hub/oauth_callback"


def test_github_api_root():
    assert oauth.github_api("https://github.com") == "https://api.github.com"
    assert oauth.github_api("https://ghe.example.org/") == "https://ghe.example.org/api/v3"


# --- settings -------------------------------------------------------------------------------------
def _values(settings):
    return {k: (None if v is None else ast.literal_eval(v)) for k, v in settings.items()}


def test_github_settings():
    p = params(oauth_allowed_users=["Alice"], oauth_admin_users=["root-admin"], oauth_allowed_organizations=["hrb-org:ops"],
               oauth_client_secret="env:GH_SECRET", oauth_public_url="https://hub.example.org")
    s = _values(oauth.oauth_settings(p))
    assert s["c.JupyterHub.authenticator_class"] == "hubrunbook_hub_auth.LocalGitHubOAuthenticator"
    assert s["c.OAuthenticator.oauth_callback_url"] == "https://hub.example.org/hub/oauth_callback"
    assert s["c.OAuthenticator.allowed_users"] == {"alice"} and s["c.OAuthenticator.admin_users"] == {"root-admin"}
    assert not any(k.startswith("c.Authenticator.") for k in s)  # configure.ipynb's local-login settings stay
    assert s["c.GitHubOAuthenticator.allowed_organizations"] == {"hrb-org:ops"}
    assert s["c.OAuthenticator.scope"] == ["read:org"]
    assert s["c.GitHubOAuthenticator.username_claim"] == "login" and s["c.GenericOAuthenticator.username_claim"] is None
    assert s["c.LocalGitHubOAuthenticator.create_system_users"] is True
    assert s["c.LocalGenericOAuthenticator.create_system_users"] is None
    assert s["c.OAuthenticator.allow_all"] is False
    # secrets never in the config; stale secret lines are removed
    assert all(s[k] is None for k in oauth.SECRET_KEYS)
    # generic-only settings are removed when switching to GitHub
    assert s["c.OAuthenticator.allowed_groups"] is None
    assert "c.JupyterHub.base_url" not in s


def test_github_endpoint_overrides_and_enterprise_url():
    p = params(oauth_allowed_users=["a"], github_url="http://127.0.0.1:9999", oauth_token_url="http://127.0.0.1:9999/t")
    s = _values(oauth.oauth_settings(p))
    assert s["c.GitHubOAuthenticator.github_url"] == "http://127.0.0.1:9999"
    assert s["c.OAuthenticator.token_url"] == "http://127.0.0.1:9999/t"
    assert s["c.OAuthenticator.authorize_url"] is None  # derived by oauthenticator from github_url
    assert oauth.provider_endpoints(p)["userdata_url"] == "http://127.0.0.1:9999/api/v3/user"


def test_generic_settings_with_groups():
    p = params(oauth_provider="generic", oidc_issuer="https://idp.example.org/realms/x", oauth_allowed_groups=["staff"],
               oauth_admin_groups=["hub-admins"], oauth_scopes=["openid", "profile", "groups"], base_url="/jh/")
    ep = {"authorize_url": "https://idp.example.org/auth", "token_url": "https://idp.example.org/token",
          "userdata_url": "https://idp.example.org/me"}
    s = _values(oauth.oauth_settings(p, ep))
    assert s["c.OAuthenticator.authorize_url"] == "https://idp.example.org/auth"
    assert s["c.OAuthenticator.userdata_url"] == "https://idp.example.org/me"
    assert s["c.GenericOAuthenticator.username_claim"] == "preferred_username"
    assert s["c.JupyterHub.authenticator_class"] == "hubrunbook_hub_auth.LocalGenericOAuthenticator"
    assert s["c.LocalGenericOAuthenticator.create_system_users"] is True
    assert s["c.OAuthenticator.manage_groups"] is True
    assert s["c.OAuthenticator.auth_state_groups_key"] == "oauth_user.groups"
    assert s["c.OAuthenticator.allowed_groups"] == {"staff"} and s["c.OAuthenticator.admin_groups"] == {"hub-admins"}
    assert "c.JupyterHub.base_url" not in s  # configure.ipynb owns where the hub listens
    assert s["c.OAuthenticator.oauth_callback_url"] == "http://127.0.0.1:8000/jh/hub/oauth_callback"
    assert s["c.GitHubOAuthenticator.allowed_organizations"] is None


def test_generic_default_scopes_and_claim():
    p = params(oauth_provider="generic", oidc_issuer="https://idp.example.org", oauth_allowed_users=["ann"])
    assert oauth.scopes(p) == ["openid", "profile"]
    assert oauth.username_claim(p) == "preferred_username"
    assert oauth.oauth_settings(p, {})["c.OAuthenticator.manage_groups"] is None


def test_settings_are_python_literals_and_hold_no_secret(monkeypatch):
    monkeypatch.setenv("GH_SECRET", "s3cr3t-value-xyz")
    p = params(oauth_allowed_users=["a"], oauth_client_secret="env:GH_SECRET")
    for key, value in oauth.oauth_settings(p).items():
        assert key.startswith("c.") and key.count(".") == 2
        if value is not None:
            ast.literal_eval(value)
            assert "s3cr3t" not in value and "GH_SECRET" not in value


# --- lock-out and plan rules ----------------------------------------------------------------------
def test_refuses_a_configuration_that_locks_everyone_out():
    with pytest.raises(ParameterError, match="nobody could log in.*oauth_allowed_organizations"):
        oauth.check_oauth_params(params())
    with pytest.raises(ParameterError, match="nobody could log in.*oauth_allowed_groups"):
        oauth.check_oauth_params(params(oauth_provider="generic", oidc_issuer="https://idp.example.org"))


@pytest.mark.parametrize("values", [
    {"oauth_allowed_users": ["a"]}, {"oauth_admin_users": ["a"]}, {"oauth_allowed_organizations": ["org"]},
    {"oauth_provider": "generic", "oidc_issuer": "https://idp.example.org", "oauth_allowed_groups": ["g"]},
    {"oauth_provider": "generic", "oidc_issuer": "https://idp.example.org", "oauth_admin_groups": ["g"]},
])
def test_any_allow_rule_is_enough(values):
    oauth.check_oauth_params(params(**values))


def test_refuses_a_base_url_the_managed_hub_does_not_serve():
    with pytest.raises(ParameterError, match="base_url '/jh/'.*serves at '/'"):
        oauth.check_oauth_params(params(oauth_allowed_users=["a"], base_url="/jh/"))


def test_generic_needs_an_issuer_and_openid():
    with pytest.raises(ParameterError, match="needs oidc_issuer"):
        oauth.check_oauth_params(params(oauth_provider="generic", oauth_allowed_users=["a"]))
    with pytest.raises(ParameterError, match="must include 'openid'"):
        oauth.check_oauth_params(params(oauth_provider="generic", oauth_allowed_users=["a"], oidc_issuer="https://i.example.org",
                                        oauth_scopes=["profile"]))


# --- username safety ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, ok", [
    ("alice", True), ("hrb-gh-bob", True), ("_svc", True), ("a" * 32, True),
    ("bad.name", False), ("9lives", False), ("-rf", False), ("a" * 33, False), ("ann@example.org", False), ("", False),
])
def test_username_pattern(name, ok):
    import re

    assert bool(re.match(oauth.USERNAME_PATTERN, name)) is ok


@pytest.mark.parametrize("name", ["bad$(touch /tmp/hrb-pwned)", "9lives", "-rf", "a" * 33, "x;id"])
def test_add_user_cmd_refuses_unsafe_names_without_running_them(name, tmp_path):
    p = params(home_base=str(tmp_path), notebook_dir=str(tmp_path) + "/{username}/nb")
    proc = subprocess.run(oauth.add_user_cmd(p) + [name], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "hubrunbook: " in proc.stderr
    assert not list(tmp_path.iterdir())


def test_add_user_cmd_has_no_username_token():
    # JupyterHub replaces the text USERNAME in every argument; the script reads the name from "$@" instead
    assert not any("USERNAME" in a for a in oauth.add_user_cmd(params()))


# --- OIDC discovery ---------------------------------------------------------------------------------
class _Doc(BaseHTTPRequestHandler):
    make = staticmethod(lambda base: b"")
    status = 200
    ctype = "application/json"

    def do_GET(self):
        body = self.make(f"http://{self.headers['Host']}")
        body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", self.ctype)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def doc_server():
    servers = []

    def start(make, status=200, ctype="application/json"):
        handler = type("H", (_Doc,), {"make": staticmethod(make), "status": status, "ctype": ctype})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _doc(base, issuer=None):
    return {"issuer": issuer or base, "authorization_endpoint": f"{base}/auth", "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/me", "token_endpoint_auth_methods_supported": ["client_secret_post"]}


def test_discover_oidc_reads_the_endpoints(doc_server):
    url = doc_server(_doc)
    found = oauth.discover_oidc(url + "/", timeout=5)
    assert found == {"issuer": url, "authorize_url": f"{url}/auth", "token_url": f"{url}/token",
                     "userdata_url": f"{url}/me", "client_secret_post": True}


def test_discover_oidc_refuses_an_issuer_mismatch(doc_server):
    url = doc_server(lambda base: _doc(base, issuer="https://other.example.org"))
    with pytest.raises(oauth.ProviderError, match="names issuer 'https://other.example.org'"):
        oauth.discover_oidc(url, timeout=5)


def test_discover_oidc_refuses_a_document_without_endpoints(doc_server):
    url = doc_server(lambda base: {"issuer": base})
    with pytest.raises(oauth.ProviderError, match="lacks authorization_endpoint, token_endpoint, userinfo_endpoint"):
        oauth.discover_oidc(url, timeout=5)


def test_discover_oidc_errors(doc_server):
    html = doc_server(lambda base: b"<html>login</html>", ctype="text/html")
    with pytest.raises(oauth.ProviderError, match="200 but not JSON"):
        oauth.discover_oidc(html, timeout=5)
    missing = doc_server(lambda base: {}, status=404)
    with pytest.raises(oauth.ProviderError, match="HTTP 404"):
        oauth.discover_oidc(missing, timeout=5)
    from support.sandbox import free_port

    with pytest.raises(oauth.ProviderError, match="cannot reach"):
        oauth.discover_oidc(f"http://127.0.0.1:{free_port()}", timeout=2)


def test_discover_oidc_gives_up_after_the_timeout():
    import socket
    import time

    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        t0 = time.monotonic()
        with pytest.raises(oauth.ProviderError, match="did not answer within 1 s"):
            oauth.discover_oidc(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1)
        assert time.monotonic() - t0 < 5


# --- the client-credentials probe and the fake GitHub it is tested against ----------------------------------
@pytest.fixture
def fake_gh():
    from support.fakegithub import FakeGitHub, GitHubUser

    gh = FakeGitHub("Iv1.unit", "unit-secret-123", {"a": GitHubUser("Alice", 1, orgs=["org"])}, default_user="Alice").start()
    yield gh
    gh.stop()


def test_probe_tells_a_wrong_secret_from_a_bad_code(fake_gh):
    from hubrunbook.oauth.checks import probe_client_credentials

    token = f"{fake_gh.url}/login/oauth/access_token"
    ok, why = probe_client_credentials(token, "Iv1.unit", "unit-secret-123", "http://127.0.0.1:1/hub/oauth_callback", 5)
    assert ok and "bad_verification_code" in why
    ok, why = probe_client_credentials(token, "Iv1.unit", "wrong", "http://127.0.0.1:1/hub/oauth_callback", 5)
    assert not ok and "rejects the client id/secret (incorrect_client_credentials)" in why
    ok, why = probe_client_credentials(f"{fake_gh.url}/nowhere", "Iv1.unit", "unit-secret-123", "http://x/cb", 5)
    assert not ok and "cannot tell" in why


def test_fake_github_checks_pkce_and_case_insensitive_membership(fake_gh):
    import base64
    import hashlib
    from urllib.parse import parse_qs, urlsplit

    import requests

    verifier = "v" * 43
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")

    def code():
        r = requests.get(f"{fake_gh.url}/login/oauth/authorize", allow_redirects=False, params={
            "client_id": "Iv1.unit", "redirect_uri": "http://127.0.0.1:1/cb", "state": "s", "code_challenge": challenge,
            "code_challenge_method": "S256"})
        return parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]

    form = {"client_id": "Iv1.unit", "client_secret": "unit-secret-123", "redirect_uri": "http://127.0.0.1:1/cb"}
    bad = requests.post(f"{fake_gh.url}/login/oauth/access_token", data={**form, "code": code(), "code_verifier": "x" * 43},
                        headers={"Accept": "application/json"}).json()
    assert bad["error"] == "bad_verification_code"
    good = requests.post(f"{fake_gh.url}/login/oauth/access_token", data={**form, "code": code(), "code_verifier": verifier},
                         headers={"Accept": "application/json"}).json()
    auth = {"Authorization": f"token {good['access_token']}"}
    assert requests.get(f"{fake_gh.url}/user", headers=auth).json()["login"] == "Alice"
    assert requests.get(f"{fake_gh.url}/api/v3/orgs/org/members/alice", headers=auth).status_code == 204
    assert requests.get(f"{fake_gh.url}/orgs/other/members/alice", headers=auth).status_code == 404
    assert requests.get(f"{fake_gh.url}/user").status_code == 401
