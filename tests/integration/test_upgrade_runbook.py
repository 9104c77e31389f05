"""upgrade.ipynb end to end as root, on a real JupyterHub 5.5.4 sandbox with users, an admin and an API token.

JupyterHub 5.5.4's newest database revision is 4621fec11365; 6.1.1 adds four (be8ecf03ddac service timeout,
afd65840b69e PKCE, ff1860e38070 user info, f460b0348206 spawner display name): an upgrade to 6.1.1 must run
`jupyterhub upgrade-db`, and a rollback must put the 5.5.4 database back or the old hub refuses to start.

One deployment serves the three tests, in this order (each env build is a full install, ~1 min):
1. a forced failure: the test adds to the hub config a line that, under JupyterHub 6 only, makes every spawn fail
   (an operator's config that the new version breaks); the upgrade builds, switches, upgrades the schema, starts 6.1.1,
   its verification's spawn fails → rolled back to a working 5.5.4 hub, same database revision, users and token;
2. with that line gone, the real upgrade to 6.1.1: schema upgraded, users, admin and token intact, an old session too;
3. a converged re-run: nothing changes, no backup is taken.
"""
from __future__ import annotations

import os

import pytest
import requests

from support.runbook import run_runbook, step_statuses
from support.sandbox import port_params, reset_sandbox, teardown_sandbox

pytestmark = pytest.mark.integration

OLD, NEW = "5.5.4", "6.1.1"
OLD_HEAD, NEW_HEAD = "4621fec11365", "f460b0348206"
USER, ADMIN = f"hrb-upg-u{os.getpid()}", f"hrb-upg-a{os.getpid()}"
BREAKS_ON_6 = ("\n# test_upgrade_runbook: a setting that breaks every spawn under JupyterHub 6 only\n"
               "import jupyterhub as _hrb_test_jh\n"
               "if _hrb_test_jh.version_info[0] >= 6:\n"
               "    c.Spawner.cmd = ['/bin/false']\n")


def _token_user(params, token: str) -> requests.Response:
    return requests.get(f"{params.public_url}/hub/api/user", headers={"Authorization": f"token {token}"}, timeout=10)


def _users(params, token: str) -> dict[str, bool]:
    resp = requests.get(f"{params.public_url}/hub/api/users", headers={"Authorization": f"token {token}"}, timeout=10)
    assert resp.status_code == 200, resp.text[:300]
    return {u["name"]: u["admin"] for u in resp.json()}


