"""Idle culling (hub/culler.py): the parameters, the config lines, the token-hiding launcher, the culler's failures in
the hub log and the troubleshoot check that explains them (real lines of jupyterhub-idle-culler 2.0.0)."""
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
from hubrunbook.troubleshoot import logscan
from hubrunbook.troubleshoot.catalog import ERROR, WARNING, Context
from hubrunbook.troubleshoot.checks import processes

# jupyterhub-idle-culler 2.0.0 (tornado 6.5, Python 3.11) as the JupyterHub docs run it (python -m
# jupyterhub_idle_culler), pointed at a URL where nothing listens (JUPYTERHUB_API_URL=http://127.0.0.1:1/hub/api):
# its stderr, verbatim, as the hub's log captures a managed service's output. The token was a made-up one.
TOKEN = "5f1d2c3b4a5968778695a4b3c2d1e0f9"
WRONG_URL_LINES = [
    "[W 2026-12-04 20:16:22.043 IdleCuller __init__:696] Could not load pycurl: No module named 'pycurl'",
    '    pycurl is recommended if you have a large number of users.',
    "Exception in callback functools.partial(<bound method IOLoop._discard_future_result of <tornado.platform.asyncio.AsyncIOMainLoop object at 0x7fcbefe4ac50>>, <Task finished name='Task-1' coro=<cull_idle() done, defined at /var/tmp/hrb-culler/scratch/env/lib/python3.11/site-packages/jupyterhub_idle_culler/__init__.py:88> exception=ConnectionRefusedError(111, 'Connection refused')>)",
    'Traceback (most recent call last):',
    '  File "/var/tmp/hrb-culler/scratch/env/lib/python3.11/site-packages/tornado/ioloop.py", line 756, in _run_callback',
    '    ret = callback()',
    '          ^^^^^^^^^^',
    '  File "/var/tmp/hrb-culler/scratch/env/lib/python3.11/site-packages/tornado/ioloop.py", line 780, in _discard_future_result',
    '    future.result()',
    '  File "/var/tmp/hrb-culler/scratch/env/lib/python3.11/site-packages/jupyterhub_idle_culler/__init__.py", line 183, in cull_idle',
    '    resp = await fetch(HTTPRequest(url=f"{url}/", headers=auth_header))',
    '           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^',
    '  File "/var/tmp/hrb-culler/scratch/env/lib/python3.11/site-packages/jupyterhub_idle_culler/__init__.py", line 136, in fetch',
    '    return await client.fetch(req)',
    '           ^^^^^^^^^^^^^^^^^^^^^^^',
    'ConnectionRefusedError: [Errno 111] Connection refused',
    "Exception in callback functools.partial(<function cull_idle at 0x7fcbefe3ade0>, url='http://127.0.0.1:1/hub/api', api_token='5f1d2c3b4a5968778695a4b3c2d1e0f9', inactive_limit=60, logger=<Logger IdleCuller (DEBUG)>, cull_users=False, remove_named_servers=False, max_age=0, concurrency=10, ssl_enabled=False, internal_certs_location='internal-ssl', cull_admin_users=True, api_page_size=0, cull_default_servers=True, cull_named_servers=True, cull_arbiter=<function default_cull_arbiter at 0x7fcbefe3ad40>)",
    'Traceback (most recent call last):',
    '  File "/var/tmp/hrb-culler/scratch/env/lib/python3.11/site-packages/tornado/ioloop.py", line 943, in _run',
    '    await val',
    '  File "/var/tmp/hrb-culler/scratch/env/lib/python3.11/site-packages/jupyterhub_idle_culler/__init__.py", line 183, in cull_idle',
    '    resp = await fetch(HTTPRequest(url=f"{url}/", headers=auth_header))',
    '           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^',
    '  File "/var/tmp/hrb-culler/scratch/env/lib/python3.11/site-packages/jupyterhub_idle_culler/__init__.py", line 136, in fetch',
    '    return await client.fetch(req)',
    '           ^^^^^^^^^^^^^^^^^^^^^^^',
    'ConnectionRefusedError: [Errno 111] Connection refused',
]
# the same hub's log when the culler's role is missing (a hand-written load_roles line with the admin role only):
# the hub's own lines and the culler's, verbatim (its launcher already hid the token)
REFUSED_LINES = [
    '    pycurl is recommended if you have a large number of users.',
    '[I 2026-12-04 20:26:31.425 JupyterHub log:192] 200 GET /hub/api/ (idle-culler@127.0.0.1) 23.57ms',
    '[W 2026-12-04 20:26:31.432 JupyterHub scopes:1021] Not authorizing access to /hub/api/users. Requires any of [list:users] on *, not derived from scopes []',
    '[W 2026-12-04 20:26:31.432 JupyterHub web:2106] 403 GET /hub/api/users?state=ready (127.0.0.1): Action is not authorized with current scopes; requires any of [list:users]',
    "Exception in callback functools.partial(<bound method IOLoop._discard_future_result of <tornado.platform.asyncio.AsyncIOMainLoop object at 0x7f74d256d4d0>>, <Task finished name='Task-1' coro=<cull_idle() done, defined at /var/tmp/hrb-culler/ts-culling-19872/env/lib/python3.11/site-packages/jupyterhub_idle_culler/__init__.py:88> exception=HTTP 403: Forbidden>)",
    'Traceback (most recent call last):',
    '  File "/var/tmp/hrb-culler/ts-culling-19872/env/lib/python3.11/site-packages/tornado/ioloop.py", line 756, in _run_callback',
    '    ret = callback()',
    '          ^^^^^^^^^^',
    '  File "/var/tmp/hrb-culler/ts-culling-19872/env/lib/python3.11/site-packages/tornado/ioloop.py", line 780, in _discard_future_result',
    '    future.result()',
    '  File "/var/tmp/hrb-culler/ts-culling-19872/env/lib/python3.11/site-packages/jupyterhub_idle_culler/__init__.py", line 440, in cull_idle',
    '    async for user in fetch_paginated(req):',
    '  File "/var/tmp/hrb-culler/ts-culling-19872/env/lib/python3.11/site-packages/jupyterhub_idle_culler/__init__.py", line 154, in fetch_paginated',
    '    response = await resp_future',
    '               ^^^^^^^^^^^^^^^^^',
    '  File "/var/tmp/hrb-culler/ts-culling-19872/env/lib/python3.11/site-packages/jupyterhub_idle_culler/__init__.py", line 136, in fetch',
    '    return await client.fetch(req)',
    '           ^^^^^^^^^^^^^^^^^^^^^^^',
    'tornado.httpclient.HTTPClientError: HTTP 403: Forbidden',
    '[W 2026-12-04 20:26:31.442 JupyterHub log:192] 403 GET /hub/api/users?state=[secret] (idle-culler@127.0.0.1) 11.36ms',
    '[I 2026-12-04 20:26:41.386 JupyterHub log:192] 200 GET /hub/api/ (idle-culler@127.0.0.1) 2.11ms',
    '[W 2026-12-04 20:26:41.391 JupyterHub scopes:1021] Not authorizing access to /hub/api/users. Requires any of [list:users] on *, not derived from scopes []',
    '[W 2026-12-04 20:26:41.391 JupyterHub web:2106] 403 GET /hub/api/users?state=ready (127.0.0.1): Action is not authorized with current scopes; requires any of [list:users]',
    "Exception in callback functools.partial(<function cull_idle at 0x7f74d2569440>, url='http://127.0.0.1:54405/hub/api', api_token='[hidden]', inactive_limit=60, logger=<Logger IdleCuller (DEBUG)>, cull_users=False, remove_named_servers=False, max_age=0, concurrency=10, ssl_enabled=False, internal_certs_location='internal-ssl', cull_admin_users=True, api_page_size=0, cull_default_servers=True, cull_named_servers=True, cull_arbiter=<function default_cull_arbiter at 0x7f74d25693a0>)",
    'Traceback (most recent call last):',
    '  File "/var/tmp/hrb-culler/ts-culling-19872/env/lib/python3.11/site-packages/tornado/ioloop.py", line 943, in _run',
    '    await val',
    '  File "/var/tmp/hrb-culler/ts-culling-19872/env/lib/python3.11/site-packages/jupyterhub_idle_culler/__init__.py", line 440, in cull_idle',
    '    async for user in fetch_paginated(req):',
    '  File "/var/tmp/hrb-culler/ts-culling-19872/env/lib/python3.11/site-packages/jupyterhub_idle_culler/__init__.py", line 154, in fetch_paginated',
    '    response = await resp_future',
    '               ^^^^^^^^^^^^^^^^^',
    '  File "/var/tmp/hrb-culler/ts-culling-19872/env/lib/python3.11/site-packages/jupyterhub_idle_culler/__init__.py", line 136, in fetch',
    '    return await client.fetch(req)',
    '           ^^^^^^^^^^^^^^^^^^^^^^^',
    'tornado.httpclient.HTTPClientError: HTTP 403: Forbidden',
    '[W 2026-12-04 20:26:41.393 JupyterHub log:192] 403 GET /hub/api/users?state=[secret] (idle-culler@127.0.0.1) 3.25ms',
]
HUB_START = [
    "[I 2026-12-04 20:16:20.100 JupyterHub app:3400] Running JupyterHub version 6.1.1",
    "[I 2026-12-04 20:16:21.300 JupyterHub service:432] Starting service 'idle-culler': ['/opt/hubrunbook/env/bin/python', "
    "'-m', 'jupyterhub_idle_culler', '--timeout=60', '--url=http://127.0.0.1:1/hub/api']",
]


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


