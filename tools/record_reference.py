"""Record a runbook's reference outputs: run it twice with papermill on the reference sandbox, keep the converged run's outputs.

Usage: .venv/bin/python tools/record_reference.py install
The reference sandbox is the one tests/integration/test_nbval.py uses, so nbval compares like with like.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tools"))
from nbval_support import CHAINS, reference_params, teardown  # noqa: E402
from nbtools import transplant_outputs  # noqa: E402


def record(name: str) -> None:
    source = REPO / "runbooks" / f"{name}.ipynb"
    with tempfile.TemporaryDirectory() as tmp:
        pfile = Path(tmp) / "params.yaml"
        values = reference_params(name)
        pfile.write_text(yaml.safe_dump(values))
        out = Path(tmp) / "out.ipynb"
        try:
            for step in CHAINS[name] + [name]:  # the last run is the converged one the reference shows
                subprocess.run([sys.executable, "-m", "papermill", "--cwd", str(REPO / "runbooks"),
                                str(REPO / "runbooks" / f"{step}.ipynb"), str(out), "-f", str(pfile)], check=True)
        finally:
            teardown(values)
        transplant_outputs(source, out)
    print(f"recorded reference outputs into runbooks/{name}.ipynb")


if __name__ == "__main__":
    for n in sys.argv[1:]:
        record(n)
