"""TLS rules: parameters, certificate/key checks and the files root reads, with throwaway CAs from trustme."""
from __future__ import annotations

import os
import secrets
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
import requests
import trustme

from hubrunbook.hub import tls
from hubrunbook.hub.config import hub_settings
from hubrunbook.core.errors import ParameterError, PreflightError
from hubrunbook.core.params import build_params
from hubrunbook.install.smoke import throwaway_config
from hubrunbook.core.steps import FAILED, OK

NOW = datetime.now(timezone.utc)
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="TLS files must be owned by root: needs root")


def write_tls(d, leaf, ca=None, *, chain=True, key_mode=0o600):
    """Write cert (leaf + chain), key and CA files into *d*; return their paths as parameter values."""
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)
    pems = leaf.cert_chain_pems if chain else leaf.cert_chain_pems[:1]
    (d / "cert.pem").write_bytes(b"".join(p.bytes() for p in pems))
    (d / "key.pem").write_bytes(leaf.private_key_pem.bytes())
    os.chmod(d / "key.pem", key_mode)
    out = {"ssl_cert": str(d / "cert.pem"), "ssl_key": str(d / "key.pem")}
    if ca is not None:
        ca.cert_pem.write_to_path(str(d / "ca.pem"))
        out["ssl_ca"] = str(d / "ca.pem")
    return out


def rows_of(values, now=None):
    return {label: (status, detail) for label, status, detail in tls.tls_rows(build_params(values), now)}


# --- parameters ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bind_ip", ["0.0.0.0", "192.0.2.10", "::"])
def test_non_loopback_bind_without_tls_is_refused(bind_ip):
    with pytest.raises(ParameterError, match=r"bind_ip .* is not a loopback address and there is no TLS.*ssl_cert"):
        build_params({"bind_ip": bind_ip})


def test_non_loopback_bind_with_tls_or_behind_a_tls_proxy_is_accepted():
    assert build_params({"bind_ip": "0.0.0.0", "tls_terminated_by_proxy": True}).public_url == "http://127.0.0.1:8000"
    p = build_params({"bind_ip": "0.0.0.0", "port": 443, "ssl_cert": "/etc/ssl/h/c.pem", "ssl_key": "/etc/ssl/h/k.pem"})
    assert p.public_url == "https://127.0.0.1:443"
    assert build_params({"bind_ip": "::1"}).public_url == "http://[::1]:8000"


@pytest.mark.parametrize("values,needle", [
    ({"ssl_cert": "/etc/ssl/c.pem"}, "ssl_cert and ssl_key go together"),
    ({"ssl_key": "/etc/ssl/k.pem"}, "ssl_cert and ssl_key go together"),
    ({"ssl_ca": "/etc/ssl/ca.pem"}, "ssl_ca is only used with ssl_cert"),
    ({"ssl_cert": "/c.pem", "ssl_key": "/k.pem", "tls_terminated_by_proxy": True}, "choose one"),
    ({"ssl_cert": "cert.pem", "ssl_key": "/k.pem"}, "ssl_cert must be an absolute path"),
    ({"ssl_cert": "/c.pem", "ssl_key": "/etc/../k.pem"}, "ssl_key must not contain '..'"),
])
def test_bad_tls_parameters_are_refused(values, needle):
    with pytest.raises(ParameterError, match=needle):
        build_params(values)


def test_tls_hostname_is_the_host_users_open():
    tls_values = {"ssl_cert": "/c.pem", "ssl_key": "/k.pem"}
    assert build_params(tls_values).tls_hostname == "127.0.0.1"
    assert build_params({**tls_values, "oauth_public_url": "https://hub.example.org"}).tls_hostname == "hub.example.org"


def test_config_serves_https_only_with_a_certificate():
    s = hub_settings(build_params({"port": 8443, "ssl_cert": "/etc/ssl/h/c.pem", "ssl_key": "/etc/ssl/h/k.pem"}))
    assert s["c.JupyterHub.bind_url"] == "'https://127.0.0.1:8443'"
    assert s["c.JupyterHub.ssl_cert"] == "'/etc/ssl/h/c.pem'" and s["c.JupyterHub.ssl_key"] == "'/etc/ssl/h/k.pem'"
    assert s["c.JupyterHub.hub_ip"] == "'127.0.0.1'"
    plain = hub_settings(build_params({}))
    assert plain["c.JupyterHub.bind_url"] == "'http://127.0.0.1:8000'"
    assert plain["c.JupyterHub.ssl_cert"] is None and plain["c.JupyterHub.ssl_key"] is None  # lines removed
    behind = hub_settings(build_params({"bind_ip": "0.0.0.0", "tls_terminated_by_proxy": True}))
    assert behind["c.JupyterHub.hub_ip"] == "'127.0.0.1'" and behind["c.JupyterHub.ssl_cert"] is None