def test_culling_off_removes_the_service_role_and_interval(params):
    off = hub_settings(params.model_copy(update={"cull_idle_timeout": 0}))
    assert off["c.JupyterHub.services"] is None and off["c.JupyterHub.last_activity_interval"] is None
    assert [r["name"] for r in ast.literal_eval(off["c.JupyterHub.load_roles"])] == ["admin"]


def test_a_new_timeout_changes_exactly_the_culler_lines(params):
    text, _ = edit_text("# c.JupyterHub.services = []\n", hub_settings(params))
    again, rows = edit_text(text, hub_settings(params))
    assert again == text and rows == []  # unchanged parameters: nothing to write, no restart
    changed, rows = edit_text(text, hub_settings(params.model_copy(update={"cull_idle_timeout": 7200})))
    assert sorted(k for k, action, _ in rows) == ["c.JupyterHub.services"] and {a for _, a, _ in rows} == {"updated"}
    assert "--timeout=7200" in changed and "--timeout=3600" not in changed
    short, rows = edit_text(text, hub_settings(params.model_copy(update={"cull_idle_timeout": 120})))
    assert sorted(k for k, _, _ in rows) == ["c.JupyterHub.last_activity_interval", "c.JupyterHub.services"]


# --- the launcher ------------------------------------------------------------------------------------------------
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


