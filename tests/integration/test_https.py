"""HTTPS served by the hub's proxy, end to end as root: install + configure with a throwaway CA (trustme), a real
login and spawn over HTTPS that verifies the chain, and refusals (mismatched key, expired certificate, a public bind
without TLS) before the hub is touched."""
from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from datetime import datetime, timedelta, timezone

import pytest
import requests
import trustme

from support.runbook import run_runbook, step_statuses
from support.sandbox import TEST_ROOT, port_params, reset_sandbox, teardown_sandbox

pytestmark = [pytest.mark.integration, pytest.mark.skipif(os.geteuid() != 0, reason="PAM users and root-owned keys")]

TOKEN = secrets.token_hex(3)
USER, ADMIN = f"hrb-hs-{TOKEN}-u", f"hrb-hs-{TOKEN}-a"
NAME = "hub.hrb-https.test"  # the name users open; the checks connect to 127.0.0.1 and verify the certificate for it


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_pair(d, leaf, stem):
    """<stem>.pem (server certificate + chain) and <stem>-key.pem (0600) in *d*; returns their paths."""
    cert, key = d / f"{stem}.pem", d / f"{stem}-key.pem"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    os.chmod(key, 0o600)
    return str(cert), str(key)


@pytest.fixture(scope="module")
def tls_hub(tmp_path_factory):
    """install.ipynb + configure.ipynb with HTTPS from a private CA (root → intermediate → server certificate)."""
    from hubrunbook.core.params import build_params

    tmp = tmp_path_factory.mktemp("https")
    prefix = reset_sandbox(f"https-it-{os.getpid()}")
    tlsdir = TEST_ROOT / f"https-tls-{os.getpid()}"
    shutil.rmtree(tlsdir, ignore_errors=True)
    tlsdir.mkdir(mode=0o755, parents=True)
    os.chmod(tlsdir, 0o755)
    ca = trustme.CA()
    inter = ca.create_child_ca()
    cert, key = write_pair(tlsdir, inter.issue_cert(NAME, "127.0.0.1"), "hub")
    ca.cert_pem.write_to_path(str(tlsdir / "ca.pem"))
    values = port_params(prefix=str(prefix), users=[USER], admin_users=[ADMIN], ssl_cert=cert, ssl_key=key,
                         user_packages=[],  # the user env's base only: this test is about HTTPS
                         ssl_ca=str(tlsdir / "ca.pem"))
    values["oauth_public_url"] = f"https://{NAME}:{values['port']}"
    params = build_params(values)
    try:
        run = run_runbook("install", values, tmp)
        assert run.ok, run.error[-3000:]
        assert step_statuses(run.out)["check_hub_starts"] == "ok"  # the throwaway hub served HTTPS too
        run = run_runbook("userenv", values, tmp)
        assert run.ok, run.error[-3000:]
        run = run_runbook("configure", values, tmp)
        yield {"values": values, "params": params, "tmp": tmp, "first": run, "ca": ca, "inter": inter,
               "tlsdir": tlsdir, "url": f"https://127.0.0.1:{values['port']}"}
    finally:
        try:
            teardown_sandbox(params)
        finally:
            shutil.rmtree(tlsdir, ignore_errors=True)


def hub_pid(params):
    from hubrunbook.hub.service import managed_hub_pid

    return managed_hub_pid(params)


def test_configure_serves_https_and_its_own_verification_passes_over_it(tls_hub):
    run = tls_hub["first"]
    assert run.ok, run.error[-3000:]
    st = step_statuses(run.out)
    assert st["check_configure_preflight"] == "ok" and st["check_local_deployment"] == "ok", st
    text = tls_hub["params"].config_path.read_text()
    port = tls_hub["values"]["port"]
    assert f"c.JupyterHub.bind_url = 'https://127.0.0.1:{port}'  # hubrunbook" in text
    assert f"c.JupyterHub.ssl_cert = {tls_hub['values']['ssl_cert']!r}  # hubrunbook" in text
    assert f"c.JupyterHub.ssl_key = {tls_hub['values']['ssl_key']!r}  # hubrunbook" in text
    assert "c.JupyterHub.hub_ip = '127.0.0.1'  # hubrunbook" in text
    executed = run.out.read_text()
    assert "TLS chain" in executed and "ending at a root in ssl_ca" in executed
    assert tls_hub["ca"].private_key_pem.bytes().decode() not in executed


