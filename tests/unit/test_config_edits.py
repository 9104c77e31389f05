"""Config file edits: the guide's uncomment-and-set, done precisely and idempotently."""
import pytest

from hubrunbook.hub.config import MARK, allowed_names, check_allow_rule, edit_text, hand_overrides, hub_settings
from hubrunbook.core.errors import ConfigError
from hubrunbook.core.params import build_params

GENERATED = """\
# Configuration file for jupyterhub.
c = get_config()  #noqa
## Set of users that will have admin rights on this JupyterHub.
#  Default: set()
# c.Authenticator.admin_users = set()
## The directory to start in
#  Default: ''
# c.Spawner.notebook_dir = ''
"""


def test_set_goes_under_the_commented_default_and_is_idempotent():
    text, rows = edit_text(GENERATED, {"c.Authenticator.admin_users": "{'alice'}"})
    lines = text.splitlines()
    i = lines.index("# c.Authenticator.admin_users = set()")
    assert lines[i + 1] == "c.Authenticator.admin_users = {'alice'}" + MARK
    assert rows == [("c.Authenticator.admin_users", "set", "{'alice'}")]
    again, rows2 = edit_text(text, {"c.Authenticator.admin_users": "{'alice'}"})
    assert again == text and rows2 == []


def test_change_rewrites_only_our_line():
    text, _ = edit_text(GENERATED, {"c.Spawner.notebook_dir": "'/srv/nb'"})
    hand = text + "c.JupyterHub.shutdown_on_logout = True\n"
    new, rows = edit_text(hand, {"c.Spawner.notebook_dir": "'/data/{username}'"})
    assert rows == [("c.Spawner.notebook_dir", "updated", "'/data/{username}'")]
    assert "c.JupyterHub.shutdown_on_logout = True" in new
    diff = [(a, b) for a, b in zip(hand.splitlines(), new.splitlines()) if a != b]
    assert len(diff) == 1 and len(hand.splitlines()) == len(new.splitlines())


def test_unlisted_key_goes_to_the_managed_tail_and_none_removes():
    text, _ = edit_text(GENERATED, {"c.LocalGitHubOAuthenticator.create_system_users": "True"})
    assert "Settings managed by hubrunbook" in text
    assert text.rstrip().endswith("c.LocalGitHubOAuthenticator.create_system_users = True" + MARK)
    gone, rows = edit_text(text, {"c.LocalGitHubOAuthenticator.create_system_users": None})
    assert "create_system_users = True" not in gone and rows[0][1] == "removed"


def test_bad_key_refused():
    with pytest.raises(ConfigError, match="not a config key"):
        edit_text(GENERATED, {"import os; c.X.y": "1"})


def test_hand_line_after_ours_is_reported():
    text, _ = edit_text(GENERATED, {"c.Spawner.notebook_dir": "'/a'"})
    text += "c.Spawner.notebook_dir = '/b'\n"
    assert hand_overrides(text, ["c.Spawner.notebook_dir"]) == ["c.Spawner.notebook_dir"]


def test_settings_from_parameters_allow_everyone_listed():
    p = build_params({"prefix": "/srv/h", "users": ["u1"], "admin_users": ["a1"], "allowed_users": ["x1"]})
    s = hub_settings(p)
    assert s["c.Authenticator.admin_users"] == "{'a1'}"
    assert s["c.Authenticator.allowed_users"] == "{'a1', 'u1', 'x1'}"
    assert s["c.Spawner.cmd"] == "['/srv/h/userenv/bin/jupyterhub-singleuser']"  # the user env's, not the hub's
    assert allowed_names(p) == {"a1", "u1", "x1"}


def test_admins_alone_are_allowed_to_log_in():
    """JupyterHub 6 adds admin_users to an empty allowed_users set never: admins alone were locked out."""
    s = hub_settings(build_params({"users": [], "admin_users": ["a1"], "allowed_users": []}))
    assert s["c.Authenticator.allowed_users"] == "{'a1'}"


def test_lockout_refused():
    p = build_params({"users": [], "admin_users": [], "allowed_users": []})
    with pytest.raises(ConfigError, match="nobody could log in"):
        check_allow_rule(p)
    check_allow_rule(build_params({"users": [], "admin_users": [], "allow_all": True}))


def test_configure_keeps_an_authenticator_switched_by_oauth(tmp_path):
    from hubrunbook.hub.config import AUTH_KEY, configure_settings, switched_authenticator

    p = build_params({"prefix": str(tmp_path / "p"), "config_file": str(tmp_path / "c.py")})
    path = p.config_path
    path.write_text(edit_text(GENERATED, {AUTH_KEY: "'pam'"})[0])
    assert switched_authenticator(p) is None and AUTH_KEY in configure_settings(p)
    path.write_text(edit_text(path.read_text(), {AUTH_KEY: "'oauthenticator.github.LocalGitHubOAuthenticator'"})[0])
    assert switched_authenticator(p) == "'oauthenticator.github.LocalGitHubOAuthenticator'"
    assert AUTH_KEY not in configure_settings(p)