def test_tokens_in_hub_log_lines_are_hidden_when_read(tmp_path):
    log = tmp_path / "jupyterhub.log"
    log.write_text("\n".join(HUB_START + WRONG_URL_LINES) + "\n")
    lines = logscan.last_run_lines(log)
    assert any("api_token='[hidden]'" in text for _, text in lines)
    assert not any(TOKEN in text for _, text in lines)


# --- the culler's failures in the hub log -------------------------------------------------------------------------
def test_failed_culls_are_found_with_their_reason():
    lines = list(enumerate(HUB_START + WRONG_URL_LINES, 1))
    errors = culler.culler_errors(culler.since_start(lines))
    assert len(errors) == 2  # the first cull at start (a task), then each periodic one
    assert errors[0][1] == "ConnectionRefusedError: 111, 'Connection refused'"
    assert errors[1][1] == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert all(TOKEN not in line for line, _ in errors)
    assert {culler.reason_kind(r) for _, r in errors} == {"unreachable"}
    assert culler.reason_kind("tornado.httpclient.HTTPClientError: HTTP 403: Forbidden") == "refused"


def test_only_the_current_culler_process_counts():
    restarted = HUB_START + WRONG_URL_LINES + [HUB_START[1]]
    assert culler.culler_errors(culler.since_start(list(enumerate(restarted, 1)))) == []