def test_smoke_hub_serves_the_same_tls(tmp_path):
    text = throwaway_config(build_params({"ssl_cert": "/etc/ssl/h/c.pem", "ssl_key": "/etc/ssl/h/k.pem"}), tmp_path,
                            tmp_path / "pid")
    assert "c.JupyterHub.bind_url = 'https://127.0.0.1:8000'" in text
    assert "c.JupyterHub.ssl_cert = '/etc/ssl/h/c.pem'" in text and "c.JupyterHub.ssl_key = '/etc/ssl/h/k.pem'" in text


# --- the files ------------------------------------------------------------------------------------
@root_only
def test_a_good_chain_with_an_intermediate_passes(tmp_path):
    ca = trustme.CA()
    leaf = ca.create_child_ca().issue_cert("127.0.0.1", "hub.hrb.test")
    rows = rows_of(write_tls(tmp_path / "tls", leaf, ca))
    assert all(status == OK for status, _ in rows.values()), rows
    assert "2 certificate(s) in order, ending at a root in ssl_ca" in rows["TLS chain"][1]
    assert rows["TLS certificate name"][1] == "names 127.0.0.1"
    result = tls.check_tls(build_params(write_tls(tmp_path / "tls", leaf, ca)))
    assert result.status == OK


@root_only
def test_missing_intermediate_is_refused(tmp_path):
    ca = trustme.CA()
    leaf = ca.create_child_ca().issue_cert("127.0.0.1")
    rows = rows_of(write_tls(tmp_path / "tls", leaf, ca, chain=False))
    assert rows["TLS chain"][0] == FAILED and "the chain is incomplete" in rows["TLS chain"][1]
    assert "Append the intermediate" in rows["TLS chain"][1]


@root_only
def test_chain_out_of_order_is_refused(tmp_path):
    ca = trustme.CA()
    leaf = ca.create_child_ca().issue_cert("127.0.0.1")
    values = write_tls(tmp_path / "tls", leaf, ca)
    pems = leaf.cert_chain_pems
    (tmp_path / "tls" / "cert.pem").write_bytes(pems[1].bytes() + pems[0].bytes())
    rows = rows_of(values)
    assert rows["TLS chain"][0] == FAILED and "not issued by certificate 2" in rows["TLS chain"][1]


@root_only
def test_a_leaf_issued_directly_by_a_root_needs_that_root_trusted(tmp_path):
    ca, other = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    assert rows_of(write_tls(tmp_path / "a", leaf, ca))["TLS chain"][0] == OK
    # the same files, but the checks are told to trust another CA (or requests' public bundle): refused
    assert rows_of(write_tls(tmp_path / "b", leaf, other))["TLS chain"][0] == FAILED
    no_ca = write_tls(tmp_path / "c", leaf)
    assert rows_of(no_ca)["TLS chain"][0] == FAILED and "requests' CA bundle" in rows_of(no_ca)["TLS chain"][1]


