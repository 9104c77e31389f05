"""Diagnosis rules on synthetic evidence: log lines → findings, the catalog's completeness, the bounded scan."""
from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from hubrunbook.troubleshoot import catalog, diagnose, facts, logscan
from hubrunbook.core import secretref
from hubrunbook.hub import culler, database, envfile
from hubrunbook.hub.configload import LoadedConfig
from hubrunbook.host import system
from hubrunbook.troubleshoot.checks import access, install, processes, state
from hubrunbook.troubleshoot.catalog import ERROR, WARNING, Check, Context, Finding
from hubrunbook.troubleshoot.diagnose import Report, run_checks
from hubrunbook.core.params import build_params


@pytest.fixture
def params(tmp_path):
    return build_params({"prefix": str(tmp_path / "hub"), "port": 38901, "hub_port": 38902, "proxy_api_port": 38903,
                         "users": ["hrb-nobody-x"], "admin_users": [], "service": "process"})


# --- the catalog -------------------------------------------------------------------------------
def test_every_catalog_entry_has_example_cause_action():
    rows = diagnose.catalog_rows()
    assert len(rows) == len(catalog.CATALOG) + len(logscan.LOG_MESSAGES)
    for row in rows:
        assert all(isinstance(c, str) and len(c) > 3 for c in row[:5]), row
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "catalog ids must be unique"


# the repair order as it was when the catalog was a hand-kept list; a new check may go anywhere in its stage
REPAIR_ORDER = ["hub-env", "hub-packages", "dependency-conflicts", "node", "proxy-installed", "proxy-api-port",
                "public-port", "hub-port", "secret-files", "db-schema", "disk-space", "config-file", "allow-rule", "oauth",
                "user-accounts", "notebook-dirs", "singleuser-runnable", "hub-service", "hub-running", "hub-log"]


def test_registered_checks_keep_the_repair_order():
    ids = [c.id for c in catalog.CATALOG]
    assert [i for i in ids if i in REPAIR_ORDER] == REPAIR_ORDER
    stages = [catalog.STAGES.index(c.stage) for c in catalog.CATALOG]
    assert stages == sorted(stages), "CATALOG is ordered by stage"


def test_register_places_a_check_in_its_stage_and_refuses_mistakes(monkeypatch):
    monkeypatch.setattr(catalog, "CATALOG", list(catalog.CATALOG))
    new = catalog.register(Check("new-port-check", "t", "e", "c", "a", lambda c: [], stage="ports"))
    ids = [c.id for c in catalog.CATALOG]
    assert ids.index("hub-port") < ids.index(new.id) < ids.index("secret-files")
    with pytest.raises(ValueError, match="registered twice"):
        catalog.register(new)
    with pytest.raises(ValueError, match="stage must be one of"):
        catalog.register(Check("x", "t", "e", "c", "a", lambda c: [], stage="later"))


def test_issue_problems_are_all_in_the_catalog():
    ids = {c.id for c in catalog.CATALOG}
    assert {"hub-packages", "dependency-conflicts", "proxy-api-port", "public-port", "hub-port", "user-accounts",
            "notebook-dirs", "singleuser-runnable", "node", "proxy-installed", "db-schema", "disk-space",
            "hub-running", "hub-log"} <= ids


def test_repairs_only_where_safe():
    repairable = {c.id for c in catalog.CATALOG if c.repair}
    # foreign processes on our ports are never acted on
    assert not {"public-port", "hub-port", "singleuser-runnable", "disk-space"} & repairable
    assert {"proxy-api-port", "hub-packages", "db-schema", "notebook-dirs", "hub-running"} <= repairable


@pytest.mark.parametrize("msg", logscan.LOG_MESSAGES, ids=lambda m: m.id)
def test_log_examples_match_their_own_pattern(msg):
    assert msg.regex.search(msg.example), f"{msg.id}: example does not match {msg.pattern!r}"


