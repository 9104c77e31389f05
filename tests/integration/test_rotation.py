"""Rotating the cookie secret and the proxy token (issue 8): `make rotate-secrets` on a running hub."""
from __future__ import annotations

import os

import psutil
import pytest
import requests
import yaml

from hubrunbook import hubctl
from hubrunbook.hub import probe
from hubrunbook.host import users

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates system users and spawns as them: needs root"),
]


def test_rotation_logs_browsers_out_and_retires_the_old_proxy_token(deploy, tmp_path, capsys):
    d = deploy().build()
    p, url = d.params, d.params.public_url
    old_token, old_cookie = d.hub_env()["CONFIGPROXY_AUTH_TOKEN"], p.layout.cookie_secret.read_text()
    session = probe.login(url, d.user, users.user_password(p, d.user))
    assert session.get(f"{url}/hub/api/user", timeout=10).status_code == 200

    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(d.values))
    assert hubctl.main(["rotate-secrets", str(pfile)]) == 0
    out = capsys.readouterr().out
    assert "refuses the old one (403)" in out and "browsers must log in again" in out
    assert old_token not in out and d.hub_env()["CONFIGPROXY_AUTH_TOKEN"] not in out

    assert d.hub_env()["CONFIGPROXY_AUTH_TOKEN"] != old_token
    assert p.layout.cookie_secret.read_text() != old_cookie
    assert p.layout.cookie_secret.stat().st_mode & 0o777 == 0o600
    assert session.get(f"{url}/hub/api/user", timeout=10).status_code == 403, "the old hub cookie still works"
    api = f"http://127.0.0.1:{p.proxy_api_port}/api/routes"
    assert requests.get(api, headers={"Authorization": f"token {old_token}"}, timeout=5).status_code == 403
    proxy = int(p.layout.proxy_pid_file.read_text())
    assert d.hub_env()["CONFIGPROXY_AUTH_TOKEN"] not in " ".join(psutil.Process(proxy).cmdline())  # environment only
    audit = (p.layout.state_dir / "audit.jsonl").read_text()
    assert '"runbook": "rotate-secrets"' in audit and old_cookie not in audit
    assert d.hub_env()["CONFIGPROXY_AUTH_TOKEN"] not in audit
    assert d.user_logs_in_and_spawns() < 120  # a fresh login and spawn work on the new secrets


def test_rotation_refuses_unknown_names_and_a_prefix_without_secrets(deploy):
    from hubrunbook.core.errors import PreflightError
    from hubrunbook.hub.rotation import rotate_hub_secrets

    d = deploy().build(start=False)
    with pytest.raises(PreflightError, match="allowed: cookie_secret, proxy_token"):
        rotate_hub_secrets(d.params, ("jupyterhub_crypt_key",))
    d.params.layout.cookie_secret.unlink()
    with pytest.raises(PreflightError, match="run configure.ipynb first"):
        rotate_hub_secrets(d.params)
