"""uninstall.ipynb without a hub: its parameters, the fd-based removal, the plan of a prefix, the unit's removal
through a fake systemd layer (systemd is not PID 1 on the development machine; tests/system boots a real one), and
the run's own dry run and audit log. The real uninstall of a sandbox hub with users: tests/integration/test_uninstall.py."""
import json
import os
from pathlib import Path

import pytest

from hubrunbook.core.errors import ParameterError, PreflightError
from hubrunbook.core.params import build_params
from hubrunbook.core.steps import CHANGED, OK, SKIPPED, UNCHANGED, WOULD_CHANGE, Run
from hubrunbook.host import systemd
from hubrunbook.uninstall import fsremove, plan, steps


def _params(prefix: Path, **extra):
    return build_params({"prefix": str(prefix), "service": "process",
                         "uninstall_backup_dir": str(prefix.parent / "final-backups"), **extra})


def _snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath, name)
            st = p.lstat()
            out[str(p)] = (st.st_mode, st.st_size, st.st_mtime_ns, os.readlink(p) if p.is_symlink() else None)
    return out


def _fake_deployment(prefix: Path, outside: Path) -> None:
    """The files the runbooks leave in a prefix (no hub), a file that is not ours and symlinks pointing outside."""
    for d in ("env/bin", "env/lib/python3.11/site-packages", "proxy/node_modules/configurable-http-proxy/bin",
              "userenv/bin", "userenv-kernels/legacy/bin", "python/cpython-3.12",
              "nodejs/lib", "state/backups", "secrets/passwords", "etc", "templates"):
        (prefix / d).mkdir(parents=True, exist_ok=True)
    (prefix / "env/bin/jupyterhub").write_text("#!/bin/sh\n")
    (prefix / "env/.hubrunbook.json").write_text("{}\n")
    (prefix / "state/users.json").write_text(json.dumps({"version": 1, "users": {}}))
    (prefix / "state/jupyterhub.sqlite").write_bytes(b"SQLite format 3\0")
    (prefix / "secrets/cookie_secret").write_text("x" * 64)
    (prefix / "etc/jupyterhub_config.py").write_text("# Configuration file for jupyterhub.\n")
    (prefix / "etc/jupyterhub_config.py.bak-20260101-000000-000000").write_text("# old\n")
    (prefix / "templates/429.html").write_text("<html></html>\n")
    (prefix / "notes.txt").write_text("the operator's, not ours\n")  # not ours: stays, and so does the prefix
    (prefix / "etc/site-cert.pem").write_text("the operator's\n")  # not ours, in our config dir
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "precious.txt").write_text("keep me\n")
    os.symlink(outside, prefix / "state/link-out")  # a symlink inside the prefix, pointing outside
    os.symlink(outside / "precious.txt", prefix / "env/lib/python3.11/site-packages/file-link")


# --- parameters ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values, match", [
    ({"uninstall_parts": ["env"]}, "uninstall_parts.*unknown part"),
    ({"uninstall_parts": ["users", "users"]}, "uninstall_parts.*twice"),
    ({"uninstall_parts": ["hub_env"]}, "uninstall_parts.*add 'service'"),
    ({"uninstall_parts": ["service", "state"]}, "uninstall_parts.*users.json"),
    ({"uninstall_backup_dir": "backups"}, "uninstall_backup_dir.*absolute"),
    ({"uninstall_backup_dir": "/etc/hrb"}, "uninstall_backup_dir.*system directory"),
    ({"uninstall_backup_dir": "/opt/hubrunbook/backups"}, "uninstall_backup_dir.*outside the prefix"),
    ({"confirm_uninstall": "yes"}, "confirm_uninstall"),
])
def test_bad_uninstall_parameters_are_refused_naming_the_parameter(values, match):
    with pytest.raises(ParameterError, match=match):
        build_params(values)


def test_defaults_are_a_dry_run_of_every_part_with_a_final_backup_outside_the_prefix():
    p = build_params({})
    assert p.confirm_uninstall is False and p.uninstall_backup is True
    assert set(p.uninstall_parts) == {"service", "users", "hub_env", "user_env", "proxy", "nodejs", "config", "secrets", "state"}
    assert str(p.uninstall_audit_log) == "/var/backups/hubrunbook/uninstall-audit.jsonl"
    assert plan.dry(p, False) and not plan.dry(build_params({"confirm_uninstall": True}), False)


