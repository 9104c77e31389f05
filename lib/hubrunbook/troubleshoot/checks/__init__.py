"""The catalog of troubleshooting checks: one read-only detector per known problem, its cause, its fix.

``CATALOG`` is the data a reader scans (like JupyterHub's "log messages" page): for each check an
example of what the operator sees, the cause and the action. Its order is the repair order:
broken installs first, then stray processes, files, the database and users, the hub restart last.
Repairs live in ``repairs.py``; a check without one is reported, never acted on.
"""
from __future__ import annotations

from hubrunbook.troubleshoot.checks.access import (ALLOW_RULE, CONFIG_FILE, NOTEBOOK_DIRS, OAUTH, SINGLEUSER, USER_ACCOUNTS, check_allow_rule,
                     check_config_file, check_notebook_dirs, check_oauth, check_singleuser_runnable, check_user_accounts)
from hubrunbook.troubleshoot.checks.install import (HUB_ENV, HUB_PACKAGES_CHECK, NODE, PIP_CHECK, PROXY_INSTALLED, check_dependency_conflicts,
                      check_hub_env, check_hub_packages, check_node, check_proxy_installed)
from hubrunbook.troubleshoot.checks.processes import (HUB_PORT, HUB_RUNNING, HUB_SERVICE, PROXY_API, PUBLIC_PORT, check_hub_port, check_hub_running,
                        check_hub_service, check_proxy_api_port, check_public_port)
from hubrunbook.troubleshoot.diagnose import Check
from hubrunbook.troubleshoot.checks.state import DB_SCHEMA, DISK, HUB_LOG, SECRET_FILES, check_db_schema, check_disk_space, check_hub_log, check_secret_files

__all__ = [
    "CATALOG", "check_allow_rule", "check_config_file", "check_notebook_dirs", "check_oauth", "check_singleuser_runnable",
    "check_user_accounts", "check_dependency_conflicts", "check_hub_env", "check_hub_packages", "check_node",
    "check_proxy_installed", "check_hub_port", "check_hub_running", "check_hub_service", "check_proxy_api_port", "check_public_port",
    "check_db_schema", "check_disk_space", "check_hub_log", "check_secret_files",
]

CATALOG: list[Check] = [
    HUB_ENV, HUB_PACKAGES_CHECK, PIP_CHECK, NODE, PROXY_INSTALLED, PROXY_API, PUBLIC_PORT, HUB_PORT, SECRET_FILES,
    DB_SCHEMA, DISK, CONFIG_FILE, ALLOW_RULE, OAUTH, USER_ACCOUNTS, NOTEBOOK_DIRS, SINGLEUSER, HUB_SERVICE, HUB_RUNNING, HUB_LOG,
]
