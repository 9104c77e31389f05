"""upgrade.ipynb's parts without a hub: the plan's arithmetic, the swap and its rollback on real directories, the
retargeting of a venv's scripts (a real venv, moved), the journal, and troubleshoot's half-upgraded check."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hubrunbook.core.errors import ParameterError, PreflightError
from hubrunbook.core.params import build_params
from hubrunbook.troubleshoot.catalog import ERROR, WARNING, Context
from hubrunbook.troubleshoot.checks import install
from hubrunbook.upgrade import journal, parts


@pytest.fixture
def params(tmp_path):
    return build_params({"prefix": str(tmp_path / "hub"), "port": 38911, "hub_port": 38912, "proxy_api_port": 38913,
                         "users": ["hrb-nobody-x"], "admin_users": [], "service": "process"})


def test_allow_downgrade_is_a_strict_bool():
    assert build_params({"allow_downgrade": True}).allow_downgrade is True
    with pytest.raises(ParameterError, match="allow_downgrade"):
        build_params({"allow_downgrade": "yes"})


def test_changes_and_downgrades():
    have = {"jupyterhub": "5.5.4", "jupyterlab": "4.6.6", "oauthenticator": None, "proxy": "5.3.0"}
    want = {"jupyterhub": "6.1.1", "jupyterlab": "4.6.6", "oauthenticator": None, "proxy": "5.3.0"}
    assert parts.changes(have, want) == {"jupyterhub": ("5.5.4", "6.1.1")}
    assert parts.env_changes(parts.changes(have, want))
    assert not parts.env_changes({"proxy": ("5.2.0", "5.3.0")})
    assert parts.older("6.1.1", "5.5.4") and not parts.older("5.5.4", "6.1.1") and not parts.older(None, "1.0")
    assert parts.older("6.1.1", "6.1.0") and not parts.older("6.1.1", "6.1.1")


def test_oauthenticator_is_wanted_only_where_installed(params):
    assert parts.wanted(params, {"oauthenticator": None})["oauthenticator"] is None
    assert parts.wanted(params, {"oauthenticator": "17.0.0"})["oauthenticator"] == params.oauthenticator_version


def _tree(path: Path, text: str) -> Path:
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "tool").write_text(text)
    return path


def test_swap_in_then_back_restores_the_live_dir(tmp_path):
    live, new, prev = tmp_path / "env", tmp_path / "env.new", tmp_path / "env.prev"
    _tree(live, "old"), _tree(new, "new")
    parts.swap_in(live, new, prev)
    assert (live / "bin" / "tool").read_text() == "new" and (prev / "bin" / "tool").read_text() == "old"
    assert not new.exists()
    assert parts.swap_back(live, prev)
    assert (live / "bin" / "tool").read_text() == "old" and not prev.exists()
    assert not parts.swap_back(live, prev)  # nothing to put back: nothing changes
    assert (live / "bin" / "tool").read_text() == "old"


def test_swap_back_after_a_half_done_swap(tmp_path):
    """live renamed to prev, the new one not yet renamed in: the rollback finds no live dir and puts prev back."""
    live, prev = tmp_path / "env", tmp_path / "env.prev"
    _tree(prev, "old")
    assert parts.swap_back(live, prev) and (live / "bin" / "tool").read_text() == "old"


def test_swap_in_refuses_an_existing_prev(tmp_path):
    live, new, prev = tmp_path / "env", tmp_path / "env.new", tmp_path / "env.prev"
    _tree(live, "old"), _tree(new, "new"), _tree(prev, "older")
    with pytest.raises(PreflightError, match="env.prev exists"):
        parts.swap_in(live, new, prev)
    assert (live / "bin" / "tool").read_text() == "old" and (prev / "bin" / "tool").read_text() == "older"


def test_a_venv_built_elsewhere_runs_after_the_rename_and_retarget(tmp_path):
    """A real venv built at env.new with a console script, renamed to env: without the retarget its script's #! names
    a Python that no longer exists; after it, the script runs."""
    new, live = tmp_path / "env.new", tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", new], check=True)
    script = new / "bin" / "hello"
    script.write_text(f"#!{new}/bin/python\nimport sys; print(sys.prefix)\n")
    script.chmod(0o755)
    os.rename(new, live)
    with pytest.raises(FileNotFoundError):  # its #! names env.new/bin/python, gone
        subprocess.run([live / "bin" / "hello"], capture_output=True, text=True)
    assert parts.retarget(live, new) >= 1
    ok = subprocess.run([live / "bin" / "hello"], capture_output=True, text=True, check=True)
    assert ok.stdout.strip() == str(live)
    assert oct((live / "bin" / "hello").stat().st_mode & 0o777) == "0o755"
    assert str(new) not in (live / "pyvenv.cfg").read_text()


def test_retarget_leaves_binaries_and_symlinks(tmp_path):
    env, built = tmp_path / "env", tmp_path / "env.new"
    (env / "bin").mkdir(parents=True)
    (env / "pyvenv.cfg").write_text("home = /usr/bin\n")
    blob = b"\0ELF" + str(built).encode()
    (env / "bin" / "blob").write_bytes(blob)
    (env / "bin" / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").write_text(str(built))
    assert parts.retarget(env, built) == 0
    assert (env / "bin" / "blob").read_bytes() == blob and (tmp_path / "outside").read_text() == str(built)


def test_journal_is_private_and_knows_interrupted(params):
    assert journal.read(params) == {}
    journal.write(params, {"phase": "built"})
    assert oct(params.layout.upgrade_record.stat().st_mode & 0o777) == "0o600"
    assert oct(params.layout.state_dir.stat().st_mode & 0o777) == "0o700"
    assert journal.read(params)["phase"] == "built" and not journal.interrupted(journal.read(params))
    for phase, started, want in (("switching", True, True), ("switched", True, True), ("rolling-back", True, True),
                                 ("rollback-failed", True, True), ("failed", True, True), ("failed", False, False),
                                 ("done", True, False), ("rolled-back", True, False), ("backed-up", False, False)):
        assert journal.interrupted({"phase": phase, "switch_started": started}) is want, phase
    params.layout.upgrade_record.write_text("{not json")
    assert journal.interrupted(journal.read(params))


def test_half_upgraded_check_finds_an_interrupted_upgrade(params):
    journal.write(params, {"phase": "switching", "switch_started": True, "swapped": ["env"],
                           "from": {"jupyterhub": "5.5.4"}, "to": {"jupyterhub": "6.1.1"}})
    params.layout.env_prev_dir.mkdir(parents=True)
    [f] = install.check_half_upgraded(Context(params))
    assert f.severity == ERROR and f.id == "half-upgraded" and "switching" in f.seen
    assert "env.prev" in f.evidence and "jupyterhub 5.5.4" in f.evidence


def test_half_upgraded_check_finds_leftovers_and_is_quiet_when_clean(params):
    params.layout.root.mkdir(parents=True)
    assert install.check_half_upgraded(Context(params)) == []
    params.layout.env_new_dir.mkdir()
    [f] = install.check_half_upgraded(Context(params))
    assert f.severity == WARNING and f.id == "upgrade-leftovers" and "no upgrade journal" in f.evidence
    journal.write(params, {"phase": "failed", "stage": "build", "switch_started": False})
    [f] = install.check_half_upgraded(Context(params))
    assert f.id == "upgrade-leftovers" and "phase failed" in f.evidence


def test_half_upgraded_check_compares_the_recorded_versions(params, monkeypatch):
    from hubrunbook.hub import proxy

    journal.write(params, {"phase": "done", "installed": {"jupyterhub": "6.1.1", "jupyterlab": "4.6.6",
                                                          "oauthenticator": None, "proxy": "5.3.0"}})
    ctx = Context(params)
    ctx.fact("env", lambda: {"versions": {"jupyterhub": "6.1.1", "jupyterlab": "4.6.6", "oauthenticator": None}})
    monkeypatch.setattr(proxy, "installed_version", lambda p: "5.3.0")
    assert install.check_half_upgraded(ctx) == []
    ctx = Context(params)
    ctx.fact("env", lambda: {"versions": {"jupyterhub": "5.5.4", "jupyterlab": "4.6.6", "oauthenticator": None}})
    [f] = install.check_half_upgraded(ctx)
    assert f.id == "upgrade-versions-drifted" and "jupyterhub 5.5.4 (recorded 6.1.1)" in f.seen + f.evidence
