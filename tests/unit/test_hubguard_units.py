"""The hub guard's config lines and module: the same in configure.ipynb and oauth.ipynb, valid, never PAM-switching."""
from __future__ import annotations

import ast

from hubrunbook.hub import hubguard
from hubrunbook.oauth import settings as oauth
from hubrunbook.hub.config import AUTH_KEY, MARK, configure_settings, edit_text, hub_settings, switched_authenticator
from hubrunbook.core.params import build_params, login_defs_uid_range


def test_configure_and_oauth_write_the_same_guard_lines(tmp_path):
    """Both runbooks own these lines with the same values, so neither undoes the other's (no restart ping-pong)."""
    p = build_params({"prefix": str(tmp_path / "p"), "oauth_allowed_users": ["alice"],
                      "service": "process"})
    guard = hubguard.guard_settings(p)
    local, remote = hub_settings(p), oauth.oauth_settings(p)
    assert {k: local[k] for k in guard} == guard == {k: remote[k] for k in guard}
    roles = ast.literal_eval(guard["c.JupyterHub.load_roles"])
    assert roles[0] == {"name": "admin", "users": []} and [r["name"] for r in roles[1:]] == ["idle-culler"]
    assert "c.JupyterHub.services" in guard  # the culler's role names its service: both runbooks write both
    assert ast.literal_eval(guard["c.JupyterHub.spawner_class"]) == "hubrunbook_hub_auth.LocalProcessSpawner"  # service: process (SystemdSpawner where systemd is PID 1)
    lo, hi = login_defs_uid_range()
    assert (ast.literal_eval(guard["c.HubrunbookGuard.uid_min"]), ast.literal_eval(guard["c.HubrunbookGuard.uid_max"])) == (lo, hi)
    assert ast.literal_eval(guard["c.HubrunbookGuard.registry_file"]) == str(p.layout.state_dir / "users.json")
    # both authenticators are hubrunbook's guarded classes
    assert ast.literal_eval(local[AUTH_KEY]) == "hubrunbook_hub_auth.PAMAuthenticator"
    assert ast.literal_eval(remote[AUTH_KEY]).startswith("hubrunbook_hub_auth.Local")


def test_the_guarded_pam_class_is_not_an_oauth_switch(tmp_path):
    p = build_params({"prefix": str(tmp_path / "p"), "config_file": str(tmp_path / "c.py")})
    p.config_path.write_text(edit_text("c = get_config()\n", {AUTH_KEY: repr(hubguard.PAM_CLASS)})[0])
    assert p.config_path.read_text().endswith(MARK + "\n")
    assert switched_authenticator(p) is None and AUTH_KEY in configure_settings(p)


def test_hub_module_is_python_and_defines_the_classes_the_config_names():
    tree = ast.parse(hubguard.HUB_MODULE_SOURCE)
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    for cls in (hubguard.PAM_CLASS, hubguard.SPAWNER_CLASS, *oauth.CLASSES.values()):
        module, _, name = cls.rpartition(".")
        assert module == hubguard.HUB_MODULE and name in names
    assert "HubrunbookGuard" in names  # the config section c.HubrunbookGuard.*
