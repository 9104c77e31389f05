"""Pure parts of users.py: passwords and their files, notebook dir template, the registry of users we created."""
from __future__ import annotations

import os
import pwd
import stat

import pytest

from hubrunbook.host import homes, users
from hubrunbook.core import secretref
from hubrunbook.core.errors import PreflightError, SecretError
from hubrunbook.core.params import build_params


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
    assert path == params.layout.secrets_dir / "passwords" / "ann"
    assert path.read_text() == first and len(first) >= 16
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700 and mode(params.layout.secrets_dir) == 0o700
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
    assert mode(params.layout.user_registry) == 0o600
    assert mode(params.layout.state_dir) == 0o700


def test_corrupt_registry_is_an_error_not_an_empty_registry(params):
    params.layout.state_dir.mkdir(parents=True)
    params.layout.user_registry.write_text("{not json")
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


UID, GID = 4242, 4242  # "the user": any uid other than root's (these tests run the attacks as root on files)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


@pytest.fixture
def home(tmp_path):
    """<tmp>/home (root, 0755) / ann (the user's, 0755 as an old hubrunbook or useradd with UMASK 022 made it)."""
    base = tmp_path / "home"
    base.mkdir(mode=0o755)
    base.chmod(0o755)
    h = base / "ann"
    h.mkdir(mode=0o755)
    h.chmod(0o755)
    os.chown(h, UID, GID)
    return h


def owner_mode(path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, stat.S_IMODE(st.st_mode)


@needs_root
def test_make_notebook_dir_creates_private_dirs_and_makes_the_home_private(home):
    target = home / "work" / "notebooks"
    done = homes.make_notebook_dir(target, home, UID, GID)
    assert owner_mode(target) == (UID, 0o700) and owner_mode(target.parent) == (UID, 0o700)
    assert owner_mode(home) == (UID, 0o700)
    assert done == [f"home {home} made private (was 0755)", f"created {home / 'work'} (0700)", f"created {target} (0700)"]
    assert homes.make_notebook_dir(target, home, UID, GID) == []  # idempotent
    assert homes.notebook_dir_problem(target, home, UID, GID) is None
    assert homes.notebook_dir_problem(home / "absent", home, UID, GID).startswith("missing")


@needs_root
def test_symlink_in_the_middle_is_not_followed(home, tmp_path):
    # the attack: ~/work -> /tmp/x with notebook_dir /home/{username}/work/notebooks
    outside = tmp_path / "x"
    outside.mkdir(mode=0o755)
    os.symlink(outside, home / "work")
    os.lchown(home / "work", UID, GID)
    with pytest.raises(PreflightError, match=r"work is a symlink .*not followed"):
        homes.make_notebook_dir(home / "work" / "notebooks", home, UID, GID)
    assert os.listdir(outside) == [] and owner_mode(outside) == (0, 0o755)
    assert "symlink" in homes.notebook_dir_problem(home / "work" / "notebooks", home, UID, GID)


@needs_root
def test_symlink_as_the_notebook_dir_is_not_followed(home, tmp_path):
    # the attack: ~/notebooks swapped for a symlink to a root 0600 file (or dir): chmod/chown must not reach it
    secret = tmp_path / "root-only"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    os.symlink(secret, home / "notebooks")
    with pytest.raises(PreflightError, match="symlink"):
        homes.make_notebook_dir(home / "notebooks", home, UID, GID)
    assert owner_mode(secret) == (0, 0o600)
    rootdir = tmp_path / "root-dir"
    rootdir.mkdir(mode=0o700)
    (home / "notebooks").unlink()
    os.symlink(rootdir, home / "notebooks")
    with pytest.raises(PreflightError, match="symlink"):
        homes.make_notebook_dir(home / "notebooks", home, UID, GID)
    assert owner_mode(rootdir) == (0, 0o700)


@needs_root
def test_existing_dir_of_another_user_is_not_chowned(home):
    nb = home / "notebooks"
    nb.mkdir(mode=0o755)
    os.chown(nb, UID + 1, GID + 1)
    with pytest.raises(PreflightError, match="owned by uid 4243, not by the user.*never hands over"):
        homes.make_notebook_dir(nb, home, UID, GID)
    assert owner_mode(nb) == (UID + 1, 0o755)


@needs_root
def test_a_dir_on_the_way_that_others_control_is_refused(home):
    work = home / "work"
    work.mkdir(mode=0o755)
    os.chown(work, UID + 1, GID + 1)  # another user's dir inside the home: it could swap what lies below
    with pytest.raises(PreflightError, match="a directory on the way"):
        homes.make_notebook_dir(work / "nb", home, UID, GID)
    os.chown(work, 0, 0)
    work.chmod(0o777)  # root's, but everyone may write in it
    with pytest.raises(PreflightError, match="writable by every user"):
        homes.make_notebook_dir(work / "nb", home, UID, GID)
    work.chmod(0o755)  # root's and closed: fine to pass through
    homes.make_notebook_dir(work / "nb", home, UID, GID)
    assert owner_mode(work / "nb") == (UID, 0o700) and owner_mode(work) == (0, 0o755)


@needs_root
def test_home_base_that_another_user_can_change_is_refused(home):
    home.parent.chmod(0o777)
    with pytest.raises(PreflightError, match="writable by others than root.*home_base"):
        homes.make_notebook_dir(home / "nb", home, UID, GID)
    home.parent.chmod(0o1777)  # sticky, like /tmp: nobody can rename root's entries, ann's home is hers
    homes.make_notebook_dir(home / "nb", home, UID, GID)
    os.chown(home.parent, UID, GID)
    with pytest.raises(PreflightError, match="owned by uid 4242, not root"):
        homes.make_notebook_dir(home / "nb", home, UID, GID)


def test_notebook_dir_outside_the_home_is_refused(home):
    with pytest.raises(PreflightError, match="not inside the home"):
        homes.make_notebook_dir(home.parent / "bob" / "nb", home, UID, GID)
    assert not (home.parent / "bob").exists()


def test_not_root_fails_before_anything(params, monkeypatch):
    monkeypatch.setattr(users.system, "is_root", lambda: False)
    with pytest.raises(PreflightError, match="needs root"):
        users.ensure_users(params)
    assert not params.layout.root.exists()
