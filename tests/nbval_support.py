"""What nbval needs: the reference sandbox of each runbook, and preparing a parameterised copy for nbval."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_ROOT = Path(os.environ.get("HRB_TEST_ROOT", "/var/tmp/hrb-tests"))
SANITIZE = REPO / "tests" / "nbval_sanitize.cfg"


# runbooks to run before each one (with the same parameters) so its sandbox is converged
CHAINS = {"install": ["install"], "configure": ["install", "configure"], "troubleshoot": ["install", "configure"]}


def reference_params(name: str, ports: tuple[int, int, int] = (18100, 18101, 18102)) -> dict:
    """Parameters of the sandbox a runbook's reference outputs come from (ports are sanitised away)."""
    port, hub_port, api_port = ports
    values = {"prefix": str(TEST_ROOT / f"nbval-{name}"), "port": port, "hub_port": hub_port, "proxy_api_port": api_port,
              "node": "wheel", "service": "process"}
    if name != "install":
        values |= {"users": ["hrb-nbv-user"], "admin_users": ["hrb-nbv-admin"]}
    return values


def teardown(values: dict) -> None:
    """Stop the sandbox's hub and remove the users it created (by PID and by our registry only), and the prefix."""
    from hubrunbook.core.params import build_params
    from support.sandbox import teardown_sandbox

    teardown_sandbox(build_params(values))


def prepare_copy(name: str, params: dict, dest: Path) -> Path:
    """A copy of runbooks/<name>.ipynb with *params* injected and the committed outputs kept (prepare_only)."""
    from hubrunbook.core.runner import execute_runbook

    return execute_runbook(name, dest, params, prepare_only=True)
