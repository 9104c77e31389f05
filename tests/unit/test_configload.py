"""The one reader of jupyterhub_config.py: traitlets' loader in the hub env (here: the tool env, which has traitlets)."""
import sys

import pytest

from hubrunbook.core.errors import ConfigError
from hubrunbook.core.params import build_params
from hubrunbook.hub.configload import load_config

KEYS = ["c.Authenticator.allowed_users", "c.JupyterHub.hub_port"]


@pytest.fixture
def params(tmp_path):
    p = build_params({"prefix": str(tmp_path / "hrb")})
    py = p.layout.env_bin("python")
    py.parent.mkdir(parents=True)
    py.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    py.chmod(0o755)
    p.config_path.parent.mkdir(parents=True)
    return p


def write(params, text):
    params.config_path.write_text(text)


def test_exact_and_resolved_values(params):
    write(params, "c.JupyterHub.authenticator_class = 'jupyterhub.auth.PAMAuthenticator'\n"
                  "c.Authenticator.allowed_users = {'b', 'a'}\n"
                  "c.PAMAuthenticator.allowed_users = {'pam'}\n"
                  "c.JupyterHub.hub_port = 8000 + 81\n")
    exact = load_config(params, KEYS)
    assert exact.values == {"c.Authenticator.allowed_users": ["a", "b"], "c.JupyterHub.hub_port": 8081}
    # resolved as traitlets does for the configured class: PAMAuthenticator's own value wins
    assert load_config(params, KEYS, resolve=True).values["c.Authenticator.allowed_users"] == ["pam"]


def test_names_of_everything_set_but_only_asked_values(params):
    write(params, "c.GitHubOAuthenticator.client_secret = 'topsecret-value'\nc.Spawner.default_url = '/lab'\n")
    loaded = load_config(params, ["c.Spawner.default_url"])
    assert loaded.values == {"c.Spawner.default_url": "/lab"}
    assert {"c.GitHubOAuthenticator.client_secret", "c.Spawner.default_url"} <= loaded.names
    assert loaded.sets_trait("client_secret") and not loaded.sets_trait("client_id")
    assert "topsecret-value" not in repr(loaded)


def test_another_path_is_read_instead(params, tmp_path):
    other = tmp_path / "candidate.py"
    other.write_text("c.JupyterHub.hub_port = 9999\n")
    assert load_config(params, KEYS, path=other).values == {"c.JupyterHub.hub_port": 9999}


def test_missing_or_broken_file_is_a_config_error(params):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(params, KEYS)
    write(params, "c.JupyterHub.hub_port = 8081\nc.JupyterHub.bind_url = (\n")
    with pytest.raises(ConfigError, match="does not load with JupyterHub's config loader") as err:
        load_config(params, KEYS)
    assert str(params.config_path) in str(err.value) and "SyntaxError" in str(err.value)
