"""Who may log in and spawn, enforced inside the running hub: hubrunbook's authenticator and spawner classes.

Parameter validation refuses system accounts in user lists, but at runtime PAM with ``allow_all`` admits every
account with a password, an OAuth login named ``root`` maps onto root, and ``LocalAuthenticator`` reuses any account
that exists. So the hub runs hubrunbook's subclasses from the module ``hubrunbook_hub_auth``, written into the hub
env's site-packages (config values must be literals, so the code cannot live in the config). They refuse, with a line
in the hub log:

- a login (``check_blocked_users``: before the allow rules, so admins too), a session refresh and a spawn of a system
  account: root, or a uid outside ``UID_MIN..UID_MAX`` of /etc/login.defs (read when the config is written);
- with OAuth, also a login or spawn onto an existing account that hubrunbook did not create: created accounts are the
  users.json registry of configure.ipynb (``users.py``) and ``hub-users.json``, where the hub records the accounts
  its ``add_user_cmd`` creates (name and uid; a re-created account with another uid is not ours).

Admin membership is exactly the authenticator's ``admin_users``: ``c.JupyterHub.load_roles`` declares the admin role
with an explicit (empty) user list, to which JupyterHub adds ``admin_users``; at every start it removes the admin flag
of everybody else — such as local admins of the PAM days after a switch to OAuth (JupyterHub alone keeps admin flags
in its database: "removing a username from admin_users does not remove admin rights").
"""
from __future__ import annotations

from pathlib import Path

from hubrunbook.core.params import login_defs_uid_range
from hubrunbook.core.shell import run_command
from hubrunbook.core.steps import CHANGED, UNCHANGED, WOULD_CHANGE

HUB_MODULE = "hubrunbook_hub_auth"
PAM_CLASS = f"{HUB_MODULE}.PAMAuthenticator"
SPAWNER_CLASS = f"{HUB_MODULE}.LocalProcessSpawner"
# the admin role's members are exactly admin_users (JupyterHub merges them in), everybody else loses admin at start
ADMIN_ROLE = [{"name": "admin", "users": []}]

