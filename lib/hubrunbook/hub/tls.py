"""HTTPS served by the hub's proxy: the certificate and key checked before anything changes, and HTTP clients that
verify the hub's certificate.

Rules (docs/security.md, "HTTPS"):
- ssl_cert holds PEM certificates: the server certificate first, then each issuer in order. The chain must end at a
  root the runbooks' checks trust (a self-signed CA certificate in ssl_ca, or, when ssl_ca is empty, in requests' CA
  bundle): either the last certificate in the file is issued directly by such a root, or it is that root itself. A
  single self-signed certificate is accepted only when it is its own issuer and listed in ssl_ca.
- Every certificate in the file is valid now (expired or not yet valid: refused); the earliest end within WARN_DAYS
  days is a warning in the result.
- The certificate names tls_hostname (DNS or IP subject alternative name).
- ssl_key is a PEM private key, unencrypted (the proxy cannot ask for a passphrase), whose public key is the
  certificate's.
- Root reads these files only through paths no other user controls: every directory on the way (and on the way of a
  symlink's target) is owned by root and not writable by group or others unless sticky; the files are owned by root,
  the key without any group/other permission, the certificates not writable by group/others.
"""
from __future__ import annotations

import ipaddress
import os
import stat
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from hubrunbook.host import system
from hubrunbook.core.errors import PreflightError
from hubrunbook.core.steps import FAILED, OK, StepResult

WARN_DAYS = 30
MAX_PEM_BYTES = 1 << 20
PROXY_HEADERS = (
    "X-Forwarded-Proto: https",
    "Host as the user sent it (or X-Forwarded-Host)",
    "X-Forwarded-For / X-Real-IP",
    "HTTP/1.1 with 'Upgrade: $http_upgrade' and 'Connection: upgrade' (kernels and terminals use websockets)",
)


# --- reading files root can trust ----------------------------------------------------------------
def _check_way(path: Path, name: str) -> None:
    """Every component of *path* and of a symlink's target is root's and not writable by others (system.untrusted_reason)."""
    why = system.untrusted_reason(path)
    if why:
        raise ValueError(f"{name}: root cannot trust {path}: {why}; another user could swap the file root reads")


def read_root_file(path: str, name: str, *, private: bool) -> bytes:
    """Read a TLS file as root without following a path another user controls; raise ValueError naming *name*.

    *private*: the file must have no group/other permission at all (a key); else it must not be writable by them.
    """
    p = Path(path)
    try:
        _check_way(p, name)
        real = Path(os.path.realpath(p))
        if real != p:
            _check_way(real, name)
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ValueError(f"{name}: {path} does not exist") from None
    except OSError as exc:
        raise ValueError(f"{name}: cannot open {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{name}: {path} is not a regular file")
        if st.st_uid != 0:
            raise ValueError(f"{name}: {path} is owned by {system.user_name(st.st_uid)}, not root; fix: chown root: {path}")
        mode = stat.S_IMODE(st.st_mode)
        if private and mode & 0o077:
            raise ValueError(f"{name}: {path} has mode {mode:04o}: a private key must be readable by root only; "
                             f"fix: chmod 600 {path}")
        if not private and mode & 0o022:
            raise ValueError(f"{name}: {path} has mode {mode:04o}, writable by group or others; fix: chmod 644 {path}")
        data = os.read(fd, MAX_PEM_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_PEM_BYTES:
        raise ValueError(f"{name}: {path} is larger than {MAX_PEM_BYTES} bytes: not a PEM file")
    return data


# --- certificate rules (pure) --------------------------------------------------------------------
def load_certificates(data: bytes, name: str, path: str) -> list:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError(f"{name}: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)") from None


def _subject(cert) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _issued_by(cert, issuer) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _self_signed(cert) -> bool:
    return cert.issuer == cert.subject and _issued_by(cert, cert)


def chain_problem(certs: list, anchors: list, where: str) -> str | None:
    """Why *certs* (server certificate first) is not a chain ending at a root in *anchors*; None when it is. Pure."""
    for i, (child, parent) in enumerate(zip(certs, certs[1:]), start=1):
        if not _issued_by(child, parent):
            return (f"certificate {i} ({_subject(child)}) is not issued by certificate {i + 1} ({_subject(parent)}): "
                    "the file must hold the server certificate first, then each issuer in order")
    last = certs[-1]
    roots = [a for a in anchors if _self_signed(a)]
    if _self_signed(last):
        if any(last == a for a in roots):
            return None
        return (f"the chain ends at the self-signed {_subject(last)}, which is not in {where}: set ssl_ca to a file "
                "holding it (browsers must be told to trust it too)")
    if any(a.subject == last.issuer and _issued_by(last, a) for a in roots):
        return None
    what = "the certificate" if len(certs) == 1 else f"the last certificate of the file ({_subject(last)})"
    return (f"the chain is incomplete: {what} is issued by {last.issuer.rfc4514_string()}, which is neither in the "
            f"file nor a root in {where}. Append the intermediate certificate(s) your CA gave you after the server "
            "certificate (cat cert.pem intermediate.pem > fullchain.pem), or set ssl_ca to your private root CA")


def validity_problem(certs: list, now: datetime) -> tuple[str | None, str]:
    """(error or None, note) about the validity period of every certificate; note warns within WARN_DAYS days. Pure."""
    for i, cert in enumerate(certs, start=1):
        what = "the server certificate" if i == 1 else f"certificate {i} ({_subject(cert)})"
        if now > cert.not_valid_after_utc:
            return f"{what} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: renew it", ""
        if now < cert.not_valid_before_utc:
            return f"{what} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (clock or certificate wrong)", ""
    end = min(c.not_valid_after_utc for c in certs)
    days = (end - now).days
    if days < WARN_DAYS:
        return None, f"WARNING: expires in {days} days ({end:%Y-%m-%d} UTC): renew it soon"
    return None, f"valid until {end:%Y-%m-%d} UTC ({days} days)"


def names_of(cert) -> list[str]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]


