"""nbval: the committed runbooks' tagged outputs match a converged run on the reference sandbox.

Runs last (marker runs_last): each runbook is first converged with papermill on its reference sandbox,
then nbval re-executes the committed notebook with the sandbox parameters injected
(papermill --prepare-only keeps the committed outputs) and compares the nbval-check-output cells.
"""
import subprocess
import sys

import pytest

from nbval_support import CHAINS, SANITIZE, prepare_copy, reference_params, teardown
from support.runbook import run_runbook
from support.sandbox import REPO, port_params

pytestmark = [pytest.mark.integration, pytest.mark.runs_last]

NBVAL_RUNBOOKS = ["install", "configure", "troubleshoot"]  # oauth: test_oauth_runbook.py (needs its fake GitHub)


@pytest.mark.parametrize("name", NBVAL_RUNBOOKS)
def test_runbook_outputs_match_reference(name, tmp_path):
    ports = port_params()
    params = {**reference_params(name), **{k: ports[k] for k in ("port", "hub_port", "proxy_api_port")}}
    try:
        for step in CHAINS[name]:  # converge the sandbox first
            run = run_runbook(step, params, tmp_path)
            assert run.ok, run.error[-3000:]
        copy = prepare_copy(name, params, tmp_path / f"{name}.ipynb")
        res = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
                              "--nbval-sanitize-with", str(SANITIZE), str(copy), "-q"],
                             capture_output=True, text=True, cwd=REPO / "runbooks", timeout=900)
    finally:
        teardown(params)
    assert res.returncode == 0, res.stdout[-6000:]
