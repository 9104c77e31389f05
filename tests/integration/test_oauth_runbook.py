"""oauth.ipynb headless with papermill (twice: the second run changes nothing), its refusals, and nbval.

The provider is the fake GitHub (support.fakegithub) in this process; the runbook's kernel reaches it over loopback.
"""
from __future__ import annotations

import json
import os

import pytest

from hubrunbook.core.runner import execute_runbook
from support.nbval import prepare_nbval_copy, run_nbval
from support.oauth import reference_sandbox
from support.runbook import run_runbook, step_statuses

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="restarts a hub that creates system users: needs root"),
]


def test_oauth_runbook_converges_and_leaks_no_secret(tmp_path, sandbox):
    with reference_sandbox(sandbox) as (hub, gh, params):
        first_dir, second_dir = tmp_path / "1", tmp_path / "2"
        first_dir.mkdir(), second_dir.mkdir()
        run1 = run_runbook("oauth", params, first_dir)
        assert run1.ok, run1.error[-3000:]
        first = step_statuses(run1.out)
        assert first["ensure_oauth_config"] == "changed" and first["ensure_hub_running"] == "changed", first
        assert first["check_oauth_static"] == "ok" and first["check_oauth_login"] == "ok", first
        run2 = run_runbook("oauth", params, second_dir)
        assert run2.ok, run2.error[-3000:]
        second = step_statuses(run2.out)
        assert "changed" not in second.values() and set(second) == set(first), second
        # the executed notebooks show the references and the login URL, never the secret (nor the client id)
        for out in (run1.out, run2.out):
            text = out.read_text()
            assert gh.client_secret not in text and gh.client_id not in text
            assert f"env:{params['oauth_client_id'][4:]}" in text and "log in at http://127.0.0.1:" in text
            assert json.loads(text)["metadata"]["papermill"]["parameters"]["oauth_client_secret"].startswith("file:")
        p = hub.params
        for path in (p.config_path, p.layout.state_dir / "jupyterhub.log", p.layout.state_dir / "audit.jsonl"):
            assert gh.client_secret not in path.read_text(), path


def test_oauth_runbook_refuses_a_lockout_before_changing_anything(tmp_path, sandbox):
    with reference_sandbox(sandbox) as (hub, gh, params):
        before = hub.params.config_path.read_text()
        run = run_runbook("oauth", {**params, "oauth_allowed_organizations": []}, tmp_path)
        assert not run.ok
        assert "nobody could log in" in run.text()
        assert hub.params.config_path.read_text() == before
        assert "CLIENT_SECRET" not in (hub.params.layout.secrets_dir / "hub.env").read_text()


def test_oauth_runbook_outputs_match_reference(tmp_path):
    with reference_sandbox() as (hub, gh, params):
        execute_runbook("oauth", tmp_path / "converge.ipynb", params)  # the sandbox is configured: converge oauth
        res = run_nbval(prepare_nbval_copy("oauth", params, tmp_path / "oauth.ipynb"))
        assert res.returncode == 0, res.stdout[-6000:]


def test_oauth_runbook_dry_run_changes_nothing(tmp_path, sandbox):
    with reference_sandbox(sandbox) as (hub, gh, params):
        p = hub.params
        before = (p.config_path.read_text(), p.layout.hub_env.read_text())
        run = run_runbook("oauth", {**params, "dry_run": True}, tmp_path)
        assert run.ok, run.error[-3000:]
        statuses = step_statuses(run.out)
        assert statuses["ensure_oauth_secrets"] == "would change" and statuses["ensure_oauth_config"] == "would change"
        assert statuses["ensure_hub_running"] == "unchanged" and statuses["check_oauth_static"] == "ok", statuses
        assert (p.config_path.read_text(), p.layout.hub_env.read_text()) == before
        assert gh.client_secret not in run.out.read_text()