def _archives(params) -> list[str]:
    d = params.backup_path
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tar.gz")) if d.exists() else []


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A 5.5.4 hub after install.ipynb and configure.ipynb, with an admin's API token and a user's login session."""
    from hubrunbook.core.params import build_params
    from hubrunbook.hub import probe
    from hubrunbook.hub.database import db_revision
    from hubrunbook.host.users import user_password

    tmp = tmp_path_factory.mktemp("upgrade")
    prefix = reset_sandbox(f"upgrade-it-{os.getpid()}")
    values = port_params(prefix=str(prefix), users=[USER], admin_users=[ADMIN], jupyterhub_version=OLD,
                         user_packages=[])  # the user env's base: jupyterhub follows the hub's version
    params = build_params(values)
    try:
        for name in ("install", "userenv", "configure"):
            run = run_runbook(name, values, tmp)
            assert run.ok, run.error[-3000:]
        assert db_revision(params.layout.hub_db) == OLD_HEAD
        admin = probe.login(params.public_url, ADMIN, user_password(params, ADMIN))
        resp = admin.post(f"{params.public_url}/hub/api/users/{ADMIN}/tokens", json={"note": "upgrade test"},
                          headers=probe._hub_xsrf(admin), timeout=10)
        assert resp.status_code in (200, 201), resp.text[:300]
        token = resp.json()["token"]
        user = probe.login(params.public_url, USER, user_password(params, USER))
        assert _token_user(params, token).json()["name"] == ADMIN
        yield {"values": values, "params": params, "tmp": tmp, "token": token, "user_session": user}
    finally:
        teardown_sandbox(params)


def _intact(params, token: str, version: str, head: str) -> None:
    """The hub runs *version* on schema *head*; the token authenticates the admin; users and admins as made."""
    from hubrunbook.hub.database import db_revision
    from hubrunbook.upgrade.parts import installed

    assert installed(params)["jupyterhub"] == version
    assert db_revision(params.layout.hub_db) == head
    me = _token_user(params, token)
    assert me.status_code == 200 and me.json()["name"] == ADMIN and me.json()["admin"] is True, me.text[:300]
    users = _users(params, token)
    assert users.get(USER) is False and users.get(ADMIN) is True, users
    for leftover in (params.layout.env_new_dir, params.layout.env_prev_dir, params.layout.proxy_new_dir,
                     params.layout.proxy_prev_dir):
        assert not leftover.exists(), leftover


def test_dry_run_reports_and_changes_nothing(hub):
    params = hub["params"]
    before = (_archives(params), params.layout.env_dir.stat().st_ino)
    run = run_runbook("upgrade", {**hub["values"], "jupyterhub_version": NEW, "dry_run": True}, hub["tmp"])
    assert run.ok, run.error[-3000:]
    st = step_statuses(run.out)
    assert st["ensure_upgrade_backup"] == st["ensure_upgrade_build"] == st["ensure_upgrade_switch"] == "would change", st
    assert f"jupyterhub {OLD} → {NEW}" in run.text()
    assert not params.layout.env_new_dir.exists() and not params.layout.upgrade_record.exists()
    assert (_archives(params), params.layout.env_dir.stat().st_ino) == before


def test_a_failure_after_the_switch_rolls_back_to_a_working_old_hub(hub):
    from hubrunbook.upgrade import journal

    params, config = hub["params"], hub["params"].config_path
    original = config.read_text()
    config.write_text(original + BREAKS_ON_6)
    try:
        run = run_runbook("upgrade", {**hub["values"], "jupyterhub_version": NEW}, hub["tmp"])
    finally:
        config.write_text(original)
    assert not run.ok, "the upgrade should have failed its verification"
    text = run.text()
    st = step_statuses(run.out)
    assert st["ensure_upgrade_switch"] == "changed", st  # switched, schema upgraded, 6.1.1 started
    assert st["ensure_upgrade_verified"] == "failed", st
    assert "did not pass verification" in text and "rolled back" in text and "ROLLBACK FAILED" not in text
    j = journal.read(params)
    assert j["phase"] == "rolled-back" and j["schema_from"] == OLD_HEAD and j["schema_to"] == NEW_HEAD, j
    assert j["db_upgraded"] is True and "env" in j["swapped"], j  # the database really went to 6.1.1's schema
    _intact(params, hub["token"], OLD, OLD_HEAD)
    # the user env follows the hub that runs: still the old jupyterhub-singleuser after the rollback
    from hubrunbook.userenv.build import check_user_env

    assert st["ensure_user_env_matches_hub"] == "unchanged", st
    assert check_user_env(params) == (True, f"jupyterhub {OLD}")
    # the rolled-back hub works for users: verified again here, from outside the runbook
    from hubrunbook.configure.verify import check_local_deployment

    assert not check_local_deployment(params).failed


def test_upgrade_to_611_keeps_users_admins_tokens_and_sessions(hub):
    from hubrunbook.upgrade import journal

    params = hub["params"]
    before = _archives(params)
    run = run_runbook("upgrade", {**hub["values"], "jupyterhub_version": NEW}, hub["tmp"])
    assert run.ok, run.error[-4000:]
    st = step_statuses(run.out)
    for step in ("ensure_upgrade_backup", "ensure_upgrade_build", "ensure_upgrade_switch", "ensure_upgrade_verified",
                 "ensure_user_env_matches_hub"):
        assert st[step] == "changed", (step, st)
    # the user env followed: users' jupyterhub-singleuser is the hub's new version
    from hubrunbook.userenv.build import check_user_env

    assert check_user_env(params.model_copy(update={"jupyterhub_version": NEW})) == (True, f"jupyterhub {NEW}")
    assert f"schema {OLD_HEAD} → {NEW_HEAD}" in run.text()
    j = journal.read(params)
    from pathlib import Path

    assert Path(j["backup"]).name in _archives(params) and len(_archives(params)) > len(before), "a backup first"
    assert oct(Path(j["backup"]).stat().st_mode & 0o777) == "0o600"
    assert j["phase"] == "done" and j["installed"]["jupyterhub"] == NEW, j
    _intact(params, hub["token"], NEW, NEW_HEAD)
    # a login session from before the upgrade still works (same cookie secret, sessions kept in the database)
    resp = hub["user_session"].get(f"{params.public_url}/hub/api/user", timeout=10)
    assert resp.status_code == 200 and resp.json()["name"] == USER, resp.text[:300]
    # the env now at env/ was built at env.new: its scripts were retargeted and run as a spawned user runs them
    singleuser = params.layout.env_bin("jupyterhub-singleuser")
    assert str(params.layout.env_new_dir) not in singleuser.read_text()
    from hubrunbook.hub.hubenv import check_env_state

    assert check_env_state(params.model_copy(update={"jupyterhub_version": NEW}))[0]  # install.ipynb: converged


def test_converged_rerun_changes_nothing(hub):
    params = hub["params"]
    before = (_archives(params), params.layout.upgrade_record.read_text(), params.layout.env_dir.stat().st_ino)
    run = run_runbook("upgrade", {**hub["values"], "jupyterhub_version": NEW}, hub["tmp"])
    assert run.ok, run.error[-3000:]
    st = step_statuses(run.out)
    assert set(st.values()) <= {"unchanged", "ok"}, st
    assert (_archives(params), params.layout.upgrade_record.read_text(), params.layout.env_dir.stat().st_ino) == before
    _intact(params, hub["token"], NEW, NEW_HEAD)
