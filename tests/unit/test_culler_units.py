"""Idle culling (hub/culler.py): the parameters, the config lines, the token-hiding launcher, the hub database's record
of the culler. Its failures in the hub log and troubleshoot's idle-culler check: test_diagnose_units.py."""
from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest

from hubrunbook.core.errors import ParameterError
from hubrunbook.core.params import build_params
from hubrunbook.hub import culler, database
from hubrunbook.hub.config import edit_text, hub_settings

@pytest.fixture
def params(tmp_path):
    return build_params({"prefix": str(tmp_path / "hub"), "port": 38911, "hub_port": 38912, "proxy_api_port": 38913,
                         "users": ["hrb-nobody-x"], "admin_users": [], "service": "process"})


# --- parameters --------------------------------------------------------------------------------------------------
def test_defaults_cull_after_an_hour_looking_every_five_minutes():
    p = build_params({})
    assert (p.cull_idle_timeout, p.cull_max_age, p.cull_every) == (3600, 0, "auto")
    assert culler.enabled(p) and culler.cull_every(p) == 300 and culler.activity_interval(p) == 300


@pytest.mark.parametrize("timeout,every,interval", [(60, 10, 15), (600, 60, 150), (3600, 300, 300), (86400, 300, 300)])
def test_auto_intervals_follow_the_timeout(timeout, every, interval):
    p = build_params({"cull_idle_timeout": timeout})
    assert (culler.cull_every(p), culler.activity_interval(p)) == (every, interval)


@pytest.mark.parametrize("values,message", [
    ({"cull_idle_timeout": -1}, "cull_idle_timeout must be 0 (off) or from 60"),
    ({"cull_idle_timeout": 30}, "cull_idle_timeout must be 0 (off) or from 60"),
    ({"cull_idle_timeout": 10**9}, "cull_idle_timeout must be 0 (off) or from 60"),
    ({"cull_max_age": 5}, "cull_max_age must be 0 (off) or from 60"),
    ({"cull_every": 0}, "cull_every must be 'auto' or a whole number"),
    ({"cull_every": -5}, "cull_every must be 'auto' or a whole number"),
    ({"cull_every": "often"}, "cull_every must be 'auto' or a whole number"),
    ({"cull_every": 7200}, "cull_every 7200 is longer than cull_idle_timeout 3600"),
    ({"cull_idle_timeout": 0, "cull_max_age": 600}, "cull_max_age need culling on"),
    ({"cull_idle_timeout": 0, "cull_every": 60}, "cull_every need culling on"),
    ({"cull_idle_timeout": "3600"}, "cull_idle_timeout"),
])
def test_nonsense_is_refused_naming_the_parameter(values, message):
    with pytest.raises(ParameterError, match=re.escape(message)):
        build_params(values)


def test_culling_off_and_a_max_age_are_accepted():
    assert not culler.enabled(build_params({"cull_idle_timeout": 0}))
    p = build_params({"cull_idle_timeout": 600, "cull_max_age": 28800, "cull_every": 600})
    assert culler.cull_every(p) == 600 and "--max-age=28800" in culler.culler_command(p)


# --- the config lines --------------------------------------------------------------------------------------------
def test_the_culler_is_a_managed_service_with_a_role_of_four_scopes(params):
    s = hub_settings(params)
    (service,) = ast.literal_eval(s["c.JupyterHub.services"])
    assert service["name"] == "idle-culler" and service["cwd"] == str(params.layout.state_dir)
    cmd = service["command"]
    assert cmd[:3] == [str(params.layout.env_bin("python")), "-I", "-c"]  # isolated: no cwd, no PYTHON* on its path
    assert cmd[4:] == ["--timeout=3600", "--cull-every=300", "--config="]  # no config file from its working dir
    assert not any("token" in part.lower() and "api_token=" not in part for part in cmd)  # the token comes by env
    roles = ast.literal_eval(s["c.JupyterHub.load_roles"])
    (role,) = [r for r in roles if r["name"] == "idle-culler"]
    assert role["services"] == ["idle-culler"] and "users" not in role and "groups" not in role
    assert sorted(role["scopes"]) == ["delete:servers", "list:users", "read:servers", "read:users:activity"]
    assert not {"admin:users", "admin:servers", "admin-ui"} & set(role["scopes"])  # users are never culled
    assert s["c.JupyterHub.last_activity_interval"] == "300"
    assert ast.literal_eval(s["c.Spawner.environment"]) == {"JUPYTERHUB_ACTIVITY_INTERVAL": "300"}


