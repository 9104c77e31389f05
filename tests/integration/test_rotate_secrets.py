"""Rotating the cookie secret and the proxy token (`make rotate-secrets`): old sessions stop working, the hub works.

A real hub (configure-style, PAM) with a real user; the rotation goes through hubctl as an operator runs it.
"""
from __future__ import annotations

import os

import psutil
import pytest
import yaml

from oauth_fixtures import hub, oauth_install  # noqa: F401 (fixtures)

from hubrunbook import hubctl, probe
from hubrunbook.process import read_pid
from hubrunbook.service import cookie_secret_path, hub_env_path, managed_hub_pid, proxy_pid_path, read_hub_env

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="creates system users and logs in with PAM: needs root"),
]


def test_rotate_secrets_logs_everybody_out_and_the_hub_works_again(hub, tmp_path):
    params = hub.configure(local_users=True, pam={"users": [hub.local_admin]})
    user = hub.local_admin
    password = (params.secrets_dir / "passwords" / user).read_text().strip()
    session = probe.login(hub.url, user, password)
    assert session.get(f"{hub.url}/hub/api/user", timeout=10).status_code == 200
    old_cookie, old_token = cookie_secret_path(params).read_text(), read_hub_env(params)["CONFIGPROXY_AUTH_TOKEN"]
    old_hub, old_proxy = managed_hub_pid(params), read_pid(proxy_pid_path(params))
    assert old_hub and old_proxy and psutil.pid_exists(old_proxy)

    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({k: v for k, v in params.model_dump(mode="json").items()
                                           if k in ("prefix", "port", "hub_port", "proxy_api_port", "node", "service",
                                                    "users", "admin_users", "start_timeout")}))
    assert hubctl.main(["rotate-secrets", str(params_file)]) == 0

    # both secrets are new and private; hub and proxy are new processes, the old proxy (old token) is gone
    new_token = read_hub_env(params)["CONFIGPROXY_AUTH_TOKEN"]
    assert cookie_secret_path(params).read_text() != old_cookie and new_token != old_token
    for path in (cookie_secret_path(params), hub_env_path(params)):
        assert path.stat().st_mode & 0o777 == 0o600
    new_proxy = read_pid(proxy_pid_path(params))
    assert managed_hub_pid(params) not in (None, old_hub) and new_proxy != old_proxy
    assert not psutil.pid_exists(old_proxy) or psutil.Process(old_proxy).status() == psutil.STATUS_ZOMBIE
    assert new_token not in " ".join(psutil.Process(new_proxy).cmdline())  # the token travels in the environment
    # the session from before is logged out; a new login works and can reach the hub
    assert session.get(f"{hub.url}/hub/api/user", timeout=10).status_code == 403
    fresh = probe.login(hub.url, user, password)
    assert fresh.get(f"{hub.url}/hub/api/user", timeout=10).json()["name"] == user
    audit = (params.state_dir / "audit.jsonl").read_text()
    assert '"runbook": "rotate-secrets"' in audit and old_cookie not in audit and new_token not in audit
