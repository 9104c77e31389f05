"""kubernetes.ipynb through the one runner on a sandbox: converged re-run, no secret in the values file or the executed
notebook, the refusal of the default (PAM) parameters, and the migration step on a real backup archive of a prefix
that holds a hub database (made here without a hub: the step reads the archive, not the hub).

No cluster and no helm here: the apply path's refusal is in tests/unit/test_kubernetes_units.py. The schema
validation runs where the chart data is (``$HRB_Z2JH_DIR`` or ``<repo>/../shared/z2jh/``) and is otherwise reported
as skipped by the runbook itself, which this test checks either way.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import yaml

from support.runbook import run_runbook, step_statuses

from hubrunbook.core.params import build_params, load_yaml
from support import chartdata

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="the runbooks run as root")]

REPO = Path(__file__).resolve().parents[2]
CLIENT_ID, CLIENT_SECRET = "Iv1.k8sintegration77", "hrb-k8s-int-secret-9c2e71a4d0"
HUB_ENV_SECRET = "hrb-k8s-proxy-token-0b5e9f3c1a77"


def _private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)


def _params(sandbox: Path, tmp_path: Path) -> dict:
    _private(tmp_path / "oauth" / "id", CLIENT_ID)
    _private(tmp_path / "oauth" / "secret", CLIENT_SECRET)
    values = load_yaml(REPO / "parameters" / "kubernetes-github.yaml")
    values |= {"prefix": str(sandbox), "oauth_client_id": f"file:{tmp_path / 'oauth' / 'id'}",
               "oauth_client_secret": f"file:{tmp_path / 'oauth' / 'secret'}", "oauth_allowed_users": ["alice"]}
    if chartdata.chart_data_present():
        values["k8s_schema_path"] = str(chartdata.Z2JH_DIR / "values.schema.yaml")
    return values


def _single_server_prefix(params) -> None:
    """What backup.ipynb archives, without a hub: a hub database with users, the config, hub.env, the cookie secret."""
    lay = params.layout
    lay.state_dir.mkdir(mode=0o700, parents=True)
    con = sqlite3.connect(lay.hub_db)
    con.executescript("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL);"
                      "INSERT INTO alembic_version VALUES ('4621fec11365');"
                      "CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(255), admin BOOLEAN);"
                      "INSERT INTO users (name, admin) VALUES ('alice', 0), ('octo-admin', 1), ('mallory', 0), ('root2', 1);")
    con.close()
    lay.hub_db.chmod(0o600)
    params.config_path.parent.mkdir(parents=True)
    params.config_path.write_text("c = get_config()  # noqa\n")
    _private(lay.hub_env, f"CONFIGPROXY_AUTH_TOKEN={HUB_ENV_SECRET}\n")
    _private(lay.cookie_secret, "ab" * 32)


def test_kubernetes_runbook(sandbox, tmp_path):
    values = _params(sandbox, tmp_path)
    params = build_params(values)
    _single_server_prefix(params)
    from hubrunbook.backup.archive import ensure_backup

    assert ensure_backup(params).status == "changed"

    first = run_runbook("kubernetes", values, tmp_path / "first")
    assert first.ok, first.error
    assert step_statuses(first.out)["ensure_kubernetes_values"] == "changed"
    second = run_runbook("kubernetes", values, tmp_path / "second")
    assert second.ok, second.error
    statuses = step_statuses(second.out)
    assert statuses == {"check_kubernetes_plan": "ok",
                        "check_kubernetes_schema": "ok" if "k8s_schema_path" in values else "skipped",
                        "ensure_kubernetes_values": "unchanged", "show_kubernetes_commands": "ok",
                        "check_kubernetes_migration": "ok", "ensure_kubernetes_applied": "skipped"}

    path = params.k8s_values_file
    assert path == sandbox / "kubernetes" / "values.yaml" and oct(path.stat().st_mode & 0o777) == "0o644"
    text, notebook = path.read_text(), second.text()
    assert str(path) in notebook  # the runbook prints where the values file is
    for secret in (CLIENT_ID, CLIENT_SECRET, HUB_ENV_SECRET, "ab" * 32):
        assert secret not in text and secret not in notebook and secret not in first.text()
    assert yaml.safe_load(text)["hub"]["extraEnv"]["GITHUB_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "client_secret"

    # the migration step: the archive's users against the generated allow lists
    assert "4 hub users" in notebook
    assert "allowed only if a member of the allowed organizations/groups" in notebook  # mallory: not listed, orgs decide
    assert "admin on the single server, not in oauth_admin_users" in notebook  # root2
    assert "allowed (admin)" in notebook  # octo-admin
    assert "hub/jupyterhub.sqlite" in notebook and "/srv/jupyterhub/jupyterhub.sqlite" in notebook


def test_default_parameters_refused(sandbox, tmp_path):
    run = run_runbook("kubernetes", {"prefix": str(sandbox)}, tmp_path)
    assert not run.ok
    assert "PAM has no Kubernetes equivalent" in run.error and "k8s_authenticator: 'oauth'" in run.error
    assert not (sandbox / "kubernetes").exists()  # nothing written