def covers(cert, host: str) -> bool:
    """Whether *cert*'s subject alternative names include *host* (one-label wildcards as clients match them). Pure."""
    host = host.lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for n in names_of(cert):
        if ip is not None:
            try:
                if ipaddress.ip_address(n) == ip:
                    return True
            except ValueError:
                pass
            continue
        n = n.lower().rstrip(".")
        if n == host or (n.startswith("*.") and "." in host and host.split(".", 1)[1] == n[2:]):
            return True
    return False


def key_problem(key_data: bytes, cert, path: str) -> str | None:
    """Why the PEM private key does not serve *cert*; None when its public key is the certificate's. Pure."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(key_data, password=None)
    except TypeError:
        return f"{path} is encrypted: configurable-http-proxy cannot ask for a passphrase; store it decrypted (mode 0600)"
    except (ValueError, UnsupportedAlgorithm) as exc:
        return f"{path} is not a PEM private key ({type(exc).__name__})"
    spki = lambda k: k.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if spki(key.public_key()) != spki(cert.public_key()):
        return f"{path} is not the key of the certificate (their public keys differ): the proxy would fail every handshake"
    return None


# --- the check ---------------------------------------------------------------------------------------
def _anchors(params) -> tuple[list, str]:
    if params.ssl_ca:
        data = read_root_file(params.ssl_ca, "ssl_ca", private=False)
        return load_certificates(data, "ssl_ca", params.ssl_ca), f"ssl_ca ({params.ssl_ca})"
    import warnings

    import certifi
    from cryptography import x509

    with warnings.catch_warnings():  # a few old roots in the bundle have serial numbers RFC 5280 disallows
        warnings.simplefilter("ignore")
        return x509.load_pem_x509_certificates(Path(certifi.where()).read_bytes()), "requests' CA bundle (certifi)"


def tls_rows(params, now: datetime | None = None) -> list[tuple[str, str, str]]:
    """Preflight rows about TLS: the files when ssl_cert is set, else how plain HTTP is protected. Read-only."""
    if not params.ssl_cert:
        if params.tls_terminated_by_proxy:
            return [("TLS", OK, f"terminated by a reverse proxy in front (tls_terminated_by_proxy); it forwards to "
                                f"{params.public_url} and must send: " + "; ".join(PROXY_HEADERS) +
                     f". The hub's own port stays on 127.0.0.1:{params.hub_port}")]
        return [("TLS", OK, f"none: plain HTTP on the loopback address {params.bind_ip} only")]
    now = now or datetime.now(timezone.utc)
    rows: list[tuple[str, str, str]] = []

    def row(label: str, check) -> bool:
        """Run *check* (returns the detail, raises ValueError saying what is wrong) as one row."""
        try:
            rows.append((label, OK, check()))
            return True
        except ValueError as exc:
            rows.append((label, FAILED, str(exc)))
            return False

    certs, key = [], b""

    def read_certs():
        certs.extend(load_certificates(read_root_file(params.ssl_cert, "ssl_cert", private=False), "ssl_cert",
                                       params.ssl_cert))
        return f"{params.ssl_cert}: {len(certs)} certificate(s), server certificate {_subject(certs[0])}"

    def read_key():
        nonlocal key
        key = read_root_file(params.ssl_key, "ssl_key", private=True)
        return f"{params.ssl_key}: owner root, no group/other access"

    def key_matches():
        _fail_with(key_problem(key, certs[0], f"ssl_key {params.ssl_key}"))
        return "same public key"

    def chain():
        anchors, where = _anchors(params)
        _fail_with(chain_problem(certs, anchors, where))
        return f"{len(certs)} certificate(s) in order, ending at a root in {where}"

    def validity():
        err, note = validity_problem(certs, now)
        _fail_with(err)
        return note

    def name():
        host = params.tls_hostname
        if covers(certs[0], host):
            return f"names {host}"
        raise ValueError(f"the certificate names {', '.join(names_of(certs[0])) or 'nothing (no subjectAltName)'}, not "
                         f"{host}: use a certificate for the name users open, and set oauth_public_url to that URL "
                         "(the checks verify the certificate for its host)")

    have_certs = row("TLS certificate file", read_certs)
    have_key = row("TLS key file", read_key)
    if not have_certs:
        return rows
    if have_key:
        row("TLS key matches certificate", key_matches)
    row("TLS chain", chain)
    row("TLS certificate validity", validity)
    row("TLS certificate name", name)
    return rows


def _fail_with(problem: str | None) -> None:
    if problem:
        raise ValueError(problem)


def check_tls(params, now: datetime | None = None) -> StepResult:
    """The TLS rows as a step; raises PreflightError listing every failure (nothing is changed). Read-only."""
    rows = tls_rows(params, now)
    failed = [r for r in rows if r[1] == FAILED]
    if failed:
        raise PreflightError("TLS check failed, nothing was changed:\n" + "\n".join(f"  - {r[0]}: {r[2]}" for r in failed))
    return StepResult("check_tls", OK, rows[-1][2] if len(rows) == 1 else f"{params.public_url}: {len(rows)} checks passed", rows)


# --- clients of the hub's public URL ---------------------------------------------------------------
_TRUST: dict[str, tuple[str | bool, str | None]] = {}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def trust_hub(params) -> None:
    """Make http_session() of params.public_url verify the hub's certificate with ssl_ca (or requests' bundle) and for
    tls_hostname, while connecting to this machine's address. Never turns verification off."""
    host = params.tls_hostname
    pin = None if host == urlsplit(params.public_url).hostname else host
    _TRUST[_origin(params.public_url)] = (params.ssl_ca or True, pin)


class _NamedHostAdapter(HTTPAdapter):
    """Connect to the URL's address but send SNI for, and check the certificate against, another name."""

    def __init__(self, hostname: str):
        self.hostname = hostname
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs.update(server_hostname=self.hostname, assert_hostname=self.hostname)
        super().init_poolmanager(*args, **kwargs)


def http_session(url: str) -> requests.Session:
    """A requests session for *url*: for the hub's https URL it trusts ssl_ca and checks tls_hostname (trust_hub)."""
    session = requests.Session()
    trust = _TRUST.get(_origin(url))
    if trust:
        # REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE would silently replace session.verify, and an HTTPS proxy from the
        # environment has no business between the runbooks and their own hub
        session.trust_env = False
        session.verify = trust[0]
        if trust[1]:
            session.mount(_origin(url) + "/", _NamedHostAdapter(trust[1]))
    return session