# the fixed text of each message, as written in jupyterhub 6.1.1's source
def test_only_the_last_run_is_read(tmp_path):
    log = tmp_path / "jupyterhub.log"
    log.write_text(
        "[I 2026 app] Running JupyterHub version 6.1.1\n"
        "[E 2026 proxy:989] api_request to proxy failed: 403, message='Forbidden', url='http://127.0.0.1:8001/api/routes'\n"
        "[I 2026 app] Running JupyterHub version 6.1.1\n"
        "\x1b[31merror\x1b[39m: Uncaught Exception: listen EADDRINUSE: address already in use 127.0.0.1:8000\n")
    lines = logscan.last_run_lines(log)
    found = {m.id: hits for m, hits in logscan.match_log(lines)}
    assert set(found) == {"proxy-eaddrinuse"}
    assert found["proxy-eaddrinuse"][0].startswith("error: Uncaught Exception")  # colour codes stripped


def test_log_tail_is_bounded(tmp_path):
    log = tmp_path / "jupyterhub.log"
    with open(log, "w") as fh:
        fh.write("No allow config found, it's possible that nobody can login to your Hub!\n")
        fh.write(("x" * 99 + "\n") * 30000)  # 3 MB
    assert logscan.last_run_lines(log, tail_kb=64)
    assert not logscan.match_log(logscan.last_run_lines(log, tail_kb=64))
    assert len(logscan.last_run_lines(log, tail_kb=64)) < 700


def test_log_findings_carry_the_line_and_mask_secrets(params):
    params.layout.state_dir.mkdir(parents=True)
    secretref.register("s3cr3t-token-value")
    (params.layout.state_dir / "jupyterhub.log").write_text(
        "[I app] Running JupyterHub version 6.1.1\n"
        "[W auth:274] No allow config found, it's possible that nobody can login to your Hub!\n"
        "[E user:1073] Unhandled error starting alice's server: \"getpwnam(): name not found: 'alice'\" s3cr3t-token-value\n")
    found = state.check_hub_log(Context(params))
    by_id = {f.id: f for f in found}
    assert set(by_id) == {"log:no-allow-config", "log:getpwnam"}
    assert "getpwnam(): name not found: 'alice'" in by_id["log:getpwnam"].evidence
    assert "s3cr3t-token-value" not in by_id["log:getpwnam"].evidence
    assert all(f.severity == WARNING and f.cause and f.fix for f in found)


# --- facts -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("reqs,spec", [
    (["tornado>=6.5", "traitlets>=5"], ">=6.5"),
    (["pamela>=1.1; sys_platform != 'win32'", "tornado (>=5.1)"], ">=5.1"),
    (["pytest; extra == 'test'"], None),
])
def test_requirement_of(reqs, spec):
    assert facts.requirement_of(reqs, "tornado") == spec


def test_satisfies():
    assert facts.satisfies("6.5.2", ">=6.5")
    assert not facts.satisfies("5.1.1", ">=6.5")
    assert facts.satisfies("5.1.1", None)


def test_alembic_head_and_db_revision(tmp_path):
    versions = tmp_path / "jupyterhub" / "alembic" / "versions"
    versions.mkdir(parents=True)
    (versions / "a.py").write_text("revision = 'aaa1'\ndown_revision = None\n")
    (versions / "b.py").write_text("revision = 'bbb2'\ndown_revision = 'aaa1'\n")
    assert database.alembic_head(str(tmp_path / "jupyterhub")) == "bbb2"
    db = tmp_path / "jupyterhub.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
    con.execute("INSERT INTO alembic_version VALUES ('aaa1')")
    con.commit()
    con.close()
    assert database.db_revision(db) == "aaa1"
    assert database.db_revision(tmp_path / "absent.sqlite") is None


