"""Fault injection: build a working deployment, break it in exactly one way, run troubleshoot.ipynb.

Each test asserts the finding (and no unrelated error), then — where a repair exists — runs the runbook
with apply_fixes and asserts that a user can log in and spawn again. Deployments share the session's
installed hub env and proxy (tests/support/deployment.py, fixture `deploy`); only the broken part is built per test.
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import time

import psutil
import pytest

from hubrunbook.troubleshoot import facts
from hubrunbook.host import ports
from hubrunbook.hub import envfile, service
from hubrunbook.host.process import terminate
from hubrunbook.host.users import lookup
from support.deployment import Deployment, ids

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates system users and spawns as them: needs root"),
]


def scan(d: Deployment, tmp_path, tag="scan"):
    run, report = d.troubleshoot(tmp_path, tag=tag)
    assert report, f"no JSON report written:\n{run.error[-3000:]}"
    return run, report


def assert_errors(report: dict, expected: set[str], allowed: set[str] = frozenset()) -> None:
    """The expected error findings are there, and no error outside expected|allowed."""
    errors = ids(report["findings"], "error")
    assert expected <= errors, f"missing {expected - errors}; got {report['findings']}"
    assert errors <= expected | allowed, f"unrelated errors {errors - expected - allowed}"


def repair_and_prove(d: Deployment, tmp_path) -> dict:
    run, report = d.troubleshoot(tmp_path, apply_fixes=True)
    assert run.ok, f"{report.get('repairs')}\n{run.error[-4000:]}"
    assert report["ok"] and not ids(report["findings"], "error"), report["findings"]
    assert d.user_logs_in_and_spawns() < 60
    return report


def finding(report: dict, fid: str) -> dict:
    return next(f for f in report["findings"] if f["id"] == fid)


# --- healthy ------------------------------------------------------------------------------------------
def test_healthy_deployment_has_no_errors(deploy, tmp_path):
    d = deploy().build()
    run, report = scan(d, tmp_path)
    assert run.ok, run.error[-3000:]
    assert report["ok"] and not ids(report["findings"], "error"), report["findings"]
    assert report["seconds"] < 5
    assert all(c["status"] in ("ok", "found") for c in report["checks"])
    assert d.user_logs_in_and_spawns() < 60


# --- guide §3.2: the 403 of a proxy still running with another token ----------------------------------
def test_the_hub_and_proxy_get_an_allow_listed_environment_not_the_operators_secrets(deploy, monkeypatch):
    """Security review, low: the hub and proxy inherited the operator's whole environment. An unrelated secret in the
    shell that runs the runbook must not reach them; the locale, PATH and the hub's own settings must."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator-cloud-key-" + "z" * 16)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    d = deploy().build()
    for pid in (service.managed_hub_pid(d.params), read_proxy_pid(d)):
        env = psutil.Process(pid).environ()
        assert "AWS_SECRET_ACCESS_KEY" not in env, f"pid {pid} got the operator's secret"
        assert env.get("LC_ALL") == "C.UTF-8" and str(d.params.layout.env_dir / "bin") in env["PATH"]
        assert env["CONFIGPROXY_AUTH_TOKEN"] == d.hub_env()["CONFIGPROXY_AUTH_TOKEN"]


def test_proxy_started_by_hand_gives_403_and_is_reported_not_signalled(deploy, tmp_path):
    """Guide §3.2: a proxy still running with another token. It is not the PID the hub recorded, so hubrunbook cannot
    prove it is its own: it names it (with the kill command for the operator), sends it no token, never signals it."""
    d = deploy().build()
    service.stop_managed_hub(d.params)
    chp = d.start_proxy_by_hand("another-token-" + "x" * 20)
    hub = d.start_hub_by_hand(wait_exit=20)
    assert not alive(hub), "the hub should have exited on the 403"

    run, report = scan(d, tmp_path)
    assert not run.ok  # headless run fails while an error remains
    assert_errors(report, {"proxy-api-port-unproven", "hub-running"})
    f = finding(report, "proxy-api-port-unproven")
    assert f"pid {chp.pid}" in f["evidence"] and "configurable-http-proxy" in f["evidence"]
    assert "not the PID the hub recorded" in f["evidence"] and "token was not sent" in f["evidence"]
    assert not f["repairable"] and f"kill {chp.pid}" in f["fix"]
    log = finding(report, "log:proxy-api-403")
    assert "api_request to proxy failed: 403" in log["evidence"]
    assert "another-token" not in str(report)

    run, fixed = d.troubleshoot(tmp_path, apply_fixes=True)
    assert not run.ok and alive(chp), "an unproven proxy must never be signalled"
    terminate(chp.pid, timeout=5)  # the operator stops it, as the finding says
    repair_and_prove(d, tmp_path)