def test_the_final_backup_goes_to_backup_dir_only_when_it_lies_outside_the_prefix():
    base = {"prefix": "/srv/hub", "uninstall_backup_dir": "/var/backups/final"}
    assert str(build_params(base).final_backup_dir) == "/var/backups/final"
    assert str(build_params({**base, "backup_dir": "/srv/hub/state/backups"}).final_backup_dir) == "/var/backups/final"
    outside = build_params({**base, "backup_dir": "/var/backups/hub"})
    assert str(outside.final_backup_dir) == "/var/backups/hub"
    assert str(outside.uninstall_audit_log) == "/var/backups/hub/uninstall-audit.jsonl"


# --- fd-based removal ------------------------------------------------------------------------------------------------
def test_remove_entry_unlinks_symlinks_and_never_touches_their_targets(tmp_path):
    tree, outside = tmp_path / "p" / "tree", tmp_path / "outside"
    (tree / "a/b").mkdir(parents=True)
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    os.symlink(outside, tree / "a/dirlink")
    os.symlink(outside / "keep.txt", tree / "a/b/filelink")
    (tree / "a/b/f").write_text("x")
    with fsremove.Prefix(tmp_path / "p") as prefix:
        assert fsremove.remove_entry(prefix.fd, "tree", tree, prefix.dev) == 6
    assert not tree.exists() and (outside / "keep.txt").read_text() == "keep"


def test_a_symlinked_prefix_or_a_symlink_on_the_way_is_refused(tmp_path):
    real = tmp_path / "real"
    (real / "etc").mkdir(parents=True)
    os.symlink(real, tmp_path / "link")
    with pytest.raises(PreflightError, match="is a symlink: not followed"):
        fsremove.Prefix(tmp_path / "link")
    (real / "etc2").symlink_to(real / "etc")
    with fsremove.Prefix(real) as prefix, pytest.raises(PreflightError, match="not a directory: not followed"):
        fsremove.walk_to(prefix, real / "etc2" / "jupyterhub_config.py")
    assert (real / "etc").is_dir()


def test_a_mount_point_inside_the_prefix_stops_the_plan(tmp_path, monkeypatch):
    p = _params(tmp_path / "hub")
    (tmp_path / "hub").mkdir()
    monkeypatch.setattr(fsremove, "mounts_below", lambda path: [f"{path}/state"])
    with pytest.raises(PreflightError, match=r"(?s)nothing was changed.*state is a mount point inside the prefix"):
        plan.check_uninstall_plan(p)


# --- the plan and the files --------------------------------------------------------------------------------------------
def test_dry_run_lists_everything_and_changes_nothing(tmp_path):
    prefix, outside = tmp_path / "hub", tmp_path / "outside"
    _fake_deployment(prefix, outside)
    p = _params(prefix)
    before = _snapshot(tmp_path)
    res = plan.check_uninstall_plan(p)
    assert res.status == OK and "dry run (confirm_uninstall is false)" in res.detail, res
    listed = {(r[0], r[1]) for r in res.rows}
    for part, name in (("hub_env", "env"), ("user_env", "userenv"), ("user_env", "userenv-kernels"),
                       ("user_env", "python"), ("proxy", "proxy"), ("nodejs", "nodejs"), ("state", "state"),
                       ("secrets", "secrets"), ("config", "etc/jupyterhub_config.py"), ("config", "templates/429.html"),
                       ("kept", "notes.txt"), ("kept", "etc/site-cert.pem")):
        assert (part, str(prefix / name)) in listed, (part, name, res)
    for step in (steps.ensure_hub_removed, steps.ensure_users_removed, steps.ensure_files_removed, steps.ensure_final_backup):
        assert step(p, dry_run=True).status in (WOULD_CHANGE, UNCHANGED)
    assert steps.check_uninstalled(p, res, dry_run=True).status == SKIPPED
    assert _snapshot(tmp_path) == before


def test_files_go_what_is_not_ours_stays_and_a_rerun_changes_nothing(tmp_path):
    prefix, outside = tmp_path / "hub", tmp_path / "outside"
    _fake_deployment(prefix, outside)
    p = _params(prefix, confirm_uninstall=True, uninstall_backup=False)
    res = plan.check_uninstall_plan(p)
    assert steps.ensure_files_removed(p).status == CHANGED
    left = sorted(str(q.relative_to(prefix)) for q in prefix.rglob("*"))
    assert left == ["etc", "etc/site-cert.pem", "notes.txt"], left
    assert (outside / "precious.txt").read_text() == "keep me\n"
    check = steps.check_uninstalled(p, res)
    assert check.status == OK, check
    assert steps.ensure_files_removed(p).status == UNCHANGED


