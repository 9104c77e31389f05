"""`make deploy`: validate a parameters file, then run the runbooks in order with papermill.

Usage: python -m hubrunbook.deploy parameters/local.yaml [runbook ...]
Each executed notebook is kept under runs/ as the audit record. Exit code 0 only when every runbook passed.
"""
from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from pathlib import Path

from hubrunbook.core.errors import RunbookError
from hubrunbook.core.params import load_params_file
from hubrunbook.core.runner import REPO, execute_runbook
from hubrunbook.runbooks import deploy_chain


def run_runbook(name: str, params_file: Path, runs_dir: Path) -> Path:
    """Execute runbooks/<name>.ipynb into runs_dir (0700; the notebook 0600); raises papermill's error on failure."""
    import yaml

    runs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(runs_dir, 0o700)  # executed notebooks hold every parameter value and every output: root's only
    out = runs_dir / f"{datetime.now():%Y%m%d-%H%M%S}-{name}.ipynb"
    return execute_runbook(name, out, yaml.safe_load(params_file.read_text()) or {})


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    params_file = Path(argv[0])
    names = argv[1:] or [n for n in deploy_chain() if (REPO / "runbooks" / f"{n}.ipynb").exists()]
    try:
        params = load_params_file(params_file)
    except (RunbookError, OSError) as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    runs_dir = REPO / "runs"
    audit = params.layout.audit_log
    for name in names:
        t0 = time.monotonic()
        print(f"==> {name}.ipynb with {params_file}", flush=True)
        seen = audit.stat().st_size if audit.exists() else 0
        try:
            out = run_runbook(name, params_file, runs_dir)
        except Exception as exc:  # papermill raises PapermillExecutionError naming the cell and the exception
            print(f"deploy: {name}.ipynb FAILED — the executed notebook is the record under {runs_dir}/\n{exc}", file=sys.stderr)
            return 1
        print(f"    ok in {time.monotonic() - t0:.1f} s, {changes_since(audit, seen)} → {out.relative_to(REPO)}", flush=True)
    _print_next(params, names)
    return 0


def changes_since(audit: Path, offset: int) -> str:
    """'2 changed: ensure_proxy, ensure_hub_env' or 'no changes', from the audit lines a run appended."""
    import json

    try:
        with open(audit) as fh:
            fh.seek(offset)
            entries = [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError):
        return "changes unknown (no audit log)"
    changed = [e["step"] for e in entries if e.get("status") == "changed"]
    return f"{len(changed)} changed: {', '.join(changed)}" if changed else "no changes"


def _print_next(params, names) -> None:
    if "configure" in names:
        pw = params.layout.passwords_dir
        print(f"\nJupyterHub is running at {params.public_url}/")
        for user in params.users:
            how = params.passwords.get(user) or f"file:{pw / user}"
            print(f"  log in as {user!r}; password: {how.replace('file:', 'sudo cat ') if how.startswith('file:') else how}")
    else:
        print(f"\nInstalled into {params.prefix}. Next: runbooks/configure.ipynb")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
