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


# --- the steps' decisions, with the installed versions faked (no env is built here) ---------------------------
from hubrunbook.core.steps import CHANGED, FAILED, SKIPPED, UNCHANGED  # noqa: E402
from hubrunbook.upgrade import steps  # noqa: E402

OLD = {"jupyterhub": "5.5.4", "jupyterlab": "4.6.6", "oauthenticator": None, "jupyterhub-idle-culler": "2.0.0", "proxy": "5.3.0"}


@pytest.fixture
def installed(monkeypatch, params):
    """The live env is a 5.5.4 install (marker present); the verification's preconditions hold."""
    have = dict(OLD)
    monkeypatch.setattr(parts, "installed", lambda p, env=None: dict(have))
    monkeypatch.setattr(steps, "_check_verifiable", lambda p: None)
    params.layout.env_dir.mkdir(parents=True)
    params.layout.env_marker.write_text("{}")
    return have


def test_plan_refuses_leftovers_no_journal_names(params, installed):
    params.layout.env_prev_dir.mkdir()
    with pytest.raises(PreflightError, match="not ours to remove"):
        steps.check_upgrade_plan(params)
    assert params.layout.env_prev_dir.exists()


def test_plan_refuses_a_downgrade_unless_allowed(params, installed):
    low = params.model_copy(update={"jupyterhub_version": "5.4.0"})
    with pytest.raises(PreflightError, match="jupyterhub 5.5.4 → 5.4.0.*allow_downgrade"):
        steps.check_upgrade_plan(low)
    ok = steps.check_upgrade_plan(params.model_copy(update={"jupyterhub_version": "5.4.0", "allow_downgrade": True}))
    assert "downgrade" in ok.rows[0]


def test_plan_refuses_an_unverifiable_upgrade(params, installed, monkeypatch):
    monkeypatch.undo()  # the real _check_verifiable: no user of ours has a known password
    monkeypatch.setattr(parts, "installed", lambda p, env=None: dict(OLD))
    from hubrunbook.hub import configload

    monkeypatch.setattr(configload, "load_config", lambda p, keys, **kw: configload.LoadedConfig(
        {"c.JupyterHub.authenticator_class": "hubrunbook_hub_auth.LocalGitHubOAuthenticator"}, frozenset()))
    with pytest.raises(PreflightError, match="LocalGitHubOAuthenticator"):
        steps.check_upgrade_plan(params)


def test_nothing_to_upgrade_changes_nothing_and_takes_no_backup(params, installed, monkeypatch):
    same = params.model_copy(update={"jupyterhub_version": "5.5.4"})
    import hubrunbook.backup.archive as archive

    monkeypatch.setattr(archive, "ensure_backup", lambda *a, **k: pytest.fail("no backup when nothing changes"))
    assert steps.ensure_upgrade_backup(same).status == UNCHANGED
    assert steps.ensure_upgrade_build(same).status == UNCHANGED
    assert steps.ensure_upgrade_switch(same).status == UNCHANGED
    assert steps.ensure_upgrade_verified(same).status == UNCHANGED
    assert not params.layout.upgrade_record.exists()


def test_build_without_this_runs_backup_fails_and_touches_nothing(params, installed):
    r = steps.ensure_upgrade_build(params)
    assert r.status == FAILED and "no backup of this upgrade" in r.detail and "hub still runs jupyterhub 5.5.4" in r.detail
    assert journal.read(params)["phase"] == "failed" and journal.read(params)["switch_started"] is False
    assert steps.ensure_upgrade_switch(params).status == SKIPPED
    assert steps.ensure_upgrade_verified(params).status == SKIPPED
    assert not params.layout.env_new_dir.exists()


def test_a_failed_switch_is_rolled_back_by_the_verify_step(params, installed, monkeypatch):
    journal.write(params, {"phase": "failed", "stage": "switch", "switch_started": True, "swapped": ["env"],
                           "cause": "jupyterhub upgrade-db: exit code 1", "from": OLD})
    seen = {}
    monkeypatch.setattr(steps, "rollback", lambda p, j, cause: (bool(seen.setdefault("cause", cause)), "rolled back (env.prev → env)"))
    r = steps.ensure_upgrade_verified(params)
    assert r.status == FAILED and "upgrade-db: exit code 1" in r.detail and "rolled back" in r.detail
    assert "upgrade-db" in seen["cause"]