# Written into the hub env's site-packages (the hub imports it; hubrunbook is not installed there).
HUB_MODULE_SOURCE = '''\
"""Written by hubrunbook (configure.ipynb, oauth.ipynb) into the hub's env; re-running them rewrites it. Do not edit.

Refuses logins, session refreshes and spawns of system accounts and, with OAuth, of existing accounts that
hubrunbook did not create (see hubrunbook's hubguard.py). Settings: c.HubrunbookGuard.* in jupyterhub_config.py.
"""
import json
import os
import pwd
import tempfile

from jupyterhub.auth import PAMAuthenticator as _PAMAuthenticator
from jupyterhub.spawner import LocalProcessSpawner as _LocalProcessSpawner
from jupyterhub.utils import maybe_future
from traitlets import Int, Unicode
from traitlets.config import LoggingConfigurable


def _registry(path):
    """{name: entry} of a hubrunbook registry file ({"users": {...}}); {} when absent or unreadable."""
    try:
        with open(path) as fh:
            users = json.load(fh).get("users")
    except (OSError, ValueError, AttributeError):
        return {}
    return users if isinstance(users, dict) else {}


class HubrunbookGuard(LoggingConfigurable):
    uid_min = Int(1000, help="UID_MIN of /etc/login.defs: lower uids are system accounts").tag(config=True)
    uid_max = Int(60000, help="UID_MAX of /etc/login.defs: higher uids are system accounts").tag(config=True)
    registry_file = Unicode("", help="users.json of hubrunbook (accounts configure.ipynb created)").tag(config=True)
    hub_users_file = Unicode("", help="accounts the hub created on OAuth logins").tag(config=True)

    def account_refusal(self, name, only_known):
        """Why *name* must not log in or spawn, or None."""
        if name == "root":
            return "root never logs in to the hub"
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            return None  # no account yet: only an OAuth login creates one (add_user_cmd)
        if pw.pw_uid == 0 or not self.uid_min <= pw.pw_uid <= self.uid_max:
            return (f"{name!r} is a system account (uid {pw.pw_uid}, outside UID_MIN..UID_MAX "
                    f"{self.uid_min}..{self.uid_max})")
        if only_known:
            for path in (self.registry_file, self.hub_users_file):
                entry = _registry(path).get(name) if path else None
                if isinstance(entry, dict) and entry.get("uid") == pw.pw_uid:
                    return None
            return (f"the account {name!r} (uid {pw.pw_uid}) exists but was not created by hubrunbook "
                    "(neither users.json nor hub-users.json lists it with this uid): an OAuth login never maps onto it")
        return None


class _GuardedAuthenticator(HubrunbookGuard):
    only_known_accounts = False  # OAuth: True

    def check_blocked_users(self, username, authentication=None):
        why = self.account_refusal(username, self.only_known_accounts)
        if why:
            self.log.warning("hubrunbook: login of %r refused: %s", username, why)
            return False
        return super().check_blocked_users(username, authentication)

    async def refresh_user(self, user, *args, **kwargs):
        why = self.account_refusal(user.name, self.only_known_accounts)
        if why:
            self.log.warning("hubrunbook: session of %r ended: %s", user.name, why)
            return False
        return await maybe_future(super().refresh_user(user, *args, **kwargs))

    def add_system_user(self, user):
        super().add_system_user(user)
        if self.hub_users_file:
            self._record_created(user.name)

    def _record_created(self, name):
        """Add *name* with its uid to hub_users_file (atomic, 0600)."""
        pw = pwd.getpwnam(name)
        users = _registry(self.hub_users_file)
        users[name] = {"uid": pw.pw_uid, "home": pw.pw_dir}
        folder = os.path.dirname(self.hub_users_file)
        fd, tmp = tempfile.mkstemp(prefix=".hub-users.", dir=folder)
        try:
            os.write(fd, (json.dumps({"version": 1, "users": users}, indent=2, sort_keys=True) + "\\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.hub_users_file)
        self.log.info("hubrunbook: recorded the account %r (uid %d) created for a login", name, pw.pw_uid)


class PAMAuthenticator(_GuardedAuthenticator, _PAMAuthenticator):
    """JupyterHub's PAMAuthenticator; system accounts never log in (allow_all would admit them)."""


class _GuardedSpawner(HubrunbookGuard):
    async def start(self):
        only_known = getattr(self.authenticator, "only_known_accounts", False)
        why = self.account_refusal(self.user.name, only_known)
        if why:
            self.log.warning("hubrunbook: spawn for %r refused: %s", self.user.name, why)
            raise RuntimeError(f"hubrunbook refuses to start a server for {self.user.name!r}: {why}")
        return await super().start()


class LocalProcessSpawner(_GuardedSpawner, _LocalProcessSpawner):
    """JupyterHub's LocalProcessSpawner; never starts a server as a system account (or, with OAuth, a foreign one)."""


try:  # installed by install.ipynb; used where systemd is PID 1 (limits per user, hubrunbook's limits.py)
    from systemdspawner import SystemdSpawner as _SystemdSpawner
except ImportError:
    _SystemdSpawner = None

if _SystemdSpawner is not None:
    class SystemdSpawner(_GuardedSpawner, _SystemdSpawner):
        """systemdspawner's SystemdSpawner (each server a transient unit with MemoryMax/CPUQuota), guarded as above."""


try:  # oauthenticator is installed by oauth.ipynb only
    from oauthenticator.generic import LocalGenericOAuthenticator as _LocalGenericOAuthenticator
    from oauthenticator.github import LocalGitHubOAuthenticator as _LocalGitHubOAuthenticator
except ImportError:
    _LocalGenericOAuthenticator = _LocalGitHubOAuthenticator = None

if _LocalGitHubOAuthenticator is not None:
    class LocalGitHubOAuthenticator(_GuardedAuthenticator, _LocalGitHubOAuthenticator):
        """oauthenticator's LocalGitHubOAuthenticator; logins map only onto accounts hubrunbook created or creates."""

        only_known_accounts = True

    class LocalGenericOAuthenticator(_GuardedAuthenticator, _LocalGenericOAuthenticator):
        """oauthenticator's LocalGenericOAuthenticator, guarded as above; allowed_groups means the provider's groups only.

        LocalAuthenticator.check_allowed first tests allowed_groups as UNIX groups of the user's system
        account, which does not exist yet for a new user (it is created after the allow check): a 500 with
        "getpwnam(): name not found" (oauthenticator 17.4, JupyterHub 6.1). Group membership is decided by
        OAuthenticator.check_allowed from the provider's groups claim instead.
        """

        only_known_accounts = True

        def check_allowed_groups(self, username, authentication=None):
            return False
'''


