"""Root never runs or loads code from a path another user can change (issue 8, M4: sshd's StrictModes, for root)."""
import os

import pytest

from hubrunbook.host import system
from hubrunbook.core.errors import PreflightError
from hubrunbook.core.params import build_params
from hubrunbook.host.preflight import check_trusted_paths

NOBODY = 65534


@pytest.fixture
def base(tmp_path):
    os.chmod(tmp_path, 0o755)
    return tmp_path


def test_root_owned_chain_is_trusted_and_missing_parts_end_the_walk(base):
    assert system.untrusted_reason(base / "prefix" / "env" / "bin" / "python") is None
    assert system.untrusted_reason("/var/tmp/whatever/prefix") is None  # /var/tmp is sticky: accepted


def test_a_component_owned_by_a_user_is_refused(base):
    (base / "opt").mkdir()
    os.chown(base / "opt", NOBODY, NOBODY)
    why = system.untrusted_reason(base / "opt" / "hub" / "etc" / "jupyterhub_config.py")
    assert why and f"{base / 'opt'} is owned by nobody" in why and "chown root:" in why


@pytest.mark.parametrize("mode, who", [(0o777, "others"), (0o775, "group")])
def test_a_directory_others_can_write_is_refused(base, mode, who):
    (base / "shared").mkdir()
    os.chown(base / "shared", 0, NOBODY)
    os.chmod(base / "shared", mode)
    why = system.untrusted_reason(base / "shared" / "prefix")
    assert why and f"writable by {who}" in why and "chmod go-w" in why


def test_a_sticky_directory_is_not_enough_when_the_entry_in_it_is_a_users(base):
    (base / "tmp").mkdir()
    os.chmod(base / "tmp", 0o1777)
    (base / "tmp" / "prefix").mkdir()
    assert system.untrusted_reason(base / "tmp" / "prefix") is None
    os.chown(base / "tmp" / "prefix", NOBODY, NOBODY)
    assert "owned by nobody" in system.untrusted_reason(base / "tmp" / "prefix" / "env")


def test_a_root_symlink_to_a_users_directory_is_refused(base):
    (base / "theirs").mkdir()
    os.chown(base / "theirs", NOBODY, NOBODY)
    (base / "link").symlink_to(base / "theirs")
    assert f"{base / 'theirs'} is owned by nobody" in system.untrusted_reason(base / "link" / "env")


def test_a_users_file_planted_inside_the_prefix_is_refused_before_anything_runs(base):
    prefix = base / "prefix"
    (prefix / "env" / "bin").mkdir(parents=True)
    planted = prefix / "env" / "bin" / "python"
    planted.write_text("#!/bin/sh\ntouch /tmp/pwned\n")
    os.chown(planted, NOBODY, NOBODY)
    params = build_params({"prefix": str(prefix), "dry_run": True})
    with pytest.raises(PreflightError, match=rf"{planted} is owned by nobody.*Nothing was run"):
        check_trusted_paths(params)
    os.chown(planted, 0, 0)
    check_trusted_paths(params)


def test_a_config_file_in_a_world_writable_directory_is_refused(base):
    (base / "drop").mkdir()
    os.chmod(base / "drop", 0o777)
    params = build_params({"prefix": str(base / "prefix"), "config_file": str(base / "drop" / "jupyterhub_config.py")})
    with pytest.raises(PreflightError, match=r"config_file .* writable by others"):
        check_trusted_paths(params)