IMPOSTOR = """\
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print("AUTH", self.headers.get("Authorization"), flush=True)
        self.send_response(403); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_a_users_listener_posing_as_the_proxy_never_gets_the_token_nor_a_signal(deploy, tmp_path):
    """Security review, high 1: an unprivileged program named configurable-http-proxy.py on the API port while the
    hub is down. The scan must not send it the hub's token, and apply_fixes must not kill it."""
    d = deploy().build()
    service.stop_managed_hub(d.params)
    script = d.prefix / "impostor" / "configurable-http-proxy.py"
    script.parent.mkdir(mode=0o755)
    script.write_text(IMPOSTOR)
    script.chmod(0o644)
    imp = subprocess.Popen(["runuser", "-u", "nobody", "--", "/usr/bin/python3", str(script), str(d.params.proxy_api_port)],
                           stdout=subprocess.PIPE, text=True, start_new_session=True)
    d.started.append(psutil.Process(imp.pid))
    try:
        deadline = time.monotonic() + 10
        while not ports.listeners(d.params.proxy_api_port) and time.monotonic() < deadline:
            time.sleep(0.1)
        holder = next(iter(ports.listeners(d.params.proxy_api_port)))
        run, report = scan(d, tmp_path)
        f = finding(report, "proxy-api-port-unproven")
        assert "not root" in f["evidence"] and not f["repairable"]
        run, _ = d.troubleshoot(tmp_path, apply_fixes=True)
        assert alive(holder), "a process not proven ours must never be signalled"
    finally:
        for pid in ports.listeners(d.params.proxy_api_port):
            if psutil.Process(pid).uids().real != 0:
                os.kill(pid, 9)
        out = imp.communicate(timeout=10)[0]
    token = d.hub_env()["CONFIGPROXY_AUTH_TOKEN"]
    assert token not in out, "the hub's token was sent to a process that is not ours"


def test_stale_proxy_after_the_hub_was_killed(deploy, tmp_path):
    d = deploy().build()
    hub_pid = service.managed_hub_pid(d.params)
    proxy_pid = read_proxy_pid(d)
    os.kill(hub_pid, 9)
    _wait_gone(hub_pid)
    assert alive(proxy_pid)

    run, report = scan(d, tmp_path)
    assert_errors(report, {"hub-running"})
    stale = finding(report, "proxy-stale")
    assert stale["severity"] == "warning" and f"pid {proxy_pid}" in stale["evidence"]

    repair_and_prove(d, tmp_path)
    assert not alive(proxy_pid)


