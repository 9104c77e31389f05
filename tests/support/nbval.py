"""What nbval needs: each runbook's reference sandbox, its recorded reference run (tests/references/<name>.ipynb),
and the copy nbval executes: the CURRENT runbook with the sandbox parameters injected and the reference outputs
transplanted by cell id. Editing a runbook's prose therefore never breaks nbval; a step whose output changed does.

The references are written only by tools/record_references.py (`make references`); a Run All + save in JupyterLab
writes runbooks/, never tests/references/.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from hubrunbook.core.runner import execute_runbook
from hubrunbook.runbooks import get_runbook

from support.sandbox import REPO, TEST_ROOT, teardown_sandbox
SANITIZE = REPO / "tests" / "nbval_sanitize.cfg"
REFERENCES = REPO / "tests" / "references"
CHECK_TAG = "nbval-check-output"


def reference_path(name: str) -> Path:
    return REFERENCES / f"{name}.ipynb"


def nbval_user(role: str) -> str:
    """A sandbox user of this process: hrb-nbv-<pid, 7 digits>-<role>. The pid keeps concurrent runs apart; being
    a number of fixed width, nbval's sanitiser makes it `N` and the tables keep their widths."""
    return f"hrb-nbv-{os.getpid():07d}-{role}"


def reference_params(name: str, ports: dict[str, int]) -> dict:
    """Parameters of the sandbox a runbook's reference outputs come from (ports and prefix are sanitised away)."""
    values = {"prefix": str(TEST_ROOT / f"nbval-{name}"), **{k: ports[k] for k in ("port", "hub_port", "proxy_api_port")},
              "node": "wheel", "service": "process"}
    if name != "install":
        values |= {"users": [nbval_user("user")], "admin_users": [nbval_user("admin")]}
    if name == "uninstall":  # recorded as the default dry run; a final backup would go beside the sandbox, never /var
        values["uninstall_backup_dir"] = str(TEST_ROOT / "nbval-uninstall-backups")
    if name == "restore":
        values |= {"restore_archive": "latest"}
    if name == "kubernetes":  # GitHub login, no local accounts (PAM is refused there by design); no k8s_schema_path:
        from hubrunbook.core.params import load_yaml  # the reference must not depend on where the chart data is

        values |= load_yaml(REPO / "parameters" / "kubernetes-github.yaml")  # the archive backup.ipynb wrote in the sandbox (SANDBOX_BEFORE)
    return values


# sandboxes that need more than the runbook's prerequisites (`after`): restore needs an archive of a configured hub
# userenv: recorded with a configured hub, so its verification spawns and imports in a kernel as a user
SANDBOX_BEFORE = {"restore": ("install", "userenv", "configure", "backup"), "userenv": ("install", "userenv", "configure")}


def converge_chain(name: str) -> list[str]:
    """The runbooks to run (same parameters) so that the next run of *name* is the converged one a reference shows."""
    return [*SANDBOX_BEFORE.get(name, get_runbook(name).after), name]


def converge_sandbox(name: str, params: dict, workdir: Path) -> None:
    """A fresh sandbox (nothing from an earlier run: the hub's database would list its users) brought to the state
    the next run of *name* is recorded or compared in."""
    shutil.rmtree(params["prefix"], ignore_errors=True)
    for step in converge_chain(name):
        execute_runbook(step, workdir / f"converge-{step}.ipynb", params)


def teardown(values: dict) -> None:
    """Stop the sandbox's hub, remove the users it created (by PID and by our registry only), then its prefix (and
    uninstall's backup dir, when the sandbox has one)."""
    from hubrunbook.core.params import build_params

    params = build_params(values)
    teardown_sandbox(params)
    if "uninstall_backup_dir" in values:
        shutil.rmtree(params.uninstall_backup_dir, ignore_errors=True)


def transplant_outputs(target: nbformat.NotebookNode, reference: nbformat.NotebookNode) -> None:
    """Give *target*'s code cells the outputs of the *reference* cell with the same id. A checked cell the
    reference lacks gets no outputs but an execution count, so nbval compares it (and fails if it prints)."""
    by_id = {c.get("id"): c for c in reference.cells if c.cell_type == "code"}
    for cell in target.cells:
        if cell.cell_type != "code":
            continue
        ref = by_id.get(cell.get("id"))
        if ref is not None:
            cell.outputs, cell.execution_count = ref.outputs, ref.execution_count
        else:
            checked = CHECK_TAG in cell.metadata.get("tags", [])
            cell.outputs, cell.execution_count = [], (1 if checked else None)


def prepare_nbval_copy(name: str, params: dict, dest: Path) -> Path:
    """The notebook nbval executes: runbooks/<name>.ipynb as it is now, *params* injected (papermill --prepare-only
    through the one runner), outputs from tests/references/<name>.ipynb."""
    if not reference_path(name).exists():
        raise FileNotFoundError(f"no reference run for {name}: record it with `make references NAMES={name}` (root)")
    execute_runbook(name, dest, params, prepare_only=True)
    nb = nbformat.read(dest, as_version=4)
    transplant_outputs(nb, nbformat.read(reference_path(name), as_version=4))
    dest.write_text(nbformat.writes(nb))
    return dest


def run_nbval(copy: Path) -> subprocess.CompletedProcess:
    """nbval on *copy*, lax (only cells tagged nbval-check-output are compared), sanitised, from runbooks/."""
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
                           "--nbval-sanitize-with", str(SANITIZE), str(copy), "-q"],
                          capture_output=True, text=True, cwd=REPO / "runbooks", timeout=900)