def test_an_empty_prefix_goes_too_and_chosen_parts_only(tmp_path):
    prefix = tmp_path / "hub"
    _fake_deployment(prefix, tmp_path / "outside")
    (prefix / "notes.txt").unlink()
    (prefix / "etc/site-cert.pem").unlink()
    only = _params(prefix, confirm_uninstall=True, uninstall_parts=["service", "hub_env", "config"])
    steps.ensure_files_removed(only)
    assert sorted(q.name for q in prefix.iterdir()) == ["nodejs", "proxy", "python", "secrets", "state", "userenv",
                                                      "userenv-kernels"]
    steps.ensure_files_removed(_params(prefix, confirm_uninstall=True))
    assert not prefix.exists() and prefix.parent.is_dir()



def test_an_upgrades_leftover_parts_go_with_hub_env_and_proxy(tmp_path):
    """upgrade.ipynb keeps env.prev/proxy.prev until verified and builds env.new/proxy.new beside the live ones: an
    interrupted upgrade leaves them, and they are ours."""
    prefix = tmp_path / "hub"
    _fake_deployment(prefix, tmp_path / "outside")
    for d in ("env.new/bin", "env.prev/bin", "proxy.new/node_modules", "proxy.prev/node_modules", "state/upgrade"):
        (prefix / d).mkdir(parents=True)
    go, _ = plan.file_plan(_params(prefix, confirm_uninstall=True))
    listed = {Path(row[1]).name: row[0] for row in go}
    assert {k: listed.get(k) for k in ("env.new", "env.prev", "proxy.new", "proxy.prev")} == {
        "env.new": "hub_env", "env.prev": "hub_env", "proxy.new": "proxy", "proxy.prev": "proxy"}
    steps.ensure_files_removed(_params(prefix, confirm_uninstall=True, uninstall_parts=["service", "hub_env"]))
    assert not (prefix / "env.new").exists() and not (prefix / "env.prev").exists() and (prefix / "proxy.prev").is_dir()
    steps.ensure_files_removed(_params(prefix, confirm_uninstall=True))
    assert sorted(q.name for q in prefix.iterdir()) == ["etc", "notes.txt"]

# --- the unit, through a fake systemd layer -------------------------------------------------------------------------------
@pytest.fixture
def fake_systemd(tmp_path, monkeypatch):
    """systemd is not PID 1 here: the unit dir is a temp dir and systemctl calls are recorded."""
    calls = []
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    monkeypatch.setattr(systemd, "booted", lambda: True)
    monkeypatch.setattr(systemd, "UNIT_DIR", unit_dir)
    monkeypatch.setattr(systemd, "systemctl", lambda *args, **kw: calls.append(args) or "")
    monkeypatch.setattr(systemd, "state", lambda params: {"ActiveState": "active", "MainPID": "0", "UnitFileState": "enabled"})
    monkeypatch.setattr(steps, "run_command", lambda args, **kw: calls.append(tuple(args[1:])))
    return unit_dir, calls


def test_our_unit_is_stopped_disabled_removed_and_systemd_reloaded(tmp_path, fake_systemd):
    unit_dir, calls = fake_systemd
    p = _params(tmp_path / "hub", confirm_uninstall=True)
    unit = unit_dir / "jupyterhub.service"
    unit.write_text(systemd.render_unit(p, jupyterhub=p.layout.env_bin("jupyterhub"), hub_env=p.layout.hub_env))
    assert steps.ensure_hub_removed(p, dry_run=True).status == WOULD_CHANGE and unit.exists() and not calls
    res = steps.ensure_hub_removed(p)
    assert res.status == CHANGED and not unit.exists()
    assert calls == [("stop", "jupyterhub.service"), ("disable", "--quiet", "jupyterhub.service"), ("daemon-reload",),
                     ("reset-failed", "jupyterhub.service")]
    assert steps.ensure_hub_removed(p).status == UNCHANGED


def test_a_unit_hubrunbook_did_not_write_for_this_prefix_is_left_alone(tmp_path, fake_systemd):
    unit_dir, calls = fake_systemd
    p = _params(tmp_path / "hub", confirm_uninstall=True)
    other = build_params({"prefix": str(tmp_path / "other")})
    unit = unit_dir / "jupyterhub.service"
    for text in (systemd.render_unit(other, jupyterhub=Path("/x"), hub_env=Path("/y")), "[Unit]\nDescription=mine\n"):
        unit.write_text(text)
        res = steps.ensure_hub_removed(p)
        assert res.status == UNCHANGED and unit.read_text() == text and not calls
        assert ("kept", str(unit), "not written by hubrunbook for this prefix") in plan.check_uninstall_plan(p).rows