def test_culling_off_removes_the_service_role_and_interval(params):
    off = hub_settings(params.model_copy(update={"cull_idle_timeout": 0}))
    assert off["c.JupyterHub.services"] is None and off["c.JupyterHub.last_activity_interval"] is None
    assert off["c.Spawner.environment"] is None
    assert [r["name"] for r in ast.literal_eval(off["c.JupyterHub.load_roles"])] == ["admin"]


def test_a_new_timeout_changes_exactly_the_culler_lines(params):
    text, _ = edit_text("# c.JupyterHub.services = []\n", hub_settings(params))
    again, rows = edit_text(text, hub_settings(params))
    assert again == text and rows == []  # unchanged parameters: nothing to write, no restart
    changed, rows = edit_text(text, hub_settings(params.model_copy(update={"cull_idle_timeout": 7200})))
    assert sorted(k for k, action, _ in rows) == ["c.JupyterHub.services"] and {a for _, a, _ in rows} == {"updated"}
    assert "--timeout=7200" in changed and "--timeout=3600" not in changed
    short, rows = edit_text(text, hub_settings(params.model_copy(update={"cull_idle_timeout": 120})))
    assert sorted(k for k, _, _ in rows) == ["c.JupyterHub.last_activity_interval", "c.JupyterHub.services",
                                             "c.Spawner.environment"]
    assert "'JUPYTERHUB_ACTIVITY_INTERVAL': '30'" in short  # the servers' own reports: a quarter of the timeout


# --- the launcher ------------------------------------------------------------------------------------------------
TOKEN = "5f1d2c3b4a5968778695a4b3c2d1e0f9"  # made up


def test_the_launcher_hides_the_token_tornado_prints(tmp_path):
    """The launcher's filter, run for real: a stand-in jupyterhub_idle_culler logs what tornado logs for a failed
    periodic cull (the partial with its keyword arguments, the token among them)."""
    (tmp_path / "jupyterhub_idle_culler.py").write_text(
        "import functools, logging, sys\n"
        "def cull_idle(**kw): pass\n"
        "def main():\n"
        "    cb = functools.partial(cull_idle, url='http://127.0.0.1:1/hub/api', api_token=%r, inactive_limit=60)\n"
        "    logging.getLogger('tornado.application').error('Exception in callback %%r', cb)\n"
        "    print('argv', sys.argv[1:], file=sys.stderr)\n" % TOKEN)
    launcher = culler.LAUNCHER
    out = subprocess.run([sys.executable, "-c", launcher, "--timeout=60"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)  # no -I here: the stand-in is found in the working directory
    assert out.returncode == 0, out.stderr
    assert TOKEN not in out.stderr and "api_token='[hidden]'" in out.stderr and "inactive_limit=60" in out.stderr
    assert "argv ['--timeout=60']" in out.stderr  # the culler's own arguments reach it
    assert culler.hide_tokens(launcher) == launcher  # its own pattern is not taken for a token


# --- the hub database ---------------------------------------------------------------------------------------------
def test_service_records_read_roles_and_the_newest_token(tmp_path):
    import sqlite3

    db = tmp_path / "jupyterhub.sqlite"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE services (id INTEGER PRIMARY KEY, name TEXT, admin BOOLEAN, command TEXT, environment TEXT);
        CREATE TABLE roles (id INTEGER PRIMARY KEY, name TEXT, scopes TEXT);
        CREATE TABLE service_role_map (service_id INTEGER, role_id INTEGER);
        CREATE TABLE api_tokens (id INTEGER PRIMARY KEY, service_id INTEGER, hashed TEXT, created TEXT,
                                 last_activity TEXT, scopes TEXT);
        INSERT INTO services VALUES (1, 'idle-culler', 0, '["python", "-m", "jupyterhub_idle_culler"]', '{"X": "secret"}');
        INSERT INTO roles VALUES (7, 'idle-culler', '["list:users", "delete:servers"]');
        INSERT INTO service_role_map VALUES (1, 7);
        INSERT INTO api_tokens VALUES (1, 1, 'h1', '2026-12-04 10:00:00', '2026-12-04 10:00:01', '["inherit"]');
        INSERT INTO api_tokens VALUES (2, 1, 'h2', '2026-12-04 20:00:00', NULL, '["inherit"]');
    """)
    con.commit()
    con.close()
    rec = database.service_records(db)["idle-culler"]
    assert rec == {"command": ["python", "-m", "jupyterhub_idle_culler"], "admin": False,
                   "roles": {"idle-culler": ["list:users", "delete:servers"]},
                   "token": {"created": "2026-12-04 20:00:00", "last_activity": None, "scopes": ["inherit"]}}
    assert "secret" not in str(rec) and database.service_records(tmp_path / "none.sqlite") == {}