def test_hub_env_values_are_masked(params):
    params.layout.secrets_dir.mkdir(parents=True)
    (params.layout.secrets_dir / "hub.env").write_text("# managed\nCONFIGPROXY_AUTH_TOKEN='abcd1234abcd1234'\nX=yyyy-zzzz\n")
    env = envfile.read_hub_env(params)
    assert env == {"CONFIGPROXY_AUTH_TOKEN": "abcd1234abcd1234", "X": "yyyy-zzzz"}
    f = Finding("x", ERROR, "t", "seen abcd1234abcd1234", "evidence yyyy-zzzz")
    assert "abcd1234abcd1234" not in repr(f) and "yyyy-zzzz" not in json.dumps(f.as_dict())


# --- detectors on files ------------------------------------------------------------------------
def test_cookie_secret_readable_by_anybody_is_an_error(params):
    params.layout.secrets_dir.mkdir(parents=True)
    cookie = params.layout.secrets_dir / "cookie_secret"
    cookie.write_text("00" * 32)
    cookie.chmod(0o644)
    found = state.check_secret_files(Context(params))
    assert [(f.id, f.severity) for f in found] == [("secret-files", ERROR)]
    assert "mode 0644" in found[0].evidence and found[0].repairable
    from hubrunbook.troubleshoot.repairs import repair_secret_modes

    assert repair_secret_modes(params, found[0]).status == "changed"
    assert stat.S_IMODE(cookie.stat().st_mode) == 0o600
    assert state.check_secret_files(Context(params)) == []


def test_singleuser_under_a_0700_dir_is_blocked(tmp_path_factory):
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="hrb-unit-", dir="/tmp"))  # pytest's own tmp is under a 0700 dir
    home = tmp_path / "home0700"
    (home / "env" / "bin").mkdir(parents=True)
    tmp_path.chmod(0o755)
    script = home / "env" / "bin" / "jupyterhub-singleuser"
    script.write_text("#!/usr/bin/python3\n")
    script.chmod(0o755)
    home.chmod(0o700)
    why = access._blocked(script)
    assert why and str(home) in why and "0700" in why
    home.chmod(0o755)
    assert access._blocked(script) is None
    script.write_text(f"#!{home}/py/python3\n")  # interpreter missing
    assert "does not exist" in access._blocked(script)
    import shutil

    shutil.rmtree(tmp_path)


def test_missing_singleuser_is_reported_as_missing_not_as_permissions(params, monkeypatch):
    (params.layout.env_dir / "bin").mkdir(parents=True)
    (params.layout.userenv_dir / "bin").mkdir(parents=True)  # a user env (c.Spawner.cmd's) whose entry point went
    (params.layout.userenv_dir / "pyvenv.cfg").write_text("home = /usr/bin\n")
    ctx = Context(params)
    monkeypatch.setattr(access, "_env", lambda c: {"python": "ok"})
    monkeypatch.setattr(access, "cfg", lambda c, key, default=None: default)
    found = access.check_singleuser_runnable(ctx)
    assert [(f.id, f.severity) for f in found] == [("singleuser-missing", ERROR)]
    assert "No such file" in found[0].evidence and "does not exist" in found[0].seen
    assert "permission" not in found[0].cause.lower() and "enter" not in found[0].cause


def test_disk_thresholds(params, monkeypatch):
    params.layout.state_dir.mkdir(parents=True)
    monkeypatch.setattr(system, "free_mb", lambda p: (p, 10))
    assert [f.severity for f in state.check_disk_space(Context(params))] == [ERROR]
    monkeypatch.setattr(system, "free_mb", lambda p: (p, 500))
    assert [f.severity for f in state.check_disk_space(Context(params))] == [WARNING]  # < min_free_disk_mb 1024
    monkeypatch.setattr(system, "free_mb", lambda p: (p, 5000))
    assert state.check_disk_space(Context(params)) == []


def test_missing_user_is_repairable_only_when_managed(params):
    found = access.check_user_accounts(Context(params))
    assert [(f.id, f.severity, f.repairable) for f in found] == [("user-accounts", ERROR, True)]
    assert "getent passwd hrb-nobody-x: no entry" in found[0].evidence