# --- the run ------------------------------------------------------------------------------------------------------------
def test_an_unconfirmed_run_writes_no_audit_and_a_confirmed_one_writes_it_outside_the_prefix(tmp_path):
    prefix = tmp_path / "hub"
    (prefix / "state").mkdir(parents=True)
    p = _params(prefix)
    run = Run("uninstall", p, dry_run=p.dry_run or not p.confirm_uninstall, audit_log=p.uninstall_audit_log)
    assert run.dry_run
    run(plan.check_uninstall_plan)
    run.release()
    assert not p.uninstall_audit_log.parent.exists() and not (prefix / "state/audit.jsonl").exists()
    p = _params(prefix, confirm_uninstall=True)
    run = Run("uninstall", p, dry_run=p.dry_run or not p.confirm_uninstall, audit_log=p.uninstall_audit_log)
    run(plan.check_uninstall_plan)
    run.release()
    assert json.loads(p.uninstall_audit_log.read_text())["step"] == "check_uninstall_plan"
    assert p.uninstall_audit_log.stat().st_mode & 0o777 == 0o600
    assert p.uninstall_audit_log.parent.stat().st_mode & 0o777 == 0o700
    assert not (prefix / "state/audit.jsonl").exists()


def test_earlier_archives_in_the_state_dir_are_copied_beside_the_final_backup(tmp_path):
    """backup.ipynb's default backup_dir is <prefix>/state/backups, which goes with state: its archives are copied
    out first (0600, never through a link); a link planted there is not followed."""
    from hubrunbook.core.layout import backup_archive_name

    prefix = tmp_path / "hub"
    p = _params(prefix, confirm_uninstall=True)
    backups = p.layout.backups_dir
    backups.mkdir(parents=True)
    old = backups / backup_archive_name("20260101T000000.000000Z")
    old.write_bytes(b"archive")
    (backups / (old.name + ".sha256")).write_text("x  name\n")
    (tmp_path / "secret").write_text("not ours")
    os.symlink(tmp_path / "secret", backups / backup_archive_name("20260102T000000.000000Z"))
    where = p.final_backup_dir
    steps.prepare_backup_dir(where)
    made = steps.keep_earlier_archives(p, where)
    assert made == [where / old.name] and (where / old.name).read_bytes() == b"archive"
    assert (where / old.name).stat().st_mode & 0o777 == 0o600 and (where / (old.name + ".sha256")).exists()
    assert sorted(x.name for x in where.iterdir()) == sorted([old.name, old.name + ".sha256"])
    assert any("archive(s) of backup.ipynb" in r[1] for r in plan.check_uninstall_plan(p).rows)
    assert steps.keep_earlier_archives(p, where) == []  # already there


def test_an_unreadable_users_registry_stops_the_plan_before_anything_changes(tmp_path):
    prefix = tmp_path / "hub"
    _fake_deployment(prefix, tmp_path / "outside")
    (prefix / "state/users.json").write_text("{not json")
    p = _params(prefix, confirm_uninstall=True)
    before = _snapshot(tmp_path)
    with pytest.raises(PreflightError, match="users.json cannot be read.*nothing is removed"):
        plan.check_uninstall_plan(p)
    with pytest.raises(PreflightError, match="users.json cannot be read"):
        steps.ensure_users_removed(p)
    assert _snapshot(tmp_path) == before


def test_a_system_account_in_the_registry_is_never_deleted(tmp_path):
    """A registry naming root (with any uid, its own included): kept, never deleted."""
    import pwd

    prefix = tmp_path / "hub"
    (prefix / "state").mkdir(parents=True)
    root = pwd.getpwnam("root")
    (prefix / "state/users.json").write_text(json.dumps({"version": 1, "users": {"root": {"uid": 4242, "home": "/root"}}}))
    p = _params(prefix, confirm_uninstall=True)
    assert plan.user_plan(p)[0]["action"] == "keep"
    res = steps.ensure_users_removed(p)
    assert res.status == UNCHANGED and pwd.getpwnam("root") == root
    rows = plan.check_uninstall_plan(p).rows
    assert [r for r in rows if r[1] == "root (uid 4242, users.json)"][0][2].startswith("uid 0 is a system account"), rows
    (prefix / "state/users.json").write_text(json.dumps({"version": 1, "users": {"root": {"uid": 0, "home": "/root"}}}))
    assert plan.user_plan(p)[0]["action"] == "keep" and steps.ensure_users_removed(p).status == UNCHANGED
