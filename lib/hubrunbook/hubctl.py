"""Start, stop, restart the hub and read its status and logs, the same way under systemd and without it.

Usage: python -m hubrunbook.hubctl {status,start,stop,restart,logs,rotate-secrets} [parameters/local.yaml]
Under systemd these are systemctl/journalctl on the unit; without it, the managed process by its proven PIDs.
Nobody needs `kill`. rotate-secrets replaces the cookie secret and the proxy token and restarts the hub.
"""
from __future__ import annotations

import sys
from pathlib import Path

from hubrunbook.host import systemd
from hubrunbook.core.errors import RunbookError
from hubrunbook.troubleshoot.logscan import hub_log_lines
from hubrunbook.core.params import load_params_file
from hubrunbook.host.preflight import check_trusted_paths
from hubrunbook.hub.rotation import rotate_hub_secrets
from hubrunbook.core.runlock import acquire
from hubrunbook.core.steps import Run
from hubrunbook.hub.service import check_hub_health, ensure_hub_running, stop_managed_hub

ACTIONS = ("status", "start", "stop", "restart", "logs", "rotate-secrets")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ACTIONS:
        print(__doc__)
        return 2
    action, params_file = argv[0], Path(argv[1] if len(argv) > 1 else "parameters/local.yaml")
    try:
        params = load_params_file(params_file)
        check_trusted_paths(params)
        if action != "status" and action != "logs":
            acquire(params.prefix, f"hubctl {action}")  # not while a runbook changes the same prefix
        mode = systemd.mode(params)
        where = f"unit {systemd.unit(params)}" if mode == "systemd" else "managed process (no systemd: not started at boot)"
        if action == "logs":
            print("\n".join(text for _, text in hub_log_lines(params, 64)))
            return 0
        if action == "rotate-secrets":
            run = Run("rotate-secrets", params)  # lock (already held), audit log
            try:
                print(run(rotate_hub_secrets))
            finally:
                run.release()
        if action in ("stop", "restart"):
            print(stop_managed_hub(params).detail)
        if action in ("start", "restart"):
            print(ensure_hub_running(params).detail)
        health = check_hub_health(params)
        print(f"{where}: {health.status}: {health.detail}")
        if mode == "systemd":
            print(f"systemctl: {systemd.describe_state(systemd.state(params))}")
        return 0 if health.status == "ok" or action == "stop" else 1
    except RunbookError as exc:
        print(f"hubctl {action}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