def _lit(value) -> str:
    return repr(value)


def spawner_class(params) -> str:
    """SystemdSpawner where each server runs as a systemd unit (limits.py), else LocalProcessSpawner (both guarded)."""
    from hubrunbook.hub.limits import spawner_class as systemd_spawner

    return systemd_spawner(params) or SPAWNER_CLASS


def guard_settings(params) -> dict[str, str]:
    """Config lines shared by configure.ipynb and oauth.ipynb (identical in both, so neither undoes the other)."""
    from hubrunbook.hub import culler

    lo, hi = login_defs_uid_range()
    return {
        "c.JupyterHub.spawner_class": _lit(spawner_class(params)),
        # the idle culler's role names its service: both go into both runbooks' lines (culler.py), or the hub would
        # refuse a role naming a service that the other runbook's re-run took away
        "c.JupyterHub.load_roles": _lit(ADMIN_ROLE + culler.culler_roles(params)),
        **culler.culler_settings(params),
        "c.HubrunbookGuard.uid_min": _lit(lo),
        "c.HubrunbookGuard.uid_max": _lit(hi),
        "c.HubrunbookGuard.registry_file": _lit(str(params.layout.user_registry)),
        "c.HubrunbookGuard.hub_users_file": _lit(str(params.layout.hub_user_registry)),
    }


def hub_site_packages(params, env: Path | None = None) -> Path:
    """site-packages of the hub env (or of the venv *env*: an upgrade's env.new)."""
    python = (env / "bin" / "python") if env else params.layout.env_bin("python")
    out = run_command([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                      timeout=60, what="hub env site-packages")
    return Path(out.stdout.strip())


def ensure_hub_module(params, *, dry_run: bool = False, env: Path | None = None) -> tuple[str, str]:
    """Write ``hubrunbook_hub_auth.py`` into the hub env (or the venv *env*) when it differs; returns (status,
    detail). Idempotent."""
    python = (env / "bin" / "python") if env else params.layout.env_bin("python")
    if dry_run and not python.exists():
        return WOULD_CHANGE, f"would write {HUB_MODULE}.py into the hub env (not installed yet)"
    module = hub_site_packages(params, env) / f"{HUB_MODULE}.py"
    if module.exists() and module.read_text() == HUB_MODULE_SOURCE:
        return UNCHANGED, f"{module.name} in place"
    if dry_run:
        return WOULD_CHANGE, f"would write {module}"
    tmp = module.with_name(f".{module.name}.tmp")
    tmp.write_text(HUB_MODULE_SOURCE)
    tmp.chmod(0o644)
    tmp.replace(module)  # a hub starting now imports the old or the new module, never half of one
    run_command([python, "-c", f"import {HUB_MODULE}"], timeout=60, what=f"import {HUB_MODULE}")
    return CHANGED, f"wrote {module} (login and spawn guard)"