# --- the scan --------------------------------------------------------------------------------------
def _check(cid, detect, repair=None):
    return Check(cid, f"title {cid}", "example", "cause", "action", detect, repair)


def test_a_check_that_raises_or_hangs_becomes_a_finding(params):
    def boom(ctx):
        raise RuntimeError("exploded")

    def slow(ctx):
        time.sleep(3)
        return []

    def fine(ctx):
        return [Finding("fine", ERROR, "t", "seen")]

    t0 = time.monotonic()
    report = run_checks(params, timeout_per_check=0.5, checks=[_check("boom", boom), _check("slow", slow),
                                                                 _check("fine", fine)])
    assert time.monotonic() - t0 < 1.5
    assert report.ids() == {"check-failed:boom", "check-failed:slow", "fine"}
    assert {r.id: r.status for r in report.runs} == {"boom": "failed", "slow": "timeout", "fine": "found"}
    assert report.findings[0].severity == ERROR and not report.ok


def test_report_json_and_display(params, tmp_path):
    report = Report([Finding("a", WARNING, "t", "seen a", "ev", "c", "f")], [], "2026-01-01T00:00:00+00:00", 0.1, "/x")
    path = diagnose.write_report_json(report, tmp_path / "out" / "report.json")
    data = json.loads(path.read_text())
    assert data["ok"] is True and data["findings"][0]["id"] == "a" and data["findings"][0]["evidence"] == "ev"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert "<table class='hrb-table'>" in report._repr_html_() and "seen a" in repr(report)
    assert diagnose.check_report(report).status == "ok"


def test_repairs_run_in_catalog_order_and_failures_do_not_stop_others(params, monkeypatch):
    from hubrunbook.core.errors import HubError
    from hubrunbook.core.steps import CHANGED, StepResult

    calls = []

    def rep(name, fail=False):
        def r(p, f, *, dry_run=False):
            calls.append(name)
            if fail:
                raise HubError(f"{name} failed")
            return StepResult(name, CHANGED, "done")
        r.__name__ = name
        return r

    cat = [_check("first", lambda c: [], rep("first", fail=True)), _check("second", lambda c: [], rep("second")),
           _check("third", lambda c: [])]
    monkeypatch.setattr(catalog, "CATALOG", cat)
    report = Report([cat[2].finding(ERROR, "x"), cat[1].finding(ERROR, "y"), cat[0].finding(ERROR, "z")], [], "", 0, "")
    assert [f.repairable for f in report.findings] == [False, True, True]
    results = diagnose.apply_repairs(params, report)
    assert calls == ["first", "second"]
    assert [(r.step, r.status) for r in results] == [("first", "failed"), ("second", "changed")]


# --- detectors on synthetic config and processes ---------------------------------------------------------
def _ctx_with_config(params, values: dict) -> Context:
    ctx = Context(params)
    ctx.fact("config", lambda: (LoadedConfig({f"c.{k}": v for k, v in values.items()}, frozenset(f"c.{k}" for k in values)), None))
    ctx.fact("env", lambda: {"versions": {}, "requires": {}})
    return ctx


def test_no_allow_rule_from_the_loaded_config(params):
    assert [f.id for f in access.check_config_allow_rule(_ctx_with_config(params, {"Authenticator.allowed_users": []}))] \
        == ["allow-rule"]
    for ok in ({"Authenticator.allowed_users": ["a"]}, {"Authenticator.allow_all": True},
               {"Authenticator.allowed_organizations": ["org"]},
               {"Authenticator.admin_users": ["a"], "JupyterHub.authenticator_class": "oauthenticator.github.GitHubOAuthenticator"}):
        assert access.check_config_allow_rule(_ctx_with_config(params, ok)) == []
    # PAM: JupyterHub adds admins to allowed_users only when that set is not empty, so admins alone cannot log in
    assert [f.id for f in access.check_config_allow_rule(_ctx_with_config(params, {"Authenticator.admin_users": ["a"]}))] \
        == ["allow-rule"]


