"""Pure parts of users.py: passwords and their files, notebook dir template, the registry of users we created."""
from __future__ import annotations

import os
import pwd
import stat

import pytest

from hubrunbook import secretref, users
from hubrunbook.errors import PreflightError, SecretError
from hubrunbook.params import build_params


@pytest.fixture
def params(tmp_path):
    return build_params({"prefix": str(tmp_path / "pfx"), "users": ["ann", "bob"], "admin_users": ["bob", "cid"]})


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_managed_names_are_users_then_admins_each_once(params):
    assert users.managed_names(params) == ["ann", "bob", "cid"]


def test_notebook_dir_substitutes_username(params):
    p = params.model_copy(update={"notebook_dir": "/srv/nb/{username}/work"})
    assert str(users.notebook_dir_for(p, "ann")) == "/srv/nb/ann/work"
    assert str(users.notebook_dir_for(params, "ann")) == "/home/ann/notebooks"


def test_generated_password_is_private_and_reused(params):
    first = users.user_password(params, "ann")
    path = users.password_file(params, "ann")
    assert path == params.secrets_dir / "passwords" / "ann"
    assert path.read_text() == first and len(first) >= 16
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700 and mode(params.secrets_dir) == 0o700
    assert users.user_password(params, "ann") == first  # reused, not regenerated
    assert users.user_password(params, "bob") != first
    assert secretref.mask(f"pw={first}") == f"pw={secretref.MASK}"


def test_generated_password_file_readable_by_others_is_refused(params):
    users.user_password(params, "ann")
    users.password_file(params, "ann").chmod(0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        users.user_password(params, "ann")


def test_password_from_env_reference(params, monkeypatch):
    monkeypatch.setenv("HRB_T_PW_ANN", "from-the-environment")
    p = params.model_copy(update={"passwords": {"ann": "env:HRB_T_PW_ANN"}})
    assert users.user_password(p, "ann") == "from-the-environment"
    assert not users.password_file(p, "ann").exists()  # nothing generated for a referenced password


def test_password_reference_missing_env_fails_clearly(params, monkeypatch):
    monkeypatch.delenv("HRB_T_PW_NONE", raising=False)
    p = params.model_copy(update={"passwords": {"ann": "env:HRB_T_PW_NONE"}})
    with pytest.raises(SecretError, match="HRB_T_PW_NONE is not set"):
        users.user_password(p, "ann")


def test_password_with_line_break_is_refused(params, monkeypatch):
    monkeypatch.setenv("HRB_T_PW_NL", "two\nlines")
    p = params.model_copy(update={"passwords": {"ann": "env:HRB_T_PW_NL"}})
    with pytest.raises(SecretError, match="line break"):
        users.user_password(p, "ann")


def test_registry_roundtrip_is_private(params):
    assert users.read_registry(params) == {}
    users.record_user(params, "ann", 1234, "/home/ann")
    reg = users.read_registry(params)
    assert reg["ann"]["uid"] == 1234 and reg["ann"]["home"] == "/home/ann"
    assert mode(users.registry_path(params)) == 0o600
    assert mode(params.state_dir) == 0o700


def test_corrupt_registry_is_an_error_not_an_empty_registry(params):
    params.state_dir.mkdir(parents=True)
    users.registry_path(params).write_text("{not json")
    with pytest.raises(PreflightError, match="users.json"):
        users.read_registry(params)


def test_is_ours_needs_matching_uid():
    me = pwd.getpwuid(os.getuid())
    assert users.is_ours({"uid": me.pw_uid}, me)
    assert not users.is_ours({"uid": me.pw_uid + 1}, me)  # same name, another account: not ours
    assert not users.is_ours(None, me)  # existed before: never ours
    assert users.is_ours({"uid": 4242}, None)  # recorded but deleted behind our back: ours to recreate


def test_crypt_verifies_a_hash_it_made():
    stored = users._crypt("s3cret-pass", "$6$abcdefgh$")
    assert stored.startswith("$6$abcdefgh$")
    assert users._crypt("s3cret-pass", stored) == stored
    assert users._crypt("other", stored) != stored


def test_make_notebook_dir_creates_parents_with_mode_0755(tmp_path):
    home = tmp_path / "home" / "ann"
    home.mkdir(parents=True)
    target = home / "work" / "notebooks"
    users.make_notebook_dir(target, home, os.getuid(), os.getgid())
    assert target.is_dir() and mode(target) == 0o755 and mode(target.parent) == 0o755
    assert users._nbdir_problem(target, os.getuid()) is None
    assert users._nbdir_problem(tmp_path / "absent", os.getuid()) == "missing"
    assert "owned by uid" in users._nbdir_problem(target, os.getuid() + 1)


def test_not_root_fails_before_anything(params, monkeypatch):
    monkeypatch.setattr(users.system, "is_root", lambda: False)
    with pytest.raises(PreflightError, match="needs root"):
        users.ensure_users(params)
    assert not params.root.exists()
