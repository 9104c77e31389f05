"""configure.ipynb end to end as root: fresh, converged, one changed parameter, bad parameters."""
import hashlib
import os
import pwd
import socket

import pytest

from support.runbook import run_runbook, step_statuses
from support.sandbox import port_params, reset_sandbox, teardown_sandbox

pytestmark = pytest.mark.integration

# per process: the engineers' and CI's parallel runs share /etc/passwd and /home (fixed names collided)
USER, ADMIN = f"hrb-it-u{os.getpid()}", f"hrb-it-a{os.getpid()}"


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """A prefix after install.ipynb and a first configure.ipynb run; torn down afterwards (hub, users, files)."""
    from hubrunbook.core.params import build_params

    tmp = tmp_path_factory.mktemp("configure")
    prefix = reset_sandbox(f"configure-it-{os.getpid()}")
    values = port_params(prefix=str(prefix), users=[USER], admin_users=[ADMIN])
    params = build_params(values)
    try:
        run = run_runbook("install", values, tmp)
        assert run.ok, run.error[-3000:]
        run = run_runbook("userenv", values, tmp)
        assert run.ok, run.error[-3000:]
        run = run_runbook("configure", values, tmp)
        yield {"values": values, "params": params, "tmp": tmp, "first": run}
    finally:
        teardown_sandbox(params)


def hub_pid(params):
    from hubrunbook.hub.service import managed_hub_pid

    return managed_hub_pid(params)


def test_first_run_configures_and_verifies(deployment):
    run = deployment["first"]
    assert run.ok, run.error[-3000:]
    st = step_statuses(run.out)
    for step in ("ensure_config_file", "ensure_hub_secrets", "ensure_config", "ensure_users", "ensure_hub_running"):
        assert st[step] == "changed", st
    assert st["check_local_deployment"] == "ok"
    params = deployment["params"]
    assert pwd.getpwnam(USER).pw_dir == f"/home/{USER}"
    assert (params.layout.secrets_dir / "cookie_secret").stat().st_mode & 0o777 == 0o600
    assert (params.layout.secrets_dir / "hub.env").stat().st_mode & 0o777 == 0o600
    text = params.config_path.read_text()
    assert f"c.Authenticator.admin_users = {{'{ADMIN}'}}  # hubrunbook" in text
    assert "c.Spawner.notebook_dir = '/home/{username}/notebooks'  # hubrunbook" in text
    assert hub_pid(params)
    # no secret in the executed notebook
    import hubrunbook.host.users as users

    executed = run.out.read_text()
    for name in (USER, ADMIN):
        assert users.user_password(params, name) not in executed
    assert (params.layout.secrets_dir / "cookie_secret").read_text() not in executed


def test_rerun_changes_nothing_and_keeps_the_hub(deployment):
    params = deployment["params"]
    pid, conf = hub_pid(params), digest(params.config_path)
    run = run_runbook("configure", deployment["values"], deployment["tmp"])
    assert run.ok, run.error[-3000:]
    st = step_statuses(run.out)
    assert "changed" not in st.values(), st
    assert hub_pid(params) == pid and digest(params.config_path) == conf


def test_changed_parameter_changes_its_line_keeps_backup_and_restarts(deployment):
    params = deployment["params"]
    pid = hub_pid(params)
    with open(params.config_path, "a") as fh:  # an operator's own edit must survive
        fh.write("c.JupyterHub.shutdown_on_logout = True\n")
    before = params.config_path.read_text()
    backups = set(params.config_path.parent.glob("jupyterhub_config.py.bak-*"))
    values = {**deployment["values"], "allowed_users": ["hrb-it-extra"]}
    run = run_runbook("configure", values, deployment["tmp"])
    assert run.ok, run.error[-3000:]
    after = params.config_path.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert changed == [(f"c.Authenticator.allowed_users = {{'{ADMIN}', '{USER}'}}  # hubrunbook",
                        f"c.Authenticator.allowed_users = {{'{ADMIN}', 'hrb-it-extra', '{USER}'}}  # hubrunbook")]
    assert len(before.splitlines()) == len(after.splitlines())
    assert "c.JupyterHub.shutdown_on_logout = True" in after
    new_backups = set(params.config_path.parent.glob("jupyterhub_config.py.bak-*")) - backups
    assert len(new_backups) == 1 and new_backups.pop().read_text() == before
    st = step_statuses(run.out)
    assert st["ensure_config"] == "changed" and st["ensure_hub_running"] == "changed"
    assert st["check_local_deployment"] == "ok"
    assert hub_pid(params) not in (None, pid)
    deployment["values"] = values


@pytest.mark.parametrize("bad,needle", [
    ({"users": ["Bad.Name"]}, "not a valid system username"),
    ({"admin_users": ["-root"]}, "admin_users"),
    ({"notebook_dir": "notebooks/{username}"}, "notebook_dir must be an absolute path"),
    ({"port": "foreign"}, "in use by pid"),
])
def test_bad_parameters_change_nothing(deployment, bad, needle):
    params = deployment["params"]
    pid, conf = hub_pid(params), digest(params.config_path)
    ours = lambda: {p.pw_name for p in pwd.getpwall() if p.pw_name in (USER, ADMIN, "Bad.Name", "-root")}
    users_before = ours()
    sock = None
    if bad.get("port") == "foreign":
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        bad = {"port": sock.getsockname()[1]}
    try:
        run = run_runbook("configure", {**deployment["values"], **bad}, deployment["tmp"])
    finally:
        if sock:
            sock.close()
    assert not run.ok
    assert needle in run.text()
    assert digest(params.config_path) == conf
    assert ours() == users_before
    assert hub_pid(params) == pid


def test_dry_run_reports_and_changes_nothing(deployment):
    params = deployment["params"]
    pid, conf = hub_pid(params), digest(params.config_path)
    values = {**deployment["values"], "users": [USER, "hrb-it-dry"], "dry_run": True}
    run = run_runbook("configure", values, deployment["tmp"])
    assert run.ok, run.error[-3000:]
    st = step_statuses(run.out)
    assert st["ensure_config"] == "would change" and st["ensure_users"] == "would change"
    assert st["check_local_deployment"] == "skipped"
    assert digest(params.config_path) == conf and hub_pid(params) == pid
    with pytest.raises(KeyError):
        pwd.getpwnam("hrb-it-dry")


def test_code_a_user_planted_in_the_prefix_never_runs_as_root_even_in_a_dry_run(sandbox, tmp_path):
    """Issue 8, M4: a user-owned <prefix>/env/bin/python ran as root during a dry run of configure."""
    marker = tmp_path / "planted-code-ran"
    (sandbox / "env" / "bin").mkdir(parents=True)
    planted = sandbox / "env" / "bin" / "python"
    planted.write_text(f"#!/bin/sh\ntouch {marker}\nexec /usr/bin/python3 \"$@\"\n")
    planted.chmod(0o755)
    os.chown(planted, 65534, 65534)
    run = run_runbook("configure", port_params(prefix=str(sandbox), dry_run=True, users=["hrb-it-dry"],
                                                 admin_users=["hrb-it-dry"]), tmp_path)
    assert not run.ok
    assert f"{planted} is owned by nobody" in run.error and "Nothing was run or changed" in run.error
    assert not marker.exists()