def test_a_stale_pid_file_naming_another_proxy_is_not_obeyed(deploy, tmp_path):
    """Security review, medium 7: a proxy pid file left from before (here: an hour old) names a PID that now belongs
    to another deployment's proxy, same node, script and ports. Nothing but the start time tells them apart: the
    process started after the file was written, so it is not ours and is neither sent the token nor signalled."""
    from hubrunbook.host.process import read_pid
    from hubrunbook.hub.proxy import proxy_command, unproven_reason

    d = deploy().build()
    service.stop_managed_hub(d.params)
    p = d.params
    record = p.layout.state_dir / "jupyterhub-proxy.pid"
    record.write_text("0\n")
    os.utime(record, (time.time() - 3600, time.time() - 3600))
    other = subprocess.Popen(proxy_command(p) + ["--ip", "127.0.0.1", "--port", str(p.port), "--api-ip", "127.0.0.1",
                                                 "--api-port", str(p.proxy_api_port)],
                             env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": "other-deployments-token-" + "y" * 16},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    d.started.append(psutil.Process(other.pid))
    deadline = time.monotonic() + 15
    while other.pid not in ports.listeners(p.proxy_api_port) and time.monotonic() < deadline:
        time.sleep(0.1)
    stat = record.stat()
    record.write_text(f"{other.pid}\n")  # the stale file now names the recycled PID; its time stays as it was
    os.utime(record, (stat.st_atime, stat.st_mtime))
    assert read_pid(record) == other.pid
    assert "started after" in unproven_reason(p, other.pid)

    service.stop_managed_hub(p)
    run, report = scan(d, tmp_path)
    f = finding(report, "proxy-api-port-unproven")
    assert "started after" in f["evidence"] and not f["repairable"]
    d.troubleshoot(tmp_path, apply_fixes=True)
    assert alive(other.pid), "a process whose start time contradicts the pid file must never be signalled"
    terminate(other.pid, timeout=5)


def alive(proc) -> bool:
    try:
        proc = proc if isinstance(proc, psutil.Process) else psutil.Process(proc)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def read_proxy_pid(d: Deployment) -> int:
    return int((d.params.layout.state_dir / "jupyterhub-proxy.pid").read_text())


def _wait_gone(pid: int, timeout: float = 10) -> None:
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        pass


# --- guide §3.1: tornado ------------------------------------------------------------------------------
def _uv_install(d: Deployment, *specs: str) -> None:
    from hubrunbook.hub.hubenv import uv_binary

    subprocess.run([uv_binary(), "pip", "install", "--quiet", "--python", d.params.layout.env_dir / "bin" / "python", *specs],
                   check=True, capture_output=True, timeout=300)


def _restart_fails(d: Deployment) -> None:
    from hubrunbook.core.errors import HubError

    service.stop_managed_hub(d.params)
    with pytest.raises(HubError):
        service.start_managed_hub(d.params)


def test_tornado_5_forced_under_jupyterhub_6(deploy, tmp_path):
    d = deploy(own_env=True).build()
    _uv_install(d, "tornado==5.1.1")  # a later install forcing an old tornado into the hub env
    _restart_fails(d)

    run, report = scan(d, tmp_path)
    assert_errors(report, {"hub-packages-import", "tornado-too-old", "hub-running"}, {"dependency-conflicts"})
    assert "MutableMapping" in finding(report, "hub-packages-import")["seen"]
    assert "tornado 5.1.1" in finding(report, "tornado-too-old")["seen"]
    assert "has no attribute 'MutableMapping'" in finding(report, "log:mutable-mapping")["evidence"]
    conflicts = finding(report, "dependency-conflicts")["evidence"]
    assert "tornado" in conflicts and "\x1b" not in conflicts and "Using Python" not in conflicts

    repair_and_prove(d, tmp_path)
    assert facts.probe_env(d.params)["versions"]["tornado"].startswith("6.")


def test_tornado_pin_downgraded_jupyterhub(deploy, tmp_path):
    d = deploy(own_env=True).build()
    _uv_install(d, "jupyterhub", "tornado<6")  # guide §3.1: silently picks an older jupyterhub
    assert facts.probe_env(d.params)["versions"]["jupyterhub"].startswith("5.")
    _restart_fails(d)

    run, report = scan(d, tmp_path)
    assert_errors(report, {"jupyterhub-version", "hub-running"}, {"hub-packages-import", "tornado-too-old",
                                                                  "dependency-conflicts", "db-schema"})
    assert "pins 6.1.1" in finding(report, "jupyterhub-version")["seen"]

    repair_and_prove(d, tmp_path)
    assert facts.probe_env(d.params)["versions"]["jupyterhub"] == "6.1.1"


# --- ports ----------------------------------------------------------------------------------------------
def _wait_log(d: Deployment, text: str, timeout: float = 30) -> None:
    import time

    log = d.params.layout.state_dir / "jupyterhub.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in {log} after {timeout} s")


def test_public_port_held_by_another_program(deploy, tmp_path):
    d = deploy().build(start=False)
    other = d.start_listener(d.params.port)
    d.start_hub_by_hand()
    _wait_log(d, "JupyterHub is now running")  # the hub claims success…

    run, report = scan(d, tmp_path)
    assert_errors(report, {"public-port"}, {"hub-api"})
    f = finding(report, "public-port")
    assert f"pid {other.pid}" in f["evidence"] and "http.server" in f["evidence"] and not f["repairable"]
    assert "EADDRINUSE" in finding(report, "log:proxy-eaddrinuse")["evidence"]

    run, report = d.troubleshoot(tmp_path, apply_fixes=True)
    assert not run.ok and "public-port" in ids(report["findings"], "error")
    assert alive(other), "a program we do not own must never be killed"