@root_only
def test_a_self_signed_certificate_is_accepted_only_as_its_own_trusted_issuer(tmp_path):
    d = tmp_path / "ss"
    d.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", d / "key.pem", "-out", d / "cert.pem", "-days", "90", "-subj", "/CN=hub.hrb.test",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    os.chmod(d / "key.pem", 0o600)
    values = {"ssl_cert": str(d / "cert.pem"), "ssl_key": str(d / "key.pem")}
    rows = rows_of(values)
    assert rows["TLS chain"][0] == FAILED and "self-signed" in rows["TLS chain"][1] and "set ssl_ca" in rows["TLS chain"][1]
    rows = rows_of({**values, "ssl_ca": str(d / "cert.pem")})
    assert all(status == OK for status, _ in rows.values()), [r for r in rows.items() if r[1][0] != OK]
    # a certificate that only claims to be its own issuer (issuer = subject of the trusted one, another key) is not
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    trusted = x509.load_pem_x509_certificate((d / "cert.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    forged = (x509.CertificateBuilder().subject_name(trusted.subject).issuer_name(trusted.subject)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=30))
              .add_extension(trusted.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, False)
              .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()))
    (d / "forged.pem").write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    (d / "forged-key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    os.chmod(d / "forged-key.pem", 0o600)
    row = rows_of({"ssl_cert": str(d / "forged.pem"), "ssl_key": str(d / "forged-key.pem"),
                   "ssl_ca": str(d / "cert.pem")})["TLS chain"]
    assert row[0] == FAILED and "the chain is incomplete" in row[1]


@root_only
def test_mismatched_key_is_refused(tmp_path):
    ca = trustme.CA()
    leaf, other = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    values = write_tls(tmp_path / "tls", leaf, ca)
    (tmp_path / "tls" / "key.pem").write_bytes(other.private_key_pem.bytes())
    rows = rows_of(values)
    assert rows["TLS key matches certificate"][0] == FAILED
    assert "not the key of the certificate" in rows["TLS key matches certificate"][1]
    with pytest.raises(PreflightError, match="TLS key matches certificate"):
        tls.check_tls(build_params(values))


@root_only
def test_encrypted_or_garbage_key_is_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    values = write_tls(tmp_path / "tls", leaf, ca)
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    (tmp_path / "tls" / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    assert "is encrypted" in rows_of(values)["TLS key matches certificate"][1]
    (tmp_path / "tls" / "key.pem").write_bytes(b"not a key\n")
    assert "not a PEM private key" in rows_of(values)["TLS key matches certificate"][1]


@root_only
def test_expired_not_yet_valid_and_expiring_certificates(tmp_path):
    ca = trustme.CA()
    expired = ca.issue_cert("127.0.0.1", not_before=NOW - timedelta(days=90), not_after=NOW - timedelta(days=1))
    row = rows_of(write_tls(tmp_path / "e", expired, ca))["TLS certificate validity"]
    assert row[0] == FAILED and "expired on" in row[1]
    future = ca.issue_cert("127.0.0.1", not_before=NOW + timedelta(days=2), not_after=NOW + timedelta(days=90))
    row = rows_of(write_tls(tmp_path / "f", future, ca))["TLS certificate validity"]
    assert row[0] == FAILED and "not valid before" in row[1]
    soon = ca.issue_cert("127.0.0.1", not_after=NOW + timedelta(days=10, hours=1))
    row = rows_of(write_tls(tmp_path / "s", soon, ca))["TLS certificate validity"]
    assert row[0] == OK and row[1].startswith("WARNING: expires in 10 days")


@root_only
def test_certificate_for_another_name_is_refused(tmp_path):
    ca = trustme.CA()
    values = write_tls(tmp_path / "tls", ca.issue_cert("*.example.org"), ca)
    row = rows_of(values)["TLS certificate name"]
    assert row[0] == FAILED and "names *.example.org, not 127.0.0.1" in row[1] and "oauth_public_url" in row[1]
    assert rows_of({**values, "oauth_public_url": "https://hub.example.org"})["TLS certificate name"][0] == OK
    assert rows_of({**values, "oauth_public_url": "https://a.hub.example.org"})["TLS certificate name"][0] == FAILED


@root_only
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_key_readable_by_others_is_refused(tmp_path, mode):
    ca = trustme.CA()
    row = rows_of(write_tls(tmp_path / "tls", ca.issue_cert("127.0.0.1"), ca, key_mode=mode))["TLS key file"]
    assert row[0] == FAILED and f"mode {mode:04o}" in row[1] and "readable by root only" in row[1]


@pytest.fixture
def nobody_uid():
    import pwd

    return pwd.getpwnam("nobody").pw_uid


@root_only
def test_key_owned_by_a_user_is_refused(tmp_path, nobody_uid):
    ca = trustme.CA()
    values = write_tls(tmp_path / "tls", ca.issue_cert("127.0.0.1"), ca)
    os.chown(values["ssl_key"], nobody_uid, -1)
    row = rows_of(values)["TLS key file"]
    assert row[0] == FAILED and "owned by nobody, not root" in row[1]


@root_only
def test_root_does_not_follow_a_path_a_user_controls(tmp_path, nobody_uid):
    """A user who owns a directory on the way could swap the key for a link to any root-only file."""
    ca = trustme.CA()
    values = write_tls(tmp_path / "tls", ca.issue_cert("127.0.0.1"), ca)
    userdir = tmp_path / f"user-{secrets.token_hex(3)}"
    userdir.mkdir(mode=0o755)
    os.chown(userdir, nobody_uid, -1)
    (userdir / "key.pem").symlink_to(values["ssl_key"])
    row = rows_of({**values, "ssl_key": str(userdir / "key.pem")})["TLS key file"]
    assert row[0] == FAILED and f"{userdir} is owned by nobody" in row[1]
    # a root-owned link to a key under a user's directory: the link's target is checked too
    os.rename(values["ssl_key"], userdir / "real-key.pem")
    (tmp_path / "tls" / "key.pem").symlink_to(userdir / "real-key.pem")
    row = rows_of(values)["TLS key file"]
    assert row[0] == FAILED and "owned by nobody" in row[1]
    # a group-writable directory on the way
    gw = tmp_path / "gw"
    gw.mkdir()
    os.chmod(gw, 0o775)
    (gw / "cert.pem").write_bytes(open(values["ssl_cert"], "rb").read())
    row = rows_of({**values, "ssl_cert": str(gw / "cert.pem")})["TLS certificate file"]
    assert row[0] == FAILED and "writable by group" in row[1]


@root_only
def test_a_root_owned_symlink_in_root_owned_directories_is_followed(tmp_path):
    """certbot's layout: live/<name>/privkey.pem -> ../../archive/<name>/privkey1.pem."""
    ca = trustme.CA()
    values = write_tls(tmp_path / "archive", ca.issue_cert("127.0.0.1"), ca)
    (tmp_path / "live").mkdir()
    (tmp_path / "live" / "key.pem").symlink_to("../archive/key.pem")
    rows = rows_of({**values, "ssl_key": str(tmp_path / "live" / "key.pem")})
    assert rows["TLS key file"][0] == OK and rows["TLS key matches certificate"][0] == OK


def test_plain_http_rows_say_how_it_is_protected():
    (label, status, detail), = tls.tls_rows(build_params({}))
    assert status == OK and "loopback" in detail
    (label, status, detail), = tls.tls_rows(build_params({"bind_ip": "0.0.0.0", "tls_terminated_by_proxy": True}))
    assert status == OK and "X-Forwarded-Proto: https" in detail and "Upgrade" in detail and "127.0.0.1:8081" in detail


# --- clients -----------------------------------------------------------------------------------------
def test_http_session_trusts_ssl_ca_and_pins_the_public_name():
    p = build_params({"port": 18443, "ssl_cert": "/c.pem", "ssl_key": "/k.pem", "ssl_ca": "/etc/hrb-test/ca.pem",
                      "oauth_public_url": "https://hub.example.org"})
    s = tls.http_session(p.public_url + "/hub/api")
    assert s.verify == "/etc/hrb-test/ca.pem" and s.trust_env is False  # REQUESTS_CA_BUNDLE must not replace it
    adapter = s.get_adapter(p.public_url + "/hub/api")
    assert isinstance(adapter, tls._NamedHostAdapter) and adapter.hostname == "hub.example.org"
    other = tls.http_session("https://127.0.0.1:18444/")
    assert other.verify is True and not isinstance(other.get_adapter("https://127.0.0.1:18444/"), tls._NamedHostAdapter)
    assert isinstance(requests.Session().get_adapter("https://x/"), requests.adapters.HTTPAdapter)


@pytest.fixture
def tls_server(tmp_path):
    """A real TLS server on loopback with a chain root → intermediate → server certificate for hub.hrb.test only."""
    import http.server
    import ssl
    import threading

    ca = trustme.CA()
    leaf = ca.create_child_ca().issue_cert("hub.hrb.test")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(ctx)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1], str(tmp_path / "ca.pem")
    srv.shutdown()


def _get(params):
    try:
        return tls.http_session(params.public_url).get(params.public_url + "/", timeout=5).status_code
    except requests.exceptions.SSLError as exc:
        return f"SSLError {exc}"


def test_http_session_verifies_the_chain_and_the_public_name_on_a_real_server(tls_server, monkeypatch):
    port, ca = tls_server
    base = {"port": port, "ssl_cert": "/c.pem", "ssl_key": "/k.pem"}
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")  # must not replace ssl_ca
    # connects to 127.0.0.1, verifies the certificate for the name users open: the server answers (501: no GET here)
    assert _get(build_params({**base, "ssl_ca": ca, "oauth_public_url": f"https://hub.hrb.test:{port}"})) == 501
    # another name, another CA, or the public bundle: refused, never silently unverified
    assert "match" in _get(build_params({**base, "port": port, "ssl_ca": ca,
                                         "oauth_public_url": f"https://other.hrb.test:{port}"}))
    other = trustme.CA()
    other.cert_pem.write_to_path(ca + ".other")
    assert "certificate verify failed" in _get(build_params({**base, "ssl_ca": ca + ".other",
                                                              "oauth_public_url": f"https://hub.hrb.test:{port}"}))
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    assert "certificate verify failed" in _get(build_params({**base, "oauth_public_url": f"https://hub.hrb.test:{port}"}))