def test_a_failed_verification_rolls_back_and_says_why(params, installed, monkeypatch):
    from hubrunbook.core.steps import StepResult

    journal.write(params, {"phase": "switched", "switch_started": True, "swapped": ["env"], "from": OLD,
                           "to": {**OLD, "jupyterhub": "6.1.1"}})
    monkeypatch.setattr(steps, "verify", lambda p: StepResult("check_local_deployment", FAILED, "1 check(s) failed",
                                                              [("server spawns", FAILED, "HTTP 500")]))
    monkeypatch.setattr(steps, "rollback", lambda p, j, cause: (True, f"rolled back; phase was {j['phase']}"))
    r = steps.ensure_upgrade_verified(params)
    assert r.status == FAILED and "did not pass verification: server spawns: HTTP 500" in r.detail
    assert "rolled back; phase was failed" in r.detail and journal.read(params)["stage"] == "verify"


def test_an_interrupted_upgrade_is_recovered_first(params, installed, monkeypatch):
    journal.write(params, {"phase": "switching", "switch_started": True, "swapped": ["env"], "from": OLD})
    monkeypatch.setattr(steps, "rollback", lambda p, j, cause: (True, f"rolled back ({cause})"))
    assert steps.ensure_upgrade_recovered(params, dry_run=True).status == "would change"
    r = steps.ensure_upgrade_recovered(params)
    assert r.status == CHANGED and "interrupted at switching" in r.detail


def test_a_failed_recovery_fails_and_stops_the_run(params, installed, monkeypatch):
    import hubrunbook.backup.archive as archive

    journal.write(params, {"phase": "rollback-failed", "switch_started": True, "swapped": ["env"], "from": OLD})
    monkeypatch.setattr(steps, "rollback", lambda p, j, cause: (False, "ROLLBACK FAILED: the hub did not start"))
    monkeypatch.setattr(archive, "ensure_backup", lambda *a, **k: pytest.fail("no backup while half-done"))
    assert steps.ensure_upgrade_recovered(params).status == FAILED
    assert steps.ensure_upgrade_backup(params).status == FAILED
    assert steps.ensure_upgrade_build(params).status == FAILED
    assert journal.read(params)["phase"] == "rollback-failed"  # the half-done state is kept for the next attempt


def test_only_what_the_journal_accounts_for_is_put_back(tmp_path):
    live, new = tmp_path / "env", tmp_path / "env.new"
    live.mkdir()
    assert not steps._was_swapped({}, "env", live, new)  # an env.prev of an earlier upgrade: never over a good env
    assert steps._was_swapped({"swapped": ["env"]}, "env", live, new)
    new.mkdir()
    assert not steps._was_swapped({"swapping": "env"}, "env", live, new)  # nothing renamed yet
    live.rmdir()
    assert steps._was_swapped({"swapping": "env"}, "env", live, new)  # live renamed away, new not yet in
    assert not steps._was_swapped({"swapping": "proxy"}, "env", live, new)


def test_the_build_removes_a_verified_upgrades_leftover_prev_only(params, installed, monkeypatch):
    from hubrunbook.core.steps import StepResult
    import hubrunbook.backup.archive as archive

    monkeypatch.setattr(archive, "ensure_backup", lambda p, dry_run=False: StepResult("ensure_backup", CHANGED, "x",
                                                                                     data={"archive": "/a.tar.gz"}))
    monkeypatch.setattr(parts, "build_env", lambda p, want, progress=None: pytest.fail("stops before building"))
    params.layout.env_prev_dir.mkdir()
    journal.write(params, {"phase": "failed", "switch_started": False})
    steps.ensure_upgrade_backup(params)
    r = steps.ensure_upgrade_build(params)
    assert r.status == FAILED and "no finished upgrade accounts for them" in r.detail
    assert params.layout.env_prev_dir.exists()
    monkeypatch.setattr(parts, "build_env", lambda p, want, progress=None: (_ for _ in ()).throw(RuntimeError("stop")))
    journal.write(params, {"phase": "done"})
    steps.ensure_upgrade_backup(params)
    r = steps.ensure_upgrade_build(params)
    assert "stop" in r.detail and not params.layout.env_prev_dir.exists()