def test_hub_port_held_by_another_program(deploy, tmp_path):
    d = deploy().build(start=False)
    other = d.start_listener(d.params.hub_port)
    d.start_hub_by_hand(wait_exit=20)

    run, report = scan(d, tmp_path)
    assert not run.ok
    assert_errors(report, {"hub-port", "hub-running"})
    assert f"pid {other.pid}" in finding(report, "hub-port")["evidence"]
    assert "Failed to bind hub to" in finding(report, "log:hub-bind-failed")["evidence"]
    assert alive(other)


# --- users and login ------------------------------------------------------------------------------------
def test_no_allow_rule(deploy, tmp_path):
    d = deploy(admin_users=[]).build()
    cfg = d.params.config_path
    cfg.write_text("".join(l for l in cfg.read_text().splitlines(True) if not l.startswith("c.Authenticator.allowed_users")))
    service.ensure_hub_running(d.params)  # restarted on the edited config: starts, but nobody gets in

    run, report = scan(d, tmp_path)
    assert_errors(report, {"allow-rule"})
    assert "No allow config found" in finding(report, "log:no-allow-config")["evidence"]

    repair_and_prove(d, tmp_path)


def test_user_without_system_account(deploy, tmp_path):
    d = deploy().build()
    subprocess.run(["userdel", "-r", "--", d.user], check=True, capture_output=True)

    run, report = scan(d, tmp_path)
    assert_errors(report, {"user-accounts"})
    assert f"getent passwd {d.user}: no entry" in finding(report, "user-accounts")["evidence"]

    repair_and_prove(d, tmp_path)


def test_missing_notebook_dir(deploy, tmp_path):
    import shutil

    d = deploy().build()
    nbdir = f"/home/{d.user}/notebooks"
    shutil.rmtree(nbdir)

    run, report = scan(d, tmp_path)
    assert_errors(report, {"notebook-dirs"})
    assert f"{nbdir}: absent" in finding(report, "notebook-dirs")["evidence"]

    repair_and_prove(d, tmp_path)


def test_missing_home(deploy, tmp_path):
    import shutil

    d = deploy().build()
    shutil.rmtree(f"/home/{d.user}")

    run, report = scan(d, tmp_path)
    assert_errors(report, {"user-home", "notebook-dirs"})
    assert f"home /home/{d.user} (absent)" in finding(report, "user-home")["evidence"]

    repair_and_prove(d, tmp_path)
    assert os.stat(f"/home/{d.user}").st_uid == __import__("pwd").getpwnam(d.user).pw_uid


def test_singleuser_not_runnable_by_users(deploy, tmp_path):
    from hubrunbook.hub import probe
    from hubrunbook.host import users

    d = deploy().build()
    os.chmod(d.prefix, 0o700)  # e.g. a hub env under a 0700 home
    session = probe.login(d.params.public_url, d.user, users.user_password(d.params, d.user))
    with pytest.raises(Exception):
        probe.start_server(session, d.params.public_url, d.user, timeout=30)

    run, report = scan(d, tmp_path)
    assert_errors(report, {"singleuser-runnable"})
    assert "(mode 0700)" in finding(report, "singleuser-runnable")["evidence"]
    assert "Permission denied trying to run" in finding(report, "log:singleuser-permission")["evidence"]


# --- installs, database, disk -------------------------------------------------------------------------
def test_proxy_missing(deploy, tmp_path):
    d = deploy().build()
    # stopped first: once its script is gone a running proxy can no longer be proven ours, and is never signalled
    service.stop_managed_hub(d.params)
    (d.prefix / "proxy").unlink()  # configurable-http-proxy gone (removed, or never installed here)
    _restart_fails(d)

    run, report = scan(d, tmp_path)
    assert_errors(report, {"proxy-installed", "hub-running"})
    assert "Cannot find module" in finding(report, "log:proxy-module-missing")["evidence"]

    repair_and_prove(d, tmp_path)
    assert (d.prefix / "proxy" / "node_modules" / "configurable-http-proxy" / "package.json").exists()


