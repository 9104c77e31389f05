"""nbval: each runbook's checked outputs match its recorded reference (tests/references/<name>.ipynb).

Each runbook is first converged on its reference sandbox (the runbooks its declaration runs `after`, then itself);
then nbval executes the CURRENT runbook with the sandbox parameters injected and the reference outputs transplanted
by cell id, comparing the cells tagged nbval-check-output (sanitised by tests/nbval_sanitize.cfg).
Re-record after a deliberate change of a step's output: `make references` (tools/record_references.py).
"""
import pytest

from conftest import port_params
from hubrunbook.runbooks import RUNBOOKS
from nbval_support import converge_sandbox, prepare_nbval_copy, reference_params, run_nbval, teardown

pytestmark = pytest.mark.integration

# oauth: test_oauth_runbook.py (its sandbox needs the fake GitHub)
NBVAL_RUNBOOKS = [rb.name for rb in RUNBOOKS if rb.name != "oauth"]


@pytest.mark.parametrize("name", NBVAL_RUNBOOKS)
def test_runbook_outputs_match_reference(name, tmp_path):
    params = reference_params(name, port_params())
    try:
        converge_sandbox(name, params, tmp_path)
        res = run_nbval(prepare_nbval_copy(name, params, tmp_path / f"{name}.ipynb"))
    finally:
        teardown(params)
    assert res.returncode == 0, res.stdout[-6000:]
