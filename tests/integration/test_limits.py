"""Limits per user where systemd is not PID 1 (this machine, the integration sandboxes: service 'process'): an explicit
mem_limit or cpu_limit is refused before anything changes; 'auto' runs without limits and every report says so.
(Under systemd: tests/system/test_limits_server.py.)"""
from __future__ import annotations

from support.deployment import ids
from support.runbook import run_runbook, step_statuses


def test_limits_are_refused_without_systemd_and_auto_says_not_enforced(deploy, tmp_path):
    d = deploy("limits").build()
    config_before = d.params.config_path.read_text()
    refused = run_runbook("configure", {**d.values, "mem_limit": "512M", "cpu_limit": 1.5}, tmp_path / "refused")
    assert not refused.ok
    assert "mem_limit '512M' and cpu_limit 1.5 cannot be enforced here" in refused.error, refused.error[-3000:]
    assert "check_configure_preflight" in refused.error and "nothing was changed" in refused.error
    assert d.params.config_path.read_text() == config_before  # nothing changed

    ok = run_runbook("configure", d.values, tmp_path / "auto")
    assert ok.ok, ok.error[-3000:]
    statuses = step_statuses(ok.out)
    assert statuses["check_user_limits"] == "skipped", statuses  # not verified is never reported as passing
    text = ok.text()
    assert "WARNING: mem_limit 'auto' means no memory limit here" in text
    assert "no limits per user: NOT enforced on this machine" in text
    live = [line for line in d.params.config_path.read_text().splitlines() if line.startswith("c.")]
    assert not [line for line in live if line.startswith(("c.Spawner.mem_limit", "c.Spawner.cpu_limit", "c.SystemdSpawner"))]
    assert "c.JupyterHub.spawner_class = 'hubrunbook_hub_auth.LocalProcessSpawner'  # hubrunbook" in live

    run, report = d.troubleshoot(tmp_path)
    assert run.ok, run.error[-3000:]
    assert "limits-none" in ids(report["findings"], "info"), report["findings"]
    assert not {"limits-not-enforced", "server-oom-killed"} & ids(report["findings"])
