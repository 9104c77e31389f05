"""backup.ipynb and restore.ipynb on real hubs (issue 10): an archive taken while the hub runs, restored onto a NEW
prefix and ports, gives the same users and admins, and a login cookie taken before the backup still works there; a
damaged archive is refused and changes nothing."""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from hubrunbook.backup.archive import archives, sidecar
from hubrunbook.backup.verify import verify_archive
from hubrunbook.core.params import build_params
from hubrunbook.host import users
from hubrunbook.hub import probe, service
from support.runbook import run_runbook, step_statuses
from support.sandbox import port_params

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates system users and spawns as them: needs root"),
]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_restore_onto_a_new_prefix_keeps_users_admins_and_sessions(deploy, sandbox, tmp_path):
    src = deploy("bk-src")
    other = f"hrb-bk-{os.getpid()}"  # a second, non-admin user
    src.values["users"] = [src.user, other]
    src.params = build_params(src.values)
    src.build()
    p, url = src.params, src.params.public_url
    session = probe.login(url, src.user, users.user_password(p, src.user))  # src.user is the admin
    assert session.get(f"{url}/hub/api/user", timeout=10).json()["name"] == src.user
    probe.login(url, other, users.user_password(p, other))  # the hub records the second user at its first login
    before = {u["name"]: u["admin"] for u in session.get(f"{url}/hub/api/users", timeout=10).json()}
    assert before == {src.user: True, other: False}

    # the second user's notebook dir: a file of its own, and a link it planted to a file it may not read
    pw = users.lookup(other)
    nbdir = users.notebook_dir_for(p, other)
    (nbdir / "analysis.ipynb").write_text('{"cells": []}')
    os.chown(nbdir / "analysis.ipynb", pw.pw_uid, pw.pw_gid)
    (nbdir / "secrets").symlink_to("/etc/shadow")
    os.lchown(nbdir / "secrets", pw.pw_uid, pw.pw_gid)

    backups = tmp_path / "archives"
    src.values["backup_notebooks"] = True
    run = run_runbook("backup", {**src.values, "backup_dir": str(backups)}, tmp_path / "b1")
    assert run.ok, run.error
    [archive] = archives(backups)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600 and stat.S_IMODE(backups.stat().st_mode) == 0o700
    assert p.layout.cookie_secret.read_text().strip() not in run.text()  # no secret in the notebook
    again = run_runbook("backup", {**src.values, "backup_dir": str(backups)}, tmp_path / "b2")
    assert again.ok, again.error
    assert step_statuses(again.out)["ensure_backup"] in ("unchanged", "changed")  # the hub may have written since
    archive = archives(backups)[-1]
    manifest = verify_archive(archive)
    names = {f["name"] for f in manifest["files"]}
    assert f"notebooks/{other}/analysis.ipynb" in names and not any("secrets" in n for n in names if "notebooks/" in n)
    assert any(f"{other}/secrets: symlink, not followed" in x for x in manifest["skipped"]), manifest["skipped"]
    (nbdir / "analysis.ipynb").unlink()  # lost after the backup
    later = f"later-{os.getpid()}"  # a hub group made after the backup (the database alone holds it)
    added = session.post(f"{url}/hub/api/groups/{later}", headers=probe._hub_xsrf(session), timeout=10)
    assert added.status_code == 201, added.text[:300]

    # the source goes away; a fresh prefix on other ports, with only the hub env and the user env installed
    # (install.ipynb's and userenv.ipynb's parts)
    assert service.stop_managed_hub(p).status == "changed"
    sandbox.mkdir(parents=True)
    os.chmod(sandbox, 0o755)
    for part in ("env", "userenv", "proxy", "nodejs"):
        (sandbox / part).symlink_to(src.shared.layout.root / part)
    new = {**port_params(), "prefix": str(sandbox), "restore_archive": str(archive), "backup_dir": str(backups)}

    # a damaged copy of the archive is refused before anything is touched
    bad = tmp_path / "bad" / archive.name
    bad.parent.mkdir()
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0x10
    bad.write_bytes(bytes(data))
    sidecar(bad).write_text(sidecar(archive).read_text())
    refused = run_runbook("restore", {**new, "restore_archive": str(bad)}, tmp_path / "r0")
    assert not refused.ok and "is damaged" in refused.error
    written = sorted(str(x.relative_to(sandbox)) for x in sandbox.rglob("*") if x.parts[len(sandbox.parts)] not in
                     ("env", "userenv", "proxy", "nodejs"))
    assert written in ([], ["state", "state/audit.jsonl"]), written  # nothing but the audit line of the refusal

    listing = lambda: sorted((str(x), x.stat().st_mtime_ns) for x in sandbox.rglob("*") if not x.is_symlink())
    seen = listing()
    dry = run_runbook("restore", {**new, "dry_run": True}, tmp_path / "r-dry")
    assert dry.ok, dry.error
    statuses = step_statuses(dry.out)
    assert statuses["ensure_restored"] == "would change" and statuses["check_restored"] == "skipped", statuses
    assert listing() == seen  # a dry run writes nothing

    run = run_runbook("restore", new, tmp_path / "r1")
    assert run.ok, run.error
    statuses = step_statuses(run.out)
    assert statuses["ensure_restored"] == "changed" and statuses["check_restored"] == "ok", statuses
    t = build_params(new)
    assert stat.S_IMODE(t.layout.cookie_secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(t.layout.secrets_dir.stat().st_mode) == 0o700
    assert str(p.prefix) not in t.config_path.read_text().replace(str(archive), "")  # moved to the new prefix

    # the cookie taken before the backup works on the restored hub (new prefix, new ports)
    new_url = t.public_url
    assert new_url != url
    me = session.get(f"{new_url}/hub/api/user", timeout=10)
    assert me.status_code == 200 and me.json()["name"] == src.user
    after = {u["name"]: u["admin"] for u in session.get(f"{new_url}/hub/api/users", timeout=10).json()}
    assert after == before
    groups = session.get(f"{new_url}/hub/api/groups", headers=probe._hub_xsrf(session), timeout=10)
    assert groups.status_code == 200 and later not in {g["name"] for g in groups.json()}  # made after the backup
    back = nbdir / "analysis.ipynb"
    assert back.read_text() == '{"cells": []}' and back.stat().st_uid == pw.pw_uid  # restored as the user's file
    # a fresh login and spawn work too
    s2 = probe.login(new_url, other, users.user_password(p, other))
    probe.start_server(s2, new_url, other, timeout=90)
    probe.stop_server(s2, new_url, other)

    # converged: restoring the same archive again changes nothing
    pid = service.managed_hub_pid(t)
    kept = {f: _digest(f) for f in (t.config_path, t.layout.cookie_secret, t.layout.hub_env, t.layout.restore_marker)}
    rerun = run_runbook("restore", new, tmp_path / "r2")
    assert rerun.ok, rerun.error
    statuses = step_statuses(rerun.out)
    assert statuses["ensure_restored"] == "unchanged" and statuses["ensure_hub_running"] == "unchanged", statuses
    assert service.managed_hub_pid(t) == pid
    # a damaged archive on a running, restored hub: refused, the hub and its files untouched
    refused = run_runbook("restore", {**new, "restore_archive": str(bad)}, tmp_path / "r3")
    assert not refused.ok and "is damaged" in refused.error
    assert service.managed_hub_pid(t) == pid
    assert {f: _digest(f) for f in kept} == kept  # (the database: the running hub writes it)
    assert archives(backups, "pre-restore") == []  # nothing was replaced, so nothing was kept aside
    assert session.get(f"{new_url}/hub/api/user", timeout=10).status_code == 200

    # the same archive back onto the source prefix, which still has its files: what it replaces is kept aside
    back = run_runbook("restore", {**src.values, "restore_archive": str(archive), "backup_dir": str(backups)},
                       tmp_path / "r4")
    assert back.ok, back.error
    assert step_statuses(back.out)["ensure_restored"] == "changed"
    [kept] = archives(backups, "pre-restore")
    verify_archive(kept)
    groups = session.get(f"{url}/hub/api/groups", headers=probe._hub_xsrf(session), timeout=10).json()
    assert later not in {g["name"] for g in groups}  # the source is back at the archive