def test_exits_of_the_culler_service_count():
    lines = list(enumerate([HUB_START[1], "[E 2026-12-04 20:16:30.000 JupyterHub service:505] Service idle-culler "
                                           "exited with status 1", "[E x] Service other exited with status 1"], 1))
    assert culler.culler_errors(lines) == [(lines[1][1], "the culler exited with status 1")]


# --- troubleshoot ------------------------------------------------------------------------------------------------
def _record(last_activity=None, created="2026-12-04T20:16:21.400000"):
    return {"idle-culler": {"command": ["/opt/hubrunbook/env/bin/python", "-m", "jupyterhub_idle_culler", "--timeout=60"],
                            "admin": False, "roles": {"idle-culler": list(culler.SCOPES)},
                            "token": {"created": created, "last_activity": last_activity, "scopes": ["inherit"]}}}


def _scan(params, monkeypatch, log_lines, *, record, procs=((4242, ["python", "-m", "jupyterhub_idle_culler"]),)):
    params.layout.state_dir.mkdir(parents=True, exist_ok=True)
    params.layout.hub_log.write_text("\n".join(log_lines) + "\n")
    monkeypatch.setattr(processes, "_hub_pid", lambda ctx: 4241)
    monkeypatch.setattr(culler, "culler_services", lambda p: record)
    monkeypatch.setattr(culler, "culler_processes", lambda p, hub=None: list(procs))
    return processes.check_idle_culler(Context(params))


def test_troubleshoot_names_a_culler_that_cannot_reach_the_hub(params, monkeypatch):
    (f,) = _scan(params, monkeypatch, HUB_START + WRONG_URL_LINES, record=_record())
    assert f.id == "idle-culler" and f.severity == ERROR and "cannot reach the hub's API" in f.seen
    assert "2 failed attempt(s)" in f.seen
    assert "Exception in callback" in f.evidence and "ConnectionRefusedError" in f.evidence
    assert TOKEN not in f.evidence and TOKEN not in str(f.as_dict())
    assert "JUPYTERHUB_API_URL" in f.cause and "--url" in f.fix and f.data["kind"] == "unreachable"


def test_troubleshoot_a_403_is_a_scope_problem(params, monkeypatch):
    errors = culler.culler_errors(list(enumerate(REFUSED_LINES, 1)))
    assert [r for _, r in errors] == ["HTTP 403: Forbidden", "tornado.httpclient.HTTPClientError: HTTP 403: Forbidden"]
    (f,) = _scan(params, monkeypatch, HUB_START + REFUSED_LINES, record=_record(last_activity="2026-12-04T20:26:31.4"))
    assert f.severity == ERROR and "403" in f.seen and "read:users:activity" in f.cause and f.data["kind"] == "refused"
    assert "HTTP 403: Forbidden" in f.evidence


def test_troubleshoot_no_culler_process(params, monkeypatch):
    (f,) = _scan(params, monkeypatch, HUB_START, record=_record(), procs=())
    assert f.severity == ERROR and "no idle culler process" in f.seen


def test_troubleshoot_quiet_when_it_works_or_culling_is_off(params, monkeypatch):
    assert _scan(params, monkeypatch, HUB_START, record=_record(last_activity="2026-12-04T20:16:21.500000")) == []
    assert _scan(params, monkeypatch, HUB_START + WRONG_URL_LINES, record={}) == []  # no culler in the hub's config


def test_troubleshoot_a_token_never_used(params, monkeypatch):
    (f,) = _scan(params, monkeypatch, HUB_START, record=_record(created="2020-01-01T00:00:00"))
    assert f.severity == ERROR and "never reached the hub" in f.seen
    assert _scan(params, monkeypatch, HUB_START, record=_record(created="2999-01-01T00:00:00")) == []  # just made


def test_a_transient_failure_after_the_culler_reached_the_hub_is_a_warning(params, monkeypatch):
    (f,) = _scan(params, monkeypatch, HUB_START + WRONG_URL_LINES, record=_record(last_activity="2026-12-04T20:16:21"))
    assert f.severity == WARNING and "did reach the hub before" in f.seen


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