def test_a_user_logs_in_and_spawns_over_https_verifying_the_chain(tls_hub):
    from hubrunbook.hub import probe
    from hubrunbook.host.users import user_password

    url, params = tls_hub["url"], tls_hub["params"]
    ca_file = str(tls_hub["tlsdir"] / "ca.pem")
    s = requests.Session()
    s.verify = ca_file  # the private root only: the intermediate must come from the server's chain
    s.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment replaces s.verify
    page = s.get(f"{url}/hub/login", timeout=30)
    assert page.status_code == 200 and page.url.startswith("https://")
    resp = s.post(f"{url}/hub/login", data={"username": USER, "password": user_password(params, USER),
                                            "_xsrf": s.cookies.get("_xsrf", default="")}, allow_redirects=False, timeout=30)
    assert resp.status_code == 302
    assert all(c.secure for c in s.cookies if c.name == "jupyterhub-hub-login"), "login cookie not marked Secure"
    try:
        probe.start_server(s, url, USER, timeout=90)
        lab = s.get(f"{url}/user/{USER}/lab", timeout=30)
        assert lab.status_code == 200 and lab.url.startswith(f"{url}/user/{USER}/")
    finally:
        probe.stop_server(s, url, USER)


def test_clients_that_do_not_trust_the_ca_or_speak_plain_http_get_nothing(tls_hub):
    url, port = tls_hub["url"], tls_hub["values"]["port"]
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{url}/hub/login", timeout=10)  # requests' public bundle: the private CA is unknown
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{url}/hub/login", timeout=10, verify=_other_ca(tls_hub))
    try:
        resp = requests.get(f"http://127.0.0.1:{port}/hub/login", timeout=10)
        assert resp.status_code != 200 or "password" not in resp.text
    except requests.ConnectionError:
        pass  # the TLS listener drops a plain HTTP request


def _other_ca(tls_hub):
    path = tls_hub["tlsdir"] / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def test_troubleshoot_talks_to_the_hub_over_https(tls_hub):
    """The scan's /hub/api fact and the log-in-and-spawn proof after repairs both go through the verified https URL."""
    import json

    run = run_runbook("troubleshoot", {**tls_hub["values"], "apply_fixes": True}, tls_hub["tmp"])
    assert run.ok, run.error[-3000:]
    report = json.loads((tls_hub["params"].layout.state_dir / "troubleshoot.json").read_text())
    assert "hub-api" not in json.dumps(report), report
    assert f"[ok] check_user_spawns: {USER} logged in at {tls_hub['url']}/hub/login and got a server" in run.out.read_text()


def _refused(tls_hub, changes, needle):
    params = tls_hub["params"]
    pid, conf = hub_pid(params), digest(params.config_path)
    backups = set(params.config_path.parent.glob("jupyterhub_config.py.bak-*"))
    run = run_runbook("configure", {**tls_hub["values"], **changes}, tls_hub["tmp"])
    assert not run.ok
    assert needle in run.text()
    assert digest(params.config_path) == conf, "the config file was changed"
    assert hub_pid(params) == pid, "the hub was restarted"
    assert set(params.config_path.parent.glob("jupyterhub_config.py.bak-*")) == backups, "a config backup was made"
    # users still get the old certificate, and it verifies
    assert requests.get(f"{tls_hub['url']}/hub/api", verify=str(tls_hub["tlsdir"] / "ca.pem"), timeout=10).status_code == 200


def test_a_key_that_does_not_match_the_certificate_is_refused_before_the_hub_is_touched(tls_hub):
    _, other_key = write_pair(tls_hub["tlsdir"], tls_hub["inter"].issue_cert(NAME, "127.0.0.1"), "other")
    _refused(tls_hub, {"ssl_key": other_key}, "is not the key of the certificate")


def test_an_expired_certificate_is_refused_before_the_hub_is_touched(tls_hub):
    now = datetime.now(timezone.utc)
    leaf = tls_hub["inter"].issue_cert(NAME, "127.0.0.1", not_before=now - timedelta(days=400),
                                       not_after=now - timedelta(days=2))
    cert, key = write_pair(tls_hub["tlsdir"], leaf, "expired")
    _refused(tls_hub, {"ssl_cert": cert, "ssl_key": key}, "expired on")


def test_a_public_bind_without_tls_is_refused_before_the_hub_is_touched(tls_hub):
    _refused(tls_hub, {"bind_ip": "0.0.0.0", "ssl_cert": "", "ssl_key": "", "ssl_ca": ""},
             "is not a loopback address and there is no TLS")