def test_oauth_callback_and_client(params, monkeypatch):
    params.layout.secrets_dir.mkdir(parents=True)
    (params.layout.secrets_dir / "hub.env").write_text("GITHUB_CLIENT_ID=abcdabcd\n")
    monkeypatch.setattr(access, "_hub_pid", lambda ctx: None)
    ctx = _ctx_with_config(params, {"JupyterHub.authenticator_class": "oauthenticator.github.LocalGitHubOAuthenticator",
                                    "Authenticator.oauth_callback_url": "http://127.0.0.1:9999/hub/oauth_callback"})
    found = {f.id: f for f in access.check_oauth(ctx)}
    assert set(found) == {"oauth-callback", "oauth-client"}
    assert "http://127.0.0.1:38901/hub/oauth_callback" in found["oauth-callback"].evidence
    assert "GITHUB_CLIENT_SECRET" in found["oauth-client"].evidence and "abcdabcd" not in repr(found)
    ctx = _ctx_with_config(params, {"JupyterHub.authenticator_class": "pam"})
    assert access.check_oauth(ctx) == []


def test_oauth_users_without_accounts_are_fine_when_the_hub_creates_them(params):
    values = {"Authenticator.allowed_users": ["hrb-nobody-y"]}
    assert "hrb-nobody-y" in {f.data["user"] for f in access.check_user_accounts(_ctx_with_config(params, values))}
    values["Authenticator.create_system_users"] = True
    assert "hrb-nobody-y" not in {f.data["user"] for f in access.check_user_accounts(_ctx_with_config(params, values))}


def test_proxy_on_api_port_classification(params, monkeypatch):
    monkeypatch.setattr(processes.ports, "describe", lambda pid: f"pid {pid} (node configurable-http-proxy)")
    monkeypatch.setattr(processes, "_listeners", lambda ctx, port: {4242} if port == params.proxy_api_port else set())

    def ctx_for(*, is_proxy=True, token="accepted", hub=None, recorded=None, proven=True):
        monkeypatch.setattr(processes.ports, "is_proxy", lambda pid: is_proxy)
        monkeypatch.setattr(processes, "unproven_reason", lambda p, pid: None if proven else f"pid {pid} runs as uid "
                            "1000, not root")
        monkeypatch.setattr(facts, "proxy_token_status", lambda p: token)
        ctx = Context(params)
        ctx.fact("hub_pid", lambda: hub)
        ctx.fact("proxy_pid", lambda: recorded)
        return ctx

    found = processes.check_proxy_api_port(ctx_for(token="rejected 403"))
    assert [(f.id, f.severity, f.repairable, f.data["pid"]) for f in found] == [("proxy-foreign-token", ERROR, True, 4242)]
    found = processes.check_proxy_api_port(ctx_for(recorded=4242))  # hub killed, proxy in the pid file
    assert [(f.id, f.severity) for f in found] == [("proxy-stale", WARNING)]
    found = processes.check_proxy_api_port(ctx_for(recorded=None))  # hub gone and the pid file does not name it
    assert [(f.id, f.severity) for f in found] == [("proxy-stale", ERROR)]
    assert processes.check_proxy_api_port(ctx_for(hub=1, recorded=4242)) == []  # our running hub's own proxy
    found = processes.check_proxy_api_port(ctx_for(is_proxy=False))
    assert [(f.id, f.repairable) for f in found] == [("proxy-api-port-foreign", False)]
    found = processes.check_proxy_api_port(ctx_for(proven=False, token="rejected 403"))  # looks like one, is not ours
    assert [(f.id, f.severity, f.repairable) for f in found] == [("proxy-api-port-unproven", ERROR, False)]
    assert "not root" in found[0].evidence and "token was not sent" in found[0].evidence


