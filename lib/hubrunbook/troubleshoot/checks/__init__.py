"""The troubleshooting checks: one read-only detector per known problem, its cause, its fix.

Each module registers its checks in ``catalog.CATALOG`` (``NAME = register(Check(..., stage=...))``) when imported;
importing this package imports them all. The catalog is the data a reader scans (like JupyterHub's "log messages"
page): for each check an example of what the operator sees, the cause and the action. Its order is the repair order
(``catalog.STAGES``). Repairs live in ``repairs.py``; a check without one is reported, never acted on.

- ``install``: the hub env, its packages, Node.js, the proxy
- ``processes``: stray proxies, foreign programs on our ports, the hub service and process
- ``state``: secret file modes, the database schema, free disk, the hub's log
- ``access``: the config file, the allow rule, OAuth, accounts, notebook dirs, what spawned users can run
- ``limits``: limits per user not enforced, servers killed by their memory limit
"""
from hubrunbook.troubleshoot.checks import access, install, limits, processes, state  # noqa: F401  (registers their checks)