def test_database_schema_older_than_jupyterhub(deploy, tmp_path):
    d = deploy().build()
    service.stop_managed_hub(d.params)
    db = d.params.layout.state_dir / "jupyterhub.sqlite"
    downgrade = (
        "import subprocess, sys\n"
        "from jupyterhub.dbutil import _temp_alembic_ini\n"
        f"with _temp_alembic_ini('sqlite:///{db}') as ini:\n"
        "    subprocess.check_call([sys.prefix + '/bin/alembic', '-c', ini, 'downgrade', '-1'])\n")
    subprocess.run([d.params.layout.env_dir / "bin" / "python", "-c", downgrade], check=True, capture_output=True, timeout=120)
    old = sqlite3.connect(db).execute("SELECT version_num FROM alembic_version").fetchone()[0]
    _restart_fails(d)

    run, report = scan(d, tmp_path)
    assert_errors(report, {"db-schema", "hub-running"})
    assert old in finding(report, "db-schema")["evidence"]
    assert "Found database schema version" in finding(report, "log:db-schema")["evidence"]

    repair_and_prove(d, tmp_path)
    backups = list((d.params.layout.state_dir / "backups").iterdir())
    assert len(backups) == 1 and old in backups[0].name


def test_low_disk_space_where_the_hub_keeps_state(deploy, tmp_path):
    def small_state(p):
        p.layout.state_dir.mkdir(mode=0o700)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m,mode=0700", "tmpfs", str(p.layout.state_dir)],
                           capture_output=True, text=True)
        if r.returncode != 0:  # a container without CAP_SYS_ADMIN
            pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip()}")

    d = deploy().build(before=small_state)
    run, report = scan(d, tmp_path)
    assert_errors(report, {"disk-space"})
    assert "MiB free" in finding(report, "disk-space")["evidence"]


# --- guide §2.5: OAuth ----------------------------------------------------------------------------------
def _replace_line(path, startswith: str, new: str) -> str:
    old = path.read_text()
    lines = [new if l.startswith(startswith) else l for l in old.splitlines()]
    assert lines != old.splitlines(), f"no line starting with {startswith!r}"
    path.write_text("\n".join(lines) + "\n")
    return old


def test_oauth_misconfigurations(deploy, tmp_path, monkeypatch):
    from hubrunbook.oauth import steps as oauthsteps

    monkeypatch.setenv("HRB_TS_GH_ID", "ts-client-id-0123")
    monkeypatch.setenv("HRB_TS_GH_SECRET", "ts-client-secret-0123456789")
    gh_user = f"hrb-ts-gh{os.getpid() % 10000}"
    d = deploy(own_env=True, oauth_provider="github", oauth_client_id="env:HRB_TS_GH_ID",
               oauth_client_secret="env:HRB_TS_GH_SECRET", oauth_allowed_users=[gh_user]).build(start=False)
    for step in (oauthsteps.ensure_oauthenticator, oauthsteps.ensure_oauth_secrets, oauthsteps.ensure_oauth_config):
        step(d.params)
    service.ensure_hub_running(d.params)
    cfg = d.params.config_path

    run, report = scan(d, tmp_path, "healthy")
    assert run.ok and not ids(report["findings"], "error"), report["findings"]

    # 1. the callback URL does not match the public URL (e.g. registered with another port)
    wrong = f"http://127.0.0.1:{d.params.port + 1}/hub/oauth_callback"
    good = _replace_line(cfg, "c.OAuthenticator.oauth_callback_url", f"c.OAuthenticator.oauth_callback_url = {wrong!r}")
    run, report = scan(d, tmp_path, "callback")
    assert_errors(report, {"oauth-callback"})
    assert wrong in finding(report, "oauth-callback")["evidence"]
    cfg.write_text(good)

    # 2. the client secret is missing from the hub's environment file
    envfile.set_hub_env(d.params, {"GITHUB_CLIENT_SECRET": None})
    run, report = scan(d, tmp_path, "secret")
    assert_errors(report, {"oauth-client"})
    assert "no GITHUB_CLIENT_SECRET" in finding(report, "oauth-client")["evidence"]
    assert "ts-client-id-0123" not in str(report)
    oauthsteps.ensure_oauth_secrets(d.params)

    # 3. accounts managed by hand (create_system_users off), and a login added without an account (500 at spawn)
    assert lookup(gh_user) is not None  # the hub created the first one at start (create_system_users)
    newcomer = gh_user + "b"
    _replace_line(cfg, "c.LocalGitHubOAuthenticator.create_system_users",
                  "c.LocalGitHubOAuthenticator.create_system_users = False")
    _replace_line(cfg, "c.OAuthenticator.allowed_users", f"c.OAuthenticator.allowed_users = {{{gh_user!r}, {newcomer!r}}}")
    run, report = scan(d, tmp_path, "account")
    assert_errors(report, {"user-accounts"})
    f = finding(report, "user-accounts")
    assert newcomer in f["seen"] and not f["repairable"]