def test_stale_proxy_repair_proves_again_before_killing(params, monkeypatch):
    from hubrunbook.hub import proxy
    from hubrunbook.troubleshoot import repairs

    killed = []
    monkeypatch.setattr(repairs, "terminate", lambda pid, timeout: killed.append(pid) or True)
    f = Finding("proxy-stale", WARNING, "t", "seen", data={"pid": 4242}, repairable=True, check="proxy-api-port")
    for why in ("pid 4242 does not listen on proxy_api_port", "pid 4242 runs as uid 1000, not root",
                "pid 4242 is not the PID the hub recorded"):
        monkeypatch.setattr(proxy, "unproven_reason", lambda p, pid, why=why: why)
        assert repairs.repair_stale_proxy(params, f).status == "unchanged" and killed == []
    monkeypatch.setattr(proxy, "unproven_reason", lambda p, pid: None)  # proven ours again
    monkeypatch.setattr(repairs.ports, "listeners", lambda port: set() if killed else {4242})
    monkeypatch.setattr(repairs.facts, "proxy_token_status", lambda p: "accepted")
    monkeypatch.setattr(repairs.facts, "hub_pid", lambda p: None)
    assert repairs.repair_stale_proxy(params, f).status == "changed" and killed == [4242]


def test_node_too_old(params, monkeypatch, tmp_path):
    old = tmp_path / "node"  # a node of its own: the machine may have none (a pristine server has none)
    old.write_text("")
    monkeypatch.setattr(install, "choose_node", lambda p: ("system", old, "system node"))
    monkeypatch.setattr(install, "node_version", lambda node: (18, 19, 0))
    found = install.check_node(Context(params))
    assert [(f.id, f.severity) for f in found] == [("node", ERROR)] and "v18.19.0" in found[0].seen


def test_catalog_doc_is_current():
    from hubrunbook.sources import CATALOG_DOC, SYNC_COMMAND
    from hubrunbook.troubleshoot.diagnose import render_catalog_markdown

    assert CATALOG_DOC.read_text() == render_catalog_markdown(), f"run: {SYNC_COMMAND}"


def test_eaddrinuse_names_the_port(params):
    params.layout.state_dir.mkdir(parents=True)
    (params.layout.state_dir / "jupyterhub.log").write_text(
        "[I app] Running JupyterHub version 6.1.1\n"
        "[ConfigProxy] error: Uncaught Exception: listen EADDRINUSE: address already in use 127.0.0.1:38903\n")
    (f,) = state.check_hub_log(Context(params))
    assert f.id == "log:proxy-eaddrinuse" and "(port 38903: the proxy API port)" in f.seen


# --- the runbook's steps -----------------------------------------------------------------------------
def test_repair_step_only_acts_with_apply_fixes(params, monkeypatch):
    from hubrunbook.troubleshoot import steps as troubleshoot
    from hubrunbook.core.steps import CHANGED, StepResult

    calls = []

    def rep(p, f, *, dry_run=False):
        calls.append(dry_run)
        return StepResult("rep", "would change" if dry_run else CHANGED, "x")

    cat = [_check("fixable", lambda c: [], rep), _check("foreign", lambda c: [])]
    monkeypatch.setattr(catalog, "CATALOG", cat)
    report = Report([cat[0].finding(ERROR, "a"), cat[1].finding(ERROR, "b")], [], "", 0, "")
    diag = troubleshoot.repair_deployment(params, report)  # apply_fixes defaults to false
    assert diag.status == "would change" and calls == [True]
    assert ("foreign", "by hand", "action") in diag.rows
    fixing = params.model_copy(update={"apply_fixes": True})
    assert troubleshoot.repair_deployment(fixing, report).status == "changed" and calls == [True, False]
    assert troubleshoot.repair_deployment(fixing, report, dry_run=True).status == "would change"


