"""Record oauth.ipynb's reference outputs on the reference sandbox (a configured hub + the fake GitHub).

Usage (root): .venv/bin/python tools/record_oauth_reference.py
Runs the runbook twice with papermill and keeps the converged run's outputs, as tools/record_reference.py does.
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
from nbtools import transplant_outputs  # noqa: E402
from oauth_fixtures import reference_sandbox  # noqa: E402


def record() -> None:
    source = REPO / "runbooks" / "oauth.ipynb"
    with reference_sandbox() as (_, _gh, params), tempfile.TemporaryDirectory() as tmp:
        pfile = Path(tmp) / "params.yaml"
        pfile.write_text(yaml.safe_dump(params))
        out = Path(tmp) / "out.ipynb"
        for _ in (1, 2):  # the second run is the converged one the reference shows
            subprocess.run([sys.executable, "-m", "papermill", "--cwd", str(REPO / "runbooks"), str(source), str(out),
                            "-f", str(pfile)], check=True)
        transplant_outputs(source, out)
    print("recorded reference outputs into runbooks/oauth.ipynb")


if __name__ == "__main__":
    record()
