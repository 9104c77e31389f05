"""What nbval needs: the reference sandbox of each runbook, and preparing a parameterised copy for nbval."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

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
    """Stop the sandbox's hub and remove the users it created (by PID and by our registry only)."""
    from hubrunbook.core.params import build_params
    from hubrunbook.hub.service import stop_managed_hub
    from hubrunbook.host.users import remove_users

    params = build_params(values)
    stop_managed_hub(params)
    if (params.layout.state_dir / "users.json").exists():
        remove_users(params, [*params.users, *params.admin_users])


def prepare_copy(name: str, params: dict, dest: Path) -> Path:
    """A copy of runbooks/<name>.ipynb with *params* injected and the committed outputs kept (papermill --prepare-only)."""
    pfile = dest.parent / f"{name}-params.yaml"
    pfile.write_text(yaml.safe_dump(params))
    subprocess.run([sys.executable, "-m", "papermill", "--prepare-only", str(REPO / "runbooks" / f"{name}.ipynb"),
                    str(dest), "-f", str(pfile)], check=True, capture_output=True)
    return dest