def test_spawn_proof_is_skipped_or_failed_never_a_false_ok(params):
    from hubrunbook.troubleshoot import steps as troubleshoot

    clean = Report([], [], "", 0, "")
    broken = Report([Finding("x", ERROR, "t", "seen")], [], "", 0, "")
    assert troubleshoot.check_user_spawns(params, clean).status == "skipped"  # diagnosis only
    fixing = params.model_copy(update={"apply_fixes": True})
    assert troubleshoot.check_user_spawns(fixing, broken).status == "failed"
    assert troubleshoot.check_findings(params, broken).failed and not troubleshoot.check_findings(params, clean).failed


def test_backup_age_check(params):
    from datetime import datetime, timedelta, timezone

    from hubrunbook.core.layout import backup_archive_name

    assert state.check_backup_age(Context(params)) == []  # 0: off
    p = params.model_copy(update={"backup_max_age_hours": 24})
    [missing] = state.check_backup_age(Context(p))
    assert missing.severity == "warning" and "no backup archive" in missing.seen
    d = p.layout.backups_dir
    d.mkdir(parents=True)
    old = datetime.now(timezone.utc) - timedelta(hours=30)
    (d / backup_archive_name(old.strftime("%Y%m%dT%H%M%S.%fZ"))).write_bytes(b"x")
    [stale] = state.check_backup_age(Context(p))
    assert "30.0 h old" in stale.seen and "backup_max_age_hours 24" in stale.seen
    (d / backup_archive_name(datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ"))).write_bytes(b"x")
    assert state.check_backup_age(Context(p)) == []


# --- the idle culler (issue 13; hub/culler.py, check idle-culler) ---------------------------------------------------
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


@pytest.mark.skipif(os.geteuid() != 0, reason="a culler is proven ours by running as root: needs root")
def test_an_orphaned_culler_is_found_and_only_it_is_stopped(params, tmp_path):
    """A real process as a culler left by a killed hub runs: this prefix's hub-env Python (a link to this interpreter),
    the culler's module named in its argv, root, the state dir as its working directory. One elsewhere is not ours."""
    import subprocess
    import sys

    from hubrunbook.troubleshoot import repairs

    params.layout.env_bin("python").parent.mkdir(parents=True)
    params.layout.env_bin("python").symlink_to(sys.executable)
    params.layout.state_dir.mkdir(parents=True)
    argv = [str(params.layout.env_bin("python")), "-c", "import time; time.sleep(60)", "jupyterhub_idle_culler"]
    orphan = subprocess.Popen(argv, cwd=params.layout.state_dir)
    elsewhere = subprocess.Popen(argv, cwd=tmp_path)
    try:
        found = culler.orphan_cullers(params, None)
        assert [pid for pid, _ in found] == [orphan.pid]
        assert culler.orphan_cullers(params, os.getpid()) == []  # the running hub's own child
        (f,) = [f for f in processes.check_idle_culler(Context(params)) if f.id == "idle-culler-orphan"]
        assert f.severity == WARNING and f.repairable and f.data["pid"] == orphan.pid
        assert repairs.repair_orphan_culler(params, f, dry_run=True).status == "would change"
        assert repairs.repair_orphan_culler(params, f).status == "changed"
        assert orphan.wait(10) is not None and elsewhere.poll() is None
        assert repairs.repair_orphan_culler(params, f).status == "unchanged"  # gone: proven again, left alone
    finally:
        for proc in (orphan, elsewhere):
            proc.kill()
            proc.wait()


# --- limits per user (issue 13: hub/limits.py, checks/limits.py) ------------------------------------------------------
def test_a_server_killed_by_its_memory_limit_is_found_with_the_journal_line(params, monkeypatch):
    from hubrunbook.host import systemd as systemd_mod
    from hubrunbook.troubleshoot.checks import limits as limit_checks

    line = ("2026-12-04T20:31:07+0000 srv systemd[1]: jupyterhub-singleuser-demo.service: A process of this unit has "
            "been killed by the OOM killer.")
    monkeypatch.setattr(systemd_mod, "booted", lambda: True)
    monkeypatch.setattr(limit_checks.limits, "why_no_systemd", lambda p: None)
    ctx = Context(params)
    ctx.fact("oom_lines", lambda: ["2026-12-04T20:30:00+0000 srv systemd[1]: Started jupyterhub-singleuser-demo.service.",
                                   line])
    found = limit_checks.check_oom_killed(ctx)
    assert [(f.id, f.severity, f.evidence, f.data["user"]) for f in found] == [("server-oom-killed", WARNING, line, "demo")]
    assert "killed by mem_limit" in found[0].seen and "OOMPolicy=stop" in found[0].cause
    assert not found[0].repairable
    monkeypatch.setattr(systemd_mod, "booted", lambda: False)  # no systemd: no units, no journal of theirs
    assert limit_checks.check_oom_killed(Context(params)) == []


def test_limits_enforced_or_not_is_told_by_the_probe(params, monkeypatch):
    from hubrunbook.hub.limits import Enforcement
    from hubrunbook.troubleshoot.checks import limits as limit_checks

    monkeypatch.setattr(limit_checks.limits, "why_no_systemd", lambda p: "systemd is not PID 1 on this machine")
    none = limit_checks.check_limits_enforced(Context(params))
    assert [(f.id, f.severity) for f in none] == [("limits-none", catalog.INFO)] and "NOT enforced" in none[0].seen
    monkeypatch.setattr(limit_checks.limits, "why_no_systemd", lambda p: None)
    survived = Enforcement(False, "160 MiB allocated in a transient unit with MemoryMax=32M survived", "Running as unit: x")
    monkeypatch.setattr(limit_checks.limits, "memory_probe", lambda: survived)
    found = limit_checks.check_limits_enforced(Context(params))
    assert [(f.id, f.severity) for f in found] == [("limits-not-enforced", WARNING)]
    assert "NOT enforced on this machine" in found[0].seen and found[0].evidence == "Running as unit: x"
    monkeypatch.setattr(limit_checks.limits, "memory_probe", lambda: Enforcement(True, "killed (result oom-kill)"))
    assert limit_checks.check_limits_enforced(Context(params)) == []
    # an explicit limit this machine refuses: configure's preflight says so, the scan does not repeat it
    refused = params.model_copy(update={"mem_limit": "1G"})
    monkeypatch.setattr(limit_checks.limits, "why_no_systemd", lambda p: "systemd is not PID 1 on this machine")
    assert limit_checks.check_limits_enforced(Context(refused)) == []


def test_a_systemd_deployment_without_systemdspawner_is_an_error_repaired_by_the_hub_env(params, monkeypatch):
    from hubrunbook.hub import hubenv
    from hubrunbook.troubleshoot import repairs
    from hubrunbook.troubleshoot.checks import limits as limit_checks

    (params.layout.env_dir / "bin").mkdir(parents=True)
    (params.layout.env_dir / "bin" / "python").touch()
    monkeypatch.setattr(limit_checks.limits, "why_no_systemd", lambda p: None)
    monkeypatch.setattr(hubenv, "installed_versions", lambda env, names: {n: None for n in names})
    found = limit_checks.check_systemdspawner(Context(params))
    assert [(f.id, f.severity, f.repairable) for f in found] == [("systemdspawner-missing", ERROR, True)]
    assert limit_checks.SPAWNER.repair is repairs.repair_hub_env
    monkeypatch.setattr(hubenv, "installed_versions", lambda env, names: {n: "1.0.2" for n in names})
    assert limit_checks.check_systemdspawner(Context(params)) == []
    monkeypatch.setattr(limit_checks.limits, "why_no_systemd", lambda p: "systemd is not PID 1 on this machine")
    monkeypatch.setattr(hubenv, "installed_versions", lambda env, names: {n: None for n in names})
    assert limit_checks.check_systemdspawner(Context(params)) == []  # the local spawner needs none
